"""What the monitor counts: the facts of one audit record, each about one agency (no I/O here).

An audit record (``gateway.core.records.AuditRecord``) names the source agency, the type, the
outcome and reason, every recipient with its purpose, and the pseudonymous subject digest. The
monitor turns it into facts, each keyed by the agency it is about, so that every count of one
agency lives in one partition of the monitor's tables (faust keeps a table key in the partition
of the event that wrote it):

- a **decision** of the source agency (outcome and reason);
- a **delivery** per recipient (purpose);
- a **request** of the requester, with the subject digest asked about, when the type is a
  request type of the policy.

Nothing here is personal: the subject is the gateway's SHA-256 digest of the pseudonymous
subject, and it never leaves the monitor's tables (alerts carry counts only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

__all__ = ["DECISION", "DELIVERY", "KINDS", "REQUEST", "TICK", "Fact", "facts_of"]

DECISION = "decision"
DELIVERY = "delivery"
REQUEST = "request"
KINDS = (DECISION, DELIVERY, REQUEST)
TICK = "tick"  # not a fact: the decision time reached, sent to every partition of the facts
_UNKNOWN = "unknown"  # an audit record of a record that named no agency or type (a forgery)


@dataclass(frozen=True, slots=True)
class Fact:
    """One countable fact about one agency, at the decision's time (epoch seconds)."""

    kind: str
    agency: str
    type: str
    at: float
    outcome: str = ""
    reason: str = ""
    purpose: str = ""
    subject: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON object on the facts topic."""
        return {
            "kind": self.kind,
            "agency": self.agency,
            "type": self.type,
            "at": self.at,
            "outcome": self.outcome,
            "reason": self.reason,
            "purpose": self.purpose,
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Fact:
        """A fact read back from the facts topic."""
        return cls(
            kind=str(value["kind"]),
            agency=str(value["agency"]),
            type=str(value["type"]),
            at=float(value["at"]),
            outcome=str(value.get("outcome", "")),
            reason=str(value.get("reason", "")),
            purpose=str(value.get("purpose", "")),
            subject=str(value.get("subject", "")),
        )


def facts_of(body: bytes | None, request_types: frozenset[str]) -> list[Fact]:
    """The facts of one audit record's bytes; ``ValueError`` when they are not an audit record."""
    if not body:
        raise ValueError("an empty record")
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - one error for any malformed record
    at = _epoch(record.get("decided_at"))
    agency = _text(record.get("agency")) or _UNKNOWN
    event_type = _text(record.get("event_type")) or _UNKNOWN
    outcome = _text(record.get("outcome"))
    if not outcome:
        raise ValueError("no outcome")
    facts = [
        Fact(DECISION, agency, event_type, at, outcome=outcome, reason=_text(record.get("reason")))
    ]
    recipients = record.get("recipients") or []
    if not isinstance(recipients, list):
        raise ValueError("recipients is not a list")  # noqa: TRY004 - one error for any malformed record
    for recipient in recipients:
        if not isinstance(recipient, dict) or not _text(recipient.get("agency")):
            raise ValueError("a recipient without an agency")
        facts.append(
            Fact(
                DELIVERY,
                _text(recipient["agency"]),
                event_type,
                at,
                purpose=_text(recipient.get("purpose")),
            )
        )
    subject = _text(record.get("subject"))
    if event_type in request_types and outcome != "timed_out" and subject:
        facts.append(Fact(REQUEST, agency, event_type, at, outcome=outcome, subject=subject))
    return facts


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _epoch(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError("no decided_at")  # noqa: TRY004 - one error for any malformed record
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"decided_at {value[:40]!r} is not RFC 3339") from None
    if moment.tzinfo is None:
        raise ValueError("decided_at has no offset")
    return moment.timestamp()
