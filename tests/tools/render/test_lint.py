"""`ramboot lint` uses the agent's parser: rendered scripts pass, broken ones name the line."""

from __future__ import annotations

import os
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
    assert "10 script(s) OK" in lint.output


def test_broken_script_names_file_and_line(tmp_path: Path) -> None:
    script = tmp_path / "bad.ipxe"
    script.write_text("#!ipxe\necho fine\necho ${unterminated\n")
    result = CliRunner().invoke(cli, ["lint", str(script)])
    assert result.exit_code != 0
    assert f"{script}:3" in str(result.exception), result.exception


def test_lint_refuses_a_fifo_and_a_huge_file_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.ipxe"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.ipxe"
    with huge.open("wb") as stream:
        stream.truncate(5 << 20)
    result = CliRunner().invoke(cli, ["lint", str(fifo), str(huge)])
    assert result.exit_code == 1
    assert f"{fifo}: not a regular file" in str(result.exception)
    assert f"{huge}: 5242880 bytes, larger than" in str(result.exception)
