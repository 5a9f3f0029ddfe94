"""`ramboot-agent run-script` end to end: real fetches, dry-run boot, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lib import kernels

from .conftest import CORPUS


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ramboot_agent", "run-script", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_dry_run_prints_echo_and_boot(http_root: Any) -> None:
    root, base = http_root
    (root / "Image").write_bytes(kernels.for_this_machine(size=6000))
    (root / "next.ipxe").write_text("#!ipxe\necho platform ${platform} uefi ${uefi}\n"
                                    "kernel Image console=ttyAMA0\nboot\n")
    done = _run(str(CORPUS / "rpi.ipxe"), "--set", f"224={base}/next.ipxe?a=1",
                "--set", "platform=efi", "--no-sleep")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "platform efi uefi true"
    assert any(line.startswith("kernel ") and "6000 bytes" in line for line in lines)
    assert any(line == "cmdline  console=ttyAMA0" for line in lines)


def test_exit_codes(tmp_path: Path) -> None:
    script = tmp_path / "s.ipxe"
    script.write_text("#!ipxe\necho hi\n")
    done = _run(str(script))
    assert (done.returncode, done.stdout) == (3, "hi\n")
    script.write_text("#!ipxe\necho hi\nfrobnicate\n")
    done = _run(str(script))
    assert done.returncode == 1
    assert f"{script.as_uri()}:3: frobnicate: command not found" in done.stderr
    assert done.stdout == "hi\nfrobnicate: command not found\n"
    script.write_text("#!ipxe\necho hi\nsanboot --no-describe --drive 0x80\n")
    done = _run(str(script))
    assert done.returncode == 6
    assert "'sanboot --no-describe --drive 0x80' asked to boot local drive 0x80" in done.stderr
    done = _run(str(script), "--set", "nonsense")
    assert done.returncode == 1 and "NAME=VALUE" in done.stderr
