"""An agency's copy of the gateway's audit checkpoints: the trail cannot be rolled back unseen.

The audit writer publishes every checkpoint it signs on ``xgw.audit.checkpoints`` with a
consistency proof (RFC 9162 2.1.4) from the one before. :class:`CheckpointKeeper` checks each
record (the gateway's signature under the exchange root, then the proof from the checkpoint it
holds) and keeps the latest in a file of JSON lines, one checkpoint per line:

- the last line is the newest checkpoint, proven to extend every one it replaced;
- a line before it is one that a later checkpoint could not be proven to extend (records were
  missed, or the trail was rolled back or rewritten): it stays until someone proves it with
  ``xgw audit verify --checkpoints FILE``, which is what an auditor does with this file.

    keeper = CheckpointKeeper.open(Path("var/checkpoints/police.jsonl"), trust)
    async for judgement in client.checkpoints(keeper):
        ...                                 # Standing.CONFLICT: raise the alarm

Errors::

    ConnectorError (connectors.errors)
    └── RefusedCheckpoint     a record that is not a checkpoint signed by the gateway
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from connectors.errors import ConnectorError
from gateway.trust.checkpoint import (
    Checkpoint,
    CheckpointRecordError,
    Judgement,
    PublishedCheckpoint,
    Standing,
    checkpoint_from_json,
    checkpoint_problem,
    checkpoint_to_json,
    judge,
)
from gateway.trust.store import TrustStore

log = logging.getLogger("xgw.client")


class RefusedCheckpoint(ConnectorError):
    """A record of the checkpoints topic that is not a checkpoint signed by the gateway."""


class CheckpointKeeper:
    """The checkpoints one agency holds, kept in ``path``."""

    def __init__(self, path: Path, trust: TrustStore, held: list[Checkpoint]) -> None:
        self.path = path
        self._trust = trust
        self.held = held

    @classmethod
    def open(cls, path: Path, trust: TrustStore) -> CheckpointKeeper:
        """The keeper of ``path``, with what it held before (nothing if the file is new)."""
        held: list[Checkpoint] = []
        if path.exists():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
                held = [checkpoint_from_json(line) for line in lines if line.strip()]
            except (OSError, UnicodeDecodeError, CheckpointRecordError) as exc:
                raise ConnectorError(f"cannot read the checkpoint file {path}: {exc}") from exc
        return cls(path, trust, held)

    @property
    def latest(self) -> Checkpoint | None:
        """The newest checkpoint held."""
        return self.held[-1] if self.held else None

    def accept(self, raw: bytes) -> Judgement:
        """Check one record of the checkpoints topic and keep it as its standing says.

        Raise :class:`RefusedCheckpoint` for a record that is not a gateway checkpoint.
        """
        try:
            record = PublishedCheckpoint.decode(raw)
        except CheckpointRecordError as exc:
            raise RefusedCheckpoint(f"not a published checkpoint: {exc}") from exc
        if (problem := checkpoint_problem(record.checkpoint, self._trust)) is not None:
            raise RefusedCheckpoint(problem)
        judgement = judge(self.latest, record)
        if judgement.standing is Standing.EXTENDS:
            self.held[-1:] = [record.checkpoint]
        elif judgement.standing in {Standing.UNLINKED, Standing.CONFLICT}:
            self.held.append(record.checkpoint)
        if judgement.standing is not Standing.OLDER:
            self._save()
        return judgement

    def _save(self) -> None:
        """Replace the file atomically: a crash leaves the old copy or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(checkpoint_to_json(c) + "\n" for c in self.held)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise
