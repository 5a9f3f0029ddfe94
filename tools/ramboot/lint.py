"""`ramboot lint`: check iPXE scripts and provisioning plans with the agent's own code.

There is one iPXE parser and command table and one plan validator in the
project, all in the agent (`ramboot_agent.ipxe`, `ramboot_agent.plan`):
linting with them means a script or plan that lints is one the agent
accepts. Beyond syntax, lint names every command the agent does not have
(the agent treats it as iPXE's "command not found") and every use the agent
cannot carry out (SAN URLs, form POSTs, a login), with its line.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import click

from ramboot.errors import RambootError

# Commands the agent has, used in ways it cannot honour: why, by command.
_CANNOT = {
    "sanhook": "the agent has no SAN initiator: it fails",
    "login": "there is no console to log in at: it fails",
}
_EXPANSION = re.compile(r"\$\{")

# The agent refuses scripts over 1 Mi characters and plans over 1 MiB; a
# FIFO or a huge file is refused before it is read.
MAX_SCRIPT_BYTES = 4 << 20


def _parser() -> Any:
    try:
        from ramboot_agent import ipxe  # noqa: PLC0415 - optional until the agent has it
    except ImportError:
        return None
    return getattr(ipxe, "parse", None)


def parser_available() -> bool:
    return _parser() is not None


def _command_names() -> frozenset[str]:
    from ramboot_agent.ipxe.command_table import COMMANDS  # noqa: PLC0415

    return frozenset(COMMANDS)


def _words_problem(words: tuple[str, ...], known: frozenset[str]) -> str | None:
    name = words[0]
    if _EXPANSION.search(name):
        return None  # decided when it runs
    if name not in known:
        return (f"{name!r}: the agent has no such command (it fails there as iPXE's "
                "\"command not found\")")
    if name in _CANNOT:
        return f"{name}: {_CANNOT[name]}"
    if name == "sanboot" and not any(_EXPANSION.search(word) for word in words):
        from ramboot_agent.ipxe.boot_commands import SANBOOT_OPTIONS  # noqa: PLC0415
        from ramboot_agent.ipxe.commands import getopt  # noqa: PLC0415
        from ramboot_agent.ipxe.status import CommandFailed  # noqa: PLC0415

        try:
            _, arguments = getopt(list(words), SANBOOT_OPTIONS, 0, None, "")
        except CommandFailed as error:
            return f"sanboot: {error}"
        if arguments:
            return "sanboot of a SAN URL: the agent has no SAN initiator: it fails"
    if any("##params" in word for word in words[1:]):
        return f"{name}: form parameters (##params, an HTTP POST) stop the agent's script"
    return None


def lint_text(name: str, text: str) -> list[str]:
    """Problems in the iPXE script `text` (named `name` in messages); [] when clean."""
    parse = _parser()
    if parse is None:
        raise RambootError("cannot lint: ramboot_agent.ipxe has no parser in this install")
    from ramboot_agent.errors import ScriptError  # noqa: PLC0415

    try:
        script = parse(text, name)
    except ScriptError as error:
        return [str(error)]  # already names the script and line
    known = _command_names()
    problems = []
    for line in script.lines:
        for command in line.commands:
            if command.words:
                problem = _words_problem(command.words, known)
                if problem is not None:
                    problems.append(f"{name}:{line.number}: {problem}")
    return problems


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
    """Check iPXE scripts and plans FILES as the agent would; exit 1 on any problem
    (a syntax error, a command the agent cannot carry out, an invalid plan)."""
    problems = []
    for path in files:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                problems.append(f"{path}: not a regular file")
                continue
            if info.st_size > MAX_SCRIPT_BYTES:
                problems.append(f"{path}: {info.st_size} bytes, larger than a script "
                                f"may be ({MAX_SCRIPT_BYTES})")
                continue
            data = path.read_bytes()
        except OSError as error:
            problems.append(f"{path}: cannot read: {error.strerror or error}")
            continue
        problems += lint_document(str(path), data)
    if problems:
        raise RambootError("these do not lint:\n  " + "\n  ".join(problems))
    click.echo(f"{len(files)} file(s) OK")
