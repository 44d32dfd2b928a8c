"""The ``xgw`` command line. Every command has ``--help``; errors are one line, exit code 1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.options import bootstrap_option, pki_dir_option
from gateway.errors import XgwError
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    from gateway.ops.deadletter import Filter as DeadLetterFilter
    from gateway.trust.ca import CertInfo

_EXIT_ERROR = 1
_EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Turns the project's own errors into one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from connectors.errors import ConnectorError  # noqa: PLC0415 - keep start-up light

        try:
            return super().invoke(ctx)
        except (XgwError, ConnectorError) as exc:
            click.echo(f"xgw: error: {exc}", err=True)
            ctx.exit(_EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("xgw: interrupted", err=True)
            ctx.exit(_EXIT_INTERRUPTED)


def _settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hcmc-xgw", prog_name="xgw")
def cli() -> None:
    """HCMC inter-agency exchange gateway.

    Agencies publish signed CloudEvents to Kafka; the gateway verifies them and delivers to
    each entitled agency only the fields its policy grants, with receipts, dead letters,
    an audit record and Prometheus metrics.
    """


@cli.command()
@bootstrap_option
@pki_dir_option
@click.option(
    "--duration",
    type=click.FloatRange(1, 3600),
    default=20.0,
    show_default=True,
    help="Seconds of publishing.",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 20_000),
    default=100.0,
    show_default=True,
    help="Events per second offered by the mock agencies.",
)
@click.option("--seed", type=int, default=2026, show_default=True, help="Seed of the fake data.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary as the last line.")
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

    settings = _settings(bootstrap_servers=bootstrap_servers, pki_dir=pki_dir)
    options = DemoOptions(duration=duration, rate=rate, seed=seed, quiet=as_json)
    summary = asyncio.run(run_demo(settings, options))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
    else:
        print_summary(summary)
    if not summary.ok:
        raise click.exceptions.Exit(_EXIT_ERROR)


@cli.command()
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


@cli.command()
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

    settings = _settings(
        bootstrap_servers=bootstrap_servers, pki_dir=pki_dir, metrics_port=metrics_port
    )
    if not settings.bootstrap_servers:
        raise click.UsageError(
            "set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers (try 'xgw broker')"
        )
    run_worker(settings)


@cli.group()
def pki() -> None:
    """The exchange's X.509 PKI: root CA, certificates, CRL (under XGW_PKI_DIR, never committed)."""


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%SZ}"


def _certificate_line(verb: str, info: CertInfo) -> str:
    return (
        f"{verb} {info.owner} serial={info.serial:x} alg={info.alg}"
        f" valid until {_when(info.not_after)} x5t#S256={info.fingerprint}"
    )


@pki.command("init")
@pki_dir_option
@click.option("--force", is_flag=True, help="Replace an existing CA (its files move to retired/).")
@click.option(
    "--days",
    type=click.IntRange(1, 36_500),
    default=3650,
    show_default=True,
    help="Validity of the root CA in days.",
)
def pki_init(pki_dir: Path | None, force: bool, days: int) -> None:
    """Create the exchange root CA, its CRL and the gateway's signing certificate."""
    from gateway.names import GATEWAY_OWNER  # noqa: PLC0415
    from gateway.trust.ca import init_ca, list_certificates  # noqa: PLC0415
    from gateway.trust.layout import PkiLayout  # noqa: PLC0415

    settings = _settings(pki_dir=pki_dir)
    existed = PkiLayout(settings.pki_dir).root_certificate.exists() and not force
    root = init_ca(settings.pki_dir, days=days, force=force)
    gateway = [i for i in list_certificates(settings.pki_dir) if i.owner == GATEWAY_OWNER]
    if existed:
        click.echo(f"a root CA already exists under {settings.pki_dir} (use --force to replace it)")
    click.echo(_certificate_line("exists" if existed else "created", root))
    if gateway:
        click.echo(_certificate_line("exists" if existed else "enrolled", gateway[-1]))


@pki.command("enroll")
@pki_dir_option
@click.argument("agency")
@click.option("--alg", type=click.Choice(["EdDSA", "ES256"]), default="EdDSA", show_default=True)
@click.option(
    "--days",
    type=click.IntRange(1, 36_500),
    default=365,
    show_default=True,
    help="Validity in days (never past the root CA's).",
)
def pki_enroll(pki_dir: Path | None, agency: str, alg: str, days: int) -> None:
    """Create a signing key for AGENCY (or 'gateway') and a certificate from the root CA."""
    from gateway.trust.ca import enroll  # noqa: PLC0415

    settings = _settings(pki_dir=pki_dir)
    info = enroll(settings.pki_dir, agency, alg="ES256" if alg == "ES256" else "EdDSA", days=days)
    click.echo(_certificate_line("enrolled", info))


