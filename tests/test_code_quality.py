"""The whole tree passes the project's linters: ruff, mypy (strict) and shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    return [REPO / name for name in listed if name]


def shell_scripts() -> list[Path]:
    scripts = []
    for path in tracked_files():
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as stream:
            first = stream.readline(200)
        if first.startswith(b"#!") and any(s in first for s in (b"/sh", b"bash")):
            scripts.append(path)
    return scripts


def run_tool(argv: list[str]) -> None:
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(argv[:3])} ...:\n{result.stdout}{result.stderr}"


def test_ruff() -> None:
    run_tool([sys.executable, "-m", "ruff", "check", "."])


def test_mypy_strict() -> None:
    pytest.importorskip("mypy")
    run_tool([sys.executable, "-m", "mypy"])


def test_shell_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (scripts/install-deps)")
    scripts = shell_scripts()
    assert REPO / ".ci/run" in scripts and REPO / "scripts/install-deps" in scripts
    run_tool(["shellcheck", "--external-sources", *map(str, scripts)])
