"""What the ``xgw`` command modules share: the error exit code and their repeated options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

EXIT_ERROR = 1

_Command = TypeVar("_Command", bound=Callable[..., Any])

bootstrap_option = click.option(
    "--bootstrap-servers",
    envvar="XGW_BOOTSTRAP_SERVERS",
    default=None,
    help="Kafka host:port[,host:port] (env XGW_BOOTSTRAP_SERVERS); required: 'xgw broker' "
    "runs a local one.",
)
embedded_bootstrap_option = click.option(
    "--bootstrap-servers",
    envvar="XGW_BOOTSTRAP_SERVERS",
    default=None,
    help="Kafka host:port[,host:port] (env XGW_BOOTSTRAP_SERVERS); empty: start the embedded "
    "broker for this run.",
)
pki_dir_option = click.option(
    "--pki-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Key directory (env XGW_PKI_DIR, default var/pki).",
)
seed_option = click.option(
    "--seed", type=int, default=2026, show_default=True, help="Seed of the fake data."
)
store_option = click.option(
    "--store",
    "store_url",
    default=None,
    help="Audit store URL (env XGW_AUDIT_STORE, default sqlite:///var/audit/audit.db).",
)


def json_option(help_text: str) -> Callable[[_Command], _Command]:
    """``--json`` (parameter ``as_json``): what the flag prints differs per command."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def rate_option(
    low: float, high: float, default: float, help_text: str
) -> Callable[[_Command], _Command]:
    """``--rate`` in events per second, within [low, high]."""
    return click.option(
        "--rate",
        type=click.FloatRange(low, high),
        default=default,
        show_default=True,
        help=help_text,
    )


def duration_option(
    low: float, high: float | None, default: float | None, help_text: str
) -> Callable[[_Command], _Command]:
    """``--duration`` in seconds, within [low, high]; no default means "until stopped"."""
    return click.option(
        "--duration",
        type=click.FloatRange(low, high),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


_dead_letter_filters = (
    click.option(
        "--topic", default=None, help="Dead-letter topic (default: <XGW_TOPIC_PREFIX>.deadletter)."
    ),
    click.option(
        "--reason", default=None, help="Only this reason code (e.g. revoked_certificate)."
    ),
    click.option("--agency", default=None, help="Only records from this agency's ingress topic."),
    click.option(
        "--since",
        default=None,
        metavar="ISO",
        help="Only records decided at or after this time (ISO 8601; UTC without an offset).",
    ),
    click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="At most this many matching records (oldest first).",
    ),
)


def dead_letter_filter_options(command: _Command) -> _Command:
    """``--topic --reason --agency --since --limit``, in this order, of ``xgw deadletter``."""
    for option in reversed(_dead_letter_filters):  # decorators apply bottom-up
        command = option(command)
    return command
