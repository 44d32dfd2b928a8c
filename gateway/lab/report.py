"""What ``xgw bench`` found: result records, percentiles, the table, the JSON line and the chart.

Pure apart from :func:`plot`, which writes a PNG (matplotlib, the ``bench`` extra).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from gateway.errors import ConfigError

_RSS_FLAT_LIMIT = 0.10  # the target: worker RSS within 10 % from first to last minute


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not 0 <= q <= 100:  # noqa: PLR2004 - percent bounds
        raise ValueError(f"percentile {q} is not within 0..100")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value: float, digits: int = 1) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator > 0 else None


@dataclass
class GatewayRun:
    """One drain of the pre-built records by ``workers`` gateway worker processes."""

    workers: int
    records: int
    elapsed_s: float  # first ingress record written -> last receipt read
    load_s: float  # of which writing the records took this long
    startup_s: float  # process start -> every worker has partitions (not in elapsed_s)
    receipts: int
    outcomes: dict[str, int]
    counts_match: bool
    cpu_s: float  # CPU used by the workers during elapsed_s
    peak_rss_bytes: list[int] = field(default_factory=list)  # per worker, VmHWM at the end
    rss_start_bytes: list[int] = field(default_factory=list)
    rss_end_bytes: list[int] = field(default_factory=list)

    @property
    def msg_s(self) -> float:
        """Ingress records decided per second."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self, pipeline_msg_s: float, raw_msg_s: float) -> dict[str, Any]:
        """The JSON form, with the ratios to the baselines."""
        return {
            "workers": self.workers,
            "msg_s": round(self.msg_s, 1),
            "ratio_to_pipeline": _ratio(self.msg_s, pipeline_msg_s),
            "ratio_to_raw": _ratio(self.msg_s, raw_msg_s),
            "elapsed_s": round(self.elapsed_s, 3),
            "load_s": round(self.load_s, 3),
            "startup_s": round(self.startup_s, 2),
            "receipts": self.receipts,
            "outcomes": dict(sorted(self.outcomes.items())),
            "counts_match": self.counts_match,
            "cpu_s": round(self.cpu_s, 2),
            "cpu_us_per_msg": round(self.cpu_s / self.records * 1e6, 1) if self.records else None,
            "peak_rss_bytes": max(self.peak_rss_bytes, default=0),
            "workers_peak_rss_bytes": self.peak_rss_bytes,
            "workers_rss_start_bytes": self.rss_start_bytes,
            "workers_rss_end_bytes": self.rss_end_bytes,
        }


@dataclass
class Latency:
    """Publish-to-delivery latency at a fixed offered rate."""

    workers: int
    rate_msg_s: float  # offered
    seconds: float
    sent: int
    sending_s: float  # first to last send
    latencies_ms: list[float]
    missing_deliveries: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        values = self.latencies_ms
        return {
            "workers": self.workers,
            "rate": self.rate_msg_s,
            "achieved_rate_msg_s": round(self.sent / self.sending_s, 1) if self.sending_s else 0.0,
            "seconds": self.seconds,
            "sent": self.sent,
            "count": len(values),
            "missing_deliveries": self.missing_deliveries,
            "p50_ms": _round(percentile(values, 50), 2),
            "p95_ms": _round(percentile(values, 95), 2),
            "p99_ms": _round(percentile(values, 99), 2),
            "max_ms": _round(max(values, default=math.nan), 2),
        }


def rss_windows(
    samples: Sequence[tuple[float, int]], window_s: float
) -> tuple[float, float, float | None]:
    """Mean RSS of the first and last ``window_s`` seconds of samples, and last / first.

    ``samples`` are ``(elapsed_s, rss_bytes)`` in time order.
    """
    if not samples:
        return math.nan, math.nan, None
    end = samples[-1][0]
    first = [rss for t, rss in samples if t <= samples[0][0] + window_s]
    last = [rss for t, rss in samples if t >= end - window_s]
    first_mean, last_mean = sum(first) / len(first), sum(last) / len(last)
    return first_mean, last_mean, _ratio(last_mean, first_mean)


