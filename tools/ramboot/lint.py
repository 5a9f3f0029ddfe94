"""`ramboot lint`: check iPXE scripts with the agent's own parser.

There is one iPXE parser in the project, `ramboot_agent.ipxe` (the agent runs
what it parses); linting with it means a script that lints is one the agent
accepts.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import click

from ramboot.errors import RambootError

# The agent's parser refuses scripts over 1 Mi characters; a FIFO or a huge
# file is refused before it is read.
MAX_SCRIPT_BYTES = 4 << 20


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


@click.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path,
                                                                    dir_okay=False))
def lint(files: tuple[Path, ...]) -> None:
    """Check iPXE scripts FILES with the agent's parser; exit 1 on any problem."""
    problems = []
    for path in files:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                problems.append(f"{path}: not a regular file")
                continue
            if info.st_size > MAX_SCRIPT_BYTES:
                problems.append(f"{path}: {info.st_size} bytes, larger than an iPXE script "
                                f"may be ({MAX_SCRIPT_BYTES})")
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path}: cannot read: {error}")
            continue
        problems += lint_text(str(path), text)
    if problems:
        raise RambootError("iPXE scripts do not lint:\n  " + "\n  ".join(problems))
    click.echo(f"{len(files)} script(s) OK")
