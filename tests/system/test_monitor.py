"""The exchange monitor (``xgw monitor``, faust-streaming) through a real broker, on both brokers.

A known stream of audit records goes to the audit topic; the monitor's windowed counts
(``/monitor/counts``) must equal the counts computed directly from the records; a scripted
stream raises each misuse alert once, and ordinary traffic raises none. The restart tests
SIGKILL a monitor mid-stream and check the counts after recovery against the direct ones:
nothing may be missing, and only what was read after the last commit may count twice
(docs/monitor.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.types import TP

from gateway.core.policy import load_policy
from gateway.lab.processes import MonitorProcess, scrape
from gateway.monitor.app import Monitor
from gateway.monitor.metrics import window_label
from gateway.ops.topics import read_topic
from gateway.runtime.topic_admin import ensure_topics
from gateway.settings import Settings
from schemas.registry import REGISTRY
from tests.conftest import BrokerUnderTest
from tests.support import monitor_stream as ms

pytestmark = pytest.mark.asyncio(loop_scope="module")
SHORT, LONG = 60.0, 3600.0
SIZES = {window_label(SHORT): SHORT, window_label(LONG): LONG}
RUNS = int(os.environ.get("XGW_MONITOR_RUNS", "1"))
SETTLE_S = 90.0


def _settings(broker: BrokerUnderTest, **extra: Any) -> Settings:
    prefix = f"mon{uuid.uuid4().hex[:8]}"
    return Settings(
        bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=prefix,
        monitor_app_id=f"{prefix}-monitor",
        monitor_port=0,
        monitor_short_window_seconds=SHORT,
        monitor_long_window_seconds=LONG,
        log_level=os.environ.get("XGW_MONITOR_TEST_LOG_LEVEL", "INFO"),
        **broker.connection,
        **extra,
    )


def _request_types(settings: Settings) -> frozenset[str]:
    return frozenset(r.type for r in load_policy(settings.policy_file, REGISTRY).requests)


async def _produce(settings: Settings, stream: ms.Stream) -> None:
    producer = AIOKafkaProducer(**settings.kafka_options(), acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(settings.topics.audit, value, key=key)
            for key, value in stream.encoded()
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _alerts(settings: Settings) -> list[dict[str, Any]]:
    """Every record on the alerts topic so far."""
    return [
        orjson.loads(record.value)
        async for record in read_topic(settings, settings.topics.monitor_alerts)
        if record.value
    ]


async def _counts(monitors: list[MonitorProcess]) -> Counter[tuple[Any, ...]]:
    rows: list[dict[str, Any]] = []
    for monitor in monitors:
        if monitor.running:
            rows += (await monitor.view("/counts"))["counts"]
    return ms.monitor_counts(rows)


async def _settled(
    monitors: list[MonitorProcess], expected: Counter[tuple[Any, ...]]
) -> Counter[tuple[Any, ...]]:
    """The monitors' counts once they cover ``expected`` (or the last seen, after SETTLE_S)."""
    deadline = time.monotonic() + SETTLE_S
    counts: Counter[tuple[Any, ...]] = Counter()
    while time.monotonic() < deadline:
        try:
            counts = await _counts(monitors)
        except OSError:
            counts = Counter()
        if all(counts[k] >= n for k, n in expected.items()):
            await asyncio.sleep(2.0)  # anything counted twice shows too
            return await _counts(monitors)
        await asyncio.sleep(0.5)
    return counts


@pytest.fixture
async def monitors() -> AsyncIterator[list[MonitorProcess]]:
    """The monitors a test starts; stopped (or killed) after it."""
    started: list[MonitorProcess] = []
    yield started
    for monitor in started:
        monitor.stop(15)


async def _start(settings: Settings, monitors: list[MonitorProcess], log: Path) -> MonitorProcess:
    monitor = MonitorProcess(settings, log)
    monitor.start()
    monitors.append(monitor)
    await monitor.wait_ready(90)
    return monitor