@pki.command("revoke")
@pki_dir_option
@click.argument("serial")
def pki_revoke(pki_dir: Path | None, serial: str) -> None:
    """Revoke the certificate with SERIAL (hex, as listed) and re-issue the signed CRL."""
    from gateway.trust.ca import list_certificates, revoke  # noqa: PLC0415

    digits = serial.strip().lower().removeprefix("0x").replace(":", "")
    try:
        number = int(digits, 16)
    except ValueError:
        raise XgwError(f"serial {serial!r} is not a hexadecimal number") from None
    settings = _settings(pki_dir=pki_dir)
    info = revoke(settings.pki_dir, number)
    count = sum(1 for i in list_certificates(settings.pki_dir) if i.revoked_at is not None)
    click.echo(f"revoked {info.owner} serial={info.serial:x}; CRL updated ({count} revoked)")


@pki.command("list")
@pki_dir_option
def pki_list(pki_dir: Path | None) -> None:
    """List the root CA and every issued certificate with its status now."""
    from gateway.trust.ca import list_certificates, root_info  # noqa: PLC0415

    settings = _settings(pki_dir=pki_dir)
    now = datetime.now(UTC)
    for info in [root_info(settings.pki_dir), *list_certificates(settings.pki_dir)]:
        click.echo(
            f"{info.owner:<10} {info.serial:x} {info.alg:<6} {_when(info.not_before)}"
            f" {_when(info.not_after)} {info.status(now):<13} x5t#S256={info.fingerprint}"
        )


@cli.command()
@click.argument("agency")
@bootstrap_option
@pki_dir_option
@click.option(
    "--rate",
    type=click.FloatRange(0, 10_000),
    default=5.0,
    show_default=True,
    help="Events per second, for agencies that publish in the mock world (police).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: run until SIGTERM).",
)
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

    settings = _settings(bootstrap_servers=bootstrap_servers, pki_dir=pki_dir)
    if not settings.bootstrap_servers:
        raise click.UsageError("set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers")
    agencies = load_policy(settings.policy_file, REGISTRY).agencies
    if agency not in agencies:
        raise click.BadParameter(f"{agency!r} is not one of {', '.join(agencies)}")
    run_agency(settings, agency, rate, duration)


@cli.group()
def audit() -> None:
    """The tamper-evident audit trail: writer, verification, per-person report, evidence."""


_store = click.option(
    "--store",
    "store_url",
    default=None,
    help="Audit store URL (env XGW_AUDIT_STORE, default sqlite:///var/audit/audit.db).",
)


@audit.command("writer")
@bootstrap_option
@pki_dir_option
@_store
def audit_writer(
    bootstrap_servers: str | None, pki_dir: Path | None, store_url: str | None
) -> None:
    """Append the gateway's audit records to the hash chain until SIGTERM."""
    from gateway.runtime.audit_service import run_audit_writer  # noqa: PLC0415

    settings = _settings(
        bootstrap_servers=bootstrap_servers, pki_dir=pki_dir, audit_store=store_url
    )
    if not settings.bootstrap_servers:
        raise click.UsageError("set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers")
    run_audit_writer(settings)


@audit.command("verify")
@pki_dir_option
@_store
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit_verify(pki_dir: Path | None, store_url: str | None, as_json: bool) -> None:
    """Re-walk the chain and its signed checkpoints; report the first broken place."""
    from gateway.audit.ops import verify_store  # noqa: PLC0415
    from gateway.audit.store import open_store  # noqa: PLC0415
    from gateway.trust.x509 import X509TrustStore  # noqa: PLC0415

    settings = _settings(pki_dir=pki_dir, audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store)) as store:
        report = verify_store(store, X509TrustStore.from_directory(settings.pki_dir))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "broken_at": report.broken.seq if report.broken else None,
                    "problem": report.broken.problem if report.broken else None,
                }
            )
        )
    elif report.ok:
        click.echo(
            f"audit trail OK: entries {report.first_seq}..{report.last_seq} "
            f"({report.entries}), {report.checkpoints} signed checkpoints"
        )
    else:
        click.echo(f"audit trail BROKEN at {report.broken}", err=True)
    if not report.ok:
        raise click.exceptions.Exit(_EXIT_ERROR)


