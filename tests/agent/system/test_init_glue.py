"""The overlay's init glue: shell scripts are clean, inittab hands the console to the agent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

OVERLAY = Path(__file__).resolve().parents[3] / "overlay"
SCRIPTS = [
    OVERLAY / "etc/init.d/S10coldplug",
    OVERLAY / "usr/lib/ramboot/console-session",
    OVERLAY / "usr/share/ramboot/udhcpc.script",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable_and_shellcheck_clean(script: Path) -> None:
    assert os.access(script, os.X_OK)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    subprocess.run(["shellcheck", "-s", "sh", str(script)], check=True, timeout=60)


def test_inittab_runs_rc_scripts_and_the_console_session() -> None:
    entries = [
        line.split(":", 3) for line in (OVERLAY / "etc/inittab").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(len(entry) == 4 for entry in entries)
    actions = {(tty, action, process) for tty, _, action, process in entries}
    assert ("", "sysinit", "/etc/init.d/rcS") in actions
    assert ("console", "respawn", "/usr/lib/ramboot/console-session") in actions
    for _, _, _, process in entries:
        program = process.split()[0]
        if program.startswith("/usr/lib/ramboot/"):
            assert (OVERLAY / program.lstrip("/")).exists()
