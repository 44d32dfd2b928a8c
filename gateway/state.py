"""The worker's state, kept per ingress partition and changelogged to a compacted Kafka topic.

The gateway requires an ingress record's key to be its subject, so everything about one person
(an event and its replays, a request and its response) arrives on the same partition number of
the ingress topics, and the consumer group gives that partition number of every ingress topic to
one worker (range assignment over topics of equal size). That worker alone reads and writes
partition ``p`` of the state, which it writes to partition ``p`` of the changelog.

Writes go to an outbox that the worker produces together with the batch's outputs, before the
batch's offsets are committed: state is never behind the offsets it explains.

Recovery does not trust the broker's end offsets (the embedded broker reports them wrong, see
BROKER-NOTES.md): the new owner of a partition first writes a fence record to it and then reads
the partition from the beginning up to that fence, so it has read every entry the previous
owner had written.

:class:`PartitionedState` is plain and synchronous; :func:`recover` is the Kafka adapter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.outputs import OutRecord

FENCE_KEY = b"~fence"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class PartitionedState:
    """Key/value entries per partition, with an outbox of changelog records."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._data: dict[int, dict[str, Any]] = {}
        self._outbox: list[OutRecord] = []
        self.generation = 0  # changes whenever partitions are adopted or dropped

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._data.values())

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions this worker holds."""
        return frozenset(self._data)

    def owns(self, partition: int) -> bool:
        """Whether this worker holds ``partition`` (and so may decide its records)."""
        return partition in self._data

    def get(self, partition: int, key: str) -> Any:
        """The value of ``key``, or ``None``."""
        return self._data[partition].get(key)

    def put(self, partition: int, key: str, value: Any) -> None:
        """Set ``key`` (``None`` deletes it) and queue the changelog record."""
        entries = self._data[partition]
        if value is None:
            entries.pop(key, None)
        else:
            entries[key] = value
        encoded = None if value is None else _ENCODE(value).encode()
        self._outbox.append(OutRecord(self.topic, key.encode(), encoded, (), partition))

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """A snapshot of ``partition``'s entries."""
        return iter(list(self._data[partition].items()))

    def take_outbox(self) -> list[OutRecord]:
        """The changelog records written since the last call."""
        taken, self._outbox = self._outbox, []
        return taken

    def keep_only(self, partitions: frozenset[int]) -> frozenset[int]:
        """Forget every partition not in ``partitions``; return those still to recover."""
        for gone in self.partitions - partitions:
            del self._data[gone]
            self.generation += 1
        return partitions - self.partitions

    def adopt(self, partition: int, entries: dict[str, Any]) -> None:
        """Take over ``partition`` with the entries recovered from its changelog."""
        self._data[partition] = entries
        self.generation += 1


async def recover(
    state: PartitionedState,
    partitions: frozenset[int],
    producer: AIOKafkaProducer,
    consumer_options: dict[str, Any],
) -> int:
    """Read each partition's changelog up to a fence written now; return the entries read."""
    if not partitions:
        return 0
    fences: dict[int, int] = {}
    for partition in partitions:
        sent = await producer.send_and_wait(state.topic, b"", key=FENCE_KEY, partition=partition)
        fences[partition] = sent.offset
    tps = [TopicPartition(state.topic, p) for p in partitions]
    consumer = AIOKafkaConsumer(**consumer_options, enable_auto_commit=False, group_id=None)
    recovered: dict[int, dict[str, Any]] = {p: {} for p in partitions}
    read = 0
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = set(partitions)
        while pending:
            batches = await consumer.getmany(*tps, timeout_ms=200)
            for tp, records in batches.items():
                entries = recovered[tp.partition]
                for record in records:
                    if record.offset >= fences[tp.partition]:
                        pending.discard(tp.partition)
                        break
                    if record.key is None or record.key == FENCE_KEY:
                        continue
                    key = record.key.decode()
                    if record.value is None:
                        entries.pop(key, None)
                    else:
                        entries[key] = json.loads(record.value)
                    read += 1
    finally:
        await consumer.stop()
    for partition, entries in recovered.items():
        state.adopt(partition, entries)
    return read
