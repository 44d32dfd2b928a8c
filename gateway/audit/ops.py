"""Operations on a stored audit trail: verify, per-person report, evidence, retention."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.audit.chain import Report, build_evidence, leaf, subject_key, tree_at, verify
from gateway.audit.model import Checkpoint, StoredEntry
from gateway.audit.store import AuditStore
from gateway.core.envelope import subject_digest
from gateway.core.records import AuditRecord, Outcome
from gateway.errors import ConfigError
from gateway.trust.timestamp import TsaTrust
from gateway.trust.x509 import X509TrustStore


def verify_store(
    store: AuditStore,
    trust: X509TrustStore,
    outside: Sequence[Checkpoint] = (),
    tsa: TsaTrust | None = None,
) -> Report:
    """Re-walk the whole stored chain, its checkpoints, its seal, and checkpoints held outside.

    With ``tsa`` (the anchors of XGW_AUDIT_TSA_CAFILE), every stored RFC 3161 time-stamp is
    checked too.
    """
    return verify(
        store.entries(), store.checkpoints(), store.anchor(), store.seal(), trust, outside, tsa
    )


@dataclass(frozen=True, slots=True)
class SharedRecord:
    """One delivery of data about a person, as the person may see it."""

    decided_at: str
    event_type: str
    source: str
    recipient: str
    purpose: str
    legal_basis: str
    event_id: str


def subject_report(store: AuditStore, secret: bytes, personal_id: str) -> list[SharedRecord]:
    """Which agencies received which data about ``personal_id``, when, why, on what basis."""
    key = subject_key(secret, subject_digest(personal_id))
    rows: list[SharedRecord] = []
    for entry in store.by_subject(key):
        body: AuditRecord = json.loads(entry.body)  # as stored: subject_key in place of subject
        if body.get("outcome") != Outcome.DELIVERED:
            continue
        rows.extend(
            SharedRecord(
                decided_at=body["decided_at"],
                event_type=body.get("event_type") or "",
                source=body.get("agency") or "",
                recipient=recipient["agency"],
                purpose=recipient["purpose"],
                legal_basis=recipient.get("legal_basis", ""),
                event_id=body.get("event_id") or "",
            )
            for recipient in body.get("recipients", [])
        )
    return rows


def export_evidence(store: AuditStore, trust: X509TrustStore, event_id: str) -> dict[str, Any]:
    """The evidence document of ``event_id``: its entries, the chain to a signed checkpoint."""
    entries = store.by_event(event_id)
    if not entries:
        raise ConfigError(f"no audit entry for event {event_id}")
    first = entries[0].seq
    last = entries[-1].seq
    candidates = [c for c in store.checkpoints() if c.seq >= last]
    seal = store.seal()
    checkpoint: Checkpoint | None = candidates[0] if candidates else None
    if checkpoint is None and seal is not None and seal.seq >= last:
        checkpoint = seal
    if checkpoint is None:
        raise ConfigError(f"event {event_id} is not covered by a signed checkpoint yet")
    segment: list[StoredEntry] = []
    for entry in store.entries(after_seq=first - 1):
        if entry.seq > checkpoint.seq:
            break
        segment.append(entry)
    return build_evidence(entries, segment, checkpoint, trust.roots[0])


def archive(store: AuditStore, before: datetime, path: Path) -> int:
    """Move entries decided before ``before`` and covered by a checkpoint into ``path``.

    The cut is made at the newest checkpoint not after the last old entry, so the remaining
    chain starts at a signed point (the anchor) and still verifies on its own; the archive file
    (JSON lines, the entries and the checkpoints they were covered by) verifies with it.
    """
    cutoff = before.isoformat()
    last_old = 0
    for entry in store.entries():
        if datetime.fromisoformat(entry.decided_at) >= before:
            break
        last_old = entry.seq
    cut_at = max((c.seq for c in store.checkpoints() if c.seq <= last_old), default=0)
    if cut_at == 0:
        return 0
    old = [e for e in store.entries() if e.seq <= cut_at]
    checkpoints = [c for c in store.checkpoints() if c.seq <= cut_at]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"archive": {"cut_at": cut_at, "before": cutoff}}) + "\n")
        for entry in old:
            out.write(json.dumps({"entry": asdict(entry)}) + "\n")
        for checkpoint in checkpoints:
            out.write(json.dumps({"checkpoint": asdict(checkpoint)}) + "\n")
    tree = tree_at(store.anchor())
    if tree is not None:
        for entry in old:
            tree.append(leaf(entry))
    store.cut(cut_at, None if tree is None else [h.hex() for h in tree.nodes])
    return len(old)
