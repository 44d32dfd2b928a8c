"""The worker state in its SQLite file: timers, changelog outbox, recovery through a fence."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from gateway.core.pending import Pending
from gateway.core.replay import Position, Seen
from gateway.errors import StateError
from gateway.names import TopicNames
from gateway.runtime.state import PartitionedState
from gateway.runtime.tables import StatePending, StateSeenIds
from gateway.runtime.worker import _every
from gateway.settings import DEFAULT_CACHE_BYTES
from tests.conftest import NOW
from tests.support.strategies import json_values, vietnamese_text

TOPICS = TopicNames("st")


def test_put_changes_memory_and_queues_one_changelog_record_on_the_partition() -> None:
    """A write is visible at once and becomes one record on the same changelog partition."""
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
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
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
    state.adopt(0, {"k": 1})
    state.put(0, "k", None)
    assert state.get(0, "k") is None
    (record,) = state.take_outbox()
    assert record.value is None


def test_keep_only_forgets_lost_partitions_and_names_new_ones() -> None:
    """A new assignment drops partitions moved away and lists those still to recover."""
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
    state.adopt(0, {"a": 1})
    state.adopt(1, {"b": 2})
    assert state.keep_only(frozenset({1, 3})) == frozenset({3})
    assert state.partitions == frozenset({1})
    assert len(state) == 1


def test_replay_entries_tell_redelivery_from_duplicate_and_expire() -> None:
    """Same offset again is a redelivery, another offset a duplicate, and entries expire."""
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
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


def test_sweep_removes_only_what_expired_and_survives_a_rebalance() -> None:
    """Swept ids are exactly the expired ones, also for state recovered from a changelog."""
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
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
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
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


def _changelog(state: PartitionedState, partition: int = 0) -> dict[str, bytes | None]:
    """One partition of the state's outbox as a recovering worker reads it: last values."""
    records = state.take_outbox()
    return {r.key.decode(): r.value for r in records if r.key and r.partition == partition}


def test_remembered_ids_live_in_the_store_not_in_python_memory() -> None:
    """200,000 remembered ids leave Python's heap within a few MB: the SQLite file holds them."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.adopt(0)
        seen = StateSeenIds(state, TOPICS, timedelta(hours=24))
        topic = TOPICS.ingress("police")
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for offset in range(200_000):
                seen.remember(("police", f"{offset:x}-Nguyễn"), Position(topic, 0, offset), NOW)
                if offset % 500 == 499:
                    state.take_outbox()  # as the worker does after each batch
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(state) == 200_000
    # The dicts of the previous state held ~165 bytes per id: 33 MB here.
    assert grown < 2 * 1024 * 1024


def test_sweep_deletes_exactly_the_entries_due_and_writes_their_tombstones() -> None:
    """Expired ids go, by their own expiry, on every partition held; later ones stay."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.adopt(0)
        state.adopt(3)
        seen = StateSeenIds(state, TOPICS, timedelta(minutes=10))
        topic = TOPICS.ingress("police")
        for n in range(30):  # one id every 10 s on alternating partitions
            at = Position(topic, 3 * (n % 2), n)
            seen.remember(("police", f"e{n}"), at, NOW + timedelta(seconds=10 * n))
        state.take_outbox()
        assert seen.sweep(NOW + timedelta(minutes=10)) == 1  # remembered at NOW
        state.take_outbox()
        assert seen.sweep(NOW + timedelta(minutes=12, seconds=5)) == 12
        tombstones = state.take_outbox()
        assert {(r.partition, r.key, r.value) for r in tombstones} == {
            (3 * (n % 2), f"r/police/e{n}".encode(), None) for n in range(1, 13)
        }
        assert seen.sweep(NOW + timedelta(minutes=12, seconds=5)) == 0
        assert len(state) == 30 - 13
        later = Position(topic, 0, 14)
        assert seen.check(("police", "e14"), later, NOW + timedelta(minutes=12)) is Seen.REDELIVERY


