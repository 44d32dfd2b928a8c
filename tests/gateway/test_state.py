"""The partitioned worker state, its changelog outbox, and recovery through a fence."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from gateway.broker import EmbeddedBroker
from gateway.errors import BrokerError
from gateway.kafka_admin import ensure_topics
from gateway.replay import Position, Seen
from gateway.replay_state import StatePending, StateSeenIds
from gateway.requests import Pending
from gateway.state import FENCE_KEY, PartitionedState, recover
from gateway.topics import TopicNames
from gateway.worker import _KeyHashCache
from tests.conftest import NOW, Pki
from tests.harness import exchange_settings

TOPICS = TopicNames("st")


def test_put_changes_memory_and_queues_one_changelog_record_on_the_partition() -> None:
    """A write is visible at once and becomes one record on the same changelog partition."""
    state = PartitionedState("changelog")
    state.adopt(2, {})
    state.put(2, "r/police/e1", [7, 1.5])
    assert state.get(2, "r/police/e1") == [7, 1.5]
    (record,) = state.take_outbox()
    assert (record.topic, record.partition, record.key) == ("changelog", 2, b"r/police/e1")
    assert record.value is not None
    assert json.loads(record.value) == [7, 1.5]
    assert state.take_outbox() == []


def test_deleting_writes_a_tombstone() -> None:
    """Deleting a key removes it and queues a record with no value (compaction drops it)."""
    state = PartitionedState("changelog")
    state.adopt(0, {"k": 1})
    state.put(0, "k", None)
    assert state.get(0, "k") is None
    (record,) = state.take_outbox()
    assert record.value is None


def test_keep_only_forgets_lost_partitions_and_names_new_ones() -> None:
    """A new assignment drops partitions moved away and lists those still to recover."""
    state = PartitionedState("changelog")
    state.adopt(0, {"a": 1})
    state.adopt(1, {"b": 2})
    assert state.keep_only(frozenset({1, 3})) == frozenset({3})
    assert state.partitions == frozenset({1})
    assert len(state) == 1


def test_replay_entries_tell_redelivery_from_duplicate_and_expire() -> None:
    """Same offset again is a redelivery, another offset a duplicate, and entries expire."""
    state = PartitionedState("changelog")
    state.adopt(1, {})
    seen = StateSeenIds(state, TOPICS, timedelta(hours=1))
    at = Position(TOPICS.ingress("police"), 1, 40)
    key = ("police", "e1")
    assert seen.check(key, at, NOW) is Seen.NEW
    seen.remember(key, at, NOW)
    assert seen.check(key, at, NOW) is Seen.REDELIVERY
    assert seen.check(key, Position(at.topic, 1, 41), NOW) is Seen.DUPLICATE
    later = NOW + timedelta(hours=2)
    assert seen.check(key, Position(at.topic, 1, 41), later) is Seen.NEW
    assert seen.sweep(later) == 1
    assert len(state) == 0


@pytest.mark.integration
async def test_recovery_reads_every_entry_written_before_the_fence(
    broker: EmbeddedBroker, topic_factory
) -> None:
    """A new owner recovers exactly the latest value of every key, deletions included."""
    topic = await topic_factory("state", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        writer = PartitionedState(topic)
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
        reader = PartitionedState(topic)
        options = {"bootstrap_servers": broker.bootstrap_servers, "fetch_max_wait_ms": 20}
        read = await recover(reader, frozenset({0, 1}), producer, options)
    finally:
        await producer.stop()
    assert read == 302
    assert reader.partitions == frozenset({0, 1})
    assert reader.get(0, "k0") is None
    assert reader.get(1, "k1") == {"n": "changed"}
    assert reader.get(0, "k298") == {"n": 298, "name": "Nguyễn Thị Minh Khai"}
    assert len(reader) == len(writer)
    assert reader.get(0, FENCE_KEY.decode()) is None


def test_cached_partitioner_agrees_with_aiokafkas() -> None:
    """Remembering key hashes never changes the partition a key goes to."""
    cached = _KeyHashCache(size=3)
    for n in range(50):
        key = f"sha256:Nguyễn-{n % 7}".encode()
        partitions = list(range(1 + n % 5))
        assert cached(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )


@pytest.mark.integration
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


def test_sweep_removes_only_what_expired_and_survives_a_rebalance() -> None:
    """Swept ids are exactly the expired ones, also for state recovered from a changelog."""
    state = PartitionedState("changelog")
    state.adopt(0, {})
    seen = StateSeenIds(state, TOPICS, timedelta(minutes=10))
    at = Position(TOPICS.ingress("police"), 0, 1)
    seen.remember(("police", "early"), at, NOW)
    seen.remember(("police", "late"), Position(at.topic, 0, 2), NOW + timedelta(minutes=5))
    assert seen.sweep(NOW + timedelta(minutes=9)) == 0
    assert seen.sweep(NOW + timedelta(minutes=12)) == 1
    assert seen.check(("police", "late"), Position(at.topic, 0, 2), NOW) is Seen.REDELIVERY
    # A new assignment: the same entries, recovered into a fresh partition map.
    recovered = dict(state.items(0))
    state.keep_only(frozenset())
    state.adopt(0, recovered)
    assert seen.sweep(NOW + timedelta(minutes=17)) == 1
    assert len(state) == 0


def test_pending_requests_are_forgotten_after_the_window_once_closed() -> None:
    """Closed requests go after the window; open ones stay until answered or timed out."""
    state = PartitionedState("changelog")
    state.adopt(2, {})
    pending = StatePending(state, timedelta(hours=1))
    deadline = NOW.timestamp() + 30
    pending.put(2, "open", Pending("land", "t", "s", deadline, 1, "ab"))
    pending.put(2, "done", Pending("land", "t", "s", deadline, 2, "cd").answered("r1"))
    later = NOW + timedelta(hours=2)
    assert [rid for _, rid, _ in pending.due(later)] == ["open"]
    assert pending.sweep(later) == 1
    assert pending.get(2, "done") is None
    assert pending.open_count() == 1
    recovered = dict(state.items(2))
    state.keep_only(frozenset())
    state.adopt(2, recovered)
    assert pending.open_count() == 1