async def test_windowed_counts_equal_the_counts_computed_from_the_audit_topic(
    any_broker: BrokerUnderTest, monitors: list[MonitorProcess], tmp_path: Path
) -> None:
    """Every count of every window, both sizes, equals the direct count: nothing more."""
    settings = _settings(any_broker)
    await ensure_topics(settings, ("police", "health", "education", "land"))
    start = ms.window_start(time.time() - 3 * 3600, LONG)
    stream = ms.ordinary(random.Random(7), start, windows=150, size=SHORT)
    expected = ms.direct_counts(stream.records, SIZES, _request_types(settings))
    await _start(settings, monitors, tmp_path / "monitor.log")
    await _produce(settings, stream)
    counts = await _settled(monitors, expected)
    missing = {k: n - counts[k] for k, n in expected.items() if counts[k] < n}
    extra = {k: counts[k] - expected[k] for k in counts if counts[k] > expected[k]}
    assert (missing, extra) == ({}, {}), monitors[0].tail()
    view = await monitors[0].view()
    assert set(view["windows"]) == {"1m", "1h"}
    assert await _alerts(settings) == []  # ordinary traffic raises nothing


async def test_a_recovery_reads_each_changelog_to_its_true_end(any_broker: BrokerUnderTest) -> None:
    """The end a recovery reads to is the last record's offset + 1, whatever the broker reports.

    The embedded broker reports the last batch's base offset + 1 (docs/operations.md); faust
    would recover a table only up to there.
    """
    settings = _settings(any_broker)
    await ensure_topics(settings, ("police", "health", "education", "land"))
    topic = settings.topics.monitor_facts
    producer = AIOKafkaProducer(**settings.kafka_options(), acks="all", linger_ms=100)
    await producer.start()
    try:
        sent = [await producer.send(topic, b"%d" % n, partition=0) for n in range(30)]
        sent.append(await producer.send(topic, b"one", partition=1))
        written = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    last = {p: max(m.offset for m in written if m.partition == p) for p in (0, 1)}
    consumer = AIOKafkaConsumer(**settings.kafka_options(), group_id=None)
    await consumer.start()
    try:
        reported = await consumer.end_offsets([TopicPartition(topic, p) for p in (0, 1)])
    finally:
        await consumer.stop()
    monitor = Monitor(settings, load_policy(settings.policy_file, REGISTRY), web_port=1)  # unused
    ends = await monitor._changelog_ends({TP(topic, tp.partition): n for tp, n in reported.items()})
    print(f"reported ends {sorted((tp.partition, n) for tp, n in reported.items())}")
    assert ends == {TP(topic, p): last[p] + 1 for p in (0, 1)}


def _scripted(start: float) -> ms.Stream:
    """Ordinary traffic with one of each misuse, at known windows.

    - window 100: education asks about 200 distinct residents (its baseline: about 4);
    - window 110: health publishes 40 more records, 30 of them rejected (baseline: none);
    - from window 120: police publish nothing while the others go on (30 windows);
    - window 130: health receives a type it never received in its first two hours.
    """
    stream = ms.ordinary(random.Random(11), start, windows=150, size=SHORT, police_until=120)
    bulk = start + 100 * SHORT
    for n in range(200):
        stream.add(
            bulk + n * 0.1,
            "education",
            ms.REQUEST_TYPE,
            recipients=(("police", "admission"),),
            subject=ms.subject(5000 + n),
        )
    spike = start + 110 * SHORT
    for n in range(40):
        rejected = n % 4 != 0
        stream.add(
            spike + n * 0.5,
            "health",
            ms.BIRTH,
            outcome="rejected" if rejected else "delivered",
            reason="bad_signature" if rejected else None,
            recipients=() if rejected else (("police", "population"),),
        )
    stream.add(start + 130 * SHORT + 1, "education", ms.DIPLOMA, recipients=(("health", "care"),))
    stream.records.sort(key=lambda r: r["decided_at"])
    return stream


