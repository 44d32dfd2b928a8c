"""``xgw top``: quantiles, rates and rows from scraped samples, and the one-shot view."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import socket
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from rich.console import Console

from gateway.cli import cli
from gateway.ops.top import (
    AgencyRow,
    Endpoint,
    LagRow,
    Reading,
    ReasonRow,
    View,
    WorkerRow,
    build_view,
    histogram_buckets,
    histogram_quantile,
    increase,
    parse_key,
    read,
    sum_by,
)
from gateway.ops.top_monitor import (
    MonitorAlert,
    MonitorEndpoint,
    MonitorView,
    Requester,
    Stall,
    merge_monitor_views,
    monitor_view,
)
from gateway.ops.top_render import format_expiry, monitor_lines, render, watch
from gateway.reasons import ReasonCode

INF = math.inf
METRICS_TEXT = """\
# HELP xgw_messages_received_total Ingress records read.
# TYPE xgw_messages_received_total counter
xgw_messages_received_total{agency="police"} 120.0
xgw_messages_received_total{agency="health"} 30.0
# TYPE xgw_messages_delivered_total counter
xgw_messages_delivered_total{agency="police",recipient="health",type="t"} 100.0
# TYPE xgw_messages_rejected_total counter
xgw_messages_rejected_total{agency="police",reason="revoked_certificate",type="t"} 20.0
xgw_messages_rejected_total{agency="health",reason="bad_signature",type="t"} 5.0
# TYPE xgw_end_to_end_latency_seconds histogram
xgw_end_to_end_latency_seconds_bucket{agency="police",le="0.01"} 10.0
xgw_end_to_end_latency_seconds_bucket{agency="police",le="0.05"} 90.0
xgw_end_to_end_latency_seconds_bucket{agency="police",le="0.1"} 100.0
xgw_end_to_end_latency_seconds_bucket{agency="police",le="+Inf"} 100.0
xgw_end_to_end_latency_seconds_count{agency="police"} 100.0
xgw_end_to_end_latency_seconds_sum{agency="police"} 3.0
# TYPE xgw_batch_processing_seconds histogram
xgw_batch_processing_seconds_bucket{le="0.01"} 4.0
xgw_batch_processing_seconds_bucket{le="0.025"} 8.0
xgw_batch_processing_seconds_bucket{le="+Inf"} 8.0
xgw_batch_processing_seconds_count 8.0
xgw_batch_processing_seconds_sum 0.1
# TYPE xgw_assigned_partitions gauge
xgw_assigned_partitions 4.0
# TYPE xgw_build info
xgw_build_info{version="9.8.7"} 1.0
"""


def _counts(decisions: int = 0, requests: int = 0, distinct: int = 0) -> dict[str, int]:
    return {
        "decisions": decisions,
        "rejected": 0,
        "deliveries": 0,
        "requests": requests,
        "distinct_subjects": distinct,
    }


def _alert(kind: str, agency: str, start: str, raised: str) -> dict[str, object]:
    return {
        "id": f"{kind}-{agency}",
        "kind": kind,
        "agency": agency,
        "type": "*",
        "window_start": f"2026-12-07T{start}.000Z",
        "window_end": "2026-12-07T06:41:00.000Z",
        "count": 120,
        "baseline": 4.0,
        "threshold": 50.0,
        "raised_at": f"2026-12-07T{raised}.000Z",
    }


def _partition(topic: str, partition: int, lag: int, stalled: float) -> dict[str, object]:
    return {
        "topic": topic,
        "partition": partition,
        "committed": 100,
        "lag": lag,
        "stalled_seconds": stalled,
    }


# Two monitor processes' /monitor views (gateway.monitor.app.Monitor.view): the first counts
# education and police, the second health and land.
MONITOR_ONE = {
    "app_id": "xgw-monitor",
    "stream_time": 1_796_625_650.0,
    "windows": {
        "1m": {
            "seconds": 60.0,
            "start": 1_796_625_600.0,
            "agencies": {
                "education": {"current": _counts(5, 123, 120), "last": _counts(60, 4, 4)},
                "police": {"current": _counts(300), "last": _counts(720)},
            },
        },
        "1h": {
            "seconds": 3600.0,
            "start": 1_796_623_200.0,
            "agencies": {
                "education": {"current": _counts(65, 127, 124), "last": _counts(3000, 200, 190)},
                "police": {"current": _counts(1020), "last": _counts(40_000)},
            },
        },
    },
    "top_requesters": {
        "1m": [{"agency": "education", "distinct_subjects": 120, "requests": 123}],
        "1h": [{"agency": "education", "distinct_subjects": 124, "requests": 127}],
    },
    "alerts": [_alert("bulk_lookup", "education", "06:40:00", "06:40:12")],
    "partitions": [_partition("xgw.audit", 0, 0, 0.0), _partition("xgw.audit", 2, 40, 0.0)],
}
MONITOR_TWO = {
    "app_id": "xgw-monitor",
    "stream_time": 1_796_625_652.0,
    "windows": {
        "1m": {
            "seconds": 60.0,
            "start": 1_796_625_600.0,
            "agencies": {
                "health": {"current": _counts(10, 3, 3), "last": _counts(180, 2, 2)},
                "land": {"current": _counts(1), "last": _counts(30)},
            },
        },
        "1h": {
            "seconds": 3600.0,
            "start": 1_796_623_200.0,
            "agencies": {
                "health": {"current": _counts(190, 5, 5), "last": _counts(9000, 90, 80)},
                "land": {"current": _counts(31), "last": _counts(1500)},
            },
        },
    },
    "top_requesters": {
        "1m": [{"agency": "health", "distinct_subjects": 3, "requests": 3}],
        "1h": [{"agency": "health", "distinct_subjects": 5, "requests": 5}],
    },
    "alerts": [_alert("rejection_spike", "health", "06:39:00", "06:39:30")],
    "partitions": [_partition("xgw.audit", 0, 0, 0.0), _partition("xgw.audit", 2, 41, 75.0)],
}


def _reading(at: float, *endpoints: tuple[str, dict[str, float] | None]) -> Reading:
    return Reading(
        at,
        tuple(Endpoint(url, samples, "" if samples else "refused") for url, samples in endpoints),
    )


def test_parse_key_splits_name_and_labels() -> None:
    """A scrape key yields the metric name and its labels, and an unlabelled key none."""
    assert parse_key("xgw_x_total{agency=police,reason=bad_signature}") == (
        "xgw_x_total",
        {"agency": "police", "reason": "bad_signature"},
    )
    assert parse_key("xgw_assigned_partitions{}") == ("xgw_assigned_partitions", {})


def test_quantile_interpolates_inside_the_bucket() -> None:
    """The quantile is interpolated linearly within its bucket, the first starting at zero."""
    buckets = [(0.1, 10.0), (0.5, 30.0), (INF, 30.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.075)
    assert histogram_quantile(1.0, buckets) == pytest.approx(0.5)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    """A rank beyond the last finite bucket yields that bucket's bound, as Prometheus does."""
    assert histogram_quantile(0.99, [(0.1, 1.0), (1.0, 2.0), (INF, 10.0)]) == 1.0


