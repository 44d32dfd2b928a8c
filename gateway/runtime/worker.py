"""A gateway worker: one consumer group member that decides ingress records in batches.

    getmany (up to XGW_BATCH_MAX records) -> Pipeline.decide_batch (one stamp signature for
    the batch) -> write every output and the state changelog -> wait for the broker's
    acknowledgements -> commit the offsets (while the next batch is decided)

Offsets are committed only after everything the batch produced is acknowledged, so a crash at
any point means the batch is decided again (the agency client drops the repeats by event id,
and decisions, receipts and audit entries keep their ids). The batch runs under a lock that a
rebalance takes before it revokes partitions, so a revoked partition's batch always finishes
and commits first.

With ``XGW_PROCESSING_GUARANTEE=exactly_once`` (Apache Kafka) each partition's share of a batch
is decided and written, with its input offsets, in one transaction of that partition's own
producer, fenced against an older owner (gateway/runtime/transactions.py): a crash or a
fenced zombie leaves nothing a ``read_committed`` consumer sees twice.

Why a plain aiokafka loop and not a faust agent: see docs/architecture.md ("The worker
loop"). In short, a faust worker restarted after SIGKILL could stop reading some partitions
for good (a race between its stream and its seek to the committed offsets), and faust's
per-event overhead was larger than the decision itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    CorruptRecordException,
    KafkaError,
    UnsupportedCodecError,
)

from gateway.clock import utcnow
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.errors import BrokerError, StateError, XgwError
from gateway.logs import configure_logging, get_logger
from gateway.runtime.batch import BatchProcessor, Writer
from gateway.runtime.bootstrap import pipeline_config
from gateway.runtime.changelog import plain_fences, recover
from gateway.runtime.metrics import GatewayMetrics, serve_metrics
from gateway.runtime.producer import OutputWriter, producer_options
from gateway.runtime.rawfetch import RawReadError, fetch_record_set, ingress_records
from gateway.runtime.state import PartitionedState
from gateway.runtime.stopping import stop_on_signals
from gateway.runtime.tables import StatePending, StateSeenIds
from gateway.runtime.topic_admin import ensure_topics
from gateway.runtime.transactions import PartitionTransactions
from gateway.settings import Settings
from gateway.trust.watch import TrustWatcher
from gateway.trust.x509 import X509TrustStore
from schemas.registry import REGISTRY

log = get_logger("xgw.worker")
_SWEEP_INTERVAL_S = 60.0
_LAG_INTERVAL_S = 5.0
_EXPIRY_INTERVAL_S = 0.25  # how late after its deadline a timeout receipt may be sent
_RECOVERY_LIMIT_S = 120.0  # reading a partition's changelog up to the fence
_IDLE_POLL_MS = 200  # getmany returns as soon as records are fetched; this bounds an idle wait
_RAW_WAIT_MS = 50  # reading raw: how long a partition with nothing new may keep the answer
# What getmany raises on a record it cannot unpack: a header name that is not UTF-8, a bad CRC,
# a codec this install lacks, or bytes that break its reader.
_UNDECODABLE = (
    UnicodeDecodeError,
    CorruptRecordException,
    UnsupportedCodecError,
    ValueError,
    IndexError,
    struct.error,
)


class GatewayWorker:
    """Reads every ingress topic as member of the gateway's consumer group."""

    def __init__(self, settings: Settings, metrics: GatewayMetrics) -> None:
        # Trust, keys and policy first: a broken file stops the worker before it touches Kafka.
        self.settings = settings
        self.metrics = metrics
        self.trust = X509TrustStore.from_directory(settings.pki_dir)
        self.writer = OutputWriter(producer_options(settings), metrics)
        partitioner = self.writer.partitioner
        # Exactly-once: a transactional producer per partition owned; the writer is not started.
        self.transactions = (
            PartitionTransactions(producer_options(settings), settings.app_id, partitioner)
            if settings.processing_guarantee == "exactly_once"
            else None
        )
        partitions = list(range(settings.topic_partitions))
        config = pipeline_config(
            settings, self.trust, lambda key: partitioner(key, partitions, partitions)
        )
        self.state = PartitionedState(
            settings.topics.state,
            cache_bytes=settings.state_cache_bytes,
            directory=settings.state_dir,
        )
        window = timedelta(seconds=settings.replay_window_seconds)
        self.seen = StateSeenIds(self.state, settings.topics, window)
        self.pending = StatePending(self.state, window)
        pipeline = Pipeline(config, self.seen, self.pending)
        self.agencies = pipeline.agencies
        self.processor = BatchProcessor(
            pipeline, self.writer, metrics, utcnow, state_outbox=self.state.take_outbox
        )
        self.ingress_topics = sorted(settings.topics.ingress(a) for a in self.agencies)
        self._watcher = TrustWatcher(settings.pki_dir, self.trust)
        self._watcher.poll()  # the folder as of start-up, before the first record
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._raw: AIOKafkaClient | None = None  # reads what the consumer cannot decode
        # Per partition, the offset after the last record decided (since the last assignment).
        self._decided: dict[TopicPartition, int] = {}
        self._raw_bytes = max(1_048_576, 2 * settings.max_record_bytes)
        self._committing: asyncio.Task[None] | None = None
        # True between a completed assignment (state recovered) and the next revocation; batches
        # and timers touch the state only then.
        self._holding = False
        self._stop = asyncio.Event()
        self._failure: XgwError | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set, then finish the batch at hand and leave the group.

        Raises :class:`BrokerError` when the broker refused outputs for good or state could not
        be read back from it, and :class:`StateError` when the state store failed (a full
        disk): the worker cannot go on safely, and a supervisor restarts it.
        """
        self._stop = stop
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            **self._consumer_options(),
            group_id=s.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_seconds * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout_seconds * 1000),
            max_poll_records=s.batch_max,
            # The same partition number of every ingress topic goes to one member, which
            # holds that partition of the state (see gateway/runtime/state.py).
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        if self.transactions is None:
            await self.writer.start()
        log.info(
            "processing guarantee",
            guarantee=s.processing_guarantee,
            meaning="each batch's outputs and offsets commit in one transaction per partition"
            if self.transactions is not None
            else "outputs may repeat after a crash; agency clients drop repeats by event id",
        )
        try:
            self._consumer.subscribe(self.ingress_topics, listener=_Rebalance(self))
            await self._consumer.start()
            timers = [
                asyncio.create_task(_every(s.crl_refresh_seconds, self._reload_trust, self._fail)),
                asyncio.create_task(_every(_SWEEP_INTERVAL_S, self._sweep, self._fail)),
                asyncio.create_task(_every(_EXPIRY_INTERVAL_S, self._expire_requests, self._fail)),
                asyncio.create_task(_every(_LAG_INTERVAL_S, self._measure_lag, self._fail)),
            ]
            try:
                await self._consume(stop)
            except KafkaError as exc:
                raise BrokerError(f"the broker refused the batch's outputs: {exc!r}") from exc
            finally:
                for timer in timers:
                    timer.cancel()
                await asyncio.gather(*timers, return_exceptions=True)
        finally:
            async with self._lock:
                await self._committed()
            await self._consumer.stop()
            if self._raw is not None:
                await self._raw.close()
            if self.transactions is not None:
                await self.transactions.close()
            await self.writer.stop()
            self.state.close()
        if self._failure is not None:
            raise self._failure

    def _fail(self, error: XgwError) -> None:
        """Stop the worker because of ``error`` (the first one is raised by :meth:`run`)."""
        if self._failure is None:
            self._failure = error
        self._stop.set()

    def _consumer_options(self) -> dict[str, Any]:
        wait = self.settings.fetch_max_wait_ms
        # read_committed: the state changelog holds aborted transactions in exactly-once mode.
        return {**self.settings.consumer_options(), "fetch_max_wait_ms": wait}

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None  # noqa: S101 - set by run()
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.create_task(self._consumer.getmany(timeout_ms=_IDLE_POLL_MS))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                try:
                    batches = fetch.result()
                except _UNDECODABLE as exc:
                    # The client raises on the record each time it is fetched, and does not move
                    # on: read past it here (gateway/runtime/rawfetch.py).
                    log.warning("a fetched record cannot be decoded", error=type(exc).__name__)
                    async with self._lock:
                        await self._read_past()
                    continue
                if batches:
                    async with self._lock:
                        await self._process(batches)
        finally:
            stopping.cancel()

    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by run()
        owned: dict[TopicPartition, list[Any]] = {}
        for tp, batch in batches.items():
            if not (self._holding and self.state.owns(tp.partition)):
                if tp in consumer.assignment():
                    # Fetched before this partition's state was recovered: read it again later.
                    consumer.seek(tp, batch[0].offset)
                continue
            floor = self._decided.get(tp)
            if floor is not None and batch[0].offset < floor:
                # Fetched before a seek to where it had been already (the client hands out what
                # it fetched for the old position as well): decided once, not twice.
                batch = [r for r in batch if r.offset >= floor]  # noqa: PLW2901
                if not batch:
                    continue
            owned[tp] = batch
        records = [
            IngressRecord(
                topic=tp.topic,
                partition=tp.partition,
                offset=r.offset,
                key=r.key,
                value=r.value or b"",
                headers=tuple((k, v or b"") for k, v in r.headers or ()),
                timestamp_ms=r.timestamp or 0,
            )
            for tp, batch in owned.items()
            for r in batch
        ]
        if not records:
            return
        await self._decide(records, {tp: batch[-1].offset + 1 for tp, batch in owned.items()})

    async def _decide(
        self, records: list[IngressRecord], offsets: dict[TopicPartition, int]
    ) -> None:
        """Decide ``records``, write their outputs and commit ``offsets`` (the next to read).

        At least once, the commit overlaps with deciding the next batch (commits still go out
        in order). Exactly once, each partition's records and offsets are one transaction, the
        partitions' transactions run side by side, and all have committed on return.
        """
        if self.transactions is None:
            if records:
                await self.processor.process(records)
            await self._committed()
            self._decided.update(offsets)
            self._committing = asyncio.create_task(self._commit(offsets))
            return
        transactions = self.transactions
        by_partition: dict[int, list[IngressRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)

        async def one(partition: int) -> None:
            mine = by_partition.get(partition, [])

            async def work(writer: Writer) -> None:
                if mine:
                    await self.processor.process(mine, writer)

            own = {tp: offset for tp, offset in offsets.items() if tp.partition == partition}
            await transactions.run(partition, work, own, self.settings.app_id)

        partitions = sorted({tp.partition for tp in offsets})
        results = await asyncio.gather(*map(one, partitions), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        self._decided.update(offsets)

    async def _read_past(self) -> None:
        """Decide what the Kafka client could not, read as bytes, and seek past it.

        Which partition's record failed is not said, and the client may already have moved
        other partitions past records it drained in the failed call and then dropped. So every
        owned partition is read from where this worker's decisions end (its last batch, else
        the committed offset), records before and after an undecodable one are decided as
        usual, and each partition is set to where the reading ended.
        """
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by run()
        if not self._holding:
            return
        client = await self._raw_client()
        records: list[IngressRecord] = []
        offsets: dict[TopicPartition, int] = {}
        try:
            for tp in sorted(consumer.assignment()):
                if not self.state.owns(tp.partition):
                    continue
                start = await self._decided_up_to(tp)
                data = await fetch_record_set(
                    client, tp, start, max_bytes=self._raw_bytes, max_wait_ms=_RAW_WAIT_MS
                )
                read, offsets[tp] = ingress_records(tp, data, start)
                records.extend(read)
        except (BrokerError, KafkaError, RawReadError) as exc:
            log.warning("cannot read the partitions raw; trying again", error=repr(exc))
            await asyncio.sleep(1.0)
            return
        await self._decide(records, offsets)
        for tp, after in offsets.items():
            consumer.seek(tp, after)
        log.warning(
            "records read past the Kafka client",
            records=len(records),
            undecodable=sum(1 for r in records if r.undecodable),
        )

    async def _decided_up_to(self, tp: TopicPartition) -> int:
        """The offset after the last record of ``tp`` this worker decided, or the group's."""
        known = self._decided.get(tp)
        return known if known is not None else await self._group_offset(tp)

    async def _group_offset(self, tp: TopicPartition) -> int:
        """Where the group reads ``tp`` from: its committed offset, else the beginning."""
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by run()
        committed = await consumer.committed(tp)
        if committed is not None and committed >= 0:
            return int(committed)
        return int((await consumer.beginning_offsets([tp]))[tp])

    async def _raw_client(self) -> AIOKafkaClient:
        if self._raw is None:
            self._raw = AIOKafkaClient(**self.settings.kafka_options())
            await self._raw.bootstrap()
        return self._raw

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None  # noqa: S101 - set by run()
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced: the new owner decides these records again (same ids).
            log.warning("offsets not committed; records will be decided again", error=repr(exc))

    async def _committed(self) -> None:
        """Wait for the last batch's commit, if one is in flight."""
        if self._committing is not None:
            task, self._committing = self._committing, None
            await task

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        """Recover the state of newly assigned partitions before their first record."""
        partitions = frozenset(tp.partition for tp in assigned if tp.topic in self.ingress_topics)
        async with self._lock:
            missing = partitions
            try:
                missing = self.state.keep_only(partitions)
                if self.transactions is None:
                    fences = plain_fences(self.writer.producer)
                else:
                    # Fence the partitions' previous owners first (gateway/runtime/transactions.py).
                    await self.transactions.keep_only(partitions)
                    fences = self.transactions.fence
                read = await asyncio.wait_for(
                    recover(self.state, missing, fences, self._consumer_options()),
                    _RECOVERY_LIMIT_S,
                )
                if self.transactions is not None:
                    await self._seek_committed([tp for tp in assigned if tp.partition in missing])
            except (KafkaError, TimeoutError, StateError, BrokerError) as exc:
                # aiokafka only logs what a rebalance listener raises; the partitions would stay
                # assigned and never move. Stop instead, so a supervisor restarts the worker.
                with contextlib.suppress(StateError):  # a failed store is closed already
                    self.state.keep_only(frozenset())
                log.exception("state recovery failed; stopping")
                reason = f"cannot recover the state of partitions {sorted(missing)}: {exc}"
                failed = StateError if isinstance(exc, StateError) else BrokerError
                self._fail(failed(reason))
                return
            self._holding = True
        self.metrics.assigned_partitions.set(len(assigned))
        log.info(
            "partitions assigned and recovered",
            partitions=sorted(partitions),
            recovered=sorted(missing),
            changelog_records=read,
        )

    async def _seek_committed(self, tps: list[TopicPartition]) -> None:
        """Read ``tps`` from their committed offsets, as they are now that the old owner is fenced.

        The consumer may have fetched them while the fenced owner's last transaction was still
        completing; read again, they include what it committed.
        """
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by run()
        for tp in tps:
            start = await self._group_offset(tp)
            consumer.seek(tp, start)
            self._decided[tp] = start

    async def on_revoked(self) -> None:
        """Wait for the batch at hand to be written and committed."""
        async with self._lock:
            await self._committed()
            self._holding = False
            self._decided.clear()
            self.metrics.assigned_partitions.set(0)

    async def _reload_trust(self) -> None:
        if self._watcher.poll():
            self.metrics.crl_reloads.inc()
        self.metrics.revoked_certificates.set(self.trust.revoked_count)
        self.metrics.known_certificates.set(len(self.trust.certificates()))
        now = utcnow()
        expiry = self.trust.nearest_expiry(now)
        if expiry is not None:
            self.metrics.certificate_expiry.set((expiry - now).total_seconds())

    async def _expire_requests(self) -> None:
        async with self._lock:
            if not self._holding:
                return  # the partitions may be someone else's by now
            if self.transactions is None:
                await self.processor.expire()
            else:
                await self.transactions.run_each(self.state.partitions, self.processor.expire)
        self.metrics.pending_requests.set(self.pending.open_count())

    async def _sweep(self) -> None:
        async with self._lock:
            if not self._holding:
                return
            now = utcnow()
            if self.transactions is None:
                removed = self.seen.sweep(now) + self.pending.sweep(now)
                if removed:
                    await self.processor.flush_state()
            else:

                async def sweep(partition: int, writer: Writer) -> int:
                    gone = self.seen.sweep(now, partition) + self.pending.sweep(now, partition)
                    if gone:
                        await self.processor.flush_state(writer)
                    return gone

                removed = sum(await self.transactions.run_each(self.state.partitions, sweep))
            if removed:
                log.info("replay window swept", expired=removed)

    async def _measure_lag(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by run()
        for tp in consumer.assignment():
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue  # revoked by a rebalance since assignment() was read
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - position)
                self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    def __init__(self, worker: GatewayWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, _revoked: Collection[TopicPartition]) -> None:
        await self._worker.on_revoked()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._worker.on_assigned(assigned)


async def _every(
    seconds: float, action: Callable[[], Awaitable[None]], fatal: Callable[[XgwError], None]
) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await action()
        except (StateError, BrokerError) as exc:  # a failed store or transaction: cannot go on
            log.exception("state store or broker failed; stopping", task=action.__name__)
            fatal(exc)
            return
        except Exception:  # any other failing timer must not stop the worker
            log.exception("periodic task failed", task=action.__name__)


def run_worker(settings: Settings) -> None:
    """Run one gateway worker until SIGINT or SIGTERM."""
    configure_logging(settings.log_level, settings.log_format)
    metrics = GatewayMetrics(REGISTRY.types())
    worker = GatewayWorker(settings, metrics)

    async def main() -> None:
        await ensure_topics(settings, worker.agencies)
        server = serve_metrics(metrics, settings.metrics_host, settings.metrics_port)
        log.info("worker starting", metrics_url=server.url, settings=settings.masked())
        stop = asyncio.Event()
        stop_on_signals(stop, "worker")
        await worker.run(stop)
        log.info("worker stopped")

    asyncio.run(main())
