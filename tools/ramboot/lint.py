"""`ramboot lint`: check iPXE scripts with the agent's own parser and command table.

There is one iPXE parser in the project, `ramboot_agent.ipxe` (the agent runs
what it parses); linting with it means a script that lints is one the agent
accepts. Beyond syntax, lint names every command the agent does not have
(the agent treats it as iPXE's "command not found") and every use the agent
cannot carry out (SAN URLs, form POSTs, signature checks), with its line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from ramboot.errors import RambootError

# Commands the agent has, used in ways it cannot honour: why, by command.
_CANNOT = {
    "sanhook": "the agent has no SAN initiator: it fails",
    "imgverify": "the agent cannot check CMS signatures: it always fails",
    "imgtrust": "the agent verifies no image: with imgtrust on, nothing boots",
    "login": "there is no console to log in at: it fails",
}
_EXPANSION = re.compile(r"\$\{")


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


@click.command("lint")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path,
                                                                    dir_okay=False))
def lint(files: tuple[Path, ...]) -> None:
    """Check iPXE scripts FILES with the agent's parser and command table; exit 1
    on any problem (a syntax error, or a command the agent cannot carry out)."""
    problems = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path}: cannot read: {error}")
            continue
        problems += lint_text(str(path), text)
    if problems:
        raise RambootError("iPXE scripts do not lint:\n  " + "\n  ".join(problems))
    click.echo(f"{len(files)} script(s) OK")