def test_quantile_without_observations_is_none() -> None:
    """No observations, or no +Inf bucket, gives no quantile instead of a made-up number."""
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 3.0)]) is None


def test_buckets_are_summed_by_bound_over_matching_series() -> None:
    """Bucket series of matching labels are added per bound and sorted, others ignored."""
    samples = {
        "h_bucket{agency=a,le=+Inf}": 3.0,
        "h_bucket{agency=a,le=0.1}": 1.0,
        "h_bucket{agency=b,le=0.1}": 2.0,
        "h_bucket{agency=b,le=+Inf}": 2.0,
        "h_count{agency=a}": 3.0,
    }
    assert histogram_buckets(samples, "h") == [(0.1, 3.0), (INF, 5.0)]
    assert histogram_buckets(samples, "h", {"agency": "a"}) == [(0.1, 1.0), (INF, 3.0)]


def test_increase_handles_restarts_and_skips_gauges() -> None:
    """Counters grow by their difference, a reset counts from zero, gauges are not differenced."""
    before = {"c_total{a=x}": 10.0, "c_total{a=y}": 50.0, "g{}": 5.0}
    after = {"c_total{a=x}": 15.0, "c_total{a=y}": 4.0, "c_total{a=z}": 2.0, "g{}": 1.0}
    assert increase(before, after) == {
        "c_total{a=x}": 5.0,
        "c_total{a=y}": 4.0,
        "c_total{a=z}": 2.0,
    }


