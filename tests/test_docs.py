"""The docs tell the truth: every `ramboot.<key>` they show is one the agent's
parser knows, every `ramboot` / `ramboot-agent` command they show exists with
the options shown, and the README's publishing walk-through runs as written."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ramboot.cli import cli
from tests.tools.render.helpers import make_images

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# `ramboot.<key>` as a kernel parameter; `ramboot.ipxe` is the embedded script's file name.
_KEY = re.compile(r"(?<![\w/.-])ramboot\.([a-z][a-z0-9_-]*)(?![\w.-])")
_NOT_KEYS = {"ipxe"}
_INLINE = re.compile(r"`((?:ramboot|ramboot-agent) [^`]+)`")
_BLOCK_LINE = re.compile(r"^(?: {4,}|\t)(?:\$ )?((?:ramboot|ramboot-agent) .*)$")


def _documented_keys() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for key in _KEY.findall(page.read_text()):
            if key not in _NOT_KEYS:
                found.append((page.name, key))
    return sorted(set(found))


def _documented_commands() -> list[tuple[str, str]]:
    commands = set()
    for page in PAGES:
        text = page.read_text()
        in_fence = False
        for line in text.splitlines():
            if line.startswith("```"):
                in_fence = not in_fence
                continue
            match = _BLOCK_LINE.match(line) or (
                re.match(r"^(?:\$ )?((?:ramboot|ramboot-agent) .*)$", line) if in_fence else None)
            if match:
                commands.add((page.name, match.group(1)))
        commands.update((page.name, command) for command in _INLINE.findall(text))
    # Program output ("ramboot check: 2 defconfig(s) ...") is not a command.
    return sorted((page, c) for page, c in commands
                  if re.match(r"\S+ [a-z][a-z-]*(?: |$)", c))


def test_the_docs_show_keys_and_commands_at_all() -> None:
    assert len(_documented_keys()) >= 10
    assert len(_documented_commands()) >= 10


@pytest.mark.parametrize(("page", "key"), _documented_keys())
def test_every_documented_kernel_key_is_known_to_the_agent(page: str, key: str) -> None:
    from ramboot_agent.cmdline import KEYS

    assert key.replace("-", "_") in KEYS, \
        f"{page} documents ramboot.{key}, which the agent's parser does not know"


def _words(command: str) -> list[str]:
    command = command.split(" #", 1)[0]
    return shlex.split(command.replace("[", " ").replace("]", " ").replace("...", " "))


def _click_options(path: list[str]) -> tuple[click.Command, set[str]] | None:
    group: click.Command = cli
    for name in path:
        if not isinstance(group, click.Group) or name not in group.commands:
            return None
        group = group.commands[name]
    options = {opt for param in group.params
               for opt in (*getattr(param, "opts", []), *getattr(param, "secondary_opts", []))}
    return group, options | {"--help"}


def _agent_options(subcommand: str) -> set[str] | None:
    from ramboot_agent.cli import SUBCOMMANDS, build_parser

    if subcommand not in SUBCOMMANDS:
        return None
    parser = build_parser([subcommand])
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices[subcommand]
            return {opt for a in sub._actions for opt in a.option_strings}
    return None


@pytest.mark.parametrize(("page", "command"), _documented_commands())
def test_every_documented_command_exists_with_its_options(page: str, command: str) -> None:
    words = _words(command)
    program, subcommand = words[0], words[1]
    shown = {w.split("=", 1)[0] for w in words[2:] if w.startswith("--")}
    if program == "ramboot":
        found = _click_options([subcommand])
        assert found is not None, f"{page}: `{command}`: no command `ramboot {subcommand}`"
        options = found[1]
    else:
        agent = _agent_options(subcommand)
        assert agent is not None, f"{page}: `{command}`: no command `ramboot-agent {subcommand}`"
        options = agent
    unknown = sorted(shown - options)
    assert not unknown, f"{page}: `{command}`: {subcommand} has no option {', '.join(unknown)}"


def test_the_readme_publishing_walk_through_runs(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """README's "Deploying to the boot servers" lines, with its names standing
    for real things: fleet.toml the example inventory, output/ a build's images."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Deploying to the boot servers"):]
    section = section[: section.index("\n## ", 3)]
    lines = [m.group(1).split(" #", 1)[0].strip() for m in map(_BLOCK_LINE.match,
                                                                 section.splitlines()) if m]
    lines = [line for line in lines if not line.startswith("ramboot check")]  # needs Buildroot
    assert [line.split()[1] for line in lines] == ["render", "deploy", "deploy", "rollback"]

    example = REPO / "examples/inventory.toml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fleet.toml").write_text(example.read_text())
    make_images(tmp_path / "output")
    srv = tmp_path / "srv"
    for line in [*lines[:3], lines[1].replace("--dry-run", "").strip(), *lines[3:]]:
        words = _words(line.replace("/srv/ramboot", str(srv / "ramboot")))
        if words[1] == "deploy" and not (srv).exists():
            srv.mkdir()
        if words[1] == "rollback":
            # A rollback needs an older release: publish a changed tree first.
            (tmp_path / "build/fleet/dhcp/dnsmasq.conf").write_text("# changed\n")
            deploy = CliRunner().invoke(cli, ["deploy", "build/fleet", "--root",
                                              str(srv / "ramboot")])
            assert deploy.exit_code == 0, deploy.output
        result = CliRunner().invoke(cli, words[1:])
        assert result.exit_code == 0, f"`{line}`: {result.output}{result.exception}"
    assert (srv / "ramboot/current/tftp").is_dir()