@dataclass
class Sustained:
    """A long run at a fixed rate, sampling each worker's RSS."""

    duration_s: float
    interval_s: float
    window_s: float
    samples: list[list[tuple[float, int]]]  # per worker: (elapsed_s, rss_bytes)
    peak_rss_bytes: list[int]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: per worker first- and last-window RSS and their ratio."""
        workers = []
        for samples, peak in zip(self.samples, self.peak_rss_bytes, strict=True):
            first, last, ratio = rss_windows(samples, self.window_s)
            workers.append(
                {
                    "first_window_rss_bytes": None if math.isnan(first) else int(first),
                    "last_window_rss_bytes": None if math.isnan(last) else int(last),
                    "ratio": ratio,
                    "peak_rss_bytes": peak,
                    "samples": len(samples),
                }
            )
        ratios = [w["ratio"] for w in workers if w["ratio"] is not None]
        worst = max(ratios, key=lambda r: abs(r - 1), default=None)
        return {
            "duration_s": self.duration_s,
            "sample_interval_s": self.interval_s,
            "window_s": self.window_s,
            "workers": workers,
            "worst_ratio": worst,
            "rss_flat_within_10_percent": worst is not None and abs(worst - 1) <= _RSS_FLAT_LIMIT,
        }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


@dataclass
class BenchResult:
    """Everything one ``xgw bench`` run measured."""

    n: int
    mix: dict[str, Any]
    expected: dict[str, int]
    raw_msg_s: float = 0.0
    raw_elapsed_s: float = 0.0
    pipeline_msg_s: float = 0.0
    gateway: list[GatewayRun] = field(default_factory=list)
    # The exchange monitor over the 1-worker drain's audit topic: audit records per second
    # until it had read them all, and until every fact of theirs was counted in its windows.
    monitor_read_s: float = 0.0
    monitor_counted_s: float = 0.0
    monitor_audit_records: int = 0
    latency: Latency | None = None
    sustained: Sustained | None = None
    machine: dict[str, Any] = field(default_factory=machine)
    settings: dict[str, Any] = field(default_factory=dict)
    broker: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Every drain got exactly one receipt per record, with the pure pipeline's outcomes."""
        late = self.latency.missing_deliveries if self.latency else 0
        return all(g.counts_match for g in self.gateway) and late == 0

    def as_dict(self) -> dict[str, Any]:
        """The machine-readable result (``--json``); every name carries its unit."""
        out: dict[str, Any] = {
            "mode": "sustained" if self.sustained else "throughput",
            "n": self.n,
            "mix": self.mix,
            "expected_outcomes": dict(sorted(self.expected.items())),
        }
        if not self.sustained:
            pipeline_us = 1e6 / self.pipeline_msg_s if self.pipeline_msg_s else None
            out |= {
                "raw_transport_msg_s": round(self.raw_msg_s, 1),
                "raw_transport_elapsed_s": round(self.raw_elapsed_s, 3),
                "pure_pipeline_msg_s": round(self.pipeline_msg_s, 1),
                "pure_pipeline_us_per_msg": round(pipeline_us, 1) if pipeline_us else None,
                "gateway": [g.as_dict(self.pipeline_msg_s, self.raw_msg_s) for g in self.gateway],
                "monitor": self._monitor(),
            }
        out["latency"] = self.latency.as_dict() if self.latency else None
        if self.sustained:
            out["sustained"] = self.sustained.as_dict()
        out |= {
            "ok": self.ok,
            "machine": self.machine,
            "settings": self.settings,
            "broker": self.broker,
            "elapsed_s": round(self.elapsed_s, 1),
        }
        return out

    def _monitor(self) -> dict[str, Any] | None:
        if not self.monitor_audit_records:
            return None
        return {
            "audit_records": self.monitor_audit_records,
            "read_audit_records_s": round(self.monitor_audit_records / self.monitor_read_s, 1),
            "counted_audit_records_s": round(
                self.monitor_audit_records / self.monitor_counted_s, 1
            ),
        }