def test_rates_and_reason_totals_over_two_workers() -> None:
    """Rates are growth per second summed over workers; reason totals are summed counts."""
    one_before = {
        "xgw_messages_received_total{agency=police}": 100.0,
        "xgw_messages_rejected_total{agency=police,reason=bad_signature,type=t}": 10.0,
    }
    one_after = {
        "xgw_messages_received_total{agency=police}": 120.0,
        "xgw_messages_rejected_total{agency=police,reason=bad_signature,type=t}": 14.0,
    }
    two_before = {"xgw_messages_received_total{agency=police}": 50.0}
    two_after = {
        "xgw_messages_received_total{agency=police}": 60.0,
        "xgw_messages_rejected_total{agency=police,reason=stale_event,type=t}": 1.0,
    }
    view = build_view(
        _reading(10.0, ("a", one_before), ("b", two_before)),
        _reading(12.0, ("a", one_after), ("b", two_after)),
    )
    (police,) = view.agencies
    assert police.received_per_s == pytest.approx(15.0)
    assert police.rejected_per_s == pytest.approx(2.5)
    assert police.delivered_per_s == 0.0
    assert [(r.reason, r.total, r.per_s) for r in view.reasons] == [
        ("bad_signature", 14.0, pytest.approx(2.0)),
        ("stale_event", 1.0, pytest.approx(0.5)),
    ]
    assert view.window_s == pytest.approx(2.0)


def test_a_worker_down_in_either_scrape_adds_no_rate() -> None:
    """A worker that was down before or is down now counts in totals or as down, not in rates."""
    samples = {"xgw_messages_received_total{agency=police}": 1000.0}
    view = build_view(
        _reading(0.0, ("a", None), ("b", samples)),
        _reading(1.0, ("a", samples), ("b", None)),
    )
    assert view.agencies[0].received_per_s == 0.0
    assert [(w.url, w.up, w.error) for w in view.workers] == [
        ("a", True, ""),
        ("b", False, "refused"),
    ]
    assert view.up == 1


def test_first_scrape_has_no_rates_and_cumulative_latency() -> None:
    """Before a second scrape rates are unknown and latency quantiles cover the time since start."""
    samples = {
        "xgw_messages_received_total{agency=police}": 5.0,
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=0.1}": 4.0,
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=+Inf}": 4.0,
    }
    view = build_view(None, _reading(1.0, ("a", samples)))
    assert view.agencies[0].received_per_s is None
    assert view.agencies[0].latency_p50 == pytest.approx(0.05)
    assert view.latency_scope == "since start"
    assert view.window_s is None


def test_latency_covers_the_last_interval_when_it_saw_events() -> None:
    """With observations between two scrapes, quantiles describe only that interval."""
    before = {
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=0.1}": 100.0,
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=1.0}": 100.0,
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=+Inf}": 100.0,
        "xgw_end_to_end_latency_seconds_count{agency=police}": 100.0,
        "xgw_messages_received_total{agency=police}": 100.0,
    }
    after = {
        **before,
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=1.0}": 110.0,
        "xgw_end_to_end_latency_seconds_bucket{agency=police,le=+Inf}": 110.0,
        "xgw_end_to_end_latency_seconds_count{agency=police}": 110.0,
    }
    view = build_view(_reading(0.0, ("a", before)), _reading(1.0, ("a", after)))
    assert view.latency_scope == "last 1.0s"
    assert view.agencies[0].latency_p50 == pytest.approx(0.55)


