"""Time: the clock the gateway and the agency client are given, and its one text form."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@functools.lru_cache(maxsize=16)  # a batch is decided at one ``now``: one string per batch
def rfc3339(moment: datetime) -> str:
    """A UTC timestamp with microseconds and a ``Z`` suffix (RFC 3339)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# RFC 3339 section 5.6 ``date-time``; "T" and "Z" may be lower case (section 5.6, NOTE).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])([01]\d|2[0-3]):([0-5]\d))",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 ``date-time`` with its offset; ``ValueError`` for anything else.

    Stricter than :meth:`datetime.fromisoformat`, which also takes ISO 8601 forms RFC 3339 does
    not (week dates, no seconds, a space, ``+0700``, no offset). Fractions beyond microseconds
    are cut; a leap second (``:60``) is refused, as Python cannot represent it.
    """
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_hours, off_minutes = match.groups()[6:]
    offset = timedelta(hours=int(off_hours or 0), minutes=int(off_minutes or 0))
    zone = UTC if zulu else timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
