"""The long-running ``xgw`` commands: demo, broker, worker, agency and top."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from gateway.cli.options import (
    EXIT_ERROR,
    bootstrap_option,
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
@duration_option(1, 3600, 20.0, "Seconds of publishing.")
@rate_option(1, 20_000, 100.0, "Events per second offered by the mock agencies.")
@seed_option
@json_option("Print one JSON summary as the last line.")
def demo(
    bootstrap_servers: str | None,
    pki_dir: Path | None,
    duration: float,
    rate: float,
    seed: int,
    as_json: bool,
) -> None:
    """Run broker, gateway worker and mock agencies; print what happened."""
    from gateway.lab.demo import DemoOptions, print_summary, run_demo  # noqa: PLC0415

    settings = load_settings(bootstrap_servers=bootstrap_servers, pki_dir=pki_dir)
    options = DemoOptions(duration=duration, rate=rate, seed=seed, quiet=as_json)
    summary = asyncio.run(run_demo(settings, options))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        print_summary(summary)
    if not summary.ok:
        raise click.exceptions.Exit(EXIT_ERROR)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9092,
    show_default=True,
    help="Port (0: a free one).",
)
def broker(host: str, port: int) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, in memory) in the foreground."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from gateway.lab.broker import EmbeddedBroker  # noqa: PLC0415

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(host, port) as running:
        click.echo(
            f"broker ready: XGW_BOOTSTRAP_SERVERS={running.bootstrap_servers} (Ctrl-C stops)"
        )
        try:
            while not stop.wait(1.0):
                if running.pid is None:
                    break
        except KeyboardInterrupt:
            pass
    click.echo("broker stopped")


@click.command()
@bootstrap_option
@pki_dir_option
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics (env XGW_METRICS_PORT, default 9464; 0: a free one).",
)
def worker(bootstrap_servers: str | None, pki_dir: Path | None, metrics_port: int | None) -> None:
    """Run a gateway worker against XGW_BOOTSTRAP_SERVERS until SIGTERM."""
    from gateway.runtime.worker import run_worker  # noqa: PLC0415

    settings = load_settings(
        bootstrap_servers=bootstrap_servers, pki_dir=pki_dir, metrics_port=metrics_port
    )
    if not settings.bootstrap_servers:
        raise click.UsageError(
            "set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers (try 'xgw broker')"
        )
    run_worker(settings)


@click.command()
@bootstrap_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the web view: /monitor (JSON) and /metrics "
    "(env XGW_MONITOR_PORT, default 6066; 0: a free one).",
)
def monitor(bootstrap_servers: str | None, port: int | None) -> None:
    """Run the exchange monitor (windowed counts, misuse alerts) against XGW_BOOTSTRAP_SERVERS.

    A faust-streaming app over the audit topic; alerts go to xgw.monitor.alerts. Runs until
    SIGTERM or Ctrl-C; see docs/monitor.md.
    """
    from gateway.monitor.service import run_monitor  # noqa: PLC0415

    settings = load_settings(bootstrap_servers=bootstrap_servers, monitor_port=port)
    if not settings.bootstrap_servers:
        raise click.UsageError(
            "set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers (try 'xgw broker')"
        )
    run_monitor(settings)


@click.command()
@click.argument("agency")
@bootstrap_option
@pki_dir_option
@rate_option(
    0, 10_000, 5.0, "Events per second, for agencies that publish in the mock world (police)."
)
@duration_option(0, None, None, "Stop after this many seconds (default: run until SIGTERM).")
def agency(
    agency: str,
    bootstrap_servers: str | None,
    pki_dir: Path | None,
    rate: float,
    duration: float | None,
) -> None:
    """Run the mock connector of AGENCY (police, health, education, land) against an exchange."""
    from connectors.mock.run import main as run_agency  # noqa: PLC0415
    from gateway.core.policy import load_policy  # noqa: PLC0415
    from schemas.registry import REGISTRY  # noqa: PLC0415

    settings = load_settings(bootstrap_servers=bootstrap_servers, pki_dir=pki_dir)
    if not settings.bootstrap_servers:
        raise click.UsageError("set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers")
    agencies = load_policy(settings.policy_file, REGISTRY).agencies
    if agency not in agencies:
        raise click.BadParameter(f"{agency!r} is not one of {', '.join(agencies)}")
    run_agency(settings, agency, rate, duration)


@click.command()
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="A worker's /metrics URL; repeat for several workers "
    "(default: http://127.0.0.1:<XGW_METRICS_PORT, 9464>/metrics).",
)
@click.option(
    "--monitor",
    "monitors",
    multiple=True,
    metavar="URL",
    help="An exchange monitor's /monitor URL; repeat for several, their views are added up "
    "(default: http://127.0.0.1:<XGW_MONITOR_PORT, 6066>/monitor).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between scrapes.",
)
@click.option(
    "--once", is_flag=True, help="Scrape twice, --interval apart, print one snapshot and exit."
)
def top(urls: tuple[str, ...], monitors: tuple[str, ...], interval: float, once: bool) -> None:
    """Live view of running gateway workers and exchange monitors (Ctrl-C quits)."""
    from rich.console import Console  # noqa: PLC0415

    from gateway.lab.processes import scrape  # noqa: PLC0415
    from gateway.ops.top import snapshot  # noqa: PLC0415
    from gateway.ops.top_monitor import fetch_monitor  # noqa: PLC0415
    from gateway.ops.top_render import render, watch  # noqa: PLC0415

    if not urls or not monitors:
        settings = load_settings()
        urls = urls or (f"http://127.0.0.1:{settings.metrics_port or 9464}/metrics",)
        monitors = monitors or (f"http://127.0.0.1:{settings.monitor_port or 6066}/monitor",)
    console = Console()
    if once:
        if not console.is_terminal:  # a pipe or a test: no colours, room for the columns
            console = Console(width=max(console.width, 120), no_color=True)
        console.print(render(snapshot(urls, interval, scrape, monitors, fetch_monitor)))
        return
    watch(urls, interval, scrape, console, monitors, fetch_monitor)
