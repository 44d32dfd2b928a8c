"""A tiny xgw bench run end to end: broker, workers, forwarder, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_a_tiny_bench_runs_end_to_end(tmp_path: Path) -> None:
    """A small run on the embedded broker reports every phase, and every count adds up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XGW_")}
    env["XGW_PKI_DIR"] = str(tmp_path / "pki")
    chart = tmp_path / "bench.png"
    result = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [
            *(sys.executable, "-m", "gateway", "bench", "-n", "200", "--workers", "2"),
            *("--rate", "100", "--latency-seconds", "1", "--json", "--plot", str(chart)),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["n"] == 200
    assert sum(data["expected_outcomes"].values()) == 200
    assert data["raw_transport_msg_s"] > 0
    assert data["pure_pipeline_msg_s"] > 0
    assert [g["workers"] for g in data["gateway"]] == [1, 2]
    # The monitor read every audit record the 1-worker drain left (one per receipt).
    assert data["monitor"]["audit_records"] == 200
    assert data["monitor"]["counted_audit_records_s"] > 0
    for run in data["gateway"]:
        assert run["receipts"] == 200
        assert run["outcomes"] == data["expected_outcomes"]
        assert run["counts_match"] is True
        assert run["ratio_to_pipeline"] > 0
        assert run["ratio_to_raw"] > 0
        assert len(run["workers_peak_rss_bytes"]) == run["workers"]
        assert run["peak_rss_bytes"] > 0
    latency = data["latency"]
    assert latency["sent"] == 100
    assert latency["missing_deliveries"] == 0
    assert latency["count"] > 0
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    assert data["ok"] is True
    assert chart.stat().st_size > 10_000
