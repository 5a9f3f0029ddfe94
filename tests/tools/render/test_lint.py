"""`ramboot lint` uses the agent's parser: rendered scripts pass, broken ones name the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ramboot.cli import cli
from ramboot.lint import parser_available
from tests.tools.render.helpers import FLEET, make_images

pytestmark = pytest.mark.skipif(not parser_available(), reason="ramboot_agent.ipxe not present")


def test_render_lints_and_rendered_scripts_pass(tmp_path: Path) -> None:
    out = tmp_path / "out"
    images = make_images(tmp_path / "images")
    result = CliRunner().invoke(cli, ["render", str(FLEET), "--images", str(images),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "not linted" not in result.output
    scripts = sorted(str(p) for p in (out / "http").rglob("*.ipxe"))
    assert len(scripts) == 10
    lint = CliRunner().invoke(cli, ["lint", *scripts])
    assert lint.exit_code == 0, lint.output
    assert "10 file(s) OK" in lint.output


def test_broken_script_names_file_and_line(tmp_path: Path) -> None:
    script = tmp_path / "bad.ipxe"
    script.write_text("#!ipxe\necho fine\necho ${unterminated\n")
    result = CliRunner().invoke(cli, ["lint", str(script)])
    assert result.exit_code != 0
    assert f"{script}:3" in str(result.exception), result.exception


def test_plans_are_checked_with_the_agent_validator(tmp_path: Path, repo: Path) -> None:
    good = sorted(str(p) for p in (repo / "examples" / "plans").glob("*.json"))
    bad = tmp_path / "plan.json"
    bad.write_text('{"ramboot-plan": 1, "actions": [{"action": "kexec", "kernel": 5}]}')
    assert CliRunner().invoke(cli, ["lint", *good]).exit_code == 0
    result = CliRunner().invoke(cli, ["lint", *good, str(bad)])
    assert result.exit_code != 0
    assert f"{bad}: actions[0].kernel: must be an object, not a number" in \
        str(result.exception)


def test_lint_names_what_the_agent_cannot_do_with_lines(tmp_path: Path) -> None:
    script = tmp_path / "fleet.ipxe"
    script.write_text("#!ipxe\nvcreate --tag 12 net0 || echo no-vlan\nsanboot --no-describe\n"
                      "sanboot iscsi:192.0.2.9::::iqn.2010-04.example:disk || exit 1\n"
                      "imgverify a.ipxe a.ipxe.sig\nchain http://x/y##params\n${cmd} x\n"
                      "echo ok ; login\n")
    result = CliRunner().invoke(cli, ["lint", str(script)])
    assert result.exit_code != 0
    message = str(result.exception)
    assert f"{script}:2: 'vcreate': the agent has no such command" in message
    assert f"{script}:3:" not in message  # sanboot without a URL: the local disk
    assert f"{script}:4: sanboot of a SAN URL" in message
    assert f"{script}:5:" not in message  # imgverify: the agent checks signatures
    assert f"{script}:6: chain: form parameters" in message
    assert f"{script}:7:" not in message  # a command known only when it runs
    assert f"{script}:8: login: there is no console" in message


def test_lint_passes_the_real_world_corpus_commands_it_has(tmp_path: Path) -> None:
    # The corpus uses commands the agent has, except where the test says so.
    corpus = Path(__file__).resolve().parents[2] / "agent" / "ipxe" / "corpus"
    result = CliRunner().invoke(cli, ["lint", str(corpus / "maas" / "config.local.ipxe"),
                                      str(corpus / "ironic" / "boot.ipxe")])
    assert result.exit_code == 0, result.output
    warewulf = corpus / "warewulf" / "localdisk.ipxe"
    result = CliRunner().invoke(cli, ["lint", str(warewulf)])
    line = warewulf.read_text().splitlines().index("failsafe:") + 1
    assert f"{warewulf}:{line}: 'failsafe:': the agent has no such command" in str(
        result.exception)
