"""``xgw audit``: the chain's writer, verification, per-person report, evidence and retention."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import click

from gateway.cli.options import (
    EXIT_ERROR,
    bootstrap_option,
    json_option,
    pki_dir_option,
    store_option,
)
from gateway.errors import XgwError
from gateway.settings import load_settings


@click.group()
def audit() -> None:
    """The tamper-evident audit trail: writer, verification, per-person report, evidence."""


@audit.command("writer")
@bootstrap_option
@pki_dir_option
@store_option
def audit_writer(
    bootstrap_servers: str | None, pki_dir: Path | None, store_url: str | None
) -> None:
    """Append the gateway's audit records to the hash chain until SIGTERM."""
    from gateway.runtime.audit_service import run_audit_writer  # noqa: PLC0415

    settings = load_settings(
        bootstrap_servers=bootstrap_servers, pki_dir=pki_dir, audit_store=store_url
    )
    if not settings.bootstrap_servers:
        raise click.UsageError("set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers")
    run_audit_writer(settings)


@audit.command("verify")
@pki_dir_option
@store_option
@bootstrap_option
@click.option(
    "--checkpoints",
    "sources",
    multiple=True,
    metavar="FILE|topic[:NAME]",
    help="Also prove the trail against checkpoints held outside the store: an agency's "
    "checkpoint file (XGW_CHECKPOINT_DIR/<agency>.jsonl), or 'topic' for every checkpoint "
    "published on the broker. Repeatable.",
)
@json_option("Print the report as JSON.")
def audit_verify(
    pki_dir: Path | None,
    store_url: str | None,
    bootstrap_servers: str | None,
    sources: tuple[str, ...],
    as_json: bool,
) -> None:
    """Re-walk the chain, its hash tree and its signed checkpoints; report the first break.

    With --checkpoints, each checkpoint the agencies hold must be one of this trail's: a trail
    cut back together with its seal, or rewritten, is found, and a consistency proof (RFC 9162)
    from the newest of them to the head is checked as an agency would. RFC 3161 time-stamps of
    the checkpoints are checked against XGW_AUDIT_TSA_CAFILE when it is set.
    """
    import asyncio  # noqa: PLC0415

    from gateway.audit.ops import verify_store  # noqa: PLC0415
    from gateway.audit.store import open_store  # noqa: PLC0415
    from gateway.ops.held import load_held  # noqa: PLC0415
    from gateway.trust.timestamp import TsaTrust  # noqa: PLC0415
    from gateway.trust.x509 import X509TrustStore  # noqa: PLC0415

    settings = load_settings(
        pki_dir=pki_dir, audit_store=store_url, bootstrap_servers=bootstrap_servers
    )
    # The store first: a mistyped store is the likelier mistake, and it needs no PKI to name.
    with contextlib.closing(open_store(settings.audit_store, create=False)) as store:
        trust = X509TrustStore.from_directory(settings.pki_dir)
        cafile = settings.audit_tsa_cafile
        tsa = TsaTrust.from_pem_file(cafile) if cafile is not None else None
        loaded = asyncio.run(load_held(settings, sources, trust)) if sources else None
        held = loaded.checkpoints if loaded else []
        if loaded and loaded.skipped:
            click.echo(
                f"xgw: warning: skipped {len(loaded.skipped)} records that are not gateway "
                f"checkpoints (first: {loaded.skipped[0]})",
                err=True,
            )
        report = verify_store(store, trust, held, tsa)
    proof = report.proof
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "first_seq": report.first_seq,
                    "last_seq": report.last_seq,
                    "held_outside": report.outside,
                    "timestamped": report.timestamped,
                    "timestamps_unchecked": report.unchecked_timestamps,
                    "consistency_proof": None
                    if proof is None
                    else {
                        "from_seq": proof.old_seq,
                        "to_seq": proof.new_seq,
                        "hashes": proof.hashes,
                        "verified": proof.verified,
                    },
                    "broken_at": report.broken.seq if report.broken else None,
                    "problem": report.broken.problem if report.broken else None,
                }
            )
        )
    elif report.ok:
        click.echo(
            f"audit trail OK: entries {report.first_seq}..{report.last_seq} "
            f"({report.entries}), {report.checkpoints} signed checkpoints"
            + _timestamps(report.timestamped, report.unchecked_timestamps, checked=tsa is not None)
        )
        if held:
            newest = max(held, key=lambda c: c.seq)
            click.echo(
                f"agrees with {len(held)} checkpoint{'' if len(held) == 1 else 's'} held outside "
                "the store (newest: entry "
                f"{newest.seq}, signed {newest.signed_at})"
            )
        if proof is not None:
            click.echo(
                f"consistency proof from entry {proof.old_seq} to the head {proof.new_seq}: "
                f"{proof.hashes} hashes, verified (RFC 9162)"
            )
    else:
        click.echo(f"audit trail BROKEN at {report.broken}", err=True)
    if not report.ok:
        raise click.exceptions.Exit(EXIT_ERROR)


