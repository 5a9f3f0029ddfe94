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
