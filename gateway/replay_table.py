"""The replay window kept in a faust table, so it survives worker restarts and rebalances.

The table is keyed ``<agency>/<event id>`` and changelogged to Kafka. The gateway requires the
record key to be the event's subject, so a replayed event lands on the same ingress partition,
and therefore with the same worker and table partition, as the original. Each entry records the
ingress position it was accepted from (to tell a redelivery after a crash from a replay) and
when it expires; expired entries are swept periodically.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import faust

from gateway.replay import Position, Seen


class ReplayTable(faust.Table[str, Any]):
    """A faust table whose changelog partition is the ingress partition of the record at hand.

    faust picks the changelog partition from the "current event", which inside a batch taken
    with ``take_events`` is the last event of the batch, not the one being decided.
    """

    partition_hint: int | None = None

    def partition_for_key(self, key: Any) -> int | None:
        """The ingress partition of the record being decided (or swept)."""
        if self.partition_hint is not None:
            return self.partition_hint
        return super().partition_for_key(key)


# The embedded broker reports a partition's end offset as the base offset of its last record
# batch plus one, so a table recovering from the changelog stops before the rest of that batch
# and forgets those ids. After each processed batch the worker therefore writes, alone in its
# own record batch, one marker per changelog partition it wrote: whatever the broker reports,
# recovery then reads every real entry. Markers never match an event key ("/" in ids is fine,
# agency ids cannot start with "~") and are never swept. Apache Kafka does not need them
# (XGW_REPLAY_CHANGELOG_MARKERS=false).
END_MARKER = "~end/"


def _key(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


class TableSeenIds:
    """:class:`gateway.replay.SeenIds` over a :class:`ReplayTable`."""

    def __init__(self, table: ReplayTable, window: timedelta) -> None:
        self._table = table
        self._window = window

    def check(self, key: tuple[str, str], position: Position, now: datetime) -> Seen:
        """Classify ``key`` read at ``position``."""
        entry = self._table.get(_key(key))
        if not isinstance(entry, dict) or entry.get("x", 0) <= now.timestamp():
            return Seen.NEW
        known = (entry.get("t"), entry.get("p"), entry.get("o"))
        same = known == (position.topic, position.partition, position.offset)
        return Seen.REDELIVERY if same else Seen.DUPLICATE

    def remember(self, key: tuple[str, str], position: Position, now: datetime) -> None:
        """Store ``key`` with its position and expiry, changelogged on its ingress partition."""
        entry = {
            "t": position.topic,
            "p": position.partition,
            "o": position.offset,
            "x": (now + self._window).timestamp(),
        }
        self._write(_key(key), entry, position.partition)

    def mark_end(self, partition: int) -> None:
        """Write the end marker of ``partition``'s changelog (see :data:`END_MARKER`)."""
        self._write(f"{END_MARKER}{partition}", {"x": 0, "p": partition}, partition)

    def sweep(self, now: datetime) -> int:
        """Delete expired entries held by this worker; return how many."""
        expired = [
            (k, v["p"])
            for k, v in list(self._table.items())
            if isinstance(v, dict)
            and v.get("x", 0) <= now.timestamp()
            and not k.startswith(END_MARKER)
        ]
        for key, partition in expired:
            self._write(key, None, partition)
        return len(expired)

    def __len__(self) -> int:
        return len(self._table)

    def _write(self, key: str, entry: dict[str, Any] | None, partition: int) -> None:
        self._table.partition_hint = partition
        try:
            if entry is None:
                del self._table[key]
            else:
                self._table[key] = entry
        finally:
            self._table.partition_hint = None


def replay_table(app: faust.App, name: str, partitions: int) -> ReplayTable:
    """Create and register the replay table on ``app``."""
    table = ReplayTable(
        app,
        name=name,
        default=None,
        beacon=app.tables.beacon,
        schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"),
        partitions=partitions,
        help="Accepted event ids, their ingress position and expiry.",
    )
    app.tables.add(table)
    return table
