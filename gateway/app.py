"""The composition root: builds the pipeline, the faust app, its topic and agent from settings.

Nothing here runs at import time; :func:`build_worker` wires everything explicitly.

Start-up and latency settings (measured on the embedded broker, see docs/operations.md):
a consumer group join is held by the broker for half the session timeout, so faust's default
60 s session made a worker wait about 30 s before processing; a 6 s session with 0.5 s
heartbeats brings it to a few seconds. faust hard-codes ``fetch_max_wait_ms=1500`` and the
embedded broker only re-checks a long-poll at half the remaining wait, which put seconds of
latency on an idle stream; :class:`_TunedConsumerThread` sets it from settings instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import EventT, TransportT

from gateway.envelope import Limits
from gateway.logs import get_logger
from gateway.metrics import GatewayMetrics
from gateway.pipeline import Decision, IngressRecord, Pipeline, PipelineConfig
from gateway.pki import load_signing_key
from gateway.policy import load_policy
from gateway.replay import ReplayWindow
from gateway.replay_table import TableSeenIds, replay_table
from gateway.settings import Settings
from gateway.trust import GATEWAY_OWNER
from gateway.trust_watch import TrustWatcher
from gateway.x509trust import X509TrustStore
from schemas.registry import REGISTRY

log = get_logger("xgw.worker")
_SWEEP_INTERVAL_S = 60.0
_LAG_INTERVAL_S = 5.0
Clock = Callable[[], datetime]


def pipeline_config(settings: Settings, trust: X509TrustStore) -> PipelineConfig:
    """Everything the decision depends on, loaded from settings: keys, policy, limits."""
    return PipelineConfig(
        topics=settings.topics,
        trust=trust,
        registry=REGISTRY,
        policy=load_policy(settings.policy_file, REGISTRY),
        gateway_key=load_signing_key(settings.pki_dir, GATEWAY_OWNER),
        max_record_bytes=settings.max_record_bytes,
        limits=Limits(settings.max_json_depth, settings.max_string_chars),
        max_event_age=timedelta(seconds=settings.max_event_age_seconds),
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
    )


def memory_pipeline(settings: Settings) -> Pipeline:
    """A pipeline whose replay window lives in memory (benchmarks, tools, tests)."""
    window = ReplayWindow(
        timedelta(seconds=settings.replay_window_seconds), settings.replay_max_entries
    )
    return Pipeline(
        pipeline_config(settings, X509TrustStore.from_directory(settings.pki_dir)), window
    )


class _TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 20

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # faust passes a fixed 1500 ms; aiokafka reads the attribute when the fetcher starts.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # noqa: SLF001
        return consumer


def _tuned_transport(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    thread = type(
        "TunedConsumerThread", (_TunedConsumerThread,), {"fetch_max_wait_ms": fetch_max_wait_ms}
    )

    class TunedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return thread(self, loop=self.loop, beacon=self.beacon)  # type: ignore[no-any-return]

    class TunedTransport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    return TunedTransport


class GatewayApp(faust.App):
    """A faust app whose Kafka consumer uses the configured fetch wait."""

    transport_class: type[faust_aiokafka.Transport] = faust_aiokafka.Transport

    def _new_transport(self) -> TransportT:
        return self.transport_class(self.conf.broker_consumer, self)


Sender = Callable[..., Any]


@dataclass
class BatchProcessor:
    """Runs the pipeline over a batch and writes all outputs before the batch is acknowledged."""

    pipeline: Pipeline
    metrics: GatewayMetrics
    clock: Clock
    retry_delay: float = 0.5
    # Called with the ingress partitions of accepted records once their outputs are written.
    after_outputs: Callable[[set[int]], Awaitable[None]] | None = None

    async def process(self, records: Sequence[IngressRecord], send: Sender) -> list[Decision]:
        """Decide every record, write every output, wait for the broker to acknowledge them."""
        started = time.perf_counter()
        now = self.clock()
        decisions = [self.pipeline.decide(record, now) for record in records]
        outputs = [o for d in decisions for o in d.outputs]
        delay = self.retry_delay
        while True:
            try:
                futures = [
                    await send(o.topic, o.key, o.value, None, None, list(o.headers))
                    for o in outputs
                ]
                await asyncio.gather(*futures)
                break
            except KafkaError as exc:
                # Nothing is acknowledged upstream until every output is written, so writing
                # the whole batch again is safe; duplicates are removed by the agency client.
                self.metrics.output_retries.inc()
                log.warning("outputs not acknowledged; retrying", error=repr(exc), delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        accepted = {r.partition for r, d in zip(records, decisions, strict=True) if d.accepted}
        if accepted and self.after_outputs is not None:
            await self.after_outputs(accepted)
        acked_at = time.time()
        for decision in decisions:
            self.metrics.observe(decision, acked_at)
            if not decision.accepted:
                log.info(
                    "rejected",
                    agency=decision.agency,
                    event_id=decision.event_id,
                    reason=decision.reason,
                    detail=decision.detail,
                )
        self.metrics.batch_size.observe(len(records))
        self.metrics.processing.observe(time.perf_counter() - started)
        return decisions


def _record(event: EventT[bytes]) -> IngressRecord:
    message = event.message
    headers = message.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return IngressRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key if isinstance(message.key, bytes) else None,
        value=message.value if isinstance(message.value, bytes) else b"",
        headers=tuple((k, v if isinstance(v, bytes) else b"") for k, v in pairs),
    )


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The faust form of the Kafka security settings (the same ones the clients use)."""
    options = settings.kafka_options()
    if settings.sasl_mechanism:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=settings.sasl_mechanism,
            ssl_context=options.get("ssl_context"),
        )
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None


