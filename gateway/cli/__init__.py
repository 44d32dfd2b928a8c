"""The ``xgw`` command line. Every command has ``--help``; errors are one line, exit code 1.

The root group lives here; each command group has its own module, and every command imports
what it runs inside its body, so that ``xgw --help`` loads neither Kafka nor the schemas.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from gateway.cli import audit, bench, deadletter, pki, schemas, services
from gateway.cli.options import EXIT_ERROR
from gateway.errors import XgwError
from gateway.settings import misspelled_settings

_EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Turns the project's own errors into one readable line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from connectors.errors import ConnectorError  # noqa: PLC0415 - keep start-up light

        for warning in misspelled_settings(os.environ):
            click.echo(f"xgw: warning: {warning}", err=True)
        try:
            return super().invoke(ctx)
        except (XgwError, ConnectorError) as exc:
            click.echo(f"xgw: error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("xgw: interrupted", err=True)
            ctx.exit(_EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hcmc-xgw", prog_name="xgw")
def cli() -> None:
    """HCMC inter-agency exchange gateway.

    Agencies publish signed CloudEvents to Kafka; the gateway verifies them and delivers to
    each entitled agency only the fields its policy grants, with receipts, dead letters,
    an audit record and Prometheus metrics.
    """


cli.add_command(services.demo)
cli.add_command(services.broker)
cli.add_command(services.worker)
cli.add_command(services.monitor)
cli.add_command(services.agency)
cli.add_command(services.top)
cli.add_command(pki.pki)
cli.add_command(audit.audit)
cli.add_command(deadletter.deadletter)
cli.add_command(schemas.schemas)
cli.add_command(bench.bench)


def main() -> None:
    """Entry point of the ``xgw`` console script."""
    cli.main(prog_name="xgw")
    sys.exit(0)
