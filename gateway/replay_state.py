"""The replay window and pending requests of a worker, kept in its partitioned state.

Entries are keyed ``r/<agency>/<event id>`` on the ingress partition the event was accepted
from (where any replay of it must arrive, since the record key is the subject) and hold the
ingress offset (to tell a redelivery after a crash from a replay) and the expiry time, packed
into one integer: ``offset << 32 | expiry in epoch seconds``. One entry costs about 165 bytes
of worker memory (a [offset, expiry] list cost 260), and the window holds every event accepted
in the last ``XGW_REPLAY_WINDOW_SECONDS``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from gateway.replay import Position, Seen
from gateway.requests import OPEN, Pending
from gateway.state import PartitionedState
from gateway.topics import TopicNames

PREFIX = "r/"
_EXPIRY_MASK = 0xFFFFFFFF  # epoch seconds fit in 32 bits until 2106
_MINUTE = 60


class StateSeenIds:
    """:class:`gateway.replay.SeenIds` over the partitioned, changelogged state.

    Keys are also filed by the minute they expire in (the same string objects as in the state,
    so about 8 bytes per id), so a sweep touches only what has expired instead of scanning
    millions of entries under the worker's lock; the files are rebuilt after each rebalance.
    """

    def __init__(self, state: PartitionedState, topics: TopicNames, window: timedelta) -> None:
        self._state = state
        self._topics = topics
        self._window = window
        self._expiring: dict[int, dict[int, list[str]]] = {}  # partition -> minute -> keys
        self._generation = -1

    def check(self, key: tuple[str, str], position: Position, now: datetime) -> Seen:
        """Classify ``key`` read at ``position``."""
        entry = self._state.get(position.partition, _key(key))
        if not isinstance(entry, int) or entry & _EXPIRY_MASK <= now.timestamp():
            return Seen.NEW
        same = entry >> 32 == position.offset and self._topics.ingress(key[0]) == position.topic
        return Seen.REDELIVERY if same else Seen.DUPLICATE

    def remember(self, key: tuple[str, str], position: Position, now: datetime) -> None:
        """Store ``key`` with its offset and expiry on its ingress partition."""
        self._refresh()
        expiry = math.ceil((now + self._window).timestamp())
        name = _key(key)
        self._state.put(position.partition, name, position.offset << 32 | expiry)
        self._file(position.partition, name, expiry)

    def sweep(self, now: datetime) -> int:
        """Delete the expired entries of every partition held; return how many."""
        self._refresh()
        at = now.timestamp()
        # Every key filed under a minute before the current one has expired.
        current = int(at) // _MINUTE
        removed = 0
        for partition, minutes in self._expiring.items():
            for minute in sorted(m for m in minutes if m < current):
                for name in minutes.pop(minute):
                    entry = self._state.get(partition, name)
                    # Remembered again since (a redelivery) means filed again, later.
                    if isinstance(entry, int) and entry & _EXPIRY_MASK <= at:
                        self._state.put(partition, name, None)
                        removed += 1
        return removed

    def _file(self, partition: int, name: str, expiry: int) -> None:
        self._expiring.setdefault(partition, {}).setdefault(expiry // _MINUTE, []).append(name)

    def _refresh(self) -> None:
        if self._generation == self._state.generation:
            return
        self._expiring = {}
        for partition in self._state.partitions:
            for name, entry in self._state.items(partition):
                if name.startswith(PREFIX) and isinstance(entry, int):
                    self._file(partition, name, entry & _EXPIRY_MASK)
        self._generation = self._state.generation


def _key(key: tuple[str, str]) -> str:
    return f"{PREFIX}{key[0]}/{key[1]}"


REQUEST_PREFIX = "q/"


class StatePending:
    """:class:`gateway.requests.PendingRequests` over the partitioned, changelogged state.

    Requests are also indexed in memory (open ones by deadline, closed ones by when they may be
    forgotten), so the frequent deadline check and the sweep do not scan the replay window
    that shares the state; the index is rebuilt after each rebalance.
    """

    def __init__(self, state: PartitionedState, window: timedelta) -> None:
        self._state = state
        self._window = window
        self._open: dict[tuple[int, str], float] = {}
        self._closed: dict[tuple[int, str], float] = {}
        self._generation = -1

    def get(self, partition: int, request_id: str) -> Pending | None:
        """The entry of ``request_id``, or ``None``."""
        value = self._state.get(partition, REQUEST_PREFIX + request_id)
        return Pending.from_json(value) if isinstance(value, list) else None

    def put(self, partition: int, request_id: str, pending: Pending) -> None:
        """Store or replace an entry (changelogged)."""
        self._refresh()
        self._state.put(partition, REQUEST_PREFIX + request_id, pending.to_json())
        self._index(partition, request_id, pending)

    def open_count(self) -> int:
        """Requests delivered and not yet answered or timed out."""
        self._refresh()
        return len(self._open)

    def due(self, now: datetime) -> list[tuple[int, str, Pending]]:
        """Open entries past their deadline, on the partitions this worker holds."""
        self._refresh()
        at = now.timestamp()
        found = []
        for (partition, request_id), deadline in list(self._open.items()):
            if deadline <= at:
                pending = self.get(partition, request_id)
                if pending is not None:
                    found.append((partition, request_id, pending))
        return found

    def sweep(self, now: datetime) -> int:
        """Forget closed entries whose deadline is older than the replay window."""
        self._refresh()
        horizon = (now - self._window).timestamp()
        gone = [where for where, deadline in self._closed.items() if deadline <= horizon]
        for partition, request_id in gone:
            self._state.put(partition, REQUEST_PREFIX + request_id, None)
            del self._closed[partition, request_id]
        return len(gone)

    def _index(self, partition: int, request_id: str, pending: Pending) -> None:
        where = (partition, request_id)
        if pending.status == OPEN:
            self._closed.pop(where, None)
            self._open[where] = pending.deadline
        else:
            self._open.pop(where, None)
            self._closed[where] = pending.deadline

    def _refresh(self) -> None:
        if self._generation == self._state.generation:
            return
        self._open, self._closed = {}, {}
        for partition in self._state.partitions:
            for key, value in self._state.items(partition):
                if key.startswith(REQUEST_PREFIX):
                    self._index(partition, key[len(REQUEST_PREFIX) :], Pending.from_json(value))
        self._generation = self._state.generation
