"""Recovering a worker's state from its changelog topic, the Kafka side of the state store.

Recovery does not trust the broker's end offsets: the embedded broker misreports the end offset
of a record batch holding many records, and a reader trusting it would stop short. The new owner
of a partition first writes a fence record to it and then reads the partition from the beginning
up to that fence, so it has read every entry the previous owner had written. It streams what it
reads into the store (:meth:`PartitionedState.restore`), never into a dict.

In exactly-once mode the fence is the partition's first transaction (which fences the previous
owner and completes its open transaction) and the changelog is read ``read_committed``: what an
aborted or fenced transaction wrote is skipped, so the state is what the committed offsets
explain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from gateway.runtime.state import PartitionedState

FENCE_KEY = b"~fence"
_POLL_MS = 200


# Writes a fence record to each of the partitions of the topic; returns each fence's offset.
FenceWriter = Callable[[str, frozenset[int], bytes], Awaitable[dict[int, int]]]


def plain_fences(producer: AIOKafkaProducer) -> FenceWriter:
    """Fences written by a producer outside any transaction (at-least-once mode)."""

    async def write(topic: str, partitions: frozenset[int], key: bytes) -> dict[int, int]:
        fences: dict[int, int] = {}
        for partition in sorted(partitions):
            sent = await producer.send_and_wait(topic, b"", key=key, partition=partition)
            fences[partition] = sent.offset
        return fences

    return write


async def recover(
    state: PartitionedState,
    partitions: frozenset[int],
    write_fences: FenceWriter,
    consumer_options: dict[str, Any],
) -> int:
    """Read each partition's changelog up to a fence written now; return the entries read."""
    if not partitions:
        return 0
    fences = await write_fences(state.topic, partitions, FENCE_KEY)
    tps = [TopicPartition(state.topic, p) for p in partitions]
    consumer = AIOKafkaConsumer(**consumer_options, enable_auto_commit=False, group_id=None)
    read = 0
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = set(partitions)
        while pending:
            batches = await consumer.getmany(*tps, timeout_ms=_POLL_MS)
            for tp, records in batches.items():
                changes: dict[str, bytes | None] = {}  # one fetch's worth: the last value wins
                for record in records:
                    if record.offset >= fences[tp.partition]:
                        pending.discard(tp.partition)
                        break
                    if record.key is None or record.key == FENCE_KEY:
                        continue
                    changes[record.key.decode()] = record.value
                    read += 1
                state.restore(tp.partition, changes)
    finally:
        await consumer.stop()
    for partition in partitions:
        state.adopt(partition)
    return read
