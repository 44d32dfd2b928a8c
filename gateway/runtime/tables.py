"""The replay window and pending requests of a worker, kept in its partitioned state.

Entries are keyed ``r/<agency>/<event id>`` on the ingress partition the event was accepted
from (where any replay of it must arrive, since the record key is the subject) and hold the
ingress offset (to tell a redelivery after a crash from a replay) and the expiry time, packed
into one integer: ``offset << 32 | expiry in epoch seconds``. The window holds every event
accepted in the last ``XGW_REPLAY_WINDOW_SECONDS``, on disk (see :mod:`gateway.runtime.state`): one
entry costs the store's file about 100-150 bytes and the worker's memory nothing.

Both kinds of entry carry a timer in the store, so sweeps and the deadline check are indexed
queries and nothing is indexed in memory: an id expires at its expiry time, an open request
times out at its deadline, a closed one is forgotten a replay window after its deadline.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from gateway.core.pending import OPEN, Pending
from gateway.core.replay import Position, Seen
from gateway.names import TopicNames
from gateway.runtime.state import PartitionedState, Timer

PREFIX = "r/"
_EXPIRY_MASK = 0xFFFFFFFF  # epoch seconds fit in 32 bits until 2106
# Timer names, stored with every entry (so short): what happens to it when it is due.
_ID_EXPIRES = "id"
_REQUEST_TIMES_OUT = "open"
_REQUEST_FORGOTTEN = "closed"


class StateSeenIds:
    """:class:`gateway.core.replay.SeenIds` over the partitioned, changelogged state."""

    def __init__(self, state: PartitionedState, topics: TopicNames, window: timedelta) -> None:
        self._state = state
        self._topics = topics
        self._window = window
        state.schedule(PREFIX, _id_timer)

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

    def sweep(self, now: datetime, partition: int | None = None) -> int:
        """Delete the expired entries of every partition held (or of one); return how many."""
        return self._state.expire(_ID_EXPIRES, now.timestamp(), partition)


def _id_timer(entry: Any) -> Timer | None:
    return (_ID_EXPIRES, entry & _EXPIRY_MASK) if isinstance(entry, int) else None


def _key(key: tuple[str, str]) -> str:
    return f"{PREFIX}{key[0]}/{key[1]}"


REQUEST_PREFIX = "q/"


class StatePending:
    """:class:`gateway.core.pending.PendingRequests` over the partitioned, changelogged state."""

    def __init__(self, state: PartitionedState, window: timedelta) -> None:
        self._state = state
        self._window = window
        state.schedule(REQUEST_PREFIX, self._timer)

    def get(self, partition: int, request_id: str) -> Pending | None:
        """The entry of ``request_id``, or ``None``."""
        value = self._state.get(partition, REQUEST_PREFIX + request_id)
        return Pending.from_json(value) if isinstance(value, list) else None

    def put(self, partition: int, request_id: str, pending: Pending) -> None:
        """Store or replace an entry (changelogged)."""
        self._state.put(partition, REQUEST_PREFIX + request_id, pending.to_json())

    def open_count(self) -> int:
        """Requests delivered and not yet answered or timed out."""
        return self._state.count(_REQUEST_TIMES_OUT)

    def due(self, now: datetime, partition: int | None = None) -> list[tuple[int, str, Pending]]:
        """Open entries past their deadline, on the partitions this worker holds (or one)."""
        return [
            (p, key.removeprefix(REQUEST_PREFIX), Pending.from_json(value))
            for p, key, value in self._state.due(_REQUEST_TIMES_OUT, now.timestamp(), partition)
        ]

    def sweep(self, now: datetime, partition: int | None = None) -> int:
        """Forget closed entries whose deadline is older than the replay window (of one, or all)."""
        return self._state.expire(_REQUEST_FORGOTTEN, now.timestamp(), partition)

    def _timer(self, value: Any) -> Timer | None:
        if not isinstance(value, list):
            return None
        pending = Pending.from_json(value)
        if pending.status == OPEN:
            return (_REQUEST_TIMES_OUT, pending.deadline)
        return (_REQUEST_FORGOTTEN, pending.deadline + self._window.total_seconds())
