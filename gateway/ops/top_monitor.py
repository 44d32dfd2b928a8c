"""The exchange monitors' part of ``xgw top``: fetch their ``/monitor`` views, add them up.

:func:`fetch_monitor` is the I/O; :func:`merge_monitor_views` and :func:`monitor_view` are pure,
so tests feed them dicts. Each monitor process serves the agencies of its own partitions
(docs/monitor.md), so their counts, requesters and alerts add up.
"""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

MonitorJson = Mapping[str, Any]  # a monitor's ``/monitor`` view, decoded


@dataclass(frozen=True, slots=True)
class MonitorEndpoint:
    """One monitor's JSON view, or ``None`` and why it did not answer."""

    url: str
    view: MonitorJson | None
    error: str = ""


def fetch_monitor(url: str, timeout: float = 2.0) -> MonitorJson:
    """GET a monitor's ``/monitor`` JSON view."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - an operator's http URL
        return cast(MonitorJson, json.load(response))  # checked by read()


@dataclass(frozen=True, slots=True)
class Requester:
    """A requester in the monitor's current short window: distinct subjects asked about."""

    agency: str
    distinct_subjects: int
    requests: int


@dataclass(frozen=True, slots=True)
class MonitorAlert:
    """What the view shows of an alert: its kind, agency and the start of its window."""

    kind: str
    agency: str
    window_start: str


@dataclass(frozen=True, slots=True)
class Stall:
    """A monitor input partition whose committed offset stood still with lag."""

    topic: str
    partition: int
    seconds: float


@dataclass(frozen=True, slots=True)
class MonitorView:
    """The exchange monitors' views added up, in their shortest window."""

    answered: int
    silent: tuple[MonitorEndpoint, ...]  # the monitors that did not answer
    window: str  # the shortest window's label ("1m"), "" before the monitor has one
    requesters: tuple[Requester, ...]  # most distinct subjects first
    decisions_per_s: tuple[tuple[str, float], ...]  # the last complete window, most first
    alerts: int
    newest_alert: MonitorAlert | None
    stall: Stall | None  # the longest


def _add(into: dict[str, Any], counts: Mapping[str, Any], *names: str) -> None:
    for name in names or tuple(counts):
        into[name] = into.get(name, 0) + counts[name]


def merge_monitor_views(views: Iterable[MonitorJson]) -> dict[str, Any]:
    """Several monitor processes' ``/monitor`` views as one, in the same shape.

    Each process counts the agencies of its own partitions, so counts, requesters and alerts
    add up. Every process watches the commits of all the group's input partitions: those are
    merged per partition, keeping the larger figures (each process read them at its moment).
    """
    merged: dict[str, Any] = {"app_id": "", "stream_time": 0.0, "windows": {}, "alerts": []}
    requesters: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    partitions: dict[tuple[str, int], dict[str, Any]] = {}
    for view in views:
        merged["app_id"] = merged["app_id"] or str(view.get("app_id", ""))
        merged["stream_time"] = max(merged["stream_time"], float(view.get("stream_time") or 0))
        for label, window in view["windows"].items():
            into = merged["windows"].setdefault(label, {**window, "agencies": {}})
            into["start"] = max(into["start"], window["start"])
            for agency, counts in window["agencies"].items():
                mine = into["agencies"].setdefault(agency, {"current": {}, "last": {}})
                _add(mine["current"], counts["current"])
                _add(mine["last"], counts["last"])
        for label, ranked in view.get("top_requesters", {}).items():
            for row in ranked:
                mine = requesters[label].setdefault(row["agency"], {"agency": row["agency"]})
                _add(mine, row, "distinct_subjects", "requests")
        merged["alerts"].extend(view.get("alerts", ()))
        for row in view.get("partitions", ()):
            mine = partitions.setdefault((row["topic"], row["partition"]), dict(row))
            mine.update({k: max(mine[k], row[k]) for k in ("committed", "lag", "stalled_seconds")})
    merged["top_requesters"] = {
        label: sorted(rows.values(), key=lambda r: (-r["distinct_subjects"], r["agency"]))
        for label, rows in requesters.items()
    }
    # RFC 3339 timestamps in UTC with milliseconds sort by time as text.
    merged["alerts"].sort(key=lambda a: str(a["raised_at"]), reverse=True)
    merged["partitions"] = [partitions[where] for where in sorted(partitions)]
    return merged


def monitor_view(monitors: Sequence[MonitorEndpoint]) -> MonitorView:
    """What ``xgw top`` shows of the monitors: their views added up, in the shortest window."""
    merged = merge_monitor_views(m.view for m in monitors if m.view is not None)
    windows: dict[str, Any] = merged["windows"]
    label = min(windows, key=lambda w: float(windows[w]["seconds"]), default="")
    window = windows.get(label, {"seconds": 1.0, "agencies": {}})  # none before any fact
    decided = [
        (agency, counts["last"].get("decisions", 0) / float(window["seconds"]))
        for agency, counts in window["agencies"].items()
    ]
    newest = merged["alerts"][0] if merged["alerts"] else None
    stalls = [
        Stall(str(row["topic"]), int(row["partition"]), float(row["stalled_seconds"]))
        for row in merged["partitions"]
    ]
    return MonitorView(
        answered=sum(1 for m in monitors if m.view is not None),
        silent=tuple(m for m in monitors if m.view is None),
        window=label,
        requesters=tuple(
            Requester(str(r["agency"]), int(r["distinct_subjects"]), int(r["requests"]))
            for r in merged["top_requesters"].get(label, ())
        ),
        decisions_per_s=tuple(
            sorted((d for d in decided if d[1] > 0), key=lambda d: (-d[1], d[0]))
        ),
        alerts=len(merged["alerts"]),
        newest_alert=(
            MonitorAlert(str(newest["kind"]), str(newest["agency"]), str(newest["window_start"]))
            if newest
            else None
        ),
        stall=max((s for s in stalls if s.seconds > 0), key=lambda s: s.seconds, default=None),
    )
