"""tests/lib/qemu.py: failures are reported with QEMU's own words, timeouts are scaled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.qemu import Qemu, QemuError, require_qemu, timeout_factor, x86_64_argv


@pytest.mark.qemu
def test_qemu_that_dies_at_once_is_reported_with_its_stderr(tmp_path: Path) -> None:
    require_qemu()
    argv = x86_64_argv(extra=["-device", "no-such-device-rb"])
    with pytest.raises(QemuError) as failure, Qemu(argv, tmp_path / "console.log"):
        pass
    assert "no-such-device-rb" in str(failure.value)  # QEMU's stderr, in the message


def test_timeout_factor_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMBOOT_TIMEOUT_FACTOR", "2.5")
    assert timeout_factor() == 2.5
    monkeypatch.setenv("RAMBOOT_TIMEOUT_FACTOR", "fast")
    with pytest.raises(ValueError, match="RAMBOOT_TIMEOUT_FACTOR"):
        timeout_factor()


def test_shell_run_returns_output_and_status_without_the_echoed_command(tmp_path: Path) -> None:
    # The console harness is generic over a pty: a local sh stands in for a guest's shell.
    # (sh writes its prompt to stderr, which Qemu keeps apart: merge it here.)
    with Qemu(["sh", "-c", "exec sh -i 2>&1"], tmp_path / "console.log") as console:
        shell = console.shell(prompt=r"[#$] ", timeout=10)
        assert shell.run("echo one; echo two; false") == (["one", "two"], 1)
        assert shell.run_check("printf 'RBB%s\\n' x") == ["RBBx"]
        with pytest.raises(QemuError, match="exited 3"):
            shell.run_check("exit_with() { return $1; }; exit_with 3")
        calls: list[int] = []

        def third_time(lines: list[str], status: int) -> bool:
            calls.append(status)
            return len(calls) == 3

        assert shell.poll_until("echo tick", third_time, timeout=10, interval=0) == ["tick"]
