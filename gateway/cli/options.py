"""Options shared by the ``xgw`` commands (kept apart so command modules can share them)."""

from __future__ import annotations

from pathlib import Path

import click

bootstrap_option = click.option(
    "--bootstrap-servers",
    envvar="XGW_BOOTSTRAP_SERVERS",
    default=None,
    help="Kafka bootstrap servers (env XGW_BOOTSTRAP_SERVERS); empty: embedded broker.",
)
pki_dir_option = click.option(
    "--pki-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Key directory (env XGW_PKI_DIR, default var/pki).",
)
