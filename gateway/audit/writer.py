"""The audit writer: from ``xgw.audit`` into the hash chain, with signed checkpoints.

Pure of Kafka: :mod:`gateway.runtime.audit_service` feeds it from the topic. One writer process
per exchange (the store refuses a forked chain). For each batch of audit
records it drops decisions already stored (a restarted writer or a re-deciding worker repeats
some), chains the rest after the head, appends them in one transaction, signs a checkpoint
every N entries or T seconds and a seal of the new head, and only then commits the Kafka
offsets. A SIGKILL at any point therefore loses nothing and doubles nothing.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.audit.chain import Prepared, chain, prepare, sign_checkpoint
from gateway.audit.store import AuditStore
from gateway.errors import ConfigError
from gateway.logs import get_logger
from gateway.wire.canonical import loads_strict
from gateway.wire.keys import SigningKey

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


@dataclass
class AuditWriter:
    """Appends audit records to a store; pure of Kafka, so tests can drive it directly."""

    store: AuditStore
    secret: bytes
    key: SigningKey
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 60.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _last_checkpoint_seq: int = 0
    _last_checkpoint_at: float = field(default_factory=time.monotonic)
    _sealed_seq: int = 0

    def __post_init__(self) -> None:
        checkpoints = self.store.checkpoints()
        self._last_checkpoint_seq = checkpoints[-1].seq if checkpoints else 0
        seal = self.store.seal()
        self._sealed_seq = seal.seq if seal else 0

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
        rows = chain(self.store.head(), fresh.values())
        added = self.store.append(rows) if rows else 0
        for row in rows:  # every N entries, even inside one large batch
            if row.seq - self._last_checkpoint_seq >= self.checkpoint_every:
                self._checkpoint(row.seq, row.hash)
        self.maybe_checkpoint()
        return added

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
        if due or seq != self._sealed_seq:
            self.store.set_seal(sign_checkpoint(seq, head, self.clock(), self.key))
            self._sealed_seq = seq

    def _checkpoint(self, seq: int, head: str) -> None:
        self.store.add_checkpoint(sign_checkpoint(seq, head, self.clock(), self.key))
        self._last_checkpoint_seq, self._last_checkpoint_at = seq, time.monotonic()
