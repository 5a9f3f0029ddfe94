"""The `ramboot` command: this module only wires the subcommands together."""

from __future__ import annotations

import sys

import click

from ramboot import __version__
from ramboot.check.command import check
from ramboot.errors import RambootError


@click.group()
@click.version_option(__version__, prog_name="ramboot")
def cli() -> None:
    """Build, check, render and deploy a ramboot network-boot fleet."""


cli.add_command(check)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except RambootError as error:
        click.echo(f"ramboot: error: {error}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("ramboot: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
