"""`ramboot lint`: check iPXE scripts and provisioning plans with the agent's own code.

There is one iPXE parser and one plan validator in the project, both in the
agent (`ramboot_agent.ipxe`, `ramboot_agent.plan`): linting with them means
a script or plan that lints is one the agent accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ramboot.errors import RambootError


def _parser() -> Any:
    try:
        from ramboot_agent import ipxe  # noqa: PLC0415 - optional until the agent has it
    except ImportError:
        return None
    return getattr(ipxe, "parse", None)


def parser_available() -> bool:
    return _parser() is not None


def lint_text(name: str, text: str) -> list[str]:
    """Problems in the iPXE script `text` (named `name` in messages); [] when clean."""
    parse = _parser()
    if parse is None:
        raise RambootError("cannot lint: ramboot_agent.ipxe has no parser in this install")
    from ramboot_agent.errors import ScriptError  # noqa: PLC0415

    try:
        parse(text, name)
    except ScriptError as error:
        return [str(error)]  # already names the script and line
    return []


def lint_plan(name: str, data: bytes) -> list[str]:
    """Every problem the agent's validator finds in the plan `data`; [] when clean."""
    from ramboot_agent.plan import PlanError, load_plan  # noqa: PLC0415

    try:
        load_plan(data, name)
    except PlanError as error:
        return list(error.problems)  # each names the file and the field
    return []


def lint_document(name: str, data: bytes) -> list[str]:
    """A plan (a JSON object) or an iPXE script, told apart as the agent does."""
    from ramboot_agent.plan import is_plan  # noqa: PLC0415

    if is_plan(data):
        return lint_plan(name, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return [f"{name}: not UTF-8 (byte {error.start})"]
    return lint_text(name, text)


@click.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path,
                                                                    dir_okay=False))
def lint(files: tuple[Path, ...]) -> None:
    """Check iPXE scripts and plans FILES as the agent would; exit 1 on any problem."""
    problems = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror}")
            continue
        problems += lint_document(str(path), data)
    if problems:
        raise RambootError("these do not lint:\n  " + "\n  ".join(problems))
    click.echo(f"{len(files)} file(s) OK")