@audit.command("subject")
@click.argument("personal_id")
@_store
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def audit_subject(personal_id: str, store_url: str | None, as_json: bool) -> None:
    """Which agencies received data about PERSONAL_ID, when, for which purpose and legal basis."""
    from dataclasses import asdict  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from gateway.audit.ops import subject_report  # noqa: PLC0415
    from gateway.audit.store import open_store  # noqa: PLC0415
    from gateway.audit.writer import load_subject_secret  # noqa: PLC0415

    settings = _settings(audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store)) as store:
        rows = subject_report(store, load_subject_secret(settings.audit_key_file), personal_id)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], ensure_ascii=False))
        return
    table = Table(title=f"Data about this person shared through the exchange ({len(rows)})")
    for column in ("when (UTC)", "data", "from", "to", "purpose", "legal basis"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.decided_at, row.event_type, row.source, row.recipient, row.purpose, row.legal_basis
        )
    Console().print(table)


@audit.command("evidence")
@click.argument("event_id")
@pki_dir_option
@_store
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write to this file (default: evidence-<event id>.json).",
)
def audit_evidence(
    event_id: str, pki_dir: Path | None, store_url: str | None, output: Path | None
) -> None:
    """Export what proves one exchange (entries, chain segment, signed checkpoint) as one file."""
    from gateway.audit.ops import export_evidence  # noqa: PLC0415
    from gateway.audit.store import open_store  # noqa: PLC0415
    from gateway.trust.x509 import X509TrustStore  # noqa: PLC0415

    settings = _settings(pki_dir=pki_dir, audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store)) as store:
        document = export_evidence(store, X509TrustStore.from_directory(settings.pki_dir), event_id)
    path = output or Path(f"evidence-{event_id}.json")
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    click.echo(
        f"evidence for {event_id}: {len(document['decisions'])} decisions, "
        f"{len(document['chain'])} chained entries, checkpoint {document['checkpoint']['seq']}"
        f" -> {path}"
    )


@audit.command("check-evidence")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pki_dir_option
def audit_check_evidence(file: Path, pki_dir: Path | None) -> None:
    """Verify an evidence file offline against the exchange root certificate."""
    from gateway.audit.chain import verify_evidence  # noqa: PLC0415
    from gateway.trust.x509 import X509TrustStore  # noqa: PLC0415

    settings = _settings(pki_dir=pki_dir)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise XgwError(f"cannot read evidence file {file}: {exc}") from exc
    problems = verify_evidence(document, X509TrustStore.from_directory(settings.pki_dir))
    if problems:
        raise XgwError(f"evidence does NOT verify: {problems[0]}")
    click.echo(
        f"evidence verifies: {len(document['decisions'])} decisions of event "
        f"{document['event_id']} are in the chain signed at entry "
        f"{document['checkpoint']['seq']}"
    )


