"""The worker state recovered from its changelog topic, and the topic checks at start (broker)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from gateway.core.pending import Pending
from gateway.core.replay import Position
from gateway.errors import BrokerError
from gateway.lab.broker import EmbeddedBroker
from gateway.names import TopicNames
from gateway.runtime.changelog import FENCE_KEY, plain_fences, recover
from gateway.runtime.state import PartitionedState
from gateway.runtime.tables import StatePending, StateSeenIds
from gateway.runtime.topic_admin import ensure_topics
from gateway.settings import DEFAULT_CACHE_BYTES
from tests.conftest import NOW, Pki
from tests.support.harness import exchange_settings

TOPICS = TopicNames("st")


async def test_recovery_reads_every_entry_written_before_the_fence(
    broker: EmbeddedBroker, topic_factory
) -> None:
    """A new owner recovers exactly the latest value of every key, deletions included."""
    topic = await topic_factory("state", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        writer = PartitionedState(topic, DEFAULT_CACHE_BYTES)
        writer.adopt(0, {})
        writer.adopt(1, {})
        for n in range(300):
            writer.put(n % 2, f"k{n}", {"n": n, "name": "Nguyễn Thị Minh Khai"})
        writer.put(0, "k0", None)
        writer.put(1, "k1", {"n": "changed"})
        # Batches of many records: the embedded broker misreports a batch's end offset,
        # which a reader trusting end offsets would stop short of.
        futures = [
            await producer.send(r.topic, r.value, key=r.key, partition=r.partition)
            for r in writer.take_outbox()
        ]
        for future in futures:
            await future
        reader = PartitionedState(topic, DEFAULT_CACHE_BYTES)
        options = {"bootstrap_servers": broker.bootstrap_servers, "fetch_max_wait_ms": 20}
        read = await recover(reader, frozenset({0, 1}), plain_fences(producer), options)
    finally:
        await producer.stop()
    assert read == 302
    assert reader.partitions == frozenset({0, 1})
    assert reader.get(0, "k0") is None
    assert reader.get(1, "k1") == {"n": "changed"}
    assert reader.get(0, "k298") == {"n": 298, "name": "Nguyễn Thị Minh Khai"}
    assert len(reader) == len(writer)
    assert reader.get(0, FENCE_KEY.decode()) is None


async def test_topics_of_another_size_stop_the_worker_at_start(
    broker: EmbeddedBroker, pki: Pki
) -> None:
    """An ingress topic whose partition count differs from the state's is refused at start."""
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"pc{uuid.uuid4().hex[:6]}"
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.topics.ingress("land"), 2, 1)])
    finally:
        await admin.close()
    with pytest.raises(BrokerError, match=r"has 2 partitions, XGW_TOPIC_PARTITIONS is 4"):
        await ensure_topics(settings, ("police", "health", "education", "land"))


async def test_recovered_entries_keep_their_timers(broker: EmbeddedBroker, topic_factory) -> None:
    """recover() rebuilds the timers: recovered ids expire, recovered requests time out."""
    topic = await topic_factory("state", partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        with (
            PartitionedState(topic, DEFAULT_CACHE_BYTES) as writer,
            PartitionedState(topic, DEFAULT_CACHE_BYTES) as reader,
        ):
            writer.adopt(0)
            seen = StateSeenIds(writer, TOPICS, timedelta(minutes=10))
            StatePending(writer, timedelta(minutes=10)).put(
                0, "Nguyễn-q", Pending("land", "t", "s", NOW.timestamp() + 30, 9, "ab")
            )
            for n in range(20):
                at = Position(TOPICS.ingress("police"), 0, n)
                seen.remember(("police", f"e{n}"), at, NOW + timedelta(minutes=n % 2))
            for r in writer.take_outbox():
                await producer.send_and_wait(r.topic, r.value, key=r.key, partition=r.partition)
            seen_again = StateSeenIds(reader, TOPICS, timedelta(minutes=10))
            pending_again = StatePending(reader, timedelta(minutes=10))
            options = {"bootstrap_servers": broker.bootstrap_servers, "fetch_max_wait_ms": 20}
            assert await recover(reader, frozenset({0}), plain_fences(producer), options) == 21
            assert pending_again.open_count() == 1
            assert [rid for _, rid, _ in pending_again.due(NOW + timedelta(minutes=1))] == [
                "Nguyễn-q"
            ]
            assert seen_again.sweep(NOW + timedelta(minutes=10)) == 10
    finally:
        await producer.stop()
