"""`ramboot render`: inventory + build artifacts -> the boot servers' files."""

from __future__ import annotations

from pathlib import Path

import click

from ramboot.inventory import load_inventory
from ramboot.lint import lint_plan, lint_text, parser_available
from ramboot.render.tree import render_tree
from ramboot.tokens import read_secret


@click.command("render")
@click.argument("inventory", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--images", "images", required=True, type=click.Path(path_type=Path, file_okay=False),
    help="Build artifacts: rpi4/, x86_64/ and ipxe/ subdirectories.",
)
@click.option(
    "--out", "out", default=Path("output/ramboot"), show_default=True,
    type=click.Path(path_type=Path, file_okay=False), help="Directory to (re)place.",
)
@click.option(
    "--templates", "templates", type=click.Path(path_type=Path, file_okay=False),
    help="Directory whose templates override the built-in ones, by relative name.",
)
@click.option(
    "--machine-secret", "machine_secret", envvar="RAMBOOT_MACHINE_SECRET",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Fleet secret (as given to `ramboot serve`): put each machine's token in its DHCP "
    "URLs and Pi cmdline.txt.",
)
def render(inventory: Path, images: Path, out: Path, templates: Path | None,
           machine_secret: Path | None) -> None:
    """Render INVENTORY into the TFTP, HTTP, DHCP and EEPROM files under --out."""
    fleet = load_inventory(inventory)
    check = lint_text if parser_available() else None
    secret = read_secret(machine_secret) if machine_secret is not None else None
    result = render_tree(fleet, images, out, templates, check_script=check, check_plan=lint_plan,
                         machine_secret=secret)
    if check is None:
        result.warnings.append("iPXE scripts not linted: ramboot_agent.ipxe has no parser here")
    for warning in result.warnings:
        click.echo(f"ramboot: warning: {warning}", err=True)
    click.echo(
        f"rendered {len(fleet.hosts)} host(s), {len(result.scripts)} iPXE script(s), "
        f"{len(result.plans)} plan(s) into {result.out}"
    )
