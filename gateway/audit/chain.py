"""The tamper-evident audit chain: entries, links, signed checkpoints, verification, evidence.

Pure functions over :mod:`gateway.audit.model` values; the store and the writer do the I/O.

- Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's canonical
  body, so changing, deleting, inserting or reordering a row breaks the links after it.
- The entries are also the leaves of an RFC 9162 hash tree (leaf = the body's UTF-8 bytes), kept
  as a compact range, so that two checkpoints can be proven consistent with a few hashes and
  without the entries (a consistency proof), which is what agencies holding checkpoints check.
- A checkpoint (:mod:`gateway.trust.checkpoint`) is the gateway's detached JWS over
  ``{"seq", "head", "root", "at"}``: rewriting the chain up to a checkpoint would need the
  gateway's key. The writer signs a checkpoint every N entries or T seconds, and a *seal* (a
  checkpoint of the current head) after every batch, so that cutting rows off the tail is
  caught too; each is also published to the agencies, so that cutting the tail together with
  the seal is caught against their copies.
- A checkpoint may carry an RFC 3161 time-stamp token over its JWS
  (:mod:`gateway.trust.timestamp`): ``verify`` checks each against the TSA's trust anchors,
  so the trail also proves, on a third party's word, when each checkpoint existed.
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
from typing import Any

from cryptography import x509

from gateway.audit.model import GENESIS_HASH, Anchor, Checkpoint, StoredEntry
from gateway.core.records import AuditRecord
from gateway.trust.checkpoint import checkpoint_problem, stamped_bytes
from gateway.trust.store import TrustStore
from gateway.trust.timestamp import TimestampError, TsaTrust, decode_token, verify_token
from gateway.wire.canonical import canonical_bytes, loads_strict
from gateway.wire.merkle import (
    CompactRange,
    consistency_proof,
    extension_nodes,
    leaf_hash,
    verify_consistency,
)

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


@dataclass(frozen=True, slots=True)
class Finding:
    """The first place where the trail is broken."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Proof:
    """The RFC 9162 consistency proof from a checkpoint held outside the store to the head."""

    old_seq: int
    new_seq: int
    hashes: int
    verified: bool


@dataclass(frozen=True, slots=True)
class Report:
    """What ``verify`` found: entries and checkpoints checked, and the first break if any."""

    entries: int
    checkpoints: int
    first_seq: int
    last_seq: int
    broken: Finding | None
    outside: int = 0  # checkpoints held outside the store that were checked
    proof: Proof | None = None
    timestamped: int = 0  # stored checkpoints whose RFC 3161 time-stamp verified
    unchecked_timestamps: int = 0  # time-stamps not checked: no TSA trust anchors given

    @property
    def ok(self) -> bool:
        """Whether the whole trail verified."""
        return self.broken is None


def leaf(entry: StoredEntry) -> bytes:
    """The entry's leaf hash in the trail's hash tree: of its stored body."""
    return leaf_hash(entry.body.encode("utf-8"))


def tree_at(anchor: Anchor | None) -> CompactRange | None:
    """The hash tree of the entries up to the anchor, or ``None`` if the anchor kept none."""
    if anchor is None:
        return CompactRange()
    if anchor.frontier is None:
        return None
    return CompactRange(anchor.seq, [bytes.fromhex(h) for h in anchor.frontier])


@dataclass
class _Walk:
    """The state of one pass over the entries."""

    tree: CompactRange | None
    wanted: set[int]
    proof_from: int | None
    roots: dict[int, str]
    hashes: dict[int, str]
    earlier: CompactRange | None = None
    since: list[bytes] | None = None

    def add(self, entry: StoredEntry) -> None:
        self.hashes[entry.seq] = entry.hash
        if self.tree is None:
            return
        node = leaf(entry)
        self.tree.append(node)
        if self.since is not None:
            self.since.append(node)
        self.mark(entry.seq)

    def mark(self, seq: int) -> None:
        if self.tree is None:
            return
        if seq in self.wanted:
            self.roots[seq] = self.tree.root().hex()
        if seq == self.proof_from:
            self.earlier, self.since = self.tree.copy(), []


