"""How ``xgw top`` draws: a :class:`~gateway.ops.top.View` as rich tables, once or redrawn live.

rich is imported only here, and only when something is drawn.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.ops.top import Fetch, Scrape, View, build_view, read, scrape_timeout
from gateway.ops.top_monitor import MonitorView, fetch_monitor

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def format_rate(value: float | None) -> str:
    """A rate per second for a table cell; ``-`` before there are two scrapes."""
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"  # noqa: PLR2004


def format_seconds(value: float | None) -> str:
    """A latency in ms below one second, in s above; ``-`` without observations."""
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def format_expiry(seconds: float | None) -> str:
    """How long until a certificate expires, in days and hours (or how long ago it did)."""
    if seconds is None:
        return "n/a"
    hours = int(abs(seconds) // 3600)
    days, hours = divmod(hours, 24)
    span = f"{days}d {hours}h" if days else f"{hours}h {int(abs(seconds) % 3600 // 60)}m"
    return f"in {span}" if seconds >= 0 else f"EXPIRED {span} ago"


# What fits a 24-line terminal with four agencies: the rest is summed into one line. That
# view has one line to spare; the monitor's lines beyond it take the place of reasons.
TOP_REASONS = 5
SPARE_LINES = 1
TOP_MONITORED = 3  # agencies named on a monitor line


def _table(
    title: str, columns: Iterable[str], rows: Iterable[Sequence[str]], text_columns: int = 1
) -> RenderableType:
    from rich import box  # noqa: PLC0415 - rich is only needed to draw
    from rich.table import Table  # noqa: PLC0415

    # No outer frame: a title, a header, a rule and the rows, so the view fits 80x24.
    table = Table(
        title=title, title_justify="left", expand=False, box=box.SIMPLE_HEAD, show_edge=False
    )
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index < text_columns else "right")
    for row in rows:
        table.add_row(*row)
    return table


def lag_line(view: View) -> str:
    """Consumer lag summed per ingress topic (per-partition figures are noise at a glance)."""
    if view.lag is None:
        return "consumer lag: n/a"
    per_topic: dict[str, float] = {}
    for lag in view.lag:
        per_topic[lag.topic] = per_topic.get(lag.topic, 0.0) + lag.records
    total = sum(per_topic.values())
    topic, most = max(per_topic.items(), key=lambda t: (t[1], t[0]), default=("", 0.0))
    where = f", most on {topic} ({most:,.0f})" if most else ""
    return f"consumer lag: {total:,.0f} records{where}"


def _clock(stamp: str) -> str:
    """``06:40:00Z`` from an RFC 3339 UTC timestamp: the time of day is what tells at a glance."""
    try:
        return datetime.fromisoformat(stamp).strftime("%H:%M:%SZ")
    except ValueError:
        return stamp


def monitor_lines(monitor: MonitorView | None) -> list[str]:
    """At most three lines: top requesters, decision rates, alerts (what is wrong first).

    Requesters are counted in the current window, rates over the last complete one.
    """
    if monitor is None:
        return []
    silent = f"no answer at {', '.join(m.url for m in monitor.silent)}"
    if not monitor.answered:
        return [f"monitor: {silent}"]
    named = [f"{r.agency} {r.distinct_subjects}/{r.requests}" for r in monitor.requesters]
    if named:  # the first spelled out, the others in its terms
        top = monitor.requesters[0]
        named[0] = f"{top.agency} {top.distinct_subjects} residents/{top.requests} req"
    requesters = ", ".join(named[:TOP_MONITORED])
    rates = ", ".join(
        f"{agency} {format_rate(rate)}" for agency, rate in monitor.decisions_per_s[:TOP_MONITORED]
    )
    # A stalled commit or a silent monitor leaves the figures incomplete: that comes first.
    alerts = []
    if monitor.stall is not None:
        stall = monitor.stall
        alerts.append(
            f"monitor commit stalled {stall.seconds:.0f} s on {stall.topic}:{stall.partition}"
        )
    if monitor.silent:
        alerts.append(silent)
    newest = monitor.newest_alert
    latest = (
        ""
        if newest is None
        else f" (newest: {newest.kind} {newest.agency} {_clock(newest.window_start)})"
    )
    alerts.append(f"alerts: {monitor.alerts}{latest}")
    return [
        f"monitor {monitor.window}: top requesters {requesters or 'none'}",
        f"monitor decisions/s (last {monitor.window}): {rates or 'none'}",
        " | ".join(alerts),
    ]


def render(view: View) -> RenderableType:
    """Lay the view out: what matters first (health, lag, latency), then the tables."""
    from rich.console import Group  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    window = (
        f"rates over {view.window_s:.1f}s" if view.window_s else "rates: waiting for 2nd scrape"
    )
    header = Text(
        f"xgw top: {view.up}/{len(view.workers)} workers up, {window}, "
        f"build {', '.join(view.versions) or 'n/a'}"
    )
    summary = Text(
        f"batch processing p99: {format_seconds(view.batch_p99)} | "
        f"nearest certificate expiry: {format_expiry(view.certificate_expiry_s)}\n"
        f"{lag_line(view)}"
    )
    workers = _table(
        "Workers",
        ("endpoint", "status", "partitions", "version"),
        (
            (
                w.url,
                "up" if w.up else f"down ({w.error})" if w.error else "down",
                "-" if w.partitions is None else str(w.partitions),
                w.version or "-",
            )
            for w in view.workers
        ),
        text_columns=2,
    )
    agencies = _table(
        f"Agencies (end-to-end latency {view.latency_scope})",
        ("agency", "received/s", "delivered/s", "rejected/s", "e2e p50", "e2e p99"),
        (
            (
                a.agency,
                format_rate(a.received_per_s),
                format_rate(a.delivered_per_s),
                format_rate(a.rejected_per_s),
                format_seconds(a.latency_p50),
                format_seconds(a.latency_p99),
            )
            for a in view.agencies
        ),
    )
    # One line each, cut at the terminal's width rather than wrapped, so the layout holds.
    monitor = [
        Text(line, no_wrap=True, overflow="ellipsis") for line in monitor_lines(view.monitor)
    ]
    top = max(1, TOP_REASONS - max(0, len(monitor) - SPARE_LINES))
    ranked = sorted(view.reasons, key=lambda r: (-(r.per_s or 0.0), -r.total, r.reason))
    shown, rest = ranked[:top], ranked[top:]
    reasons = _table(
        f"Rejections by reason (top {top})" if rest else "Rejections by reason",
        ("reason", "total", "per s"),
        ((r.reason, f"{r.total:,.0f}", format_rate(r.per_s)) for r in shown),
    )
    parts: list[RenderableType] = [header, summary, *monitor, workers, agencies, reasons]
    if rest:
        parts.append(
            Text(f"  +{len(rest)} more reasons, {sum(r.total for r in rest):,.0f} rejections")
        )
    return Group(*parts)


def watch(
    urls: Sequence[str],
    interval: float,
    scrape: Scrape,
    console: Console,
    monitors: Sequence[str] = (),
    fetch: Fetch = fetch_monitor,
) -> None:
    """Redraw the view every ``interval`` seconds until Ctrl-C, asking the monitors each time."""
    from rich.live import Live  # noqa: PLC0415

    timeout = scrape_timeout(interval)
    after = read(urls, scrape, timeout, monitors=monitors, fetch=fetch)
    with Live(render(build_view(None, after)), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                before, after = after, read(urls, scrape, timeout, monitors=monitors, fetch=fetch)
                live.update(render(build_view(before, after)), refresh=True)
        except KeyboardInterrupt:
            pass  # Ctrl-C is the normal way out of a live view
