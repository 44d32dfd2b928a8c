"""The ``xgw bench`` command (registered on the ``xgw`` group by :mod:`gateway.cli`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from gateway.cli.options import (
    EXIT_ERROR,
    duration_option,
    embedded_bootstrap_option,
    json_option,
    pki_dir_option,
    rate_option,
    seed_option,
)
from gateway.settings import load_settings


@click.command()
@embedded_bootstrap_option
@pki_dir_option
@click.option(
    "-n",
    "--records",
    type=click.IntRange(10, 10_000_000),
    default=20_000,
    show_default=True,
    help="Ingress records pre-built and drained by each throughput phase.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Gateway worker processes of the scaled phase (1 is always measured).",
)
@rate_option(1, 100_000, 1000.0, "Offered load (msg/s) of the latency phase and of --duration.")
@click.option(
    "--latency-seconds",
    type=click.FloatRange(0.5, 3600),
    default=5.0,
    show_default=True,
    help="How long the latency phase offers --rate.",
)
@duration_option(
    10,
    86_400,
    None,
    "Sustained mode: only offer --rate for this many seconds, sampling worker RSS.",
)
@click.option(
    "--bad-percent",
    type=click.FloatRange(0, 50),
    default=3.0,
    show_default=True,
    help="Share of forged or malformed records in the mix.",
)
@seed_option
@json_option("Print one JSON object as the last line.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also draw the results as a PNG chart in this file (needs matplotlib).",
)
def bench(
    bootstrap_servers: str | None,
    pki_dir: Path | None,
    records: int,
    workers: int,
    rate: float,
    latency_seconds: float,
    duration: float | None,
    bad_percent: float,
    seed: int,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Measure the gateway's throughput and latency against raw Kafka and the pure pipeline."""
    from rich.console import Console  # noqa: PLC0415 - keep `xgw --help` light

    from gateway.lab import report as bench_report  # noqa: PLC0415
    from gateway.lab.bench import BenchOptions, run_bench  # noqa: PLC0415

    settings = load_settings(bootstrap_servers=bootstrap_servers, pki_dir=pki_dir)
    if workers > settings.topic_partitions:
        # The group gives the same partition number of every ingress topic to one worker.
        raise click.BadParameter(
            f"{workers} workers but only {settings.topic_partitions} partitions per ingress topic",
            param_hint="--workers",
        )
    if plot is not None and not plot.parent.is_dir():
        raise click.BadParameter(f"folder {plot.parent} does not exist", param_hint="--plot")
    options = BenchOptions(
        records=records,
        workers=workers,
        rate=rate,
        latency_seconds=latency_seconds,
        duration=duration,
        bad_percent=bad_percent,
        seed=seed,
    )
    result = asyncio.run(run_bench(settings, options))
    if plot is not None:
        bench_report.plot(result, plot)
    console = Console()
    if as_json:
        click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    else:
        for table in bench_report.tables(result):
            console.print(table)
        if plot is not None:
            console.print(f"chart written to {plot}")
    if not result.ok:
        click.echo("xgw: error: the gateway's receipts or deliveries did not add up", err=True)
        raise click.exceptions.Exit(EXIT_ERROR)