def _timestamps(verified: int, unchecked: int, *, checked: bool) -> str:
    """The OK line's words about RFC 3161 time-stamps (nothing when none are configured)."""
    if checked:
        return f", {verified} time-stamped (RFC 3161)"
    if unchecked:
        return (
            f", {unchecked} RFC 3161 time-stamps not checked (set XGW_AUDIT_TSA_CAFILE to the "
            "TSA's CA certificates)"
        )
    return ""


@audit.command("subject")
@click.argument("personal_id")
@store_option
@json_option("Print one JSON array of the records instead.")
def audit_subject(personal_id: str, store_url: str | None, as_json: bool) -> None:
    """Which agencies received data about PERSONAL_ID, when, for which purpose and legal basis."""
    from dataclasses import asdict  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from gateway.audit.ops import subject_report  # noqa: PLC0415
    from gateway.audit.store import open_store  # noqa: PLC0415
    from gateway.audit.writer import load_subject_secret  # noqa: PLC0415

    settings = load_settings(audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store, create=False)) as store:
        rows = subject_report(store, load_subject_secret(settings.audit_key_file), personal_id)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], ensure_ascii=False))
        return
    console = Console()
    console.print(
        "[bold]Data about this person shared through the exchange[/] "
        f"(Dữ liệu về người này được chia sẻ qua hệ thống): {len(rows)}"
    )
    for row in rows:
        console.print()
        console.print(_subject_record(row))


# A citizen reads times in Vietnam's time (UTC+7, no daylight saving), not in UTC.
_VIETNAM = timezone(timedelta(hours=7), "ICT")
_SUBJECT_LABELS = (
    ("data", "dữ liệu", "event_type"),
    ("from", "từ", "source"),
    ("to", "đến", "recipient"),
    ("purpose", "mục đích", "purpose"),
    ("legal basis", "căn cứ pháp lý", "legal_basis"),
)


def _subject_record(row: Any) -> Any:
    """One record as a small labelled block that wraps in an 80-column terminal."""
    from rich.table import Table  # noqa: PLC0415

    from gateway.clock import parse_rfc3339  # noqa: PLC0415

    when = parse_rfc3339(row.decided_at).astimezone(_VIETNAM)
    block = Table.grid(padding=(0, 2))
    block.add_column(style="bold", no_wrap=True)
    block.add_column(overflow="fold")
    block.add_row("when (lúc)", f"{when:%d/%m/%Y %H:%M} (Vietnam time, UTC+7)")
    for english, vietnamese, attribute in _SUBJECT_LABELS:
        block.add_row(f"{english} ({vietnamese})", str(getattr(row, attribute)))
    return block


@audit.command("evidence")
@click.argument("event_id")
@pki_dir_option
@store_option
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

    settings = load_settings(pki_dir=pki_dir, audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store, create=False)) as store:
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

    settings = load_settings(pki_dir=pki_dir)
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
@store_option
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

    settings = load_settings(audit_store=store_url)
    with contextlib.closing(open_store(settings.audit_store)) as store:
        moved = archive(store, datetime.now(UTC) - timedelta(days=older_than_days), target)
    click.echo(f"archived {moved} entries to {target}")
