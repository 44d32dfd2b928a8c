"""The tamper-evident audit chain: entries, links, signed checkpoints, verification, evidence.

Pure functions over :mod:`gateway.audit.model` values; the store and the writer do the I/O.

- Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's canonical
  body, so changing, deleting, inserting or reordering a row breaks the links after it.
- A checkpoint is the gateway's detached JWS over ``{"seq", "head", "at"}``: rewriting the chain
  up to a checkpoint would need the gateway's key. The writer signs a checkpoint every N
  entries or T seconds, and a *seal* (a checkpoint of the current head) after every batch, so
  that cutting rows off the tail is caught too.
- Evidence for one event is the event's entries, the chain segment from them to the next
  checkpoint (or the seal), and that signed checkpoint: it verifies offline against the
  exchange root.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from gateway.audit.model import GENESIS_HASH, Anchor, Checkpoint, StoredEntry
from gateway.clock import rfc3339
from gateway.core.records import AuditRecord
from gateway.errors import Rejection
from gateway.names import GATEWAY_OWNER
from gateway.trust.store import TrustStore
from gateway.wire.canonical import canonical_bytes, loads_strict
from gateway.wire.jws import JwsError, parse_detached, sign_detached
from gateway.wire.keys import SigningKey

CHECKPOINT_TYP = "xgw-audit-checkpoint+jws"
EVIDENCE_VERSION = 1
# A stored body is the audit record with its "subject" replaced by this keyed hash of it.
SUBJECT_KEY = "subject_key"


def subject_key(secret: bytes, subject: str) -> str:
    """The keyed hash that stands for a data subject in the trail (HMAC-SHA256, hex)."""
    return hmac.new(secret, subject.encode("utf-8"), hashlib.sha256).hexdigest()


def link(prev_hash: str, body: str) -> str:
    """The hash of an entry: SHA-256 over the previous hash (bytes) and the body (UTF-8)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Prepared:
    """An audit record made ready for the chain (subject replaced, canonical body)."""

    decision_id: str
    event_id: str | None
    subject_key: str | None
    decided_at: str
    body: str


def prepare(record: AuditRecord, secret: bytes) -> Prepared:
    """Replace the subject by its keyed hash and canonicalise the record.

    ``record`` is parsed from the audit topic: its values are checked, not trusted.
    """
    if not isinstance(record, dict):
        raise TypeError("an audit record is a JSON object")
    subject = record.get("subject")
    key = subject_key(secret, subject) if isinstance(subject, str) else None
    stored: dict[str, Any] = {k: v for k, v in record.items() if k != "subject"}
    stored[SUBJECT_KEY] = key
    event_id = record.get("event_id")
    return Prepared(
        decision_id=str(record["decision_id"]),
        event_id=event_id if isinstance(event_id, str) else None,
        subject_key=key,
        decided_at=str(record["decided_at"]),
        body=canonical_bytes(stored).decode("utf-8"),
    )


def chain(head: tuple[int, str], prepared: Iterable[Prepared]) -> list[StoredEntry]:
    """Number and link ``prepared`` records after ``head`` (seq, hash)."""
    seq, previous = head
    rows = []
    for item in prepared:
        seq += 1
        digest = link(previous, item.body)
        rows.append(
            StoredEntry(
                seq,
                item.decision_id,
                item.event_id,
                item.subject_key,
                item.decided_at,
                item.body,
                previous,
                digest,
            )
        )
        previous = digest
    return rows


def _claims(seq: int, head_hash: str, signed_at: str) -> bytes:
    return canonical_bytes({"seq": seq, "head": head_hash, "at": signed_at})


def sign_checkpoint(seq: int, head_hash: str, now: datetime, key: SigningKey) -> Checkpoint:
    """The gateway's signed statement that entry ``seq`` has hash ``head_hash``."""
    if not key.x5c:
        raise ValueError("checkpoints carry the signing certificate: load the key with embed=True")
    signed_at = rfc3339(now)
    signature = sign_detached(_claims(seq, head_hash, signed_at), key, {"typ": CHECKPOINT_TYP})
    return Checkpoint(seq, head_hash, signed_at, signature, key.x5c[0])


def checkpoint_problem(checkpoint: Checkpoint, trust: TrustStore) -> str | None:
    """Why the checkpoint's signature is not the gateway's over its claims, or ``None``."""
    try:
        jws = parse_detached(checkpoint.signature)
    except JwsError as exc:
        return f"checkpoint {checkpoint.seq}: signature is malformed ({exc})"
    if jws.header.get("typ") != CHECKPOINT_TYP:
        return f"checkpoint {checkpoint.seq}: not a checkpoint signature"
    header = {**jws.header, "x5c": [checkpoint.certificate]}
    try:
        # The certificate must have been valid when the checkpoint was signed, not today:
        # a trail outlives the gateway's certificates.
        trusted = trust.resolve(header, datetime.fromisoformat(checkpoint.signed_at))
    except Rejection as exc:
        return f"checkpoint {checkpoint.seq}: signing certificate refused ({exc.reason.value})"
    if trusted.owner != GATEWAY_OWNER:
        return f"checkpoint {checkpoint.seq}: signed by {trusted.owner!r}, not the gateway"
    claims = _claims(checkpoint.seq, checkpoint.head_hash, checkpoint.signed_at)
    if not jws.verify(claims, trusted.key):
        return f"checkpoint {checkpoint.seq}: signature does not verify"
    return None


