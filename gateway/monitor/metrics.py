"""Prometheus metrics of the exchange monitor, in their own registry (served on ``/metrics``).

Counters count as the agents go; the window gauges and the commit watch are read from the
snapshots the monitor's timers take, by a collector, so that a worker that lost an agency's
partition stops reporting it at the next snapshot. Agency labels are the policy's agencies or
``unknown``: the audit topic is the gateway's, but a label set must stay bounded anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.monitor.facts import KINDS
from gateway.monitor.rules import ALERT_KINDS

UNKNOWN = "unknown"


def window_label(seconds: float) -> str:
    """``1m``, ``1h``, ``90s``: a window's size as a label."""
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


class MonitorMetrics:
    """The monitor's metrics."""

    def __init__(self, agencies: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self.agencies = frozenset(agencies)
        r = self.registry
        self.audit_records = Counter(
            "xgw_monitor_audit_records", "Audit records read by the monitor.", registry=r
        )
        self.unreadable = Counter(
            "xgw_monitor_unreadable",
            "Audit records or facts the monitor could not read (skipped, logged).",
            registry=r,
        )
        self.facts = Counter(
            "xgw_monitor_facts", "Facts counted in the windows.", ["kind"], registry=r
        )
        self.alerts = _Bounded(
            Counter(
                "xgw_monitor_alerts",
                "Misuse alerts raised (each also a record on xgw.monitor.alerts).",
                ["kind", "agency"],
                registry=r,
            ),
            self.agencies,
        )
        self.ready = Gauge(
            "xgw_monitor_ready", "1 once the tables are recovered and the agents run.", registry=r
        )
        for kind in KINDS:
            self.facts.labels(kind)
        for kind in ALERT_KINDS:
            for agency in self.agencies:
                self.alerts.labels(kind, agency)
        self.windows: dict[str, dict[str, Any]] = {}
        self.partitions: list[dict[str, Any]] = []
        r.register(_Snapshots(self))

    def agency(self, agency: str) -> str:
        """``agency`` as a label value."""
        return agency if agency in self.agencies else UNKNOWN


class _Bounded:
    """A labelled counter whose ``agency`` label (the last) is bounded to the known agencies."""

    def __init__(self, counter: Counter, agencies: frozenset[str]) -> None:
        self._counter = counter
        self._agencies = agencies

    def labels(self, kind: str, agency: str) -> Any:
        return self._counter.labels(kind, agency if agency in self._agencies else UNKNOWN)


class _Snapshots(Collector):
    """The window gauges and the commit watch, from the monitor's latest snapshots."""

    def __init__(self, metrics: MonitorMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self._metrics
        records = GaugeMetricFamily(
            "xgw_monitor_window_records",
            "Counts in the current window, per agency and measure (this worker's agencies).",
            labels=["window", "measure", "agency"],
        )
        rate = GaugeMetricFamily(
            "xgw_monitor_rate_per_second",
            "The last complete window's count per second, per agency and measure.",
            labels=["window", "measure", "agency"],
        )
        for label, window in m.windows.items():
            for agency, counts in window["agencies"].items():
                name = m.agency(agency)
                for measure, value in counts["current"].items():
                    records.add_metric([label, measure, name], value)
                for measure, value in counts["last"].items():
                    rate.add_metric([label, measure, name], value / window["seconds"])
        lag = GaugeMetricFamily(
            "xgw_monitor_lag_records",
            "Records of the monitor's inputs after its committed offset.",
            labels=["topic", "partition"],
        )
        committed = GaugeMetricFamily(
            "xgw_monitor_committed_offset",
            "The monitor's committed offset, read from the broker.",
            labels=["topic", "partition"],
        )
        stalled = GaugeMetricFamily(
            "xgw_monitor_stalled_seconds",
            "Seconds the committed offset has not moved while the partition has lag.",
            labels=["topic", "partition"],
        )
        for row in m.partitions:
            labels = [row["topic"], str(row["partition"])]
            lag.add_metric(labels, row["lag"])
            committed.add_metric(labels, row["committed"])
            stalled.add_metric(labels, row["stalled_seconds"])
        yield from (records, rate, lag, committed, stalled)
