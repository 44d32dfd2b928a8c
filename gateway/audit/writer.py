"""The audit writer: from ``xgw.audit`` into the hash chain, with signed checkpoints.

Pure of Kafka: :mod:`gateway.runtime.audit_service` feeds it from the topic and publishes what
it signs. One writer process per exchange (the store refuses a forked chain). For each batch of
audit records it drops decisions already stored (a restarted writer or a re-deciding worker
repeats some), chains the rest after the head, appends them in one transaction, signs a
checkpoint every N entries or T seconds and a seal of the new head, and only then commits the
Kafka offsets. A SIGKILL at any point therefore loses nothing and doubles nothing.

The writer also keeps the entries' RFC 9162 hash tree (a compact range, rebuilt from the store
at start) and puts every checkpoint it signs in :attr:`AuditWriter.outbox` as a
:class:`PublishedCheckpoint` with a consistency proof from the one before, for the service to
publish to the agencies. A store whose head is not where the writer left it, or behind the
last checkpoint published, is refused: rows were removed or rewritten outside the writer.

With a Time-Stamp Authority (:attr:`AuditWriter.tsa`, ``XGW_AUDIT_TSA_URL``), each checkpoint
(not each seal) is time-stamped (RFC 3161) right after it is signed, and the verified token is
stored and published with it. A TSA that does not answer, refuses, or answers with a token that
does not verify costs one log line: the checkpoint is kept without a token, and the next one
asks again. The trail never waits for a TSA longer than its timeout.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit.chain import Prepared, chain, leaf, prepare, tree_at
from gateway.audit.store import AuditStore, AuditStoreError
from gateway.clock import rfc3339
from gateway.errors import ConfigError
from gateway.logs import get_logger
from gateway.trust.checkpoint import (
    Checkpoint,
    PublishedCheckpoint,
    sign_checkpoint,
    stamped_bytes,
)
from gateway.trust.timestamp import TimestampError, TsaClient
from gateway.wire.canonical import loads_strict
from gateway.wire.keys import SigningKey
from gateway.wire.merkle import CompactRange, consistency_proof, extension_nodes

log = get_logger("xgw.audit")
_KEY_BYTES = 32


def load_subject_secret(path: Path) -> bytes:
    """The audit service's HMAC key for data subjects; created (0600) on first use."""
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(_KEY_BYTES))
        secret = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the audit subject key {path}: {exc.strerror}"
        ) from exc
    if len(secret) < _KEY_BYTES:
        raise ConfigError(f"audit subject key {path} is shorter than {_KEY_BYTES} bytes")
    return secret


class TamperedStore(AuditStoreError):
    """The store is not where the writer (or the agencies' checkpoints) left it."""


@dataclass
class _Link:
    """The tree at the last checkpoint put in the outbox, and the leaves appended since."""

    seq: int
    root: str
    tree: CompactRange
    since: list[bytes] = field(default_factory=list)


