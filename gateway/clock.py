"""Time: the clock the gateway and the agency client are given, and its one text form."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@functools.lru_cache(maxsize=16)  # a batch is decided at one ``now``: one string per batch
def rfc3339(moment: datetime) -> str:
    """A UTC timestamp with microseconds and a ``Z`` suffix (RFC 3339)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
