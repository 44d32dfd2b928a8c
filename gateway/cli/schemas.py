"""``xgw schemas``: JSON Schema export and publishing, compatibility check, AsyncAPI document."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import click

from gateway.cli.options import EXIT_ERROR
from gateway.errors import ConfigError
from gateway.settings import load_settings

_published = click.option(
    "--published",
    "published_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of published revisions (default: schemas/published of the package).",
)


def _published_dir(option: Path | None) -> Path:
    from schemas.export import PUBLISHED_DIR  # noqa: PLC0415 - keep start-up light

    return option or PUBLISHED_DIR


def _current() -> dict[str, dict[str, Any]]:
    from schemas.export import current_schemas  # noqa: PLC0415
    from schemas.registry import REGISTRY  # noqa: PLC0415

    try:
        return current_schemas(REGISTRY)
    except ValueError as exc:  # a type name outside vn.hcm.<agency>.<event>.v<major>
        raise ConfigError(f"schema registry: {exc}") from exc


def _fail(lines: list[str]) -> None:
    for line in lines:
        click.echo(f"xgw: error: {line}", err=True)
    raise click.exceptions.Exit(EXIT_ERROR)


@click.group()
def schemas() -> None:
    """JSON Schemas of the message types: export, publish, check compatibility, AsyncAPI."""


@schemas.command("export")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write <type>.json for every registered type into this directory.",
)
@click.option(
    "--publish",
    is_flag=True,
    help="Add a revision for each new or changed type, if compatible with all published ones.",
)
@_published
def export(out: Path | None, publish: bool, published_dir: Path | None) -> None:
    """Write the current JSON Schemas (--out) and/or publish new revisions (--publish)."""
    from schemas.export import BreakingChange, SchemaFileError, write_current  # noqa: PLC0415
    from schemas.export import publish as publish_revisions  # noqa: PLC0415

    if out is None and not publish:
        raise click.UsageError("say what to do: --out DIR and/or --publish")
    current = _current()
    if out is not None:
        try:
            written = write_current(current, out)
        except OSError as exc:
            raise ConfigError(f"cannot write to {out}: {exc.strerror}") from exc
        click.echo(f"wrote {len(written)} schemas to {out}")
    if publish:
        directory = _published_dir(published_dir)
        try:
            added = publish_revisions(current, directory)
        except BreakingChange as exc:
            _fail([*exc.problems, "nothing was published"])
            return
        except SchemaFileError as exc:
            raise ConfigError(str(exc)) from exc
        except OSError as exc:
            raise ConfigError(f"cannot write to {directory}: {exc.strerror}") from exc
        for path in added:
            click.echo(f"published {path.parent.name} revision {path.stem} -> {path}")
        click.echo(f"{len(added)} new revisions; {len(current) - len(added)} types unchanged")


@schemas.command("check")
@_published
@click.option(
    "--strict", is_flag=True, help="Also fail when a compatible change is not published yet."
)
def check(published_dir: Path | None, strict: bool) -> None:
    """Check every registered type against all its published revisions (transitively)."""
    from schemas.export import SchemaFileError, compare, read_published  # noqa: PLC0415

    directory = _published_dir(published_dir)
    try:
        published = read_published(directory)
    except SchemaFileError as exc:
        raise ConfigError(str(exc)) from exc
    current = _current()
    reports = compare(current, published)
    failing = {"breaking", "unpublished"} | ({"changed"} if strict else set())
    problems = [line for r in reports if r.status in failing for line in r.lines()]
    for report in reports:
        if report.status not in failing:
            click.echo(report.lines()[0])
    for event_type in sorted(set(published) - set(current)):
        click.echo(f"{event_type}: published but no longer registered")
    if problems:
        _fail(problems)
    click.echo(f"{len(reports)} types compatible with their published revisions in {directory}")


@schemas.command("asyncapi")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the document to this file (default: standard output).",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Policy file naming agencies and routes (env XGW_POLICY_FILE).",
)
def asyncapi(out: Path | None, policy_file: Path | None) -> None:
    """Write the AsyncAPI 3.0.0 document (JSON) of the exchange's topics and messages."""
    document = _asyncapi_document(policy_file)
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
    click.echo(
        f"wrote AsyncAPI {document['asyncapi']} to {out}: {len(document['channels'])} channels,"
        f" {len(document['operations'])} operations,"
        f" {len(document['components']['messages'])} messages"
    )


def _asyncapi_document(policy_file: Path | None) -> dict[str, Any]:
    from gateway.core.policy import load_policy  # noqa: PLC0415
    from gateway.reasons import ReasonCode  # noqa: PLC0415
    from schemas.asyncapi import Route, build_asyncapi  # noqa: PLC0415
    from schemas.registry import REGISTRY  # noqa: PLC0415

    settings = load_settings(policy_file=policy_file)
    policy = load_policy(settings.policy_file, REGISTRY)
    routes = {
        r.type: Route((r.publisher,), tuple(g.agency for g in r.recipients)) for r in policy.routes
    }
    for rule in policy.requests:
        requesters = tuple(g.agency for g in rule.requesters)
        routes[rule.type] = Route(requesters, (rule.answerer,))
        response = REGISTRY.model_for(rule.type)
        response_type = getattr(response, "response_type", None)
        if response_type is not None:  # the policy loader checked it is registered
            routes[response_type] = Route((rule.answerer,), requesters)
    try:
        version = package_version("hcmc-xgw")
    except PackageNotFoundError:  # running from a source tree that was never installed
        version = "0.0.0"
    _current()  # the same one-line error as export and check for a bad type name
    return build_asyncapi(
        REGISTRY,
        policy.agencies,
        routes,
        settings.topics,
        version=version,
        reason_codes=[code.value for code in ReasonCode],
    )
