"""``xgw demo``: embedded broker, one gateway worker, mock agencies, and a summary.

The police publish a stream of residents and address changes, health records vaccinations
(not routed yet, so refused with ``no_recipients``), and now and then a deliberately bad record
is written, one kind per reason code. Health, education and land receive what the policy grants
them; every record gets a receipt. The summary compares what the agencies saw with what the
worker's own metrics say.

Meanwhile the four mock agencies play life events one after another (births, deaths, land
transfers, school admissions with their verification requests to the police), each agency's
connector reacting to its deliveries. The summary shows, per story, the outcomes, the requests
answered or timed out, and the deliveries per recipient beside those the policy implies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connectors.checkpoints import CheckpointKeeper
from connectors.client import AgencyClient, PublishedEvent, Receipt, ReceivedEvent
from connectors.errors import RequestRefused, RequestTimedOut
from connectors.mock.health import HealthConnector
from connectors.mock.lifeevents import CONNECTORS
from connectors.mock.police import PoliceConnector
from connectors.transport import KafkaTransport, Transport
from gateway.audit.chain import Report
from gateway.audit.ops import verify_store
from gateway.audit.store import open_store
from gateway.core.policy import Policy, load_policy
from gateway.errors import ConfigError
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.forgery import Forger, certificate_authority
from gateway.lab.life import (
    STORY_ROUNDS,
    Life,
    LifeSummary,
    NotingTransport,
    build_life,
    listen,
    stories_table,
)
from gateway.lab.processes import MonitorProcess, WorkerProcess, scrape
from gateway.lab.progress import progress_bars
from gateway.monitor.rules import REJECTION_SPIKE
from gateway.runtime.topic_admin import ensure_topics
from gateway.settings import Settings
from gateway.trust.ca import ensure_exchange, load_signing_key
from gateway.trust.checkpoint import Checkpoint
from gateway.trust.x509 import X509TrustStore
from gateway.wire.keys import SigningKey
from schemas.police import ResidenceVerificationRequested, ResidentRegistered
from schemas.registry import REGISTRY

BAD_EVERY = 20  # one deliberately bad record per this many events
BULK_REQUESTER = "education"
BULK_LOOKUPS = 120  # distinct residents; the monitor's floor is XGW_MONITOR_BULK_MIN_SUBJECTS (50)
BULK_TIMEOUT_S = 2.0
MONITOR_WAIT_S = 15.0
VACCINATION_EVERY = 15


@dataclass(frozen=True)
class DemoOptions:
    """What the demo does."""

    duration: float = 20.0
    rate: float = 100.0
    seed: int = 2026
    quiet: bool = False
    settle_timeout: float = 30.0
    story_rounds: int = STORY_ROUNDS


@dataclass
class DemoSummary:
    """What happened, as the agencies saw it and as the worker counted it."""

    published: int = 0
    accepted: int = 0
    delivered: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    receipts: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    worker_startup_s: float = 0.0
    metrics_url: str = ""
    worker_log: str = ""
    bootstrap_servers: str = ""
    refused_by_clients: int = 0
    worker_metrics: dict[str, float] = field(default_factory=dict)
    missing_receipts: int = 0
    audit_entries: int = 0
    audit_total: int = 0
    audit_ok: bool = False
    audit_report: str = ""
    audit_store: str = ""
    checkpoint_files: list[str] = field(default_factory=list)  # one per agency
    checkpoint_held: int = 0  # the entry of the newest checkpoint every agency holds
    consistency: str = ""  # the RFC 9162 proof from the agencies' checkpoint to the head
    sample_personal_id: str = ""  # a resident the demo registered, for `xgw audit subject`
    life: LifeSummary = field(default_factory=LifeSummary)
    bulk_lookups: int = 0  # look-ups of distinct residents played at once (the misuse scenario)
    monitor_url: str = ""
    monitor: dict[str, Any] = field(default_factory=dict)  # the monitor's view at the end

    @property
    def ok(self) -> bool:
        """Every record got a receipt and an audit entry, no client refused a delivery.

        And every life event caused exactly the deliveries the policy implies.
        """
        return (
            self.missing_receipts == 0
            and self.refused_by_clients == 0
            and self.audit_ok
            and self.audit_entries == self.published + self.life.decisions + 2 * self.bulk_lookups
            and self.life.ok
        )

    def percentile(self, q: float) -> float:
        """Latency percentile in ms (0 when nothing was delivered)."""
        if len(self.latencies_ms) < 2:  # noqa: PLR2004 - quantiles needs two points
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def as_dict(self) -> dict[str, Any]:
        """The machine-readable summary (``--json``)."""
        return {
            "published": self.published,
            "accepted": self.accepted,
            "delivered": sum(self.delivered.values()),
            "delivered_by_agency": dict(sorted(self.delivered.items())),
            "rejected": dict(sorted(self.rejected.items())),
            "receipts": self.receipts,
            "missing_receipts": self.missing_receipts,
            "refused_by_clients": self.refused_by_clients,
            "msgs_per_s": round(self.published / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "worker_startup_s": round(self.worker_startup_s, 2),
            "elapsed_s": round(self.elapsed_s, 2),
            "metrics_url": self.metrics_url,
            "worker_log": self.worker_log,
            "audit_entries": self.audit_entries,
            "audit_verified": self.audit_ok,
            "audit_store": self.audit_store,
            "checkpoint_files": self.checkpoint_files,
            "checkpoint_held_by_agencies": self.checkpoint_held,
            "sample_personal_id": self.sample_personal_id,
            "life_events": self.life.as_dict(),
            "bulk_lookups": self.bulk_lookups,
            "monitor_url": self.monitor_url,
            "monitor_top_requesters": self.monitor.get("top_requesters", {}),
            "monitor_alerts": self.monitor.get("alerts", []),
            "ok": self.ok,
        }


class _Tracker:
    """Publish times, receipts and deliveries, keyed by event id."""

    def __init__(self) -> None:
        self.sent_at: dict[str, float] = {}
        self.records = 0
        self.receipts: dict[str, Receipt] = {}
        self.deliveries: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self.changed = asyncio.Event()
        self.elsewhere: set[str] = set()  # ids of the bulk look-up: not the stream's records

    def sent(self, event_id: str | None, at: float | None = None) -> None:
        self.records += 1
        if event_id is not None and at is not None:
            self.sent_at[event_id] = at

    def receipt(self, receipt: Receipt) -> None:
        if receipt.event_id in self.elsewhere:
            return
        self.receipts[receipt.id] = receipt
        self.changed.set()

    def delivery(self, agency: str, event: ReceivedEvent) -> None:
        sent = self.sent_at.get(event.id)
        if sent is None:
            return  # from an earlier run on a shared broker
        self.deliveries[agency] += 1
        self.latencies_ms.append((time.time() - sent) * 1000)


async def run_demo(settings: Settings, options: DemoOptions) -> DemoSummary:
    """Run the whole demo and return its summary; one demo at a time in a folder."""
    with _only_demo(Path("var") / "demo.lock"):
        return await _run_with_broker(settings, options)


@contextlib.contextmanager
def _only_demo(lock_path: Path) -> Iterator[None]:
    """Hold ``lock_path`` for the run: two demos in one folder share its audit store and PKI."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise ConfigError(
                f"another xgw demo (pid {holder}) is running in this folder ({lock_path}); "
                "wait for it or run the demo from another folder"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def isolated(settings: Settings, run_id: str) -> Settings:
    """A demo against a broker given by the user: its own topics, groups and audit store.

    It must never join the groups of an exchange running there, nor append to its audit trail.
    """
    return settings.model_copy(
        update={
            "topic_prefix": f"demo-{run_id}",
            "app_id": f"xgw-demo-{run_id}",
            "audit_group": f"xgw-demo-audit-{run_id}",
            "monitor_app_id": f"xgw-demo-monitor-{run_id}",
            "audit_store": f"sqlite:///var/demo/{run_id}/audit.db",
        }
    )