def test_timers_of_one_partition_leave_the_others_alone() -> None:
    """Exactly-once works a partition at a time: due, sweep and tombstones of that one only."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        for partition in (0, 1, 2):
            state.adopt(partition)
        seen = StateSeenIds(state, TOPICS, timedelta(minutes=10))
        pending = StatePending(state, timedelta(hours=1))
        topic = TOPICS.ingress("police")
        for partition in (0, 1, 2):
            seen.remember(("police", f"e{partition}"), Position(topic, partition, 1), NOW)
            pending.put(
                partition, f"q{partition}", Pending("land", "t", "s", NOW.timestamp(), 1, "ab")
            )
        state.take_outbox()
        later = NOW + timedelta(minutes=11)
        assert [(p, rid) for p, rid, _ in pending.due(later, 1)] == [(1, "q1")]
        assert len(pending.due(later)) == 3
        assert seen.sweep(later, 2) == 1
        assert {(r.partition, r.key) for r in state.take_outbox()} == {(2, b"r/police/e2")}
        assert seen.sweep(later) == 2  # the other two partitions' ids
        assert {r.partition for r in state.take_outbox()} == {0, 1}


def test_request_timers_follow_the_status_deadline_then_window() -> None:
    """An open request is due at its deadline; once closed, it is forgotten a window later."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.adopt(1)
        pending = StatePending(state, timedelta(hours=1))
        deadline = NOW.timestamp() + 30
        pending.put(1, "a", Pending("land", "t", "s", deadline, 1, "ab"))
        pending.put(1, "b", Pending("land", "t", "s", deadline + 60, 2, "cd"))
        assert pending.due(NOW + timedelta(seconds=29)) == []
        (due,) = pending.due(NOW + timedelta(seconds=30))
        assert due == (1, "a", Pending("land", "t", "s", deadline, 1, "ab"))
        pending.put(1, "a", due[2].timed_out())
        assert [rid for _, rid, _ in pending.due(NOW + timedelta(minutes=2))] == ["b"]
        assert pending.sweep(NOW + timedelta(hours=1, seconds=29)) == 0
        assert pending.sweep(NOW + timedelta(hours=1, seconds=30)) == 1
        assert pending.get(1, "a") is None
        assert pending.get(1, "b") is not None


def test_open_count_follows_adoptions_drops_and_recovery() -> None:
    """The open-request count covers exactly the partitions held, however they came."""
    with (
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as writer,
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as reader,
    ):
        writer.adopt(1)
        writer.adopt(2)
        pending = StatePending(writer, timedelta(hours=1))
        request = Pending("land", "t", "s", NOW.timestamp() + 30, 1, "ab")
        for rid in ("a", "b", "c"):
            pending.put(1, rid, request)
        pending.put(2, "d", request)
        pending.put(2, "e", request.answered("x"))
        assert pending.open_count() == 4
        one = _changelog(writer, 1)
        assert writer.keep_only(frozenset({2, 3})) == frozenset({3})
        assert pending.open_count() == 1
        writer.adopt(1, {key: json.loads(value) for key, value in one.items() if value})
        assert pending.open_count() == 4
        # Another worker recovering partition 1: nothing counts before it is adopted.
        recovering = StatePending(reader, timedelta(hours=1))
        reader.restore(1, one)
        assert recovering.open_count() == 0
        assert recovering.due(NOW + timedelta(minutes=1)) == []
        reader.adopt(1)
        assert recovering.open_count() == 3
        assert reader.keep_only(frozenset()) == frozenset()
        assert recovering.open_count() == 0


def test_restored_entries_get_their_timers() -> None:
    """Entries recovered from the changelog are swept and timed out like the ones written."""
    with (
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as writer,
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as reader,
    ):
        writer.adopt(0)
        seen = StateSeenIds(writer, TOPICS, timedelta(minutes=10))
        pending = StatePending(writer, timedelta(minutes=10))
        seen.remember(("police", "e1"), Position(TOPICS.ingress("police"), 0, 5), NOW)
        pending.put(0, "q1", Pending("land", "t", "s", NOW.timestamp() + 30, 6, "ab"))
        restored_seen = StateSeenIds(reader, TOPICS, timedelta(minutes=10))
        restored_pending = StatePending(reader, timedelta(minutes=10))
        reader.restore(0, _changelog(writer))
        reader.adopt(0)
        assert [rid for _, rid, _ in restored_pending.due(NOW + timedelta(seconds=30))] == ["q1"]
        assert restored_seen.sweep(NOW + timedelta(minutes=10)) == 1
        assert reader.get(0, "q/q1") == writer.get(0, "q/q1")


def test_timers_apply_to_entries_stored_before_the_rule() -> None:
    """Scheduling a prefix gives the entries already stored their timers too."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.adopt(0, {"r/police/e1": 7 << 32 | int(NOW.timestamp()), "other": 1})
        seen = StateSeenIds(state, TOPICS, timedelta(minutes=10))
        assert seen.sweep(NOW) == 1
        assert dict(state.items(0)) == {"other": 1}


def test_restoring_a_held_partition_is_refused() -> None:
    """Restore writes only partitions being recovered, never one the worker decides on."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.adopt(0)
        with pytest.raises(ValueError, match="partition 0 is held"):
            state.restore(0, {"k": b"1"})


