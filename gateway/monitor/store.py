"""faust-streaming's in-memory table store, fixed: a rebalance no longer rolls kept counts back.

faust-streaming 0.15's memory store (``faust/stores/memory.py``) returns ``None`` from
``persisted_offset``, so every recovery (``faust/tables/recovery.py``, ``Recovery._add`` and
``_build_offsets``) reads a changelog partition from the offset it last *recovered* to, even for
a partition the member kept across the rebalance and has been writing since. That replays the
member's own older values over its newer in-memory ones, up to the changelog's end as read when
the recovery began. A value written after that read (a record still on its way) is not replayed
and stays rolled back: its count is short by the increments in between, and the changelog,
which holds the right value, no longer matches the table (seen: the two-monitor restart test,
the survivor's last writes of a kept partition, 1 to 3 counts short).

The store also knows the partition only of the keys it recovered (``_key_partition``), so
``on_recovery_completed`` cannot drop the keys it wrote live for a partition it lost: they stay
and are counted twice, by this member and by the new owner.

:class:`LiveMemoryStore` keeps, per changelog partition, the offset of its own last write that
the broker acknowledged (faust's ``set_persisted_offset`` callback, which the memory store
ignores) and returns it as the persisted offset, as the RocksDB store does: a kept partition is
read only from there, and nothing of its own is replayed. It records the partition of every key
it writes (the partition of the event being processed, which is the changelog partition faust
writes to). When a rebalance takes partitions away, it drops their keys and their offsets, so a
partition that comes back later is read from the start. :class:`LiveTable` makes a table with
it; the app is made with ``faust.App(..., Table=LiveTable)``. Upstream it is the same change in
faust's memory store.
"""

from __future__ import annotations

from typing import Any

from faust.stores.memory import Store
from faust.streams import current_event
from faust.tables.table import Table
from faust.types import TP


class LiveMemoryStore(Store[Any, Any]):
    """faust's memory store that knows its own changelog writes and the partition of each key."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._written: dict[TP, int] = {}  # changelog partition: its last write acknowledged
        self._lost: set[int] = set()  # partitions revoked: late acknowledgements are ignored

    def __setitem__(self, key: Any, value: Any) -> None:
        event = current_event()
        if event is not None:  # faust writes the changelog to the event's partition
            self._key_partition[key] = event.message.partition
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]
        self._key_partition.pop(key, None)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Note a changelog write the broker acknowledged (faust calls this for every one)."""
        if tp.partition not in self._lost:
            self._written[tp] = max(offset, self._written.get(tp, -1))

    def persisted_offset(self, tp: TP) -> int | None:
        """This store's last acknowledged write to ``tp``: a recovery reads on after it."""
        return self._written.get(tp)

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],  # noqa: ARG002 - faust's signature
        generation_id: int = 0,  # noqa: ARG002
    ) -> None:
        """Forget the partitions taken away: their keys and how far this store wrote them."""
        topic = self.table.changelog_topic.get_topic_name()
        mine = {tp.partition for tp in assigned if tp.topic == topic}
        gone = {tp.partition for tp in revoked if tp.topic == topic} - mine
        self._lost = (self._lost | gone) - mine
        for tp in [tp for tp in self._written if tp.partition in gone]:
            del self._written[tp]
        for key in [k for k, p in self._key_partition.items() if p in gone]:
            self.data.pop(key, None)
            del self._key_partition[key]


class LiveTable(Table[Any, Any]):
    """faust's table, kept in a :class:`LiveMemoryStore` when its store is the memory one."""

    def _new_store_by_url(self, url: Any) -> Any:
        if str(url).startswith("memory:"):
            return LiveMemoryStore(
                url,
                self.app,
                self,
                table_name=self.name,
                key_type=self.key_type,
                key_serializer=self.key_serializer,
                value_serializer=self.value_serializer,
                value_type=self.value_type,
                loop=self.loop,
                options=self.options,
            )
        return super()._new_store_by_url(url)