async def _run_with_broker(settings: Settings, options: DemoOptions) -> DemoSummary:
    console = Console(stderr=True, quiet=options.quiet)
    broker: EmbeddedBroker | None = None
    if settings.bootstrap_servers:
        settings = isolated(settings, datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
        console.print(
            f"[green]exchange[/] on {settings.bootstrap_servers} with topics "
            f"{settings.topic_prefix}.* and audit store {settings.audit_store} of its own"
        )
    else:
        broker = EmbeddedBroker()
        with console.status("starting the embedded broker"):
            bootstrap = await asyncio.to_thread(broker.start)
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap})
        console.print(f"[green]broker[/] embedded Tansu on {bootstrap} (in memory)")
    try:
        return await _run(settings, options, console)
    finally:
        if broker is not None:
            broker.stop()


async def _run(settings: Settings, options: DemoOptions, console: Console) -> DemoSummary:
    policy = load_policy(settings.policy_file, REGISTRY)
    created = ensure_exchange(settings.pki_dir, policy.agencies)
    if created:
        console.print(
            f"[green]pki[/] exchange CA and {len(created)} certificates under {settings.pki_dir}"
        )
    await ensure_topics(settings, policy.agencies)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    worker = WorkerProcess(
        settings.model_copy(update={"metrics_port": 0}), Path("var/logs") / f"worker-{run_id}.log"
    )
    summary = DemoSummary(
        metrics_url=worker.metrics_url,
        worker_log=str(worker.log_path),
        bootstrap_servers=settings.bootstrap_servers,
        audit_store=settings.audit_store,
    )
    auditor = WorkerProcess(settings, Path("var/logs") / f"audit-{run_id}.log", ("audit", "writer"))
    monitor = MonitorProcess(
        settings.model_copy(update={"monitor_port": 0}), Path("var/logs") / f"monitor-{run_id}.log"
    )
    summary.monitor_url = monitor.url
    audit_before = await asyncio.to_thread(_audit_count, settings)
    worker.start()
    auditor.start()
    monitor.start()
    clients: list[AgencyClient] = []
    tasks: list[asyncio.Task[None]] = []
    keepers: list[CheckpointKeeper] = []
    try:
        summary.worker_startup_s = await _ready(worker, monitor, console)
        keys = {a: load_signing_key(settings.pki_dir, a) for a in policy.agencies}
        police, health, life = _agencies(settings, policy, keys, options.seed, clients)
        tracker = _Tracker()
        harvester = _bulk_client(settings, keys, clients, tracker.elsewhere)
        tasks, readiness = listen(tracker, life, run_id)
        keepers = _hold_checkpoints(clients, Path("var/demo") / run_id / "checkpoints", tasks)
        with console.status("agencies subscribing"):
            await asyncio.wait_for(_all_set(readiness), 60)
        started = time.monotonic()
        playing = asyncio.create_task(life.play(options.story_rounds, console))
        tasks.append(playing)
        await _publish(tracker, police, health, keys, settings, options, console)
        summary.bulk_lookups = await _bulk_lookup(harvester, police, console)
        summary.sample_personal_id = police.register[0].personal_id if police.register else ""
        await _settle(tracker, options, console)
        summary.elapsed_s = time.monotonic() - started
        with console.status("life events finishing"):
            await playing
            await life.settle(options.settle_timeout)
        _fill(summary, tracker, clients)
        summary.life = life.summary()
        with contextlib.suppress(OSError):
            summary.worker_metrics = await asyncio.to_thread(scrape, worker.metrics_url)
        await _audit_and_monitor(summary, settings, audit_before, keepers, options, console)
        with console.status("the monitor's view"):
            summary.monitor = await _monitor_view(monitor, summary.bulk_lookups > 0)
    finally:
        # Also the way out of a Ctrl-C: every wait is bounded, since a Kafka client closing
        # can wait for a broker that is gone. The broker stops last (run_demo).
        await _close(tasks, clients, (worker, auditor, monitor))
    await _verify_audit(summary, settings, keepers)
    return summary


