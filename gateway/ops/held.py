"""Checkpoints held outside the audit store, for ``xgw audit verify --checkpoints``.

A source is a file of JSON lines (what an agency client keeps, or a dump of the topic: both
spellings are read) or ``topic`` / ``topic:NAME`` for the checkpoints topic on the broker.
Each checkpoint of a file must carry the gateway's valid signature: one that does not is
refused with its place, since it proves nothing about the trail. A record of the topic that is
not a gateway checkpoint is skipped and counted instead: the topic is not the agency's own
copy, and a stray record there must not make the trail unverifiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import XgwError
from gateway.settings import Settings
from gateway.trust.checkpoint import (
    Checkpoint,
    CheckpointRecordError,
    PublishedCheckpoint,
    checkpoint_from_json,
    checkpoint_problem,
)
from gateway.trust.store import TrustStore

TOPIC_SOURCE = "topic"


@dataclass
class Held:
    """The checkpoints read, and the topic records skipped (where, and why)."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def load_held(settings: Settings, sources: Sequence[str], trust: TrustStore) -> Held:
    """Every checkpoint of ``sources``, each checked to be signed by the gateway."""
    held = Held()
    for source in sources:
        from_topic = source == TOPIC_SOURCE or source.startswith(f"{TOPIC_SOURCE}:")
        if from_topic:
            found = await _from_topic(settings, source.partition(":")[2] or None, held)
        else:
            found = _from_file(Path(source))
        for where, checkpoint in found:
            if (problem := checkpoint_problem(checkpoint, trust)) is None:
                held.checkpoints.append(checkpoint)
            elif from_topic:
                held.skipped.append(f"{where}: {problem}")
            else:
                raise XgwError(f"{where}: {problem}; it proves nothing about this trail")
    return held


def _from_file(path: Path) -> list[tuple[str, Checkpoint]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise XgwError(f"no checkpoint file at {path.resolve()}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise XgwError(f"cannot read the checkpoint file {path}: {exc}") from exc
    found = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found.append((f"{path} line {number}", checkpoint_from_json(line)))
        except CheckpointRecordError as exc:
            raise XgwError(f"{path} line {number}: {exc}") from exc
    if not found:
        raise XgwError(f"the checkpoint file {path} holds no checkpoint")
    return found


async def _from_topic(
    settings: Settings, name: str | None, held: Held
) -> list[tuple[str, Checkpoint]]:
    from gateway.ops.topics import read_topic  # noqa: PLC0415 - imports aiokafka

    topic = name or settings.topics.checkpoints
    found = []
    async for record in read_topic(settings, topic):
        where = f"{topic} partition {record.partition} offset {record.offset}"
        try:
            found.append((where, PublishedCheckpoint.decode(record.value or b"").checkpoint))
        except CheckpointRecordError as exc:
            held.skipped.append(f"{where}: {exc}")
    if not found:
        raise XgwError(f"topic {topic} holds no gateway checkpoint")
    return found