@dataclass
class AuditWriter:
    """Appends audit records to a store; pure of Kafka, so tests can drive it directly."""

    store: AuditStore
    secret: bytes
    key: SigningKey
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0
    # Seals are published to the agencies at most this often (checkpoints always): every
    # batch would cost each agency a signature check per batch, for a window of a second.
    publish_seconds: float = 1.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # RFC 3161 time-stamps of each checkpoint; None: none asked (XGW_AUDIT_TSA_URL unset).
    tsa: TsaClient | None = None
    outbox: list[PublishedCheckpoint] = field(default_factory=list)
    tsa_failures: int = 0  # checkpoints left without a time-stamp since start (logged)
    _last_checkpoint_seq: int = 0
    _last_checkpoint_at: float = field(default_factory=time.monotonic)
    _sealed_seq: int = 0
    _tree: CompactRange = field(default_factory=CompactRange)
    _link: _Link | None = None
    _published_at: float = -float("inf")

    def __post_init__(self) -> None:
        checkpoints = self.store.checkpoints()
        self._last_checkpoint_seq = checkpoints[-1].seq if checkpoints else 0
        self._rebuild_tree()
        seq, head = self.store.head()
        if seq:
            # Publish the head at every start: the agencies learn where the trail is even if
            # the last seal before a crash never reached them.
            self._seal(seq, head, again=True)

    def _rebuild_tree(self) -> None:
        anchor = self.store.anchor()
        tree = tree_at(anchor)
        if tree is None:
            raise ConfigError(
                "the audit store was cut before hash trees were kept: archive it and start a "
                "new store"
            )
        self._tree = tree
        published = self.store.published()
        # The next proof starts at the last checkpoint published: the tree as it was there.
        if published is not None and tree.size == published[0]:
            self._link_here()
        for entry in self.store.entries():
            self._grow(leaf(entry))
            if published is not None and tree.size == published[0]:
                self._link_here()
        if published is not None:
            if published[0] > tree.size:
                raise TamperedStore(
                    f"the audit store ends at entry {tree.size} but its checkpoint of entry "
                    f"{published[0]} was published to the agencies: the store was rolled back "
                    "(xgw audit verify --checkpoints proves it)"
                )
            if self._link is not None and self._link.root != published[1]:
                raise TamperedStore(
                    f"the audit store's entries up to {published[0]} are not the ones whose "
                    "checkpoint was published to the agencies: the store was rewritten"
                )

    def write(self, records: Sequence[bytes]) -> int:
        """Append every new decision among ``records``; return how many entries were added."""
        prepared = []
        for raw in records:
            try:
                prepared.append(prepare(loads_strict(raw), self.secret))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                # The gateway writes these records; one that does not parse is a bug to see,
                # not a reason to stop the trail.
                log.error("audit record skipped", error=str(exc))  # noqa: TRY400
        known = self.store.known_decisions([p.decision_id for p in prepared])
        fresh: dict[str, Prepared] = {}
        for item in prepared:
            if item.decision_id not in known:
                fresh.setdefault(item.decision_id, item)
        head = self.store.head()
        if head[0] != self._tree.size:
            raise TamperedStore(
                f"the audit store's head is entry {head[0]}, but this writer appended up to "
                f"{self._tree.size}: rows were added or removed outside the writer"
            )
        rows = chain(head, fresh.values())
        added = self.store.append(rows) if rows else 0
        for row in rows:  # every N entries, even inside one large batch
            self._grow(leaf(row))
            if row.seq - self._last_checkpoint_seq >= self.checkpoint_every:
                self._checkpoint(row.seq, row.hash)
        self.maybe_checkpoint()
        return added

    def _link_here(self) -> None:
        """Start the next consistency proof at the tree as it is now."""
        self._link = _Link(self._tree.size, self._tree.root().hex(), self._tree.copy())

    def _grow(self, node: bytes) -> None:
        self._tree.append(node)
        if self._link is not None:
            self._link.since.append(node)

    def maybe_checkpoint(self) -> None:
        """Checkpoint the head when one is due; seal the head when the seal is behind it.

        A checkpoint is due T seconds after the last, or N entries after it: a writer killed
        between an append and its checkpoint catches up here once restarted. The seal is
        compared with the head rather than set after each append, so a writer killed between
        the append and the seal, whose restart finds every record already stored, still
        seals what was appended.
        """
        seq, head = self.store.head()
        if seq == 0:
            return
        due = seq > self._last_checkpoint_seq and (
            seq - self._last_checkpoint_seq >= self.checkpoint_every
            or time.monotonic() - self._last_checkpoint_at >= self.checkpoint_seconds
        )
        if due:
            self._checkpoint(seq, head)
        unpublished = self._link is not None and self._link.seq != seq
        if due or seq != self._sealed_seq or (unpublished and self._publish_due()):
            self._seal(seq, head)

    def published(self, record: PublishedCheckpoint) -> None:
        """Note that ``record`` reached the checkpoints topic (its next restart proves from it)."""
        checkpoint = record.checkpoint
        if checkpoint.root is not None:
            self.store.set_published(checkpoint.seq, checkpoint.root)

    def _seal(self, seq: int, head: str, *, again: bool = False) -> None:
        seal = self._sign(seq, head, again=again, always=again)
        self.store.set_seal(seal)
        self._sealed_seq = seq

    def _checkpoint(self, seq: int, head: str) -> None:
        self.store.add_checkpoint(self._sign(seq, head, always=True, stamp=True))
        self._last_checkpoint_seq, self._last_checkpoint_at = seq, time.monotonic()

    def _publish_due(self) -> bool:
        return time.monotonic() - self._published_at >= self.publish_seconds

    def _timestamped(self, checkpoint: Checkpoint) -> Checkpoint:
        """The checkpoint with the TSA's verified token, or as it is when none was had."""
        if self.tsa is None:
            return checkpoint
        try:
            stamp = self.tsa.stamp(stamped_bytes(checkpoint))
        except TimestampError as exc:
            self.tsa_failures += 1
            # One line, no traceback: the TSA is outside the exchange; the next one asks again.
            log.warning(
                "audit checkpoint not time-stamped",
                seq=checkpoint.seq,
                tsa=self.tsa.url,
                error=str(exc),
                failures=self.tsa_failures,
            )
            return checkpoint
        log.info(
            "audit checkpoint time-stamped",
            seq=checkpoint.seq,
            gen_time=rfc3339(stamp.gen_time),
            tsa_serial=stamp.serial,
        )
        return replace(checkpoint, tst=stamp.encoded)

    def _sign(
        self,
        seq: int,
        head: str,
        *,
        again: bool = False,
        always: bool = False,
        stamp: bool = False,
    ) -> Checkpoint:
        """Sign the tree as it is now (its size is ``seq``); put it in the outbox when due.

        Due: ``always`` (checkpoints, the head at start), or ``publish_seconds`` after the
        last one published; never when the last one published is of the same entry, unless
        ``again`` (at start). One not published is covered by the next one's proof. With
        ``stamp`` (checkpoints), it is time-stamped first when a TSA is configured.
        """
        root = self._tree.root().hex()
        checkpoint = sign_checkpoint(seq, head, root, self.clock(), self.key)
        if stamp:
            checkpoint = self._timestamped(checkpoint)
        link = self._link
        if not (always or link is None or self._publish_due()):
            return checkpoint
        self._published_at = time.monotonic()
        if link is None:
            self.outbox.append(PublishedCheckpoint(checkpoint, None, None, ()))
        elif link.seq != seq or again:
            proof = consistency_proof(link.seq, seq, extension_nodes(link.tree, link.since))
            self.outbox.append(
                PublishedCheckpoint(checkpoint, link.seq, link.root, tuple(h.hex() for h in proof))
            )
        self._link_here()
        return checkpoint
