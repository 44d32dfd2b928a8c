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


class StateSeenIds:
    """:class:`gateway.replay.SeenIds` over the partitioned, changelogged state."""

    def __init__(self, state: PartitionedState, topics: TopicNames, window: timedelta) -> None:
        self._state = state
        self._topics = topics
        self._window = window

    def check(self, key: tuple[str, str], position: Position, now: datetime) -> Seen:
        """Classify ``key`` read at ``position``."""
        entry = self._state.get(position.partition, _key(key))
        if not isinstance(entry, int) or entry & _EXPIRY_MASK <= now.timestamp():
            return Seen.NEW
        same = entry >> 32 == position.offset and self._topics.ingress(key[0]) == position.topic
        return Seen.REDELIVERY if same else Seen.DUPLICATE

    def remember(self, key: tuple[str, str], position: Position, now: datetime) -> None:
        """Store ``key`` with its offset and expiry on its ingress partition."""
        expiry = math.ceil((now + self._window).timestamp())
        self._state.put(position.partition, _key(key), position.offset << 32 | expiry)

    def sweep(self, now: datetime) -> int:
        """Delete the expired entries of every partition held; return how many."""
        removed = 0
        for partition in self._state.partitions:
            for key, entry in self._state.items(partition):
                if key.startswith(PREFIX) and entry & _EXPIRY_MASK <= now.timestamp():
                    self._state.put(partition, key, None)
                    removed += 1
        return removed


def _key(key: tuple[str, str]) -> str:
    return f"{PREFIX}{key[0]}/{key[1]}"


REQUEST_PREFIX = "q/"


class StatePending:
    """:class:`gateway.requests.PendingRequests` over the partitioned, changelogged state.

    Open requests are also indexed in memory, so the frequent deadline check does not scan
    the replay window that shares the state; the index is rebuilt after each rebalance.
    """

    def __init__(self, state: PartitionedState, window: timedelta) -> None:
        self._state = state
        self._window = window
        self._open: dict[tuple[int, str], float] = {}
        self._generation = -1

    def get(self, partition: int, request_id: str) -> Pending | None:
        """The entry of ``request_id``, or ``None``."""
        value = self._state.get(partition, REQUEST_PREFIX + request_id)
        return Pending.from_json(value) if isinstance(value, list) else None

    def put(self, partition: int, request_id: str, pending: Pending) -> None:
        """Store or replace an entry (changelogged)."""
        self._refresh()
        self._state.put(partition, REQUEST_PREFIX + request_id, pending.to_json())
        if pending.status == OPEN:
            self._open[partition, request_id] = pending.deadline
        else:
            self._open.pop((partition, request_id), None)

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
        removed = 0
        horizon = (now - self._window).timestamp()
        for partition in self._state.partitions:
            for key, value in self._state.items(partition):
                if key.startswith(REQUEST_PREFIX):
                    pending = Pending.from_json(value)
                    if pending.status != OPEN and pending.deadline <= horizon:
                        self._state.put(partition, key, None)
                        removed += 1
        return removed

    def _refresh(self) -> None:
        if self._generation == self._state.generation:
            return
        entries = (
            (partition, key[len(REQUEST_PREFIX) :], Pending.from_json(value))
            for partition in self._state.partitions
            for key, value in self._state.items(partition)
            if key.startswith(REQUEST_PREFIX)
        )
        self._open = {
            (partition, request_id): pending.deadline
            for partition, request_id, pending in entries
            if pending.status == OPEN
        }
        self._generation = self._state.generation