async def _audit_and_monitor(
    summary: DemoSummary,
    settings: Settings,
    audit_before: int,
    keepers: list[CheckpointKeeper],
    options: DemoOptions,
    console: Console,
) -> None:
    """Wait until the audit writer has every decision and the agencies hold its checkpoint."""
    with console.status("audit writer catching up"):
        target = audit_before + summary.published + summary.life.decisions
        target += 2 * summary.bulk_lookups  # each request, and its timeout
        summary.audit_entries = (
            await _audit_caught_up(settings, target, options.settle_timeout) - audit_before
        )
        await _checkpoints_held(settings, keepers, options.settle_timeout)


def _hold_checkpoints(
    clients: list[AgencyClient], folder: Path, tasks: list[asyncio.Task[None]]
) -> list[CheckpointKeeper]:
    """One checkpoint keeper per agency, fed from the checkpoints topic by a task in ``tasks``."""
    keepers = []
    for client in {c.agency: c for c in reversed(clients)}.values():
        keeper = client.checkpoint_keeper(folder / f"{client.agency}.jsonl")

        async def hold(client: AgencyClient = client, keeper: CheckpointKeeper = keeper) -> None:
            async for _ in client.checkpoints(
                keeper, group=f"{client.agency}-cp-{folder.parent.name}"
            ):
                pass

        tasks.append(asyncio.create_task(hold()))
        keepers.append(keeper)
    return sorted(keepers, key=lambda k: k.path)


