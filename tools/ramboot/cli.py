"""The `ramboot` command: this module only wires the subcommands together."""

from __future__ import annotations

import sys

import click

from ramboot import __version__
from ramboot.check.command import check
from ramboot.deploy.command import deploy, releases, rollback
from ramboot.errors import RambootError
from ramboot.lint import lint
from ramboot.render.command import render
from ramboot.serve.command import serve
from ramboot.status import reinstall, status, token


@click.group()
@click.version_option(__version__, prog_name="ramboot")
def cli() -> None:
    """Build, check, render and deploy a ramboot network-boot fleet."""


cli.add_command(check)
cli.add_command(deploy)
cli.add_command(lint)
cli.add_command(releases)
cli.add_command(reinstall)
cli.add_command(render)
cli.add_command(rollback)
cli.add_command(serve)
cli.add_command(status)
cli.add_command(token)


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