@audit.command("archive")
@_store
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0),
    required=True,
    help="Archive entries decided more than this many days ago.",
)
@click.option(
    "--to",
    "target",
    type=click.Path(path_type=Path),
    default=Path("var/audit/archive.jsonl"),
    show_default=True,
)
def audit_archive(store_url: str | None, older_than_days: float, target: Path) -> None:
    """Retention: move old, checkpointed entries to an archive file; the rest still verifies."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415

    from gateway.audit.ops import archive  # noqa: PLC0415
    from gateway.audit.store import open_store  # noqa: PLC0415

    settings = _settings(audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store)) as store:
        moved = archive(store, datetime.now(UTC) - timedelta(days=older_than_days), target)
    click.echo(f"archived {moved} entries to {target}")


@cli.command()
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="A worker's /metrics URL; repeat for several workers "
    "(default: http://127.0.0.1:<XGW_METRICS_PORT, 9464>/metrics).",
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
def top(urls: tuple[str, ...], interval: float, once: bool) -> None:
    """Live view of running gateway workers, from their /metrics endpoints (Ctrl-C quits)."""
    from rich.console import Console  # noqa: PLC0415

    from gateway.lab.processes import scrape  # noqa: PLC0415
    from gateway.ops.top import snapshot  # noqa: PLC0415
    from gateway.ops.top_render import render, watch  # noqa: PLC0415

    if not urls:
        settings = _settings()
        port = settings.metrics_port or 9464
        urls = (f"http://127.0.0.1:{port}/metrics",)
    console = Console()
    if once:
        if not console.is_terminal:  # a pipe or a test: no colours, room for the columns
            console = Console(width=max(console.width, 120), no_color=True)
        console.print(render(snapshot(urls, interval, scrape)))
        return
    watch(urls, interval, scrape, console)


@cli.group()
def deadletter() -> None:
    """Rejected records on the dead-letter topic: list them, replay them after a fix."""


_dl_topic = click.option(
    "--topic", default=None, help="Dead-letter topic (default: <XGW_TOPIC_PREFIX>.deadletter)."
)
_dl_reason = click.option(
    "--reason", default=None, help="Only this reason code (e.g. revoked_certificate)."
)
_dl_agency = click.option(
    "--agency", default=None, help="Only records from this agency's ingress topic."
)
_dl_since = click.option(
    "--since",
    default=None,
    metavar="ISO",
    help="Only records decided at or after this time (ISO 8601; UTC without an offset).",
)
_dl_limit = click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many matching records (oldest first).",
)


def _dead_letter_query(
    bootstrap_servers: str | None,
    topic: str | None,
    reason: str | None,
    agency: str | None,
    since: str | None,
) -> tuple[Settings, str, DeadLetterFilter]:
    from gateway.ops.deadletter import make_filter  # noqa: PLC0415

    where = make_filter(reason, agency, since)
    settings = _settings(bootstrap_servers=bootstrap_servers)
    return settings, topic or settings.topics.deadletter, where


@deadletter.command("list")
@bootstrap_option
@_dl_topic
@_dl_reason
@_dl_agency
@_dl_since
@_dl_limit
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def deadletter_list(
    bootstrap_servers: str | None,
    topic: str | None,
    reason: str | None,
    agency: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List dead letters: position, decision, origin, event id, reason, size; never payloads."""
    from gateway.ops.deadletter import LIST_HEADER, format_line, read_dead_letters  # noqa: PLC0415

    settings, name, where = _dead_letter_query(bootstrap_servers, topic, reason, agency, since)
    found = asyncio.run(read_dead_letters(settings, name, where, limit=limit))
    if as_json:
        click.echo(json.dumps([f.letter.as_dict() for f in found], ensure_ascii=False))
        return
    click.echo(LIST_HEADER)
    for item in found:
        click.echo(format_line(item.letter))
    click.echo(f"{len(found)} dead letters on {name}")


@deadletter.command("replay")
@bootstrap_option
@_dl_topic
@_dl_reason
@_dl_agency
@_dl_since
@_dl_limit
@click.option(
    "--to-ingress", is_flag=True, help="Write each record back to its original ingress topic."
)
@click.option("--dry-run", is_flag=True, help="Only list what would be replayed.")
def deadletter_replay(
    bootstrap_servers: str | None,
    topic: str | None,
    reason: str | None,
    agency: str | None,
    since: str | None,
    limit: int | None,
    to_ingress: bool,
    dry_run: bool,
) -> None:
    """Replay matching dead letters (key, value, original headers) once the cause is fixed."""
    from gateway.ops.deadletter import (  # noqa: PLC0415
        format_line,
        read_dead_letters,
        replay,
        replayable,
    )

    if not (to_ingress or dry_run):
        raise click.UsageError("say where to: --to-ingress (or --dry-run to only list)")
    settings, name, where = _dead_letter_query(bootstrap_servers, topic, reason, agency, since)
    found = asyncio.run(read_dead_letters(settings, name, where, limit=limit))
    records, refused = replayable(found)
    skipped = (
        f"; skipped {len(refused)} without an ingress topic of this exchange" if refused else ""
    )
    if dry_run:
        for item in records:
            click.echo(format_line(item.letter))
        click.echo(f"would replay {len(records)} dead letters{skipped}")
        return
    count = asyncio.run(replay(settings, records))
    click.echo(f"replayed {count} dead letters to their ingress topics{skipped}")


from gateway.cli.schemas import schemas  # noqa: E402 - the group lives in its own module

cli.add_command(schemas)


from gateway.cli.bench import bench  # noqa: E402 - the command lives in its own module

cli.add_command(bench)


def main() -> None:
    """Entry point of the ``xgw`` console script."""
    cli.main(prog_name="xgw")
    sys.exit(0)