async def _checkpoints_held(
    settings: Settings, keepers: list[CheckpointKeeper], limit_s: float
) -> None:
    """Until every agency holds the trail's seal (bounded: the summary says what they hold)."""

    def seal_seq() -> int:
        with contextlib.closing(open_store(settings.audit_store)) as store:
            seal = store.seal()
            return seal.seq if seal else 0

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        target = await asyncio.to_thread(seal_seq)
        if target and all((k.latest.seq if k.latest else 0) >= target for k in keepers):
            return
        await asyncio.sleep(0.2)


_CLOSE_SECONDS = 5.0


async def _close(
    tasks: list[asyncio.Task[None]],
    clients: list[AgencyClient],
    processes: tuple[WorkerProcess | MonitorProcess, ...],
) -> None:
    """Stop the listeners, close the clients, stop the processes: each wait bounded."""
    for task in tasks:
        task.cancel()
    await _bounded(asyncio.gather(*tasks, return_exceptions=True))
    await _bounded(asyncio.gather(*(made.close() for made in clients), return_exceptions=True))
    for process in processes:
        process.stop()


async def _all_set(events: list[asyncio.Event]) -> None:
    """Until every event is set (no gather: a Ctrl-C here leaves no orphaned future)."""
    for event in events:
        await event.wait()


async def _bounded(awaitable: Awaitable[object]) -> None:
    """Wait for ``awaitable`` at most :data:`_CLOSE_SECONDS`, then go on without it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(awaitable, _CLOSE_SECONDS)


def _agencies(
    settings: Settings,
    policy: Policy,
    keys: dict[str, SigningKey],
    seed: int,
    clients: list[AgencyClient],
) -> tuple[PoliceConnector, HealthConnector, Life]:
    """The stream's police and health, and the four mock agencies of the life events."""
    missing = sorted(set(CONNECTORS) - set(policy.agencies))
    if missing:
        raise ConfigError(f"the demo's mock agencies {missing} are not in the policy")
    trust = X509TrustStore.from_directory(settings.pki_dir)

    def client(agency: str, transport: Transport | None = None) -> AgencyClient:
        made = AgencyClient(
            agency=agency,
            signing_key=keys[agency],
            trust=trust,
            transport=transport or KafkaTransport(settings.kafka_options()),
            topics=settings.topics,
        )
        clients.append(made)
        return made

    rng = random.Random(seed)  # noqa: S311 - fake data, not secrets
    police = PoliceConnector(client("police"), rng)
    health = HealthConnector(client("health"), rng)
    life = build_life(client, lambda: KafkaTransport(settings.kafka_options()), policy, seed + 1)
    return police, health, life