@dataclass(frozen=True, slots=True)
class Finding:
    """The first place where the trail is broken."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Report:
    """What ``verify`` found: entries and checkpoints checked, and the first break if any."""

    entries: int
    checkpoints: int
    first_seq: int
    last_seq: int
    broken: Finding | None

    @property
    def ok(self) -> bool:
        """Whether the whole trail verified."""
        return self.broken is None


def verify(
    entries: Iterable[StoredEntry],
    checkpoints: Sequence[Checkpoint],
    anchor: Anchor | None,
    seal: Checkpoint | None,
    trust: TrustStore,
) -> Report:
    """Re-walk the chain from the anchor (or genesis) and check every checkpoint and the seal."""
    expected_seq = anchor.seq + 1 if anchor else 1
    previous = anchor.hash if anchor else GENESIS_HASH
    hashes: dict[int, str] = {}
    if anchor:
        hashes[anchor.seq] = anchor.hash
    count = 0
    first = expected_seq
    for entry in entries:
        count += 1
        if entry.seq != expected_seq:
            return Report(
                count,
                0,
                first,
                entry.seq,
                Finding(
                    expected_seq,
                    f"missing: the next stored entry is {entry.seq} (deleted or reordered rows)",
                ),
            )
        if entry.prev_hash != previous:
            return Report(
                count,
                0,
                first,
                entry.seq,
                Finding(
                    entry.seq,
                    "does not link to the entry before it (inserted, deleted or reordered rows)",
                ),
            )
        if link(entry.prev_hash, entry.body) != entry.hash:
            return Report(count, 0, first, entry.seq, Finding(entry.seq, "content was changed"))
        hashes[entry.seq] = entry.hash
        previous = entry.hash
        expected_seq += 1
    last = expected_seq - 1
    for checkpoint in [*checkpoints, *([seal] if seal else [])]:
        problem = checkpoint_problem(checkpoint, trust)
        if problem is None and checkpoint.seq > last:
            problem = (
                f"a signed checkpoint covers entry {checkpoint.seq} but the chain ends at "
                f"{last} (truncated)"
            )
        elif (
            problem is None
            and checkpoint.seq in hashes
            and hashes[checkpoint.seq] != checkpoint.head_hash
        ):
            problem = "differs from the signed checkpoint (the chain was rewritten up to here)"
        if problem is not None:
            return Report(count, len(checkpoints), first, last, Finding(checkpoint.seq, problem))
    return Report(count, len(checkpoints), first, last, _seal_finding(seal, count, last))


def _seal_finding(seal: Checkpoint | None, count: int, last: int) -> Finding | None:
    """What is wrong with the seal of a chain whose entries were all in order, if anything."""
    if seal is None and count:
        # The writer seals after every batch: a chain without its seal may have lost its tail
        # together with it (rows after the last checkpoint cannot be told from none otherwise).
        return Finding(last, "the signed seal is missing (rows may have been cut off the end)")
    if seal is not None and seal.seq != last:
        return Finding(seal.seq, f"the signed seal ends at {seal.seq} but the chain ends at {last}")
    return None


def build_evidence(
    event_entries: Sequence[StoredEntry],
    segment: Sequence[StoredEntry],
    checkpoint: Checkpoint,
    root: x509.Certificate,
) -> dict[str, Any]:
    """One self-contained document proving the event's entries are in the signed chain.

    ``segment`` runs from the first of ``event_entries`` up to ``checkpoint.seq``.
    """
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return {
        "version": EVIDENCE_VERSION,
        "event_id": event_entries[0].event_id if event_entries else None,
        "decisions": [json.loads(e.body) for e in event_entries],
        "chain": [asdict(e) for e in segment],
        "checkpoint": asdict(checkpoint),
        "root_certificate": base64.b64encode(
            root.public_bytes(serialization.Encoding.DER)
        ).decode(),
    }


def verify_evidence(document: Mapping[str, Any], trust: TrustStore) -> list[str]:
    """Problems with an evidence document (empty when it proves what it claims)."""
    try:
        segment = [StoredEntry(**row) for row in document["chain"]]
        checkpoint = Checkpoint(**document["checkpoint"])
        decisions: list[AuditRecord] = list(document["decisions"])  # as stored (subject_key)
    except (KeyError, TypeError) as exc:
        return [f"not an evidence document: {exc}"]
    if not segment:
        return ["the evidence holds no chain segment"]
    problems = [
        f"entry {entry.seq}: content does not match its hash"
        for entry in segment
        if link(entry.prev_hash, entry.body) != entry.hash
    ]
    problems += [
        f"entry {after.seq}: does not link to entry {before.seq}"
        for before, after in itertools.pairwise(segment)
        if after.prev_hash != before.hash or after.seq != before.seq + 1
    ]
    if segment[-1].seq != checkpoint.seq or segment[-1].hash != checkpoint.head_hash:
        problems.append("the segment does not end at the signed checkpoint")
    if (problem := checkpoint_problem(checkpoint, trust)) is not None:
        problems.append(problem)
    bodies = {json.dumps(loads_strict(e.body.encode()), sort_keys=True) for e in segment}
    problems += [
        f"decision {decision.get('decision_id')} is not in the signed segment"
        for decision in decisions
        if json.dumps(decision, sort_keys=True) not in bodies
    ]
    return problems
