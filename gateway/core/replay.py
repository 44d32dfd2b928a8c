"""The replay window: which (source, id) pairs were accepted recently, and where they were read.

Remembering the ingress position of each accepted event separates a replay (the same event id in
a *new* record) from an at-least-once redelivery (the *same* record read again after a crash
before its offset was committed): the first is refused, the second is processed again so that
its deliveries and receipt are re-sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record was read: topic, partition, offset (and the broker's timestamp of it)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int = 0  # 0 when unknown (tools, tests)


class Seen(Enum):
    """What the window knows of an event id."""

    NEW = "new"
    REDELIVERY = "redelivery"
    DUPLICATE = "duplicate"


class SeenIds(Protocol):
    """Where the pipeline remembers accepted event ids (in memory, or in the worker state)."""

    def check(self, key: tuple[str, str], position: Position, now: datetime) -> Seen:
        """Classify ``key`` read at ``position``."""
        ...

    def remember(self, key: tuple[str, str], position: Position, now: datetime) -> None:
        """Record that ``key`` was accepted from ``position``."""
        ...


class ReplayWindow:
    """Remembers accepted event ids for ``window``, at most ``max_entries`` of them."""

    def __init__(self, window: timedelta, max_entries: int) -> None:
        self._window = window
        self._max_entries = max_entries
        self._positions: dict[tuple[str, str], Position] = {}
        self._expiry: deque[tuple[datetime, tuple[str, str]]] = deque()

    def __len__(self) -> int:
        return len(self._positions)

    def check(self, key: tuple[str, str], position: Position, now: datetime) -> Seen:
        """Classify ``key`` read at ``position``."""
        self._expire(now)
        known = self._positions.get(key)
        if known is None:
            return Seen.NEW
        return Seen.REDELIVERY if known == position else Seen.DUPLICATE

    def remember(self, key: tuple[str, str], position: Position, now: datetime) -> None:
        """Record that ``key`` was accepted from ``position``."""
        if key not in self._positions:
            self._expiry.append((now + self._window, key))
        self._positions[key] = position
        while len(self._positions) > self._max_entries:
            self._positions.pop(self._expiry.popleft()[1], None)

    def _expire(self, now: datetime) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            self._positions.pop(self._expiry.popleft()[1], None)
