"""``xgw bench``: the gateway's throughput and latency, against baselines on the same data.

One run builds N ingress records (the mock agencies' mix, a few percent bad, see
:mod:`gateway.lab.load`) and measures, each phase under a fresh topic prefix and consumer group
on the same broker:

1. raw transport: a child process (:mod:`gateway.lab.forwarder`) forwards every ingress record
   to a delivery topic, with no checks (aiokafka consume -> produce, outputs acknowledged before
   offsets are committed);
2. the pure pipeline: :meth:`Pipeline.decide_batch` over every record in this process, in
   batches of ``XGW_BATCH_MAX`` as the worker takes them, no I/O;
3. the gateway as shipped: 1 worker process, then ``--workers`` processes in one group;
4. the exchange monitor (``xgw monitor``, faust) over the audit topic the 1-worker drain wrote:
   audit records per second, from its tables recovered until every fact was counted.

For 1 and 3 the consumers are started and have their partitions first; then the records are
written in one burst (many times faster than any consumer here drains them, so a backlog forms
at once) and the time is taken from the first record written to the last output read back
(a receipt per record for the gateway). Worker start-up is reported apart, not in the rate.
With the ``--workers`` gateway still running, agencies then publish at ``--rate`` through the
real client for ``--latency-seconds`` and each delivery's publish-to-arrival time is recorded.
``--duration`` runs only that fixed-rate load, for long, and samples the workers' RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from connectors.client import AgencyClient
from connectors.transport import KafkaTransport
from gateway.core import profile
from gateway.core.pipeline import IngressRecord
from gateway.core.policy import load_policy
from gateway.errors import XgwError
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.forgery import Forger
from gateway.lab.forwarder import Forwarder
from gateway.lab.load import (
    Arrivals,
    BenchRecord,
    Planned,
    ReceiptLedger,
    forger_for,
    load,
    mix_of,
    plan,
    proc_sample,
    seal_records,
)
from gateway.lab.processes import MonitorProcess, WorkerProcess, scrape
from gateway.lab.progress import progress_bars
from gateway.lab.report import BenchResult, GatewayRun, Latency, Sustained
from gateway.runtime.bootstrap import memory_pipeline
from gateway.runtime.topic_admin import ensure_topics
from gateway.settings import Settings
from gateway.trust.ca import ensure_exchange, load_signing_key
from gateway.trust.x509 import X509TrustStore
from gateway.wire.keys import SigningKey
from schemas.registry import REGISTRY

TUNING = (
    "processing_guarantee",
    "topic_partitions",
    "batch_max",
    "fetch_max_wait_ms",
    "producer_linger_seconds",
    "producer_max_batch_bytes",
    "state_cache_bytes",
)
_SETTLE_S = 1.0  # after every worker has partitions, let the group's last rebalance finish
_STALL_S = 45.0  # no new output for this long fails the run
_MONITOR_IDLE_S = 3.0  # the monitor counted nothing new for this long: it is done


@dataclass(frozen=True)
class BenchOptions:
    """What ``xgw bench`` runs."""

    records: int = 20_000
    workers: int = 2
    rate: float = 1000.0
    latency_seconds: float = 5.0
    duration: float | None = None  # sustained mode
    bad_percent: float = 3.0
    seed: int = 2026
    sample_interval_s: float = 5.0
    quiet: bool = False
    log_dir: Path = Path("var/logs")


@dataclass
class _Gateway:
    """Running gateway workers of one phase, and the reader of their receipts."""

    settings: Settings
    workers: list[WorkerProcess]
    ledger: ReceiptLedger


async def run_bench(settings: Settings, options: BenchOptions) -> BenchResult:
    """Run the benchmark (embedded broker unless ``settings.bootstrap_servers``)."""
    console = Console(stderr=True, quiet=options.quiet)
    broker: EmbeddedBroker | None = None
    if not settings.bootstrap_servers:
        broker = EmbeddedBroker()
        bootstrap = await asyncio.to_thread(broker.start)
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap})
    try:
        bench = _Bench(settings, options, console)
        result = await bench.run()
        where: dict[str, Any] = {"kind": "embedded tansu, in memory" if broker else "external"}
        sample = proc_sample(broker.pid) if broker else None
        if sample is not None:
            where |= {"peak_rss_bytes": sample.peak_rss_bytes, "cpu_s": round(sample.cpu_s, 2)}
        result.broker = where
        return result
    finally:
        if broker is not None:
            broker.stop()


class _Bench:
    def __init__(self, settings: Settings, options: BenchOptions, console: Console) -> None:
        self.settings = settings
        self.options = options
        self.console = console
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.policy = load_policy(settings.policy_file, REGISTRY)
        self.agencies = self.policy.agencies
        self.progress = progress_bars(console, label_width=22)
        self.keys: dict[str, SigningKey] = {}

    def _namespace(self, phase: str) -> Settings:
        prefix = f"bench-{self.run_id}-{phase}"
        return self.settings.model_copy(
            update={
                "topic_prefix": prefix,
                "app_id": f"xgw-{prefix}",
                "metrics_port": 0,
                "log_format": "json",
            }
        )

    def _forger(self) -> Forger:
        return forger_for(self.settings, self.keys)

    def _plan(self, seed: int) -> Iterator[Planned]:
        return plan(
            self._forger(),
            bad_fraction=self.options.bad_percent / 100,
            seed=seed,
            clock=lambda: datetime.now(UTC),
        )

    async def run(self) -> BenchResult:
        started = time.monotonic()
        await asyncio.to_thread(ensure_exchange, self.settings.pki_dir, self.agencies)
        self.keys = {a: load_signing_key(self.settings.pki_dir, a) for a in self.agencies}
        result = BenchResult(n=0, mix={}, expected={})
        result.settings = {name: getattr(self.settings, name) for name in TUNING}
        with self.progress:
            if self.options.duration is not None:
                await self._sustained(result, self.options.duration)
            else:
                await self._throughput(result)
        result.machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
        result.elapsed_s = time.monotonic() - started
        return result

    # --- the throughput run ------------------------------------------------------------------

    async def _throughput(self, result: BenchResult) -> None:
        options = self.options
        records = await self._records(options.records)
        result.n, result.mix = len(records), mix_of(records)
        result.expected, result.pipeline_msg_s = self._pure_pipeline(records)
        result.raw_elapsed_s = await self._raw_transport(records)
        result.raw_msg_s = len(records) / result.raw_elapsed_s
        result.gateway.append(await self._gateway(records, 1, result.expected))
        await self._monitor(result, self._namespace("g1"))
        if options.workers > 1:

            async def latency(gateway: _Gateway) -> None:
                result.latency = await self._latency(gateway, len(records), options.latency_seconds)

            result.gateway.append(
                await self._gateway(records, options.workers, result.expected, latency)
            )
        else:
            async with self._running(self._namespace("lat"), 1) as (gateway, _):
                result.latency = await self._latency(gateway, 0, options.latency_seconds)

    async def _monitor(self, result: BenchResult, drained: Settings) -> None:
        """Time an exchange monitor over the audit topic the 1-worker drain left behind."""
        records = result.gateway[0].receipts  # one audit record per receipt
        settings = drained.model_copy(
            update={"monitor_app_id": f"{drained.topic_prefix}-monitor", "monitor_port": 0}
        )
        task = self.progress.add_task("exchange monitor", total=records)
        monitor = MonitorProcess(settings, self.options.log_dir / f"{settings.monitor_app_id}.log")
        monitor.start()
        try:
            await monitor.wait_ready(120)
            started = time.monotonic()
            read_s = counted_s = 0.0
            counted, last_change = -1.0, time.monotonic()
            while time.monotonic() - last_change < _MONITOR_IDLE_S:
                samples = await asyncio.to_thread(scrape, monitor.metrics_url)
                read = samples.get("xgw_monitor_audit_records_total{}", 0.0)
                facts = sum(v for k, v in samples.items() if k.startswith("xgw_monitor_facts_"))
                self.progress.update(task, completed=read)
                if read >= records and not read_s:
                    read_s = time.monotonic() - started
                if facts != counted:
                    counted, last_change = facts, time.monotonic()
                    counted_s = last_change - started
                await asyncio.sleep(0.1)
            if read_s:
                result.monitor_audit_records = records
                result.monitor_read_s = read_s
                result.monitor_counted_s = max(counted_s, read_s)
        finally:
            monitor.stop()

    async def _records(self, n: int) -> list[BenchRecord]:
        task = self.progress.add_task("signing records", total=n)
        trust = X509TrustStore.from_directory(self.settings.pki_dir)
        return await seal_records(
            self._plan(self.options.seed),
            n,
            self.keys,
            trust,
            lambda done: self.progress.update(task, completed=done),
        )

    def _pure_pipeline(self, records: Sequence[BenchRecord]) -> tuple[dict[str, int], float]:
        """Decide every record in this process; return the outcomes and records per second."""
        settings = self._namespace("pure")
        pipeline = memory_pipeline(settings)
        inputs = [
            IngressRecord(settings.topics.ingress(r.agency), 0, i, r.key, r.value)
            for i, r in enumerate(records)
        ]
        task = self.progress.add_task("pure pipeline", total=len(inputs))
        outcomes: Counter[str] = Counter()
        started = time.perf_counter()
        batch = settings.batch_max
        for start in range(0, len(inputs), batch):
            # As the worker does: one clock reading and one stamp signature per batch.
            for decision in pipeline.decide_batch(inputs[start : start + batch], datetime.now(UTC)):
                outcomes[decision.reason.value if decision.reason else "accepted"] += 1
            self.progress.update(task, completed=min(start + batch, len(inputs)))
        elapsed = time.perf_counter() - started
        return dict(outcomes), len(inputs) / elapsed

    async def _raw_transport(self, records: Sequence[BenchRecord]) -> float:
        """Seconds for the raw loop to forward every record (first written -> last read)."""
        settings = self._namespace("raw")
        await ensure_topics(settings, self.agencies)
        task = self.progress.add_task("raw transport", total=len(records))
        outputs = Arrivals(settings, [settings.topics.deliver(a) for a in self.agencies])
        forwarder = Forwarder(settings, self.options.log_dir / f"{settings.topic_prefix}.log")
        try:
            await outputs.start()
            await forwarder.start()
            started = time.time()
            await load(settings, records, lambda _: None)
            await outputs.wait_for(
                len(records),
                stall_s=_STALL_S,
                progress=lambda done: self.progress.update(task, completed=done),
                what="forwarded records",
            )
            return outputs.batches[-1][0] - started
        finally:
            await forwarder.stop()
            await outputs.stop()

    async def _gateway(
        self,
        records: Sequence[BenchRecord],
        workers: int,
        expected: dict[str, int],
        then: Callable[[_Gateway], Any] | None = None,
    ) -> GatewayRun:
        """Drain ``records`` through ``workers`` gateway processes; ``then`` runs before stop."""
        label = f"gateway x{workers}"
        task = self.progress.add_task(f"{label} (starting)", total=len(records))
        async with self._running(self._namespace(f"g{workers}"), workers) as (gateway, startup):
            self.progress.update(task, description=label)
            before = [proc_sample(w.pid) for w in gateway.workers]
            started = time.time()
            load_s = await load(gateway.settings, records, lambda _: None)
            await gateway.ledger.arrivals.wait_for(
                gateway.ledger.complete(len(records)),
                stall_s=_STALL_S,
                progress=lambda done: self.progress.update(task, completed=min(done, len(records))),
                what="receipts",
            )
            after = [proc_sample(w.pid) for w in gateway.workers]
            receipts = gateway.ledger.receipts.values()
            outcomes = Counter(r.outcome for r in receipts)
            run = GatewayRun(
                workers=workers,
                records=len(records),
                elapsed_s=max(r.arrived for r in receipts) - started,
                load_s=load_s,
                startup_s=startup,
                receipts=len(gateway.ledger.receipts),
                outcomes=dict(outcomes),
                counts_match=dict(outcomes) == expected,
                cpu_s=sum(a.cpu_s - b.cpu_s for a, b in zip(after, before, strict=True) if a and b),
                peak_rss_bytes=[a.peak_rss_bytes for a in after if a],
                rss_start_bytes=[b.rss_bytes for b in before if b],
                rss_end_bytes=[a.rss_bytes for a in after if a],
            )
            if then is not None:
                await then(gateway)
            return run

    @contextlib.asynccontextmanager
    async def _running(
        self, settings: Settings, count: int
    ) -> AsyncIterator[tuple[_Gateway, float]]:
        """``count`` worker processes in one group, ready, and a reader of their receipts."""
        await ensure_topics(settings, self.agencies)
        receipts = Arrivals(settings, [settings.topics.receipts(a) for a in self.agencies])
        workers = [
            WorkerProcess(settings, self.options.log_dir / f"{settings.topic_prefix}-w{i}.log")
            for i in range(count)
        ]
        try:
            await receipts.start()
            started = time.monotonic()
            for worker in workers:
                worker.start()
            await asyncio.gather(*(w.wait_ready(120) for w in workers))
            startup = time.monotonic() - started
            await asyncio.sleep(_SETTLE_S)
            yield _Gateway(settings, workers, ReceiptLedger(receipts)), startup
        finally:
            await receipts.stop()
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))

    # --- fixed-rate load: latency, and the sustained run ------------------------------------

    async def _latency(
        self,
        gateway: _Gateway,
        receipts_before: int,
        seconds: float,
        kinds: Counter[str] | None = None,
    ) -> Latency:
        """Publish at ``--rate`` for ``seconds`` through the real client; time each delivery."""
        settings = gateway.settings
        rate = self.options.rate
        total = max(1, round(rate * seconds))
        sent_at: dict[str, float] = {}
        timed: dict[tuple[str, str], float] = {}  # (event id, recipient) -> latency in ms

        def delivered(arrived: float, values: list[bytes]) -> None:
            for value in values:
                event = json.loads(value)
                sent = sent_at.get(event["id"])
                if sent is not None:  # else from the drain before, or the broker's end offset
                    where = (event["id"], str(event.get(profile.RECIPIENT)))
                    timed.setdefault(where, (arrived - sent) * 1000)

        deliveries = Arrivals(
            settings,
            [settings.topics.deliver(a) for a in self.agencies],
            from_end=True,
            sink=delivered,
        )
        trust = X509TrustStore.from_directory(settings.pki_dir)
        clients = {
            agency: AgencyClient(
                agency=agency,
                signing_key=self.keys[agency],
                trust=trust,
                transport=KafkaTransport(settings.kafka_options()),
                topics=settings.topics,
            )
            for agency in self.agencies
        }
        task = self.progress.add_task(f"latency @{rate:g}/s", total=total)
        try:
            await deliveries.start()
            first, last = await self._publish(clients, sent_at, total, task, kinds)
            await gateway.ledger.arrivals.wait_for(
                gateway.ledger.complete(receipts_before + total),
                stall_s=_STALL_S,
                what="receipts",
            )
            wanted = sum(
                r.recipients
                for r in gateway.ledger.receipts.values()
                if r.outcome == "accepted" and r.event_id in sent_at
            )
            with contextlib.suppress(XgwError):  # reported as missing deliveries
                await deliveries.wait_for(
                    lambda: len(timed) >= wanted, stall_s=5.0, what="deliveries"
                )
            return Latency(
                workers=len(gateway.workers),
                rate_msg_s=rate,
                seconds=seconds,
                sent=total,
                sending_s=last - first,
                latencies_ms=list(timed.values()),
                missing_deliveries=max(0, wanted - len(timed)),
            )
        finally:
            await deliveries.stop()
            for client in clients.values():
                await client.close()

    async def _publish(
        self,
        clients: dict[str, AgencyClient],
        sent_at: dict[str, float],
        total: int,
        task: Any,
        kinds: Counter[str] | None,
    ) -> tuple[float, float]:
        """Send ``total`` records of the mix at the offered rate; return first and last send."""
        items = self._plan(self.options.seed + 1)
        limit = asyncio.Semaphore(512)
        pending: set[asyncio.Task[None]] = set()
        last_police: list[tuple[bytes, str]] = []
        police_sent = asyncio.Event()

        async def send(item: Planned) -> None:
            async with limit:
                client = clients[item.agency]
                if item.model is not None:
                    event_id = str(uuid.uuid4())
                    sent_at[event_id] = time.time()
                    published = await client.publish(item.model, event_id=event_id)
                    if item.agency == "police":
                        last_police[:] = [(published.record, published.subject)]
                        police_sent.set()
                elif item.repeat:
                    await police_sent.wait()  # the first police event may be on its way
                    record, subject = last_police[0]
                    await client.send_raw(record, key=subject.encode())
                else:
                    await client.send_raw(item.raw, key=item.key)

        interval = 1.0 / self.options.rate
        first = next_at = time.monotonic()
        for n in range(total):
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += interval
            item = next(items)
            if kinds is not None:
                kinds[item.kind] += 1
            job = asyncio.create_task(send(item))
            pending.add(job)
            job.add_done_callback(pending.discard)
            if n % 100 == 0:
                self.progress.update(task, completed=n)
        last = time.monotonic()
        await asyncio.gather(*pending)
        self.progress.update(task, completed=total)
        return first, last

    async def _sustained(self, result: BenchResult, duration: float) -> None:
        """A long fixed-rate run with the ``--workers`` gateway, sampling worker RSS."""
        options = self.options
        kinds: Counter[str] = Counter()
        async with self._running(self._namespace("sus"), options.workers) as (gateway, _):
            samples: list[list[tuple[float, int]]] = [[] for _ in gateway.workers]
            started = time.monotonic()

            async def sample() -> None:
                while True:
                    gateway.ledger.update()  # parse receipts as they come: bounded memory
                    for i, worker in enumerate(gateway.workers):
                        got = proc_sample(worker.pid)
                        if got is not None:
                            samples[i].append((time.monotonic() - started, got.rss_bytes))
                    await asyncio.sleep(options.sample_interval_s)

            sampler = asyncio.create_task(sample())
            try:
                result.latency = await self._latency(gateway, 0, duration, kinds=kinds)
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            peaks = [proc_sample(w.pid) for w in gateway.workers]
        result.n = sum(kinds.values())
        result.mix = {"by_type": dict(sorted(kinds.items()))}
        result.sustained = Sustained(
            duration_s=duration,
            interval_s=options.sample_interval_s,
            window_s=min(60.0, duration / 4),
            samples=samples,
            peak_rss_bytes=[p.peak_rss_bytes if p else 0 for p in peaks],
        )