def _audit_count(settings: Settings) -> int:
    with contextlib.closing(open_store(settings.audit_store)) as store:
        return store.count()


async def _audit_caught_up(settings: Settings, target: int, limit_s: float) -> int:
    deadline = time.monotonic() + limit_s
    count = await asyncio.to_thread(_audit_count, settings)
    while count < target and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        count = await asyncio.to_thread(_audit_count, settings)
    return count


def _audit_verify(settings: Settings, held: list[Checkpoint]) -> Report:
    with contextlib.closing(open_store(settings.audit_store)) as store:
        return verify_store(store, X509TrustStore.from_directory(settings.pki_dir), held)


async def _verify_audit(
    summary: DemoSummary, settings: Settings, keepers: list[CheckpointKeeper]
) -> None:
    """Verify the trail, against the checkpoints the agencies hold too."""
    held = [c for k in keepers for c in k.held]
    summary.checkpoint_files = [str(k.path) for k in keepers]
    report = await asyncio.to_thread(_audit_verify, settings, held)
    summary.audit_ok, summary.audit_report = report.ok, str(report.broken or "")
    summary.audit_total = report.entries
    summary.checkpoint_held = (
        min((k.latest.seq if k.latest else 0) for k in keepers) if keepers else 0
    )
    if report.proof is not None:
        summary.consistency = f"RFC 9162 proof to the head {report.proof.new_seq}: " + (
            f"{report.proof.hashes} hashes, verified" if report.proof.verified else "FAILED"
        )


async def _ready(worker: WorkerProcess, monitor: MonitorProcess, console: Console) -> float:
    """Wait for the worker, then the monitor; the worker's start-up time."""
    with console.status("starting the gateway worker"):
        startup = await worker.wait_ready()
    console.print(
        f"[green]gateway[/] worker ready in {startup:.1f}s, metrics at {worker.metrics_url}"
    )
    with console.status("starting the exchange monitor"):
        await monitor.wait_ready()
    console.print(f"[green]monitor[/] faust windows and misuse alerts at {monitor.url}")
    return startup


def _bulk_client(
    settings: Settings, keys: dict[str, SigningKey], clients: list[AgencyClient], ids: set[str]
) -> AgencyClient:
    """Education's key in the wrong hands: a client of its own, its request ids noted in ``ids``."""
    made = AgencyClient(
        agency=BULK_REQUESTER,
        signing_key=keys[BULK_REQUESTER],
        trust=X509TrustStore.from_directory(settings.pki_dir),
        transport=NotingTransport(KafkaTransport(settings.kafka_options()), ids),
        topics=settings.topics,
    )
    clients.append(made)
    return made


async def _bulk_lookup(client: AgencyClient, police: PoliceConnector, console: Console) -> int:
    """Ask the police about many distinct residents at once: the monitor's bulk look-up.

    Valid, signed requests the policy allows: only their number gives them away. The police
    mock answers the requests of its own world only, so these time out (each leaves two audit
    records: the request and its timeout). Returns how many were asked.
    """
    people = police.register[-BULK_LOOKUPS:]
    limit = asyncio.Semaphore(32)

    async def ask(person: ResidentRegistered) -> None:
        question = ResidenceVerificationRequested(
            personal_id=person.personal_id, claimed_address=person.permanent_address
        )
        async with limit:
            with contextlib.suppress(RequestTimedOut, RequestRefused):
                await client.request(question, timeout=BULK_TIMEOUT_S)

    with console.status("a bulk look-up of residents, played once on purpose"):
        await asyncio.gather(*(ask(p) for p in people))
    return len(people)


async def _monitor_view(monitor: MonitorProcess, bulk_played: bool) -> dict[str, Any]:
    """The monitor's view at the end (once the bulk look-up's alert is in, when it was played)."""
    deadline = time.monotonic() + MONITOR_WAIT_S
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            view = await monitor.view()
            alerts = view.get("alerts", [])
            if not bulk_played or any(a["kind"] == "bulk_lookup" for a in alerts):
                break
        await asyncio.sleep(0.5)
    return view


