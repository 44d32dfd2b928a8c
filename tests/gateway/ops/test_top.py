"""``xgw top``: quantiles, rates and rows from scraped samples, and the one-shot view."""

from __future__ import annotations

import io
import math
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
from gateway.ops.top_render import format_expiry, render, watch
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


def test_a_busy_exchange_fits_an_80_by_24_terminal_with_what_matters_first() -> None:
    """28 reasons and 16 lagging partitions: summary lines on top, top reasons, lag per topic."""
    agencies = ("police", "health", "education", "land")
    view = View(
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
    )
    console = Console(width=80, force_terminal=False)
    with console.capture() as captured:
        console.print(render(view))
    lines = captured.get().rstrip("\n").splitlines()
    assert len(lines) <= 24, "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].startswith("batch processing p99: 24.7 ms | nearest certificate expiry:")
    assert lines[2] == "consumer lag: 240 records, most on xgw.ingress.police (60)"
    assert "Rejections by reason (top 5)" in captured.get()
    assert lines[-1] == f"  +23 more reasons, {sum(100.0 + i for i in range(23)):,.0f} rejections"
