"""Known streams of audit records for the monitor's tests, and their counts computed directly.

The records have the shape of the gateway's (``gateway.core.records.AuditRecord``); their
decision times lie in the last hours, so the windows are the monitor's (it keeps a day).
:func:`direct_counts` counts them the way docs/monitor.md defines each measure, independently
of the monitor's code, for the tests to compare with ``/monitor/counts``.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_TYPE = "vn.hcm.police.residence_verification_requested.v1"
RESIDENT = "vn.hcm.police.resident_registered.v1"
ADDRESS = "vn.hcm.police.address_changed.v1"
BIRTH = "vn.hcm.health.birth_registered.v1"
DIPLOMA = "vn.hcm.education.diploma_issued.v1"


@dataclass
class Stream:
    """Audit records in decision-time order, with what the monitor must count."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        at: float,
        agency: str,
        event_type: str,
        *,
        outcome: str = "delivered",
        reason: str | None = None,
        recipients: tuple[tuple[str, str], ...] = (),
        subject: str | None = None,
    ) -> None:
        """One audit record decided at ``at`` (epoch seconds)."""
        n = len(self.records)
        self.records.append(
            {
                "decision_id": f"d{n}",
                "decided_at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
                "event_time": None,
                "outcome": outcome,
                "reason": reason,
                "detail": "",
                "agency": agency,
                "event_id": f"e{n}",
                "event_type": event_type,
                "subject": subject or _digest(f"s{n}"),
                "signer_kid": None,
                "recipients": [
                    {"agency": a, "purpose": p, "legal_basis": "test", "sha256": "0" * 64}
                    for a, p in recipients
                ],
                "event_sha256": None,
                "record_sha256": _digest(f"r{n}"),
                "ingress": {"topic": f"xgw.ingress.{agency}", "partition": 0, "offset": n},
            }
        )

    def encoded(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of each record, keyed by event id as the gateway does."""
        return [
            (r["event_id"].encode(), orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
            for r in self.records
        ]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def subject(n: int) -> str:
    """The pseudonymous subject digest of resident ``n``."""
    return _digest(f"resident {n}")


def ordinary(
    rng: random.Random, start: float, windows: int, size: float, police_until: int | None = None
) -> Stream:
    """Ordinary traffic of four agencies over ``windows`` windows of ``size`` seconds.

    Police publish 12 records a window (until window ``police_until``), health 4 births,
    education 4 requests about random residents, land 4 records the gateway rejects.
    """
    stream = Stream()
    for w in range(windows):
        base = start + w * size
        for i in range(12):
            at = base + rng.uniform(0, size - 0.01)
            rejected = rng.random() < 0.05
            if police_until is None or w < police_until:
                stream.add(
                    at,
                    "police",
                    rng.choice((RESIDENT, ADDRESS)),
                    outcome="rejected" if rejected else "delivered",
                    reason="bad_signature" if rejected else None,
                    recipients=() if rejected else (("health", "care"), ("education", "admission")),
                )
            if i % 3 == 0:
                stream.add(at + 0.001, "health", BIRTH, recipients=(("police", "population"),))
            if i % 4 == 0:
                stream.add(
                    at + 0.002,
                    "education",
                    REQUEST_TYPE,
                    recipients=(("police", "admission"),),
                    subject=subject(rng.randrange(1000)),
                )
                stream.add(at + 0.003, "land", DIPLOMA, outcome="rejected", reason="no_route")
    stream.records.sort(key=lambda r: r["decided_at"])
    return stream


def window_start(at: float, size: float) -> float:
    """The start of the tumbling window of ``size`` that holds ``at``."""
    return (at // size) * size


def direct_counts(
    records: list[dict[str, Any]], sizes: dict[str, float], request_types: frozenset[str]
) -> Counter[tuple[Any, ...]]:
    """What docs/monitor.md says the monitor counts, per window, computed straight."""
    counts: Counter[tuple[Any, ...]] = Counter()
    seen: set[tuple[Any, ...]] = set()
    for r in records:
        at = datetime.fromisoformat(r["decided_at"]).timestamp()
        agency, kind = r["agency"], r["event_type"]
        for label, size in sizes.items():
            w = (label, window_start(at, size))
            counts[(*w, "decisions", agency)] += 1
            counts[(*w, "decided", agency, kind, r["outcome"], r["reason"] or "")] += 1
            if r["outcome"] == "rejected":
                counts[(*w, "rejected", agency)] += 1
            for recipient in r["recipients"]:
                counts[(*w, "deliveries", recipient["agency"])] += 1
                counts[(*w, "delivered", recipient["agency"], recipient["purpose"], kind)] += 1
            if kind in request_types and r["outcome"] != "timed_out":
                counts[(*w, "requests", agency)] += 1
                counts[(*w, "requested", agency, kind)] += 1
                for scope in (kind, "*"):
                    if (*w, agency, scope, r["subject"]) not in seen:
                        seen.add((*w, agency, scope, r["subject"]))
                        counts[(*w, "distinct_subjects", agency, scope)] += 1
    return counts


_FIELDS = {
    "decisions": ("agency",),
    "rejected": ("agency",),
    "deliveries": ("agency",),
    "requests": ("agency",),
    "decided": ("agency", "type", "outcome", "reason"),
    "delivered": ("agency", "purpose", "type"),
    "requested": ("agency", "type"),
    "distinct_subjects": ("agency", "type"),
}


def monitor_counts(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """The rows of ``/monitor/counts`` (of every monitor process) in :func:`direct_counts` form."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for row in rows:
        names = _FIELDS[row["measure"]]
        key = (row["window"], row["start"], row["measure"], *(row[n] for n in names))
        counts[key] += row["count"]
    return counts
