"""The monitor's table store (gateway.monitor.store) against faust-streaming's memory store.

No broker: the store is driven the way faust drives it (a write while an event of a partition is
being processed, the acknowledgement callback, the rebalance and recovery hooks). The restart
test in tests/system/test_monitor.py shows the effect through a real broker.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from faust.stores.memory import Store as FaustMemoryStore
from faust.streams import _current_event
from faust.types import TP

from gateway.monitor.store import LiveMemoryStore, LiveTable

PARTITIONS = 4


@dataclass
class _Message:
    partition: int


class _Event:
    """What the store reads of the event being processed: its message's partition."""

    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@contextmanager
def processing(partition: int) -> Iterator[None]:
    """As inside an agent, processing an event of ``partition`` (faust's current_event)."""
    event = _Event(partition)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


@pytest.fixture
def app() -> faust.App:
    return faust.App("store-test", broker="kafka://127.0.0.1:1", store="memory://", Table=LiveTable)


@pytest.fixture
def table(app: faust.App) -> Any:
    return app.Table("counts", default=int, partitions=PARTITIONS)


def _tp(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


def test_a_memory_table_of_the_app_is_kept_in_the_live_store(table: Any) -> None:
    assert isinstance(table.data, LiveMemoryStore)


def test_the_store_reads_a_kept_partition_on_from_its_own_last_acknowledged_write(
    table: Any,
) -> None:
    """The stock memory store says None, so a recovery replays the partition over newer values."""
    store = table.data
    store.set_persisted_offset(_tp(table, 2), 40)
    store.set_persisted_offset(_tp(table, 2), 41)
    store.set_persisted_offset(_tp(table, 2), 39)  # acknowledgements of one partition, any order
    assert store.persisted_offset(_tp(table, 2)) == 41
    assert store.persisted_offset(_tp(table, 1)) is None  # never written: read from the start
    assert FaustMemoryStore.persisted_offset(store, _tp(table, 2)) is None  # faust's own


async def test_a_kept_partition_keeps_its_keys_and_its_offset(table: Any) -> None:
    store = table.data
    with processing(2):
        store["k"] = 5
    store.set_persisted_offset(_tp(table, 2), 41)
    kept = {_tp(table, p) for p in (1, 2)}
    await store.on_rebalance(kept, {_tp(table, 3)}, set())
    assert (store["k"], store.persisted_offset(_tp(table, 2))) == (5, 41)


async def test_a_revoked_partition_loses_its_live_keys_and_its_offset(table: Any) -> None:
    """A partition that comes back later is read from the start, into an empty store."""
    store = table.data
    with processing(2):
        store["gone"] = 5
    with processing(1):
        store["kept"] = 7
    store.set_persisted_offset(_tp(table, 2), 41)
    await store.on_rebalance({_tp(table, 1)}, {_tp(table, 2)}, set())
    assert "gone" not in store
    assert store["kept"] == 7
    assert store.persisted_offset(_tp(table, 2)) is None
    store.set_persisted_offset(_tp(table, 2), 42)  # a late acknowledgement of a write before it
    assert store.persisted_offset(_tp(table, 2)) is None
    await store.on_rebalance({_tp(table, 1), _tp(table, 2)}, set(), {_tp(table, 2)})
    store.set_persisted_offset(_tp(table, 2), 50)  # assigned again: its own writes count
    assert store.persisted_offset(_tp(table, 2)) == 50


async def test_a_recovery_drops_the_live_keys_of_partitions_not_active(table: Any) -> None:
    """The stock store drops only the keys it recovered; a live key would be counted twice."""
    store = table.data
    with processing(3):
        store["live"] = 1
    await store.on_recovery_completed({_tp(table, 0)}, set())
    assert "live" not in store


def test_a_deleted_key_is_forgotten_with_its_partition(table: Any) -> None:
    store = table.data
    with processing(0):
        store["k"] = 1
    del store["k"]
    assert "k" not in store
    assert "k" not in store._key_partition  # faust's own map of the keys