def test_lag_is_optional_and_takes_the_larger_report() -> None:
    """Without the lag gauge the view says n/a; a partition reported twice shows the larger lag."""
    assert build_view(None, _reading(0.0, ("a", {}))).lag is None
    view = build_view(
        None,
        _reading(
            0.0,
            ("a", {"xgw_consumer_lag_records{partition=1,topic=xgw.ingress.police}": 3.0}),
            ("b", {"xgw_consumer_lag_records{partition=1,topic=xgw.ingress.police}": 9.0}),
        ),
    )
    assert view.lag is not None
    assert [(r.topic, r.partition, r.records) for r in view.lag] == [("xgw.ingress.police", 1, 9.0)]


def test_nearest_certificate_expiry_is_the_minimum() -> None:
    """The view shows the nearest expiry over all workers, and an expired one as such."""
    view = build_view(
        None,
        _reading(
            0.0,
            ("a", {"xgw_certificate_expiry_seconds{}": 90_000.0}),
            ("b", {"xgw_certificate_expiry_seconds{}": 7_200.0}),
        ),
    )
    assert view.certificate_expiry_s == 7_200.0
    assert format_expiry(view.certificate_expiry_s) == "in 2h 0m"
    assert format_expiry(90_000.0) == "in 1d 1h"
    assert format_expiry(-3 * 86_400.0) == "EXPIRED 3d 0h ago"
    assert format_expiry(None) == "n/a"


def test_sum_by_groups_on_one_label() -> None:
    """Samples of one metric are summed per label value."""
    samples = {
        "d_total{agency=police,recipient=health}": 2.0,
        "d_total{agency=police,recipient=land}": 3.0,
        "d_total{agency=land,recipient=police}": 1.0,
        "other_total{agency=police}": 100.0,
    }
    assert sum_by(samples, "d_total", "agency") == {"police": 5.0, "land": 1.0}


def test_read_records_a_failing_endpoint_as_down() -> None:
    """A scrape that raises becomes a down endpoint with a short reason, never an exception."""

    def scrape(url: str, _timeout: float) -> dict[str, float]:
        if "bad" in url:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        return {"xgw_assigned_partitions{}": 2.0}

    reading = read(["http://good/metrics", "http://bad/metrics"], scrape, clock=lambda: 7.0)
    assert reading.at == 7.0
    assert [(e.url, e.up, e.error) for e in reading.endpoints] == [
        ("http://good/metrics", True, ""),
        ("http://bad/metrics", False, "Connection refused"),
    ]


def test_two_monitors_views_add_up() -> None:
    """Merged views hold both processes' agencies, requesters and alerts, newest alert first."""
    merged = merge_monitor_views([MONITOR_ONE, MONITOR_TWO])
    short = merged["windows"]["1m"]
    assert sorted(short["agencies"]) == ["education", "health", "land", "police"]
    assert short["agencies"]["health"] == MONITOR_TWO["windows"]["1m"]["agencies"]["health"]
    assert short["seconds"] == 60.0
    assert merged["stream_time"] == 1_796_625_652.0
    assert [r["agency"] for r in merged["top_requesters"]["1m"]] == ["education", "health"]
    assert [a["kind"] for a in merged["alerts"]] == ["bulk_lookup", "rejection_spike"]
    # Every process watches the same input partitions: one row each, the larger figures.
    assert merged["partitions"] == [
        _partition("xgw.audit", 0, 0, 0.0),
        _partition("xgw.audit", 2, 41, 75.0),
    ]


def test_an_agency_counted_by_two_monitors_is_summed() -> None:
    """Counts and requesters of an agency in both views (a partition moving) are added."""
    merged = merge_monitor_views([MONITOR_ONE, MONITOR_ONE])
    education = merged["windows"]["1m"]["agencies"]["education"]
    assert education["current"] == _counts(10, 246, 240)
    assert education["last"] == _counts(120, 8, 8)
    assert merged["top_requesters"]["1m"] == [
        {"agency": "education", "distinct_subjects": 240, "requests": 246}
    ]
    assert len(merged["alerts"]) == 2
    assert merge_monitor_views([MONITOR_ONE]) == MONITOR_ONE