async def test_each_misuse_raises_its_alert_once_and_ordinary_traffic_none(
    any_broker: BrokerUnderTest, monitors: list[MonitorProcess], tmp_path: Path
) -> None:
    """Bulk look-up, rejection spike, silence and a new type: one alert each, nothing else."""
    settings = _settings(any_broker)
    await ensure_topics(settings, ("police", "health", "education", "land"))
    start = ms.window_start(time.time() - 3 * 3600, LONG)
    stream = _scripted(start)
    expected = ms.direct_counts(stream.records, SIZES, _request_types(settings))
    monitor = await _start(settings, monitors, tmp_path / "monitor.log")
    await _produce(settings, stream)
    await _settled(monitors, expected)
    want = {
        ("bulk_lookup", "education", "*", start + 100 * SHORT),
        ("rejection_spike", "health", "*", start + 110 * SHORT),
        ("new_type", "health", ms.DIPLOMA, start + 130 * SHORT),
        ("silence", "police", "*", None),
    }
    deadline = time.monotonic() + 30
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = await _alerts(settings)
        if len(alerts) >= len(want):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # a second raise of any of them would show now
    alerts = await _alerts(settings)

    def shape(alert: dict[str, Any]) -> tuple[Any, ...]:
        begins = datetime.fromisoformat(alert["window_start"]).timestamp()
        return (
            alert["kind"],
            alert["agency"],
            alert["type"],
            None if alert["kind"] == "silence" else begins,
        )

    assert sorted(map(shape, alerts), key=str) == sorted(want, key=str), monitor.tail()
    bulk = next(a for a in alerts if a["kind"] == "bulk_lookup")
    assert bulk["count"] > bulk["threshold"] >= settings.monitor_bulk_min_subjects
    assert not set(bulk) - {"id", "kind", "agency", "type", "window_start", "window_end",
                            "count", "baseline", "threshold", "raised_at"}  # fmt: skip
    samples = await asyncio.to_thread(scrape, monitor.metrics_url)
    assert samples["xgw_monitor_alerts_total{agency=education,kind=bulk_lookup}"] == 1
    view = await monitor.view()
    assert {a["kind"] for a in view["alerts"]} == {w[0] for w in want}


