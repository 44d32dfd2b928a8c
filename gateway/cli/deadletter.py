"""``xgw deadletter``: list the rejected records on the dead-letter topic, replay them."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import click

from gateway.cli.options import bootstrap_option, dead_letter_filter_options, json_option
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    from gateway.ops.deadletter import Filter as DeadLetterFilter


@click.group()
def deadletter() -> None:
    """Rejected records on the dead-letter topic: list them, replay them after a fix."""


def _dead_letter_query(
    bootstrap_servers: str | None,
    topic: str | None,
    reason: str | None,
    agency: str | None,
    since: str | None,
) -> tuple[Settings, str, DeadLetterFilter]:
    from gateway.ops.deadletter import make_filter  # noqa: PLC0415

    where = make_filter(reason, agency, since)
    settings = load_settings(bootstrap_servers=bootstrap_servers)
    return settings, topic or settings.topics.deadletter, where


@deadletter.command("list")
@bootstrap_option
@dead_letter_filter_options
@json_option("Print one JSON array.")
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
@dead_letter_filter_options
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
        f"; skipped {len(refused)} without an ingress topic of this exchange or a whole copy"
        if refused
        else ""
    )
    if dry_run:
        for item in records:
            click.echo(format_line(item.letter))
        click.echo(f"would replay {len(records)} dead letters{skipped}")
        return
    count = asyncio.run(replay(settings, records))
    click.echo(f"replayed {count} dead letters to their ingress topics{skipped}")
