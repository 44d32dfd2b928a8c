"""The exchange monitor: one faust-streaming app over the audit topic, with windowed tables.

Two agents, wired here and nowhere else:

- ``explode`` reads ``xgw.audit`` and writes each record's facts (:mod:`gateway.monitor.facts`)
  to ``xgw.monitor.facts``, keyed by the agency each fact is about, so that all the counts of
  one agency live in one partition of the tables (faust keeps a table key in the partition of
  the event that wrote it);
- ``count`` reads the facts into two tumbling windowed tables (``XGW_MONITOR_SHORT_WINDOW_SECONDS``
  and ``..._LONG_...``, 1 minute and 1 hour, kept ``XGW_MONITOR_KEEP_SECONDS``) and a table of
  what each agency was first seen doing, and applies the misuse rules (:mod:`gateway.monitor.rules`)
  as each fact arrives; an alert is a record on ``xgw.monitor.alerts`` and a metric.

Windows are in decision time (the audit record's ``decided_at``), so the counts of a known
stream are the same however often and wherever it is read again. The writes of one fact go to
one changelog partition of each table, in order; the distinct-subject count is written before
the subject's marker, so a crash between them can count a subject twice, never miss it.

Guarantee (docs/monitor.md): at least once, whatever ``XGW_PROCESSING_GUARANTEE`` says; a crash
counts again what was read after the last commit. faust-streaming 0.15's exactly once picks a
record's transaction by the partition it goes to, not the one it came from, which re-keyed facts
break, and it miscounted across a SIGKILL on Apache Kafka even with that worked around. The
table recovery is the project's (:mod:`gateway.monitor.recovery`): faust's own can skip or stall
partitions.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from faust.tables.wrappers import WindowWrapper
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.core.policy import Policy
from gateway.logs import get_logger
from gateway.monitor import flush
from gateway.monitor.facts import DECISION, DELIVERY, REQUEST, TICK, Fact, facts_of
from gateway.monitor.metrics import MonitorMetrics, window_label
from gateway.monitor.recovery import SeekBeforeResumeRecovery, SeekingTableManager
from gateway.monitor.rules import (
    BULK_LOOKUP,
    NEW_TYPE,
    REJECTION_SPIKE,
    SILENCE,
    Alert,
    CommitWatch,
    Thresholds,
    baseline,
    bulk_lookup,
    rejection_spike,
    silent,
)
from gateway.monitor.store import LiveTable
from gateway.settings import Settings

log = get_logger("xgw.monitor")
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
# The windowed tables' keys are tuples: a measure, then the fields this table names. The
# counts view (``/monitor/counts``) lists them with these names; "seen" (a subject asked about
# in the window) and "raised" (an alert raised in the window) are the monitor's own.
FIELDS = {
    "decisions": ("agency",),
    "rejected": ("agency",),
    "deliveries": ("agency",),
    "requests": ("agency",),
    "decided": ("agency", "type", "outcome", "reason"),
    "delivered": ("agency", "purpose", "type"),
    "requested": ("agency", "type"),
    "distinct_subjects": ("agency", "type"),  # type "*": all the requester's types
}
# What the view and the gauges show per agency, from the keys of FIELDS.
MEASURES = {
    "decisions": ("decisions",),
    "rejected": ("rejected",),
    "deliveries": ("deliveries",),
    "requests": ("requests",),
    "distinct_subjects": ("distinct_subjects", "*"),
}
ALL = "*"
_PARTITIONER = DefaultPartitioner()  # the producer's: where an agency's facts go
PUBLISHED = frozenset({"delivered", "rejected"})  # a timeout is the gateway's, not the agency's
RECENT_ALERTS = 100
TICK_SECONDS = 1.0
WATCH_SECONDS = 5.0
END_PROBE_WAIT_MS = 1000  # a changelog's end is found when a fetch this long brings nothing


class Monitor:
    """The monitor's faust app, its tables, agents, timers and web view."""

    def __init__(self, settings: Settings, policy: Policy, web_port: int) -> None:
        self.settings = settings
        self.rules = Thresholds.of(settings)
        self.request_types = frozenset(r.type for r in policy.requests)
        self.web_port = web_port
        self.metrics = MonitorMetrics(policy.agencies)
        self.alerts: deque[dict[str, object]] = deque(maxlen=RECENT_ALERTS)
        self.stream_time = 0.0  # the newest decision time this process read from the audit
        self._at = 0.0  # the decision time of the fact being counted (the windows' clock)
        self._ticked = 0.0  # the watermark last sent as a tick
        self._reached: dict[Any, tuple[float, int]] = {}  # audit partition: (time, offset) read
        self._stalls = CommitWatch(settings.monitor_stall_seconds)
        self._reader: AIOKafkaConsumer | None = None
        self.app = self._app()
        flush.install(self.app)  # a commit waits for every changelog write before it
        recovery = cast(SeekBeforeResumeRecovery, cast(Any, self.app.tables).recovery)
        recovery.end_probe = self._changelog_ends  # a recovery reads each changelog to its end
        topics = settings.topics
        self.audit = self.app.topic(topics.audit, **RAW)
        self.facts = self.app.topic(
            topics.monitor_facts, partitions=settings.topic_partitions, **RAW
        )
        self.alerts_topic = self.app.topic(topics.monitor_alerts, **RAW)
        self.short = self._windowed("short", settings.monitor_short_window_seconds)
        self.long = self._windowed("long", settings.monitor_long_window_seconds)
        # Per agency ("first", a) and ("last", a) times; ("type", recipient, type) first seen.
        self.known = self.app.Table("known", partitions=settings.topic_partitions)  # no default
        self.app.agent(self.audit, name="explode")(self._explode)
        self.app.agent(self.facts, name="count")(self._count_stream)
        self.app.timer(TICK_SECONDS, name="monitor-tick")(self._tick)
        self.app.timer(WATCH_SECONDS, name="monitor-watch")(self._watch_commits)
        for path, page in (
            ("/monitor", self._monitor_page),
            ("/monitor/counts", self._counts_page),
            ("/metrics", self._metrics_page),
        ):
            self.app.page(path)(cast(Any, page))  # faust types a page as a View's method

    def _app(self) -> faust.App:
        s = self.settings
        extra: dict[str, Any] = {}
        if s.sasl_mechanism:
            ssl_context = s.kafka_options().get("ssl_context")
            extra["broker_credentials"] = faust.SASLCredentials(
                username=s.sasl_username,
                password=s.sasl_password.get_secret_value() if s.sasl_password else None,
                mechanism=s.sasl_mechanism,
                ssl_context=ssl_context,
            )
        elif s.security_protocol == "SSL":
            extra["broker_credentials"] = s.kafka_options()["ssl_context"]
        return faust.App(
            s.monitor_app_id,
            broker=[f"kafka://{server.strip()}" for server in s.bootstrap_servers.split(",")],
            # At least once, whatever the exchange's guarantee: faust-streaming 0.15's exactly
            # once miscounted across a crash here (docs/monitor.md, "Guarantees").
            processing_guarantee="at_least_once",
            store="memory://",
            topic_partitions=s.topic_partitions,
            topic_replication_factor=s.topic_replication_factor,
            topic_disable_leader=True,  # no leader-election topic: nothing here needs a leader
            table_standby_replicas=0,
            broker_session_timeout=s.session_timeout_seconds,
            broker_heartbeat_interval=s.heartbeat_interval_seconds,
            broker_rebalance_timeout=s.rebalance_timeout_seconds,
            broker_commit_every=s.batch_max,
            broker_commit_interval=1.0,
            consumer_auto_offset_reset="earliest",
            # faust's own folder (its "<id>-data" in the working directory by default).
            datadir=str(Path(s.state_dir or tempfile.gettempdir()) / f"{s.monitor_app_id}-data"),
            web_enabled=True,
            web_bind=s.metrics_host,
            web_host=s.metrics_host,
            web_port=self.web_port,
            TableManager=SeekingTableManager,
            Table=LiveTable,  # its memory store does not roll kept partitions back
            # A kept partition's persisted offset is this process's own last acknowledged write
            # (gateway.monitor.store), not a file that could outlive its topic; a broker that
            # reports an end short of it (the embedded one does) must not crash the recovery.
            recovery_consistency_check=False,
            **extra,
        )

    def _windowed(self, name: str, size: float) -> WindowWrapper:
        table = self.app.Table(name, default=int, partitions=self.settings.topic_partitions)
        windowed = cast(Any, table.tumbling(size, expires=self.settings.monitor_keep_seconds))
        return cast(WindowWrapper, windowed.relative_to(self._fact_time))

    def _fact_time(self, _event: object) -> float:
        """The windows' clock: the decision time of the fact being counted."""
        return self._at

    # The agents.

    async def _explode(self, stream: Any) -> None:
        async for event in stream.events():
            self.metrics.audit_records.inc()
            try:
                found = facts_of(event.value, self.request_types)
            except ValueError as exc:
                self.metrics.unreadable.inc()
                log.warning("unreadable audit record", reason=str(exc))
                continue
            self.stream_time = max(self.stream_time, found[0].at)
            self._reached[event.message.tp] = (found[0].at, event.message.offset)
            for fact in found:
                await self._send(
                    self.facts.get_topic_name(),
                    fact.agency.encode(),
                    orjson.dumps(fact.as_dict()),
                )

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        *,
        partition: int | None = None,
    ) -> None:
        """Write a record with faust's producer, flushed before faust commits any offset."""
        await self.app.producer.send(topic, key, value, partition, None, None)

    async def _count_stream(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                fact = Fact.from_dict(orjson.loads(event.value))
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
                self.metrics.unreadable.inc()
                log.warning("unreadable monitor fact")
                continue
            if fact.kind == TICK:
                await self._check_silences(fact.at, event.message.partition)
            else:
                await self.count(fact)

    async def _send_ticks(self) -> None:
        """The decision time reached, to every facts partition, behind the facts sent before.

        Silence is judged in decision time, per partition, when its tick arrives: the facts
        before it are counted by then, also while the monitor catches up on a backlog.
        """
        reached = self._watermark()
        if reached is None or reached <= self._ticked:
            return
        self._ticked = reached
        tick = orjson.dumps(Fact(TICK, "", "", self._ticked).as_dict())
        for partition in range(self.settings.topic_partitions):
            await self._send(self.facts.get_topic_name(), None, tick, partition=partition)

    async def count(self, fact: Fact) -> None:
        """Count one fact in both windows and apply the rules it can trigger (in an agent)."""
        self._at = fact.at
        self.metrics.facts.labels(fact.kind).inc()
        agency = fact.agency
        if self.known.get(("first", agency)) is None:
            self.known[("first", agency)] = fact.at
        for table in (self.short, self.long):
            if fact.kind == DECISION:
                table[("decisions", agency)] += 1
                table[("decided", agency, fact.type, fact.outcome, fact.reason)] += 1
                if fact.outcome == "rejected":
                    table[("rejected", agency)] += 1
            elif fact.kind == DELIVERY:
                table[("deliveries", agency)] += 1
                table[("delivered", agency, fact.purpose, fact.type)] += 1
            elif fact.kind == REQUEST:
                table[("requests", agency)] += 1
                table[("requested", agency, fact.type)] += 1
                for scope in (fact.type, ALL):
                    marker = ("seen", agency, scope, fact.subject)
                    if not table[marker].value():
                        table[("distinct_subjects", agency, scope)] += 1  # before the marker
                        table[marker] += 1
        if fact.kind == DECISION and fact.outcome in PUBLISHED:
            last = self.known.get(("last", agency)) or 0.0
            self.known[("last", agency)] = max(fact.at, last)
            await self._check_rejections(agency)
        elif fact.kind == DELIVERY:
            await self._check_new_type(fact)
        elif fact.kind == REQUEST:
            await self._check_bulk(agency)

    # The rules, as facts arrive.

    def _history(self, key: tuple[str, ...], at: float, windows: int) -> list[int]:
        """``key``'s short-window counts in the ``windows`` windows before the one of ``at``."""
        size = self.settings.monitor_short_window_seconds
        return [self._short_at(key, at - k * size) for k in range(1, windows + 1)]

    def _short_at(self, key: tuple[str, ...], at: float) -> int:
        return int(self.short.table.get((key, _window(self.short, at)), 0))

    def _range(self, at: float) -> tuple[float, float]:
        start, _end = _window(self.short, at)
        return start, start + self.settings.monitor_short_window_seconds

    async def _once(self, kind: str, agency: str, event_type: str) -> bool:
        """True the first time ``kind`` is raised for ``agency`` in the current short window."""
        marker = ("raised", kind, agency, event_type)
        if self.short[marker].value():
            return False
        self.short[marker] += 1
        return True

    async def _check_bulk(self, agency: str) -> None:
        key = ("distinct_subjects", agency, ALL)
        distinct = self._short_at(key, self._at)
        history = self._history(key, self._at, self.rules.baseline_windows)
        threshold = bulk_lookup(self.rules, distinct, history)
        if threshold is not None and await self._once(BULK_LOOKUP, agency, ALL):
            await self._raise(BULK_LOOKUP, agency, ALL, distinct, baseline(history), threshold)

    async def _check_rejections(self, agency: str) -> None:
        rejected = self._short_at(("rejected", agency), self._at)
        decided = self._short_at(("decisions", agency), self._at)
        windows = self.rules.baseline_windows
        history = list(
            zip(
                self._history(("rejected", agency), self._at, windows),
                self._history(("decisions", agency), self._at, windows),
                strict=True,
            )
        )
        spike = rejection_spike(self.rules, rejected, decided, history)
        if spike is not None and await self._once(REJECTION_SPIKE, agency, ALL):
            ratio, threshold = spike
            usual = sum(r for r, _ in history) / max(1, sum(d for _, d in history))
            await self._raise(REJECTION_SPIKE, agency, ALL, round(ratio, 3), usual, threshold)

    async def _check_new_type(self, fact: Fact) -> None:
        key = ("type", fact.agency, fact.type)
        if self.known.get(key) is not None:
            return
        self.known[key] = fact.at
        first = self.known.get(("first", fact.agency)) or fact.at
        if fact.at - first >= self.rules.learning_s:
            await self._raise(NEW_TYPE, fact.agency, fact.type, 1, 0.0, 0.0)

    async def _raise(
        self, kind: str, agency: str, event_type: str, count: float, usual: float, threshold: float
    ) -> None:
        start, end = self._range(self._at)
        alert = Alert(kind, agency, event_type, start, end, count, usual, threshold, time.time())
        await self._publish(alert)

    async def _publish(self, alert: Alert) -> None:
        record = alert.as_record()
        await self._send(
            self.alerts_topic.get_topic_name(), alert.agency.encode(), orjson.dumps(record)
        )
        self.alerts.appendleft(record)
        self.metrics.alerts.labels(alert.kind, alert.agency).inc()
        log.warning(
            "monitor alert",
            kind=alert.kind,
            agency=alert.agency,
            type=alert.type,
            count=alert.count,
            threshold=round(alert.threshold, 3),
        )

    # The timer: silences, the gauges, and the stall watch.

    async def _tick(self) -> None:
        await self._send_ticks()
        self.metrics.windows = self.window_snapshot()

    def _local_agencies(self) -> Iterator[tuple[str, float]]:
        """The agencies whose counts this process holds, with their first-seen time."""
        for key, value in list(self.known.items()):
            if isinstance(key, tuple) and len(key) == 2 and key[0] == "first":  # noqa: PLR2004
                yield str(key[1]), float(value)

    def _watermark(self) -> float | None:
        """The decision time every audit partition of this process has read up to.

        A partition with records still to read holds it back (the audit's partitions are read
        side by side, at their own pace); one read to its end does not. ``None`` while the end
        of a partition is not known yet.
        """
        consumer = self.app.consumer
        behind: list[float] = []
        latest = 0.0
        for tp in consumer.assignment():
            if tp.topic != self.settings.topics.audit:
                continue
            end: int | None = consumer.highwater(tp)  # None until a fetch told it
            if end is None:
                return None
            at, offset = self._reached.get(tp, (0.0, end - 1))
            latest = max(latest, at)
            if offset + 1 < end:
                behind.append(at)
        return min(behind) if behind else latest or None

    async def _check_silences(self, now: float, partition: int) -> None:
        """Raise ``silence`` for the agencies of ``partition`` quiet since long before ``now``."""
        partitions = list(range(self.settings.topic_partitions))
        for agency, _first in self._local_agencies():
            if _PARTITIONER(agency.encode(), partitions, partitions) != partition:
                continue
            last = self.known.get(("last", agency))
            if not last or self.known.get(("quiet", agency)) == last:
                continue
            size = self.settings.monitor_short_window_seconds
            recent = [
                self._short_at(("decisions", agency), last - k * size)
                for k in range(self.rules.active_windows)
            ]
            if silent(self.rules, last, now, recent):
                self.known[("quiet", agency)] = last
                alert = Alert(
                    SILENCE, agency, ALL, last, now, 0, baseline(recent), self.rules.silence_s,
                    time.time(),
                )  # fmt: skip
                await self._publish(alert)

    def window_snapshot(self) -> dict[str, dict[str, Any]]:
        """Per window: its range at the stream time and, per agency, current and last counts."""
        snapshot: dict[str, dict[str, Any]] = {}
        now = self.stream_time or time.time()
        for table, size in (
            (self.short, self.settings.monitor_short_window_seconds),
            (self.long, self.settings.monitor_long_window_seconds),
        ):
            current, previous = _window(table, now), _window(table, now - size)
            agencies: dict[str, dict[str, dict[str, int]]] = {}
            for agency, _first in self._local_agencies():
                agencies[agency] = {
                    "current": {
                        m: int(table.table.get((_key(k, agency), current), 0))
                        for m, k in MEASURES.items()
                    },
                    "last": {
                        m: int(table.table.get((_key(k, agency), previous), 0))
                        for m, k in MEASURES.items()
                    },
                }
            snapshot[window_label(size)] = {
                "seconds": size,
                "start": current[0],
                "agencies": agencies,
            }
        return snapshot

    def view(self) -> dict[str, Any]:
        """The JSON view (``/monitor``): windows, top requesters, recent alerts, commit watch."""
        windows = self.window_snapshot()
        top: dict[str, list[dict[str, Any]]] = {}
        for label, window in windows.items():
            ranked = sorted(
                (
                    {
                        "agency": agency,
                        "distinct_subjects": counts["current"]["distinct_subjects"],
                        "requests": counts["current"]["requests"],
                    }
                    for agency, counts in window["agencies"].items()
                    if counts["current"]["requests"]
                ),
                key=lambda row: (-row["distinct_subjects"], row["agency"]),
            )
            top[label] = ranked
        return {
            "app_id": self.settings.monitor_app_id,
            "stream_time": self.stream_time,
            "windows": windows,
            "top_requesters": top,
            "alerts": list(self.alerts),
            "partitions": self.metrics.partitions,
        }

    def counts(self) -> list[dict[str, Any]]:
        """Every count this process holds, each window of both sizes (``/monitor/counts``)."""
        rows: list[dict[str, Any]] = []
        for table, size in (
            (self.short, self.settings.monitor_short_window_seconds),
            (self.long, self.settings.monitor_long_window_seconds),
        ):
            for (key, (start, _end)), value in list(table.table.items()):
                names = FIELDS.get(key[0])
                if names is None or len(key) != len(names) + 1:
                    continue  # the monitor's own markers
                row: dict[str, Any] = {"window": window_label(size), "start": start}
                row |= {"measure": key[0], **dict(zip(names, key[1:], strict=True))}
                rows.append(row | {"count": int(value)})
        return rows

    # The web pages: faust makes a bound method the view's ``get(request)``.

    async def _monitor_page(self, _request: Any) -> Any:
        return self.app.web.json(self.view())

    async def _counts_page(self, _request: Any) -> Any:
        return self.app.web.json({"app_id": self.settings.monitor_app_id, "counts": self.counts()})

    async def _metrics_page(self, _request: Any) -> Any:
        body = generate_latest(self.metrics.registry)
        # aiohttp takes the charset apart from the type: "text/plain; version=0.0.4".
        content_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
        return self.app.web.bytes(body, content_type=content_type)

    async def _watch_commits(self) -> None:
        """Lag and committed offsets of the inputs, from the broker; a commit that stands still.

        Read from the broker, not from faust, so that a commit faust stopped making shows.
        """
        try:
            committed, ends = await self._offsets()
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("cannot read the monitor's offsets", error=repr(exc))
            return
        rows, stalled = self._stalls.observe(
            {(tp.topic, tp.partition): n for tp, n in committed.items()},
            {(tp.topic, tp.partition): n for tp, n in ends.items()},
            time.monotonic(),
        )
        for row in stalled:
            log.warning(
                "monitor commit stalled",
                topic=row.topic,
                partition=row.partition,
                committed=row.committed,
                lag=row.lag,
                seconds=round(row.stalled_seconds),
            )
        self.metrics.partitions = [
            {
                "topic": r.topic,
                "partition": r.partition,
                "committed": r.committed,
                "lag": r.lag,
                "stalled_seconds": round(r.stalled_seconds, 1),
            }
            for r in rows
        ]

    async def _offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        if self._reader is None:
            # In the monitor's group but never joining it: it only asks for its offsets.
            reader = AIOKafkaConsumer(
                **self.settings.consumer_options(),
                group_id=self.settings.monitor_app_id,
                enable_auto_commit=False,
            )
            await reader.start()
            self._reader = reader
        reader = self._reader
        topics = [self.settings.topics.audit, self.settings.topics.monitor_facts]
        await asyncio.wait_for(reader.topics(), 5)  # the partitions of topics not subscribed
        partitions = [
            TopicPartition(t, p) for t in topics for p in reader.partitions_for_topic(t) or ()
        ]
        ends = await asyncio.wait_for(reader.end_offsets(partitions), 5)
        committed = {}
        for tp in partitions:
            offset = await asyncio.wait_for(reader.committed(tp), 5)
            committed[tp] = offset if offset is not None and offset >= 0 else 0
        return committed, ends

    async def _changelog_ends(self, reported: Mapping[TP, int]) -> dict[TP, int]:
        """The end of each changelog partition, read on from the end offset the broker reported.

        From the record before the reported end, to the last record a fetch returns: on a
        broker that reports end offsets right, that is the reported end itself. A broker that
        cannot be read now leaves the reported ends (faust's own recovery).
        """
        ends = dict(reported)
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_options(),  # read_uncommitted, as faust reads its changelogs
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        try:
            await consumer.start()
            partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in reported}
            consumer.assign(list(partitions))
            for partition, tp in partitions.items():
                consumer.seek(partition, reported[tp] - 1)
            while batches := await consumer.getmany(timeout_ms=END_PROBE_WAIT_MS):
                for partition, records in batches.items():
                    tp = partitions[partition]
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
        except (KafkaError, OSError) as exc:
            log.warning("cannot read the changelogs' ends", error=repr(exc))
        finally:
            await consumer.stop()
        return ends

    async def close(self) -> None:
        """Close the stall watch's clients (the app itself is stopped by its runner)."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.stop()


def _key(measure: tuple[str, ...], agency: str) -> tuple[str, ...]:
    """The table key of a per-agency measure (MEASURES): the measure, the agency, the rest."""
    return (measure[0], agency, *measure[1:])


def _window(table: WindowWrapper, at: float) -> tuple[float, float]:
    """The range of ``table``'s window that holds ``at``."""
    return cast(tuple[float, float], cast(Any, table.table).window.current(at))