def test_monitor_view_reads_the_shortest_window() -> None:
    """Rates are last-window decisions per second, most first; the longest stall is kept."""
    view = monitor_view(
        (
            MonitorEndpoint("http://m1/monitor", MONITOR_ONE),
            MonitorEndpoint("http://m2/monitor", MONITOR_TWO),
            MonitorEndpoint("http://m3/monitor", None, "Connection refused"),
        )
    )
    assert view.answered == 2
    assert [m.url for m in view.silent] == ["http://m3/monitor"]
    assert view.window == "1m"
    assert view.requesters == (Requester("education", 120, 123), Requester("health", 3, 3))
    assert view.decisions_per_s == (
        ("police", 12.0),
        ("health", 3.0),
        ("education", 1.0),
        ("land", 0.5),
    )
    assert view.alerts == 2
    assert view.newest_alert == MonitorAlert("bulk_lookup", "education", "2026-12-07T06:40:00.000Z")
    assert view.stall == Stall("xgw.audit", 2, 75.0)


def _monitor(**changes: object) -> MonitorView:
    view = monitor_view(
        (
            MonitorEndpoint("http://m1/monitor", MONITOR_ONE),
            MonitorEndpoint("http://m2/monitor", MONITOR_TWO),
        )
    )
    return dataclasses.replace(view, **changes)


def test_monitor_lines_name_requesters_rates_and_alerts() -> None:
    """Three lines: top requesters, the top three decision rates, the alerts and the stall."""
    assert monitor_lines(_monitor(stall=None)) == [
        "monitor 1m: top requesters education 120 residents/123 req, health 3/3",
        "monitor decisions/s (last 1m): police 12.0, health 3.0, education 1.0",
        "alerts: 2 (newest: bulk_lookup education 06:40:00Z)",
    ]
    stalled = monitor_lines(_monitor())[2]
    assert stalled.startswith("monitor commit stalled 75 s on xgw.audit:2 | alerts: 2")


def test_monitor_lines_without_an_answer_or_anything_counted() -> None:
    """No monitor answering is one line; an idle monitor says none; no monitor adds nothing."""
    down = MonitorEndpoint("http://127.0.0.1:6066/monitor", None, "Connection refused")
    assert monitor_lines(monitor_view((down,))) == [
        "monitor: no answer at http://127.0.0.1:6066/monitor"
    ]
    window = {"seconds": 60.0, "start": 0.0, "agencies": {}}
    idle = {"windows": {"1m": window}, "top_requesters": {"1m": []}, "alerts": []}
    lines = monitor_lines(monitor_view((MonitorEndpoint("http://m/monitor", idle), down)))
    assert lines == [
        "monitor 1m: top requesters none",
        "monitor decisions/s (last 1m): none",
        "no answer at http://127.0.0.1:6066/monitor | alerts: 0",
    ]
    assert monitor_lines(None) == []


def test_read_fetches_monitors_and_records_those_that_fail() -> None:
    """A monitor that fails or serves something else is recorded with a reason, never raised."""

    def fetch(url: str, _timeout: float) -> dict[str, object]:
        if "down" in url:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        return MONITOR_ONE if "good" in url else {"windows": []}

    reading = read(
        ["http://w/metrics"],
        lambda _url, _timeout: {},
        monitors=["http://good/monitor", "http://down/monitor", "http://other/monitor"],
        fetch=fetch,
    )
    assert [(m.url, m.view is not None, m.error) for m in reading.monitors] == [
        ("http://good/monitor", True, ""),
        ("http://down/monitor", False, "Connection refused"),
        ("http://other/monitor", False, "not a monitor view"),
    ]
    view = build_view(None, reading)
    assert view.monitor is not None
    assert view.monitor.answered == 1
    assert build_view(None, _reading(0.0, ("a", {}))).monitor is None


def test_render_says_na_without_lag_or_certificates() -> None:
    """The rendered view names missing lag and certificate metrics as n/a."""
    console = Console(width=120, force_terminal=False)
    with console.capture() as captured:
        console.print(render(build_view(None, _reading(0.0, ("a", {})))))
    text = captured.get()
    assert "consumer lag: n/a" in text
    assert "nearest certificate expiry: n/a" in text