def test_a_partition_to_recover_starts_empty() -> None:
    """What a failed recovery restored is forgotten by the next assignment."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.restore(4, {"k": b"1", "gone": b"2"})
        assert state.keep_only(frozenset({4})) == frozenset({4})
        state.restore(4, {"k": b"3"})
        state.adopt(4)
        assert dict(state.items(4)) == {"k": 3}


def test_vietnamese_keys_and_values_round_trip_as_utf8() -> None:
    """Keys and values with Vietnamese diacritics are stored and written as UTF-8."""
    key = "q/Nguyễn Thị Minh Khai/Đường Lê Lợi"
    value = {"họ tên": "Nguyễn Thị Minh Khai", "phường": "Phường Sài Gòn"}
    with (
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state,
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as reader,
    ):
        state.adopt(0)
        state.put(0, key, value)
        assert state.get(0, key) == value
        assert dict(state.items(0)) == {key: value}
        (stored,) = state._db.execute("SELECT hex(CAST(key AS BLOB)) FROM entries").fetchall()
        assert bytes.fromhex(stored[0]) == key.encode("utf-8")
        (record,) = state.take_outbox()
        assert record.key == key.encode("utf-8")
        assert record.value is not None
        assert json.loads(record.value.decode("utf-8")) == value
        reader.restore(0, {key: record.value})
        reader.adopt(0)
        assert reader.get(0, key) == value


@given(key=vietnamese_text, value=json_values)
def test_what_put_writes_reads_back_here_and_after_recovery(key: str, value: Any) -> None:
    """Any JSON value reads back as written, from the store and from its changelog record."""
    with (
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state,
        PartitionedState("changelog", DEFAULT_CACHE_BYTES) as reader,
    ):
        state.adopt(0)
        state.put(0, key, value)
        assert state.get(0, key) == value
        reader.restore(0, _changelog(state))
        reader.adopt(0)
        assert reader.get(0, key) == value


def test_integers_beyond_64_bits_and_booleans_round_trip() -> None:
    """Ints SQLite cannot hold (an id packed with an offset of 2**31 or more) and booleans."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        state.adopt(0)
        for value in (1 << 63, -(1 << 63) - 1, (1 << 63) - 1, 1 << 80, True):
            state.put(0, "k", value)
            assert state.get(0, "k") == value
            assert type(state.get(0, "k")) is type(value)


def test_close_deletes_the_file() -> None:
    """Without a directory the file goes to the system's temporary directory; close deletes it."""
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
    assert state.path.is_file()
    assert state.path.parent == Path(tempfile.gettempdir())
    state.close()
    assert not state.path.exists()
    state.close()  # twice is harmless


def test_state_dir_holds_one_file_per_store_until_close(tmp_path: Path) -> None:
    """Stores sharing XGW_STATE_DIR get files of their own there; close deletes only its own."""
    directory = tmp_path / "state"
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES, directory) as first:
        second = PartitionedState("changelog", DEFAULT_CACHE_BYTES, directory)
        assert first.path.parent == second.path.parent == directory
        assert first.path != second.path
        second.close()
        assert list(directory.iterdir()) == [first.path]
    assert list(directory.iterdir()) == []


def test_files_of_killed_workers_are_deleted_and_live_ones_kept(tmp_path: Path) -> None:
    """A new store deletes the files no live store holds (close never ran), nothing else."""
    killed = tmp_path / "xgw-state-killed.sqlite3"
    sqlite3.connect(killed).close()
    unrelated = tmp_path / "audit.sqlite3"
    unrelated.touch()
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES, tmp_path) as live:
        live.adopt(0)
        live.put(0, "k", 1)
        assert not killed.exists()
        with PartitionedState("changelog", DEFAULT_CACHE_BYTES, tmp_path) as other:
            assert live.path.exists()
            assert live.get(0, "k") == 1
            assert sorted(tmp_path.iterdir()) == sorted([unrelated, live.path, other.path])


def test_a_closed_or_failed_store_raises_state_error(tmp_path: Path) -> None:
    """SQLite's errors surface as StateError; an unusable directory is reported at start."""
    state = PartitionedState("changelog", DEFAULT_CACHE_BYTES)
    state.adopt(0)
    state.close()
    with pytest.raises(StateError, match="the state store failed"):
        state.get(0, "k")
    with pytest.raises(StateError, match="the state store failed"):
        state.put(0, "k", 1)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateError, match="cannot create the state file"):
        PartitionedState("changelog", DEFAULT_CACHE_BYTES, tmp_path / "file")


@pytest.mark.parametrize("value", [b"\xff not utf-8", b"{not json", b'["too", "short"]'])
def test_an_unreadable_changelog_entry_stops_recovery(value: bytes) -> None:
    """A value this version did not write is a StateError, never a guess (or a silent stall)."""
    with PartitionedState("changelog", DEFAULT_CACHE_BYTES) as state:
        StatePending(state, timedelta(minutes=10))
        with pytest.raises(StateError, match="q/Nguyễn-1"):
            state.restore(0, {"q/Nguyễn-1": value})


async def test_a_failed_store_stops_the_worker_from_a_timer() -> None:
    """A StateError in a periodic task is fatal (reported once), other errors are only logged."""
    failures: list[Exception] = []
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a passing problem")
        raise StateError("disk full")

    await asyncio.wait_for(_every(0.001, failing, failures.append), timeout=5)
    assert calls == 2
    assert [str(f) for f in failures] == ["disk full"]
