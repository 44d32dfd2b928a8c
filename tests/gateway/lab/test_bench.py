"""``xgw bench``: percentiles, report formatting, the mix, and a tiny run on the real broker."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from rich.console import Console

from gateway.cli.bench import bench
from gateway.lab.forgery import Forger
from gateway.lab.load import DUPLICATE, mix_of, plan, proc_sample, seal_records
from gateway.lab.report import (
    BenchResult,
    GatewayRun,
    Latency,
    Sustained,
    percentile,
    rss_windows,
    tables,
)
from tests.conftest import Pki


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles interpolate linearly between the two nearest ranks, like numpy's default."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.0], 95) == 7.0


def test_percentile_of_nothing_is_nan_and_bounds_are_checked() -> None:
    """No values give NaN; a percentile outside 0..100 is refused."""
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)


def test_rss_windows_compare_first_and_last_window() -> None:
    """The ratio is the mean of the last window over the mean of the first."""
    samples = [(float(t), 100 + t) for t in range(0, 300, 5)]
    first, last, ratio = rss_windows(samples, 60)
    assert first == pytest.approx(sum(100 + t for t in range(0, 61, 5)) / 13)
    assert last == pytest.approx(sum(100 + t for t in range(235, 300, 5)) / 13)
    assert ratio == pytest.approx(last / first, abs=1e-3)
    assert rss_windows([], 60)[2] is None


def _result() -> BenchResult:
    run = GatewayRun(
        workers=2,
        records=1000,
        elapsed_s=2.0,
        load_s=0.1,
        startup_s=4.0,
        receipts=1000,
        outcomes={"accepted": 990, "bad_signature": 10},
        counts_match=True,
        cpu_s=1.5,
        peak_rss_bytes=[100 << 20, 120 << 20],
        rss_start_bytes=[90 << 20, 91 << 20],
        rss_end_bytes=[95 << 20, 99 << 20],
    )
    latency = Latency(
        workers=2,
        rate_msg_s=100.0,
        seconds=2.0,
        sent=200,
        sending_s=1.99,
        latencies_ms=[float(v) for v in range(1, 101)],
        missing_deliveries=0,
    )
    return BenchResult(
        n=1000,
        mix={"bad": 10},
        expected={"accepted": 990, "bad_signature": 10},
        raw_msg_s=20_000.0,
        raw_elapsed_s=0.05,
        pipeline_msg_s=1000.0,
        gateway=[run],
        latency=latency,
    )


def test_json_shape_names_units_and_ratios() -> None:
    """The JSON form carries rates, ratios to both baselines, percentiles and peak RSS."""
    data = json.loads(json.dumps(_result().as_dict()))
    assert data["mode"] == "throughput"
    assert data["raw_transport_msg_s"] == 20_000.0
    assert data["pure_pipeline_msg_s"] == 1000.0
    assert data["pure_pipeline_us_per_msg"] == 1000.0
    (run,) = data["gateway"]
    assert run["msg_s"] == 500.0
    assert run["ratio_to_pipeline"] == 0.5
    assert run["ratio_to_raw"] == 0.025
    assert run["peak_rss_bytes"] == 120 << 20
    assert run["cpu_us_per_msg"] == 1500.0
    assert data["latency"]["p50_ms"] == 50.5
    assert data["latency"]["achieved_rate_msg_s"] == pytest.approx(100.5, abs=0.1)
    assert data["ok"] is True
    assert {"cpus", "python"} <= set(data["machine"])


def test_a_receipt_mismatch_makes_the_run_not_ok() -> None:
    """A drain whose receipts differ from the pure pipeline's outcomes fails the run."""
    result = _result()
    result.gateway[0].counts_match = False
    assert result.as_dict()["ok"] is False


def test_tables_render_every_path() -> None:
    """The human report names the baselines, the gateway run and the latency percentiles."""
    console = Console(record=True, width=160)
    for table in tables(_result()):
        console.print(table)
    text = console.export_text()
    for expected in ("raw transport", "pure pipeline", "gateway, 2 workers", "0.50x pipe", "p99"):
        assert expected in text


def test_sustained_report_says_whether_rss_stayed_flat() -> None:
    """The sustained section compares first and last windows per worker against 10 %."""
    samples = [[(float(t), 100 << 20) for t in range(0, 300, 5)]]
    grown = [[(float(t), (100 << 20) + t * (1 << 18)) for t in range(0, 300, 5)]]
    flat = Sustained(300, 5, 60, samples, [100 << 20]).as_dict()
    assert flat["rss_flat_within_10_percent"] is True
    assert flat["workers"][0]["ratio"] == 1.0
    assert Sustained(300, 5, 60, grown, [0]).as_dict()["rss_flat_within_10_percent"] is False


def test_proc_sample_reads_this_process() -> None:
    """RSS, peak RSS and CPU time come from /proc; a missing process gives None."""
    sample = proc_sample(os.getpid())
    assert sample is not None
    assert 0 < sample.rss_bytes <= sample.peak_rss_bytes
    assert sample.cpu_s > 0
    assert proc_sample(None) is None


async def test_the_mix_holds_valid_events_and_every_kind_of_bad_one(pki: Pki) -> None:
    """Sealed records are mostly police events, some vaccinations, and bad ones of many kinds."""
    forger = Forger(pki.keys, pki.ca)
    items = plan(forger, bad_fraction=0.2, seed=1, clock=lambda: datetime.now(UTC))
    agencies = {a: pki.keys[a] for a in ("police", "health", "education", "land")}
    records = await seal_records(items, 400, agencies, pki.trust, lambda _: None)
    assert len(records) == 400
    mix = mix_of(records)
    assert mix["by_type"]["vn.hcm.police.resident_registered.v1"] > 100
    assert mix["bad"] == sum(mix["bad_by_reason"].values())
    assert len(mix["bad_by_reason"]) >= 15
    assert DUPLICATE.removeprefix("bad:") in mix["bad_by_reason"]
    assert mix["bytes_max"] > 256 * 1024  # the record_too_large forgery


def test_cli_refuses_more_workers_than_partitions() -> None:
    """Asking for more workers than partitions is one readable usage error."""
    result = CliRunner().invoke(bench, ["--workers", "9"], env={"XGW_TOPIC_PARTITIONS": "4"})
    assert result.exit_code == 2
    assert "only 4 partitions" in result.output