def verify(
    entries: Iterable[StoredEntry],
    checkpoints: Sequence[Checkpoint],
    anchor: Anchor | None,
    seal: Checkpoint | None,
    trust: TrustStore,
    outside: Sequence[Checkpoint] = (),
    tsa: TsaTrust | None = None,
) -> Report:
    """Re-walk the chain and its hash tree; check every checkpoint, the seal, and ``outside``.

    ``outside`` are checkpoints held outside the store (the agencies' copies, the checkpoints
    topic): each must be one of this trail's, so a trail cut back together with its seal, or
    rewritten, is found. From the newest of them to the head a consistency proof is built and
    checked as an agency would (RFC 9162 2.1.4.2). Each stored checkpoint's RFC 3161
    time-stamp is checked against ``tsa``; without it, they are counted as not checked.
    """
    expected_seq = anchor.seq + 1 if anchor else 1
    previous = anchor.hash if anchor else GENESIS_HASH
    signed = [*checkpoints, *([seal] if seal else [])]
    rooted = [c.seq for c in [*signed, *outside] if c.root is not None]
    walk = _Walk(tree_at(anchor), set(rooted), _proof_start(outside, expected_seq - 1), {}, {})
    if anchor:
        walk.hashes[anchor.seq] = anchor.hash
        walk.mark(anchor.seq)
    count = 0
    first = expected_seq
    for entry in entries:
        count += 1
        problem = None
        if entry.seq != expected_seq:
            problem = Finding(
                expected_seq,
                f"missing: the next stored entry is {entry.seq} (deleted or reordered rows)",
            )
        elif entry.prev_hash != previous:
            problem = Finding(
                entry.seq,
                "does not link to the entry before it (inserted, deleted or reordered rows)",
            )
        elif link(entry.prev_hash, entry.body) != entry.hash:
            problem = Finding(entry.seq, "content was changed")
        if problem is not None:
            return Report(count, 0, first, entry.seq, problem, len(outside))
        walk.add(entry)
        previous = entry.hash
        expected_seq += 1
    last = expected_seq - 1

    stamped = [c for c in checkpoints if c.tst is not None]
    unchecked = 0 if tsa is not None else len(stamped)

    def report(broken: Finding | None, proof: Proof | None = None) -> Report:
        verified = len(stamped) if tsa is not None and broken is None else 0
        return Report(
            count, len(checkpoints), first, last, broken, len(outside), proof, verified, unchecked
        )

    # The newest held checkpoint first: a rollback is reported with all it removed.
    newest_first = sorted(outside, key=lambda c: c.seq, reverse=True)
    for checkpoint, held in [*((c, False) for c in signed), *((c, True) for c in newest_first)]:
        if (why := _checkpoint_finding(checkpoint, walk, last, trust, held=held)) is not None:
            return report(Finding(checkpoint.seq, why))
    if (finding := _seal_finding(seal, count, last)) is not None:
        return report(finding)
    if tsa is not None and (finding := _timestamps_finding(stamped, tsa)) is not None:
        return report(finding)
    proof = _consistency(walk, outside, last)
    if proof is not None and not proof.verified:
        return report(
            Finding(last, f"no consistency proof from entry {proof.old_seq} to the head"), proof
        )
    return report(None, proof)


def _proof_start(outside: Sequence[Checkpoint], anchored: int) -> int | None:
    """The newest checkpoint held outside that a proof to the head can start from."""
    usable = [c.seq for c in outside if c.root is not None and c.seq >= max(anchored, 1)]
    return max(usable, default=None)


def _checkpoint_finding(
    checkpoint: Checkpoint, walk: _Walk, last: int, trust: TrustStore, *, held: bool
) -> str | None:
    """What is wrong with one signed checkpoint against the walked chain, if anything."""
    where = " (a checkpoint held outside the store)" if held else ""
    if (problem := checkpoint_problem(checkpoint, trust)) is not None:
        return problem + where
    if checkpoint.seq > last:
        if held:
            removed = (
                f"entry {last + 1} was"
                if checkpoint.seq == last + 1
                else f"entries {last + 1}..{checkpoint.seq} were"
            )
            return (
                f"the gateway signed entry {checkpoint.seq} at {checkpoint.signed_at}{where}, "
                f"but the trail ends at {last}: {removed} removed (the trail was rolled back)"
            )
        return (
            f"a signed checkpoint covers entry {checkpoint.seq} but the chain ends at "
            f"{last} (truncated)"
        )
    if checkpoint.seq in walk.hashes and walk.hashes[checkpoint.seq] != checkpoint.head_hash:
        return f"differs from the signed checkpoint{where} (the chain was rewritten up to here)"
    root = walk.roots.get(checkpoint.seq)
    if checkpoint.root is not None and root is not None and root != checkpoint.root:
        return f"the hash tree differs from the signed checkpoint{where} (entries were rewritten)"
    return None


def _timestamps_finding(stamped: Sequence[Checkpoint], tsa: TsaTrust) -> Finding | None:
    """The first checkpoint whose RFC 3161 token does not prove its JWS existed, if any."""
    for checkpoint in stamped:
        if checkpoint.tst is None:
            continue
        try:
            verify_token(decode_token(checkpoint.tst), stamped_bytes(checkpoint), tsa)
        except TimestampError as exc:
            return Finding(
                checkpoint.seq,
                f"the signed checkpoint's RFC 3161 time-stamp does not verify: {exc}",
            )
    return None


def _consistency(walk: _Walk, outside: Sequence[Checkpoint], last: int) -> Proof | None:
    """Build and check the proof from the newest checkpoint held outside to the head."""
    if walk.proof_from is None or walk.earlier is None or walk.since is None or walk.tree is None:
        return None
    old = walk.proof_from
    held = next(c.root for c in outside if c.seq == old and c.root is not None)
    hashes = consistency_proof(old, last, extension_nodes(walk.earlier, walk.since))
    verified = verify_consistency(old, last, bytes.fromhex(held), walk.tree.root(), hashes)
    return Proof(old, last, len(hashes), verified)


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