async def _publish(
    tracker: _Tracker,
    police: PoliceConnector,
    health: HealthConnector,
    keys: dict[str, SigningKey],
    settings: Settings,
    options: DemoOptions,
    console: Console,
) -> None:
    total = int(options.duration * options.rate)
    forger = Forger(
        keys,
        certificate_authority(settings.pki_dir),
        settings.max_record_bytes,
        settings.max_string_chars,
    )
    reasons = forger.reasons()
    pending: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(64)
    last: list[PublishedEvent] = []

    async def bad(n: int) -> None:
        if n % (len(reasons) + 1) == len(reasons):
            # The same event again: duplicate_id.
            await police.client.send_raw(last[-1].record, key=last[-1].subject.encode())
        else:
            forged = forger.forge(reasons[n % len(reasons)], police.register[-1], datetime.now(UTC))
            client = police.client if forged.agency == "police" else health.client
            await client.send_raw(forged.value, key=forged.key)
        tracker.sent(None)

    async def send(n: int) -> None:
        async with limit:
            today = datetime.now(UTC).date()
            if n % BAD_EVERY == BAD_EVERY - 1 and last:
                await bad(n // BAD_EVERY)
            elif n % VACCINATION_EVERY == VACCINATION_EVERY - 1 and police.register:
                published_at = time.time()
                event = await health.record_vaccination(police.register[-1], today)
                tracker.sent(event.id, published_at)
            else:
                published_at = time.time()
                event = await police.publish_next(today)
                tracker.sent(event.id, published_at)
                last.append(event)
                del last[:-1]

    with progress_bars(console, label_width=10) as progress:
        bar = progress.add_task("publishing", total=total)
        interval = 1.0 / options.rate
        next_at = time.monotonic()
        for n in range(total):
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += interval
            task = asyncio.create_task(send(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            progress.update(bar, completed=n + 1)
        await asyncio.gather(*pending)


async def _settle(tracker: _Tracker, options: DemoOptions, console: Console) -> None:
    """Wait until every record written has its receipt (bounded)."""
    deadline = time.monotonic() + options.settle_timeout
    with progress_bars(console, label_width=10) as progress:
        bar = progress.add_task("receipts", total=tracker.records)
        while len(tracker.receipts) < tracker.records and time.monotonic() < deadline:
            tracker.changed.clear()
            progress.update(bar, completed=len(tracker.receipts))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.changed.wait(), 0.2)
        progress.update(bar, completed=len(tracker.receipts))
    # Deliveries are written before the receipt of the same event; give their consumers a
    # moment to catch up with the last receipts.
    await asyncio.sleep(0.5)


def _fill(summary: DemoSummary, tracker: _Tracker, clients: list[AgencyClient]) -> None:
    summary.published = tracker.records
    summary.receipts = len(tracker.receipts)
    summary.missing_receipts = max(0, tracker.records - len(tracker.receipts))
    for receipt in tracker.receipts.values():
        if receipt.accepted:
            summary.accepted += 1
        elif receipt.reason is not None:
            summary.rejected[receipt.reason] += 1
    summary.delivered = tracker.deliveries
    summary.latencies_ms = tracker.latencies_ms
    summary.refused_by_clients = sum(sum(c.refused.values()) for c in clients)


_WHY_REJECTED = {
    "no_recipients": "health vaccinations: the policy grants them to nobody, on purpose",
    "duplicate_id": "the same event sent again (a replay)",
}


def _monitor_lines(summary: DemoSummary) -> list[tuple[str, str]]:
    """The monitor's view: who asked about the most residents, and the alerts it raised."""
    if not summary.monitor:
        return [("exchange monitor", f"no view ({summary.monitor_url} did not answer)")]
    lines = []
    for window, ranked in summary.monitor.get("top_requesters", {}).items():
        top = ", ".join(
            f"{r['agency']} {r['distinct_subjects']} residents in {r['requests']} requests"
            for r in ranked[:3]
        )
        lines.append((f"monitor: top requesters ({window})", top or "none"))
    alerts = summary.monitor.get("alerts", [])
    described = [
        f"{a['kind']} {a['agency']}: {a['count']} (threshold {a['threshold']})" for a in alerts
    ]
    why = []
    if summary.bulk_lookups:
        why.append(f"the bulk look-up of {summary.bulk_lookups} residents was played on purpose")
    if any(a["kind"] == REJECTION_SPIKE and a["agency"] == "health" for a in alerts):
        why.append(f"{_WHY_REJECTED['no_recipients']}, so all are rejected")
    played = "".join(f"; {reason}" for reason in why)
    lines.append(("monitor alerts", ("\n".join(described) or "none") + played))
    return lines


def print_summary(summary: DemoSummary) -> None:
    """The human summary, on standard output."""
    console = Console()
    data = summary.as_dict()
    table = Table(title="HCMC exchange gateway: demo summary", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("records written by the stream", str(summary.published))
    table.add_row("accepted and delivered", str(summary.accepted))
    for agency, count in data["delivered_by_agency"].items():
        table.add_row(f"  deliveries to {agency}", str(count))
    forged = {r: n for r, n in data["rejected"].items() if r not in _WHY_REJECTED}
    for reason, count in data["rejected"].items():
        if reason in _WHY_REJECTED:
            table.add_row(f"  rejected: {reason}", f"{count}: {_WHY_REJECTED[reason]}")
    if forged:
        table.add_row(
            "  rejected: forged or malformed",
            f"{sum(forged.values())}, one bad record in twenty, each with its reason: "
            + ", ".join(f"{r} {n}" for r, n in forged.items()),
        )
    table.add_row("receipts received", f"{summary.receipts} (missing {summary.missing_receipts})")
    table.add_row("deliveries refused by clients", str(summary.refused_by_clients))
    table.add_row("throughput", f"{data['msgs_per_s']} records/s offered and settled")
    table.add_row(
        "publish-to-delivery latency", f"p50 {data['p50_ms']} ms, p99 {data['p99_ms']} ms"
    )
    table.add_row("worker start-up", f"{data['worker_startup_s']} s")
    audit = "verified" if summary.audit_ok else f"BROKEN: {summary.audit_report}"
    table.add_row(
        "audit trail",
        f"{summary.audit_entries} entries added, {summary.audit_total} in the chain, {audit}",
    )
    table.add_row("audit store", summary.audit_store)
    if summary.checkpoint_files:
        table.add_row(
            "held by the agencies",
            f"signed checkpoint of entry {summary.checkpoint_held}; {summary.consistency}\n"
            f"{Path(summary.checkpoint_files[0]).parent}/",
        )
    if summary.sample_personal_id:
        table.add_row(
            "who received a citizen's data",
            f"xgw audit subject {summary.sample_personal_id} --store {summary.audit_store}",
        )
    for line in _monitor_lines(summary):
        table.add_row(*line)
    table.add_row("worker metrics (stopped now)", summary.metrics_url)
    table.add_row("worker log", summary.worker_log)
    console.print(table)
    worker_rejected = {
        k: v
        for k, v in summary.worker_metrics.items()
        if k.startswith("xgw_messages_rejected_total{")
    }
    if worker_rejected:
        agree = sum(worker_rejected.values()) == sum(summary.rejected.values())
        console.print(
            f"worker metrics count {int(sum(worker_rejected.values()))} rejections: "
            + (
                "[green]agrees with the receipts[/]"
                if agree
                else "[red]differs from the receipts[/]"
            )
        )
    console.print(stories_table(summary.life))
    verdict = (
        "[green]OK[/]: every record has a receipt and an audit entry, every life event reached "
        "exactly the agencies and fields the policy grants"
        if summary.ok
        else "[red]INCOMPLETE[/]"
    )
    console.print(verdict)