@dataclass(frozen=True)
class Worker:
    """A wired worker: the faust app and the parts a caller may want to look at."""

    app: GatewayApp
    processor: BatchProcessor
    trust: X509TrustStore
    seen: TableSeenIds


def build_worker(settings: Settings, metrics: GatewayMetrics, data_dir: Path) -> Worker:
    """The faust app with its replay table, one agent over every ingress topic, and timers."""
    # Trust, keys and policy first: a broken file stops the worker before it touches Kafka.
    trust = X509TrustStore.from_directory(settings.pki_dir)
    config = pipeline_config(settings, trust)
    app = _new_app(settings, data_dir)
    table = replay_table(app, "xgw-replay", settings.topic_partitions)
    seen = TableSeenIds(table, timedelta(seconds=settings.replay_window_seconds))

    async def mark_changelog_ends(partitions: set[int]) -> None:
        await app.producer.flush()  # the batch's entries go out first, in batches of their own
        for partition in partitions:
            seen.mark_end(partition)
        await app.producer.flush()

    processor = BatchProcessor(
        Pipeline(config, seen),
        metrics,
        utcnow,
        after_outputs=mark_changelog_ends if settings.replay_changelog_markers else None,
    )
    ingress_topics = frozenset(settings.topics.ingress(a) for a in processor.pipeline.agencies)
    ingress = app.topic(
        *sorted(ingress_topics),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )

    async def gateway(stream: faust.StreamT[bytes]) -> None:
        # take_events acknowledges a batch only when this body returns, i.e. after every
        # output of the batch is acknowledged by the broker: offsets never run ahead of outputs.
        # take_events exists on faust.Stream but is missing from the StreamT interface.
        batches = cast(faust.Stream[bytes], stream).take_events(
            settings.batch_max, within=settings.batch_within_seconds
        )
        async for events in batches:
            await processor.process([_record(e) for e in events], app.producer.send)

    app.agent(ingress, name="xgw.gateway")(gateway)

    watcher = TrustWatcher(settings.pki_dir, trust)
    watcher.poll()  # the folder as of start-up, before the first record

    async def reload_crl() -> None:
        if watcher.poll():
            metrics.crl_reloads.inc()
        metrics.revoked_certificates.set(trust.revoked_count)
        metrics.known_certificates.set(len(trust.certificates()))
        now = utcnow()
        expiry = trust.nearest_expiry(now)
        if expiry is not None:
            metrics.certificate_expiry.set((expiry - now).total_seconds())

    async def measure_lag() -> None:
        for tp in app.consumer.assignment():
            if tp.topic not in ingress_topics:
                continue
            try:
                position = await app.consumer.position(tp)
            except KafkaError:
                continue  # revoked by a rebalance since assignment() was read
            if position is not None:
                lag = max(0, app.consumer.highwater(tp) - position)
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def sweep_replay_window() -> None:
        removed = seen.sweep(utcnow())
        if removed:
            log.info("replay window swept", expired=removed)

    app.timer(settings.crl_refresh_seconds, name="xgw.crl")(reload_crl)
    app.timer(_SWEEP_INTERVAL_S, name="xgw.replay-sweep")(sweep_replay_window)
    app.timer(_LAG_INTERVAL_S, name="xgw.lag")(measure_lag)

    async def on_ready(_sender: Any, *_: Any, **__: Any) -> None:
        # Sent after table recovery: from here on the worker decides records.
        assigned = len(app.consumer.assignment())
        metrics.assigned_partitions.set(assigned)
        log.info("partitions assigned and recovered", count=assigned, replay_entries=len(seen))

    app.on_rebalance_complete.connect(on_ready)  # type: ignore[arg-type] # faust types receivers without **kwargs
    return Worker(app, processor, trust, seen)


def _new_app(settings: Settings, data_dir: Path) -> GatewayApp:
    GatewayApp.transport_class = _tuned_transport(settings.fetch_max_wait_ms)
    brokers = [f"kafka://{server}" for server in settings.bootstrap_servers.split(",")]
    return GatewayApp(
        settings.app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings),
        datadir=str(data_dir),
        store="memory://",
        web_enabled=False,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_rebalance_timeout=settings.rebalance_timeout_seconds,
        broker_request_timeout=max(30.0, settings.session_timeout_seconds + 5),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger=settings.producer_linger_seconds,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        stream_wait_empty=False,
    )


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