async def _committed_lag(settings: Settings) -> int:
    """Records of the monitor's inputs after its committed offsets, now."""
    consumer = AIOKafkaConsumer(
        **settings.consumer_options(), group_id=settings.monitor_app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in (settings.topics.audit, settings.topics.monitor_facts)
            for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp, end in ends.items():
            lag += end - ((await consumer.committed(tp)) or 0)
        return lag
    finally:
        await consumer.stop()


def _fact_keys(fact: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The 1-minute count keys one fact of the facts topic adds to (distinct subjects aside)."""
    w = ("1m", ms.window_start(fact["at"], SHORT))
    agency, kind = fact["agency"], fact["type"]
    if fact["kind"] == "decision":
        keys = [(*w, "decisions", agency), (*w, "decided", agency, kind, fact["outcome"],
                                            fact["reason"] or "")]  # fmt: skip
        return keys + ([(*w, "rejected", agency)] if fact["outcome"] == "rejected" else [])
    if fact["kind"] == "delivery":
        return [(*w, "deliveries", agency), (*w, "delivered", agency, fact["purpose"], kind)]
    if fact["kind"] == "request":
        return [(*w, "requests", agency), (*w, "requested", agency, kind)]
    return []


async def _where_missing(
    settings: Settings, missing: dict[tuple[Any, ...], int], counts: Counter[tuple[Any, ...]]
) -> str:
    """For some missing 1-minute counts: the facts topic's count and the changelog's last write.

    Fewer facts than expected: the ``explode`` side lost them (an audit offset committed before
    its facts were written). Enough facts, and the changelog's last value short too: increments
    were lost while counting. The changelog right but the memory short: a recovery rolled the
    in-memory value back.
    """
    keys = sorted(k for k in missing if k[0] == "1m")[:8]
    facts: Counter[tuple[Any, ...]] = Counter()
    where: dict[tuple[Any, ...], set[int]] = {}
    async for record in read_topic(settings, settings.topics.monitor_facts):
        fact = orjson.loads(record.value or b"{}")
        for key in _fact_keys(fact) if fact.get("kind") != "tick" else ():
            facts[key] += 1
            where.setdefault(key, set()).add(record.partition)
    changelog: dict[tuple[Any, ...], list[tuple[int, int, Any]]] = {}
    async for record in read_topic(settings, f"{settings.monitor_app_id}-short-changelog"):
        if record.key is None:
            continue
        table_key, (begins, _ends) = orjson.loads(record.key)
        key = ("1m", begins, *table_key)
        value = orjson.loads(record.value) if record.value else None
        changelog.setdefault(key, []).append((record.partition, record.offset, value))
    lines = []
    for key in keys:
        writes = changelog.get(key, [])
        lines.append(
            f"{key}: expected {counts[key] + missing[key]}, monitor {counts[key]}, "
            f"facts {facts[key]} (partitions {sorted(where.get(key, ()))}), "
            f"changelog last {writes[-1] if writes else None} of {len(writes)} writes"
        )
    return "\n".join(lines)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-monitor", "two-monitors"])
@pytest.mark.parametrize("run", range(RUNS))
async def test_a_killed_monitor_recovers_its_windows(
    any_broker: BrokerUnderTest,
    monitors: list[MonitorProcess],
    tmp_path: Path,
    workers: int,
    run: int,
) -> None:
    """SIGKILL mid-stream; restarted (or the other monitor takes over): no count is missing.

    At least once (the monitor's guarantee, docs/monitor.md): nothing may be missing; what
    was read again after the kill or a rebalance may count twice (reported, not bounded).
    """
    settings = _settings(any_broker)
    await ensure_topics(settings, ("police", "health", "education", "land"))
    start = ms.window_start(time.time() - 3 * 3600, LONG)
    stream = ms.ordinary(random.Random(100 + run), start, windows=150, size=SHORT)
    expected = ms.direct_counts(stream.records, SIZES, _request_types(settings))
    decisions = sum(n for k, n in expected.items() if k[0] == "1m" and k[2] == "decisions")
    for n in range(workers):
        await _start(settings, monitors, tmp_path / f"monitor-{n}.log")
    producing = asyncio.create_task(_produce(settings, stream))
    kill_at = random.Random(run).randrange(decisions // 10, decisions // 2)
    deadline = time.monotonic() + SETTLE_S
    counted = 0
    while counted < kill_at and time.monotonic() < deadline:
        counts = await _counts(monitors)
        counted = sum(n for k, n in counts.items() if k[0] == "1m" and k[2] == "decisions")
        await asyncio.sleep(0.05)
    assert counted >= kill_at, monitors[0].tail()
    monitors[0].kill()
    lag = await _committed_lag(settings)  # its commits end with it: what it may have read since
    await producing
    if workers == 1:
        await _start(settings, monitors, tmp_path / "restarted.log")
    counts = await _settled(monitors[1:], expected)
    missing = {k: n - counts[k] for k, n in expected.items() if counts[k] < n}
    extra = {k: counts[k] - expected[k] for k in counts if counts[k] > expected[k]}
    if missing:
        views = [await m.view() for m in monitors if m.running]
        behind = [p for v in views for p in v["partitions"] if p["lag"]]
        pytest.fail(
            f"{sum(missing.values())} missing in {len(missing)} counts, e.g. "
            f"{sorted(missing.items())[:3]}; partitions with lag: {behind}; "
            f"where they went missing:\n{await _where_missing(settings, missing, counts)}\n"
            f"log: {monitors[-1].tail(1500)}"
        )
    # Counted twice: what was read again after the kill, and after the rebalances of the
    # takeover (faust seeks every partition back to its committed offset); reported, since
    # at least once allows it (docs/monitor.md), and no bound is known from outside.
    doubled = sum(n for k, n in extra.items() if k[0] == "1m" and k[2] == "decisions")
    print(f"decisions counted twice: {doubled} (the inputs' lag at the kill: {lag})")
