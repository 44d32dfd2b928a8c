"""faust-streaming's table recovery, fixed: seek the stream partitions while they are paused.

faust-streaming 0.15 (``faust/tables/recovery.py``, ``Recovery.on_recovery_completed`` and
``Recovery._resume_streams``) ends a recovery by *resuming* the stream partitions, then awaiting
``consumer.perform_seek()`` (back to the committed offsets), then resuming the flow. While the
seek is awaited the fetcher is already running, so records of a resumed partition can arrive
from its position before the seek. ``Consumer._drain_messages`` (``faust/transport/consumer.py``)
then either hands out a stale record, which moves the read offset past the seek so that the
records refetched after it are dropped as "older than the read offset", or books the jump as an
acked gap. Either way records are committed without being processed, or the committed offset
stops advancing (the acked offsets no longer join the committed one), after a restart.

:class:`SeekBeforeResumeRecovery` keeps the stream partitions paused, seeks them to their
committed offsets, drops whatever events of theirs were buffered before the seek, and only then
resumes them, with no await between the resume and resuming the flow. :class:`SeekingTableManager`
installs it: faust's ``TableManager.recovery`` builds ``Recovery`` by name, so the property is
overridden, and the app is made with ``faust.App(..., TableManager=SeekingTableManager)``.

faust's pause is not enough for that: it is only a filter on what the consumer hands out, and the
filter fails open. ``Consumer._wait_next_records`` (``faust/transport/consumer.py``) passes its
live set of active partitions to the consumer thread, where aiokafka's
``Fetcher.fetched_records`` (``aiokafka/consumer/fetcher.py``) reads it each time data arrives
while it waits (up to a second); it takes an empty set to mean every partition
(``if partitions and tp not in partitions``). When recovery pauses the changelog partitions,
the stream partitions being paused already, that set is empty; a fetch still waiting then drains
the stream partitions' records, refetched from their sought offsets, which advances aiokafka's
positions to their ends, and faust's ``getmany`` drops the records as paused. None of them is
processed or committed, and nothing says so (seen on Apache Kafka: partitions stuck at their
committed offset with aiokafka's position at the highwater). So the stream partitions are also
paused in aiokafka itself, from before the seek until after faust's resume
(:meth:`SeekBeforeResumeRecovery._pause_in_aiokafka`): a paused partition is neither fetched nor
handed out, whatever the filter.

And the seek itself is not faust's ``perform_seek``: that is aiokafka's ``seek_to_committed``,
which leaves a partition that has no committed offset yet where the fetcher left it, past the
records faust fetched and dropped while the rebalance stopped its flow
(:func:`seek_to_committed` here seeks it to where a new member would start).

Written to go upstream: there it is a ``Recovery`` class attribute on ``TableManager`` and the
``resume_partitions`` call moved after the awaited ``perform_seek``; and ``_wait_next_records``
passing aiokafka a snapshot (``frozenset``) of the active partitions, taken when it checks that
there are some, which closes the fail-open filter for every pause, not only the recovery's; and
``perform_seek`` seeking a partition never committed to its reset position (in aiokafka, a
``seek_to_committed`` that does).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, ConsumerT

# Given the end offsets a broker reported, the ends found by reading on from them.
EndProbe = Callable[[Mapping[TP, int]], Awaitable[Mapping[TP, int]]]
# Where a partition with no committed offset starts, by ``auto_offset_reset``.
RESETS = {"earliest": "seek_to_beginning", "latest": "seek_to_end"}


class SeekBeforeResumeRecovery(Recovery):
    """Recovery that seeks the stream partitions to their committed offsets before resuming.

    With an :attr:`end_probe`, it also reads each changelog to its true end: faust reads a
    changelog up to the end offset the broker reports, and a broker that reports it short (the
    embedded Tansu reports the last batch's base offset + 1, docs/operations.md) leaves the
    rest of that batch out of the recovered table: counts another member wrote before it died
    and committed are missing.
    """

    end_probe: EndProbe | None = None

    async def _build_highwaters(
        self, consumer: ConsumerT, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        """As faust's; then each end checked by :attr:`end_probe`, which may only raise it."""
        await super()._build_highwaters(consumer, tps, destination, title)
        if self.end_probe is None:
            return
        reported = {tp: destination[tp] + 1 for tp in tps if destination[tp] >= 0}  # -1: empty
        if not reported:
            return
        for tp, end in (await self.end_probe(reported)).items():
            if end - 1 > destination[tp]:
                self.log.info("%s ends at %d, not at the %d reported", tp, end, reported[tp])
                destination[tp] = end - 1

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """As faust's, with the streams sought while paused (:meth:`_seek_then_resume`)."""
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        streams = await self._seek_then_resume(generation_id)
        if streams is None:
            return
        await self._resume_flow(streams)
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """The same ending when no table needs recovery (no tables, or an Aerospike store)."""
        await self.app.on_rebalance_complete.send()
        streams = await self._seek_then_resume(generation_id)
        if streams is None:
            return
        await self._resume_flow(streams)
        self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _seek_then_resume(self, generation_id: int) -> set[TP] | None:
        """Seek the paused stream partitions, drop what was buffered for them, resume them.

        The stream partitions, resumed in faust but still paused in aiokafka until
        :meth:`_resume_flow`; None when the group rebalanced meanwhile (faust's own check):
        the next recovery does it again.
        """
        consumer = self.app.consumer
        if self.app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return None
        streams = {tp for tp in consumer.assignment() if not self._is_changelog_tp(tp)}
        if streams:
            consumer.pause_partitions(streams)  # paused since the assignment; made sure
            await self._pause_in_aiokafka(streams, paused=True)
            self.log.info("Seek stream partitions to committed offsets (paused).")
            await self._wait(self._seek(streams), timeout=self.app.conf.broker_request_timeout)
            if self.app.consumer_generation_id != generation_id:
                self.log.warning("Recovery rebalancing again")
                return None
            self._discard_buffered(streams)
            consumer.resume_partitions(streams)
        return streams

    async def _resume_flow(self, streams: set[TP]) -> None:
        """Faust's ending of a recovery: resume the flow (clearing the queues) and the fetcher."""
        self.completed.set()
        self.app.flow_control.resume()  # no await since resume_partitions: nothing came in
        self.app.consumer.resume_flow()
        if streams:  # last: what aiokafka hands out from now on, faust takes
            await self._pause_in_aiokafka(streams, paused=False)
        await cast(Any, self.app)._fetcher.maybe_start()  # noqa: SLF001 - as faust's own
        self.tables.on_actives_ready()

    async def _seek(self, streams: set[TP]) -> None:
        """Seek ``streams`` in aiokafka (:func:`seek_to_committed`), and faust's offsets with them.

        Instead of faust's ``perform_seek``, which leaves a partition never committed where the
        fetcher left it (:func:`seek_to_committed` says how that skips records).
        """
        reset = self.app.conf.consumer_auto_offset_reset
        found: dict[TopicPartition, int | None] = await self._in_aiokafka(
            streams, lambda client, assigned: seek_to_committed(client, assigned, reset)
        )
        offsets = cast(Any, self.app.consumer)
        read, committed = offsets._read_offset, offsets._committed_offset  # noqa: SLF001
        for tp, offset in found.items():
            key = TP(tp.topic, tp.partition)
            read[key] = offset or None  # as perform_seek: None, read from the first record
            committed[key] = offset or None

    async def _pause_in_aiokafka(self, partitions: set[TP], *, paused: bool) -> None:
        """Pause or resume ``partitions`` in the aiokafka consumer, in its thread.

        faust's own pause is a filter that an empty set of active partitions opens (the module
        docstring says how); aiokafka neither fetches a partition it has paused nor hands out
        what it fetched for it before. Partitions that a rebalance took away are skipped: the
        next assignment starts unpaused.
        """

        def apply(client: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
            (client.pause if paused else client.resume)(*assigned)

        await self._wait(
            self._in_aiokafka(partitions, apply), timeout=self.app.conf.broker_request_timeout
        )

    async def _in_aiokafka(
        self, partitions: set[TP], apply: Callable[[AIOKafkaConsumer, list[TopicPartition]], Any]
    ) -> Any:
        """``apply(client, assigned)`` in faust's consumer thread, awaited there if async.

        ``client`` is the aiokafka consumer, ``assigned`` those of ``partitions`` it still has
        (a rebalance may have taken some away), as aiokafka's own TopicPartitions.
        """
        thread = cast(Any, self.app.consumer)._thread  # noqa: SLF001 - faust's consumer thread

        def call() -> Any:
            client = thread._ensure_consumer()  # noqa: SLF001 - the aiokafka consumer
            return apply(client, [tp for tp in client.assignment() if tp in partitions])

        return await thread.call_thread(call)

    def _discard_buffered(self, partitions: set[TP]) -> int:
        """Drop events of ``partitions`` already queued in the stream channels (fetched pre-seek).

        ``flow_control.resume()`` clears every channel queue right after, with no await between;
        this is the same, done per partition and before the partitions are resumed.
        """
        dropped = 0
        seen: set[int] = set()
        for channel in self.app.topics:
            queue = getattr(channel, "_queue", None)  # None: never iterated, nothing buffered
            if queue is None or id(queue) in seen:
                continue
            seen.add(id(queue))
            buffered = queue._queue  # noqa: SLF001 - the asyncio.Queue's deque
            kept = [event for event in buffered if event.message.tp not in partitions]
            if len(kept) != len(buffered):
                dropped += len(buffered) - len(kept)
                buffered.clear()
                buffered.extend(kept)
        if dropped:
            self.log.info("Dropped %d events fetched before the seek", dropped)
        return dropped


async def seek_to_committed(
    client: AIOKafkaConsumer, partitions: list[TopicPartition], reset: str
) -> dict[TopicPartition, int | None]:
    """Seek each partition to its committed offset, or, never committed, to where ``reset`` says.

    aiokafka's ``seek_to_committed`` (faust's ``perform_seek``) seeks only the partitions with a
    committed offset above 0, and leaves the others where the fetcher left them. faust fetches
    during a rebalance and drops what it fetched (the flow is stopped), so a partition not
    committed yet (the first seconds of a group, or a partition whose records were never read)
    resumed past records it never processed, and the next commit went past them. Here such a
    partition starts where a new member would: ``reset`` is the consumer's
    ``auto_offset_reset`` (``earliest`` or ``latest``; anything else leaves it). The committed
    offsets, None where there is none.
    """
    found: dict[TopicPartition, int | None] = {}
    fresh: list[TopicPartition] = []
    for tp in partitions:
        offset = await client.committed(tp)
        if offset is None or offset < 0:
            fresh.append(tp)
            found[tp] = None
        else:
            client.seek(tp, offset)
            found[tp] = offset
    if fresh and reset in RESETS:
        await getattr(client, RESETS[reset])(*fresh)
    return found


class SeekingTableManager(TableManager):
    """faust's table manager with :class:`SeekBeforeResumeRecovery` as its recovery."""

    @property
    def recovery(self) -> Recovery:
        """The recovery service (faust's property, with the class replaced)."""
        if self._recovery is None:
            self._recovery = SeekBeforeResumeRecovery(
                self.app, self, beacon=self.beacon, loop=self.loop
            )
        return self._recovery