def test_live_view_redraws_until_interrupted() -> None:
    """The live view scrapes every interval and returns quietly on Ctrl-C."""
    calls: list[str] = []

    def scrape(url: str, _timeout: float) -> dict[str, float]:
        calls.append(url)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {"xgw_messages_received_total{agency=police}": float(len(calls))}

    output = io.StringIO()
    watch(["http://w/metrics"], 0.01, scrape, Console(file=output, width=120))
    assert len(calls) == 3
    assert "police" in output.getvalue()


# --- the command against a local /metrics endpoint ---------------------------------------------


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = METRICS_TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """A /metrics endpoint serving a fixed text on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _monitor_handler(view: dict[str, object]) -> type[BaseHTTPRequestHandler]:
    class _Monitor(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(view).encode()
            self.send_response(200 if self.path == "/monitor" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return _Monitor


@pytest.fixture
def monitor_urls() -> Iterator[list[str]]:
    """Two monitors' /monitor endpoints serving MONITOR_ONE and MONITOR_TWO."""
    servers = [
        ThreadingHTTPServer(("127.0.0.1", 0), _monitor_handler(view))
        for view in (MONITOR_ONE, MONITOR_TWO)
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield [f"http://127.0.0.1:{s.server_port}/monitor" for s in servers]
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.shutdown()
            server.server_close()
            thread.join()


def test_once_prints_one_plain_snapshot(metrics_url: str) -> None:
    """``--once`` prints agencies, reasons, latency, partitions and version without ANSI codes."""
    result = CliRunner().invoke(cli, ["top", "--once", "--interval", "0.1", "--url", metrics_url])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out
    assert "1/1 workers up" in out
    assert "build 9.8.7" in out
    assert "police" in out
    assert "health" in out
    assert "revoked_certificate" in out
    assert "bad_signature" in out
    # 50th of 100: 10 below 10 ms, 80 in (10, 50] ms: 10 + 40 * 40/80 = 30 ms.
    assert "30.0 ms" in out
    # batch p99: rank 7.92 in (10, 25] ms holding 4: 10 + 15 * 3.92/4 = 24.7 ms.
    assert "batch processing p99: 24.7 ms" in out
    assert "consumer lag: n/a" in out
    assert "nearest certificate expiry: n/a" in out
    worker_line = next(line for line in out.splitlines() if metrics_url in line)
    assert " up " in worker_line
    assert " 4 " in worker_line


def test_once_shows_a_down_endpoint_next_to_a_live_one(metrics_url: str) -> None:
    """An unreachable endpoint appears as down in the view while the others are shown."""
    down = "http://127.0.0.1:1/metrics"
    result = CliRunner().invoke(
        cli, ["top", "--once", "--interval", "0.1", "--url", metrics_url, "--url", down]
    )
    assert result.exit_code == 0, result.output
    assert "1/2 workers up" in result.stdout
    down_line = next(line for line in result.stdout.splitlines() if down in line)
    assert "down" in down_line
    assert "Traceback" not in result.output


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound once by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_once_with_an_unreachable_monitor_is_one_line(metrics_url: str, unused_port: int) -> None:
    """A monitor that does not answer is one line in the snapshot; the workers' view is whole."""
    monitor = f"http://127.0.0.1:{unused_port}/monitor"
    result = CliRunner().invoke(
        cli, ["top", "--once", "--interval", "0.1", "--url", metrics_url, "--monitor", monitor]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"monitor: no answer at {monitor}" in lines
    assert sum("monitor" in line for line in lines) == 1
    assert "1/1 workers up" in result.stdout
    assert "revoked_certificate" in result.stdout
    assert "Traceback" not in result.output


def test_once_asks_the_monitor_port_of_the_settings_by_default(
    metrics_url: str, unused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--monitor`` the snapshot asks ``/monitor`` on ``XGW_MONITOR_PORT``."""
    monkeypatch.setenv("XGW_MONITOR_PORT", str(unused_port))
    result = CliRunner().invoke(cli, ["top", "--once", "--interval", "0.1", "--url", metrics_url])
    assert result.exit_code == 0, result.output
    assert f"monitor: no answer at http://127.0.0.1:{unused_port}/monitor" in result.stdout


def test_once_shows_two_monitors_added_up(metrics_url: str, monitor_urls: list[str]) -> None:
    """Two monitors' views are fetched, added up and shown next to the workers' view."""
    result = CliRunner().invoke(
        cli,
        ["top", "--once", "--interval", "0.1", "--url", metrics_url]
        + [arg for url in monitor_urls for arg in ("--monitor", url)],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "monitor 1m: top requesters education 120 residents/123 req, health 3/3" in out
    assert "monitor decisions/s (last 1m): police 12.0, health 3.0, education 1.0" in out
    assert "monitor commit stalled 75 s on xgw.audit:2 | alerts: 2 (newest: bulk_lookup" in out
    assert "1/1 workers up" in out


def test_once_with_every_endpoint_down_is_one_line() -> None:
    """With no endpoint answering, ``--once`` exits 1 with one line naming the endpoint."""
    result = CliRunner().invoke(
        cli, ["top", "--once", "--interval", "0.1", "--url", "http://127.0.0.1:1/metrics"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no gateway worker answered" in lines[0]
    assert "127.0.0.1:1" in lines[0]


def _busy_view(monitor: MonitorView | None = None) -> View:
    """Four agencies, 28 reasons and 16 lagging partitions."""
    agencies = ("police", "health", "education", "land")
    return View(
        workers=(WorkerRow("http://127.0.0.1:9464/metrics", True, 16, "0.1.0"),),
        agencies=tuple(AgencyRow(a, 10.0, 20.0, 1.0, 0.02, 0.08) for a in agencies),
        reasons=tuple(
            ReasonRow(code.value, 100.0 + i, float(i))
            for i, code in enumerate(list(ReasonCode)[:28])
        ),
        window_s=2.0,
        latency_scope="last 2.0s",
        batch_p99=0.0247,
        lag=tuple(LagRow(f"xgw.ingress.{a}", p, 10.0 * p) for a in agencies for p in range(4)),
        certificate_expiry_s=86400 * 200,
        versions=("0.1.0",),
        monitor=monitor,
    )


def _render_80(view: View) -> tuple[str, list[str]]:
    console = Console(width=80, force_terminal=False)
    with console.capture() as captured:
        console.print(render(view))
    return captured.get(), captured.get().rstrip("\n").splitlines()


def test_a_busy_exchange_fits_an_80_by_24_terminal_with_what_matters_first() -> None:
    """28 reasons and 16 lagging partitions: summary lines on top, top reasons, lag per topic."""
    text, lines = _render_80(_busy_view())
    assert len(lines) <= 24, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].startswith("batch processing p99: 24.7 ms | nearest certificate expiry:")
    assert lines[2] == "consumer lag: 240 records, most on xgw.ingress.police (60)"
    assert "Rejections by reason (top 5)" in text
    assert lines[-1] == f"  +23 more reasons, {sum(100.0 + i for i in range(23)):,.0f} rejections"


def test_a_busy_exchange_and_its_monitor_fit_an_80_by_24_terminal() -> None:
    """The monitor's three lines follow the summary, cut at 80 columns; two reasons make room."""
    text, lines = _render_80(_busy_view(_monitor()))
    assert len(lines) <= 24, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert lines[2] == "consumer lag: 240 records, most on xgw.ingress.police (60)"
    assert lines[3] == "monitor 1m: top requesters education 120 residents/123 req, health 3/3"
    assert lines[4] == "monitor decisions/s (last 1m): police 12.0, health 3.0, education 1.0"
    assert lines[5].startswith("monitor commit stalled 75 s on xgw.audit:2 | alerts: 2 (newest:")
    assert "Rejections by reason (top 3)" in text
    assert lines[-1] == f"  +25 more reasons, {sum(100.0 + i for i in range(25)):,.0f} rejections"


def test_a_silent_monitor_is_one_line_and_leaves_the_reasons() -> None:
    """With the monitor not answering, its one line fits beside the five top reasons."""
    down = MonitorEndpoint("http://127.0.0.1:6066/monitor", None, "Connection refused")
    text, lines = _render_80(_busy_view(monitor_view((down,))))
    assert len(lines) <= 24, "\n".join(lines)
    assert lines[3] == "monitor: no answer at http://127.0.0.1:6066/monitor"
    assert "Rejections by reason (top 5)" in text