def _mib(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value / 1_048_576:.0f} MiB"


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def tables(result: BenchResult) -> list[Table]:
    """The human report: throughput against the baselines, then latency and memory."""
    data = result.as_dict()
    found: list[Table] = []
    if not result.sustained:
        title = f"xgw bench: {result.n:,} ingress records ({data['mix']['bad']} bad)"
        throughput = Table(title=title)
        for name in ("path", "msg/s", "gateway ratio", "CPU us/msg", "peak RSS", "note"):
            throughput.add_column(name, justify="left" if name in {"path", "note"} else "right")
        throughput.add_row(
            "raw transport (consume -> produce)",
            _num(data["raw_transport_msg_s"]),
            "",
            "",
            "",
            "bytes forwarded, no checks",
        )
        throughput.add_row(
            "pure pipeline (1 core, no I/O)",
            _num(data["pure_pipeline_msg_s"]),
            "",
            _num(data["pure_pipeline_us_per_msg"]),
            "",
            "decide_batch() only",
        )
        for run in data["gateway"]:
            ratios = (
                f"{run['ratio_to_pipeline'] or 0:.2f}x pipe, {run['ratio_to_raw'] or 0:.3f}x raw"
            )
            throughput.add_row(
                f"gateway, {run['workers']} worker{'s' if run['workers'] > 1 else ''}",
                _num(run["msg_s"]),
                ratios,
                _num(run["cpu_us_per_msg"]),
                _mib(run["peak_rss_bytes"]),
                "receipts match" if run["counts_match"] else "[red]RECEIPTS DIFFER[/]",
            )
        if monitor := data.get("monitor"):
            throughput.add_row(
                "exchange monitor (faust), audit",
                _num(monitor["counted_audit_records_s"]),
                "",
                "",
                "",
                f"audit records counted (read {monitor['read_audit_records_s']:,.0f}/s)",
            )
        found.append(throughput)
    if result.latency:
        lat = data["latency"]
        latency = Table(
            title=(
                f"publish -> delivery latency at {lat['rate']:g} msg/s offered "
                f"({lat['achieved_rate_msg_s']:g} achieved, {lat['workers']} workers)"
            )
        )
        for name in ("deliveries", "p50", "p95", "p99", "max", "missing"):
            latency.add_column(name, justify="right")
        latency.add_row(
            str(lat["count"]),
            _num(lat["p50_ms"], " ms"),
            _num(lat["p95_ms"], " ms"),
            _num(lat["p99_ms"], " ms"),
            _num(lat["max_ms"], " ms"),
            str(lat["missing_deliveries"]),
        )
        found.append(latency)
    if result.sustained:
        sus = data["sustained"]
        memory = Table(
            title=f"worker RSS over {sus['duration_s']:g}s: first vs last {sus['window_s']:g}s"
        )
        for name in ("worker", "first", "last", "ratio", "peak"):
            memory.add_column(name, justify="right")
        for i, worker in enumerate(sus["workers"]):
            memory.add_row(
                str(i),
                _mib(worker["first_window_rss_bytes"]),
                _mib(worker["last_window_rss_bytes"]),
                _num(worker["ratio"]),
                _mib(worker["peak_rss_bytes"]),
            )
        found.append(memory)
    return found


def plot(result: BenchResult, path: Path) -> None:
    """Write the chart: throughput against the baselines and latency, or RSS over time."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional, only for --plot

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'hcmc-xgw[bench]'") from exc
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(3, 2))
    if result.sustained:
        for i, samples in enumerate(result.sustained.samples):
            left.plot([t for t, _ in samples], [r / 1_048_576 for _, r in samples], label=f"w{i}")
        left.set(title="worker RSS under sustained load", xlabel="s", ylabel="MiB")
        left.legend()
    else:
        labels = ["raw\ntransport", "pure\npipeline"] + [
            f"gateway\n{g.workers} worker{'s' if g.workers > 1 else ''}" for g in result.gateway
        ]
        values = [result.raw_msg_s, result.pipeline_msg_s] + [g.msg_s for g in result.gateway]
        bars = left.bar(
            labels, values, color=["#999999", "#6a8caf"] + ["#d9822b"] * len(result.gateway)
        )
        left.bar_label(bars, fmt="{:,.0f}")
        left.set(title=f"throughput, {result.n:,} records", ylabel="msg/s")
        left.set_yscale("log")
    if result.latency and result.latency.latencies_ms:
        lat = result.latency.as_dict()
        names = ["p50", "p95", "p99"]
        bars = right.bar(names, [lat[f"{n}_ms"] for n in names], color="#4f9a6b")
        right.bar_label(bars, fmt="{:,.1f}")
        right.set(title=f"latency at {lat['rate']:g} msg/s, {lat['workers']} workers", ylabel="ms")
    else:
        right.set_axis_off()
    figure.suptitle(
        f"xgw bench on {result.machine['cpus']} CPUs, Python {result.machine['python']}"
    )
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise ConfigError(f"cannot write the chart to {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(figure)
