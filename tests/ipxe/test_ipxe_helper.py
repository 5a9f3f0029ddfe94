"""The run_in_ipxe helper itself: it must return exactly what real iPXE printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.ipxe import GUEST_MAC, HTTP_BASE, console_lines, drop_progress, run_ipxe_script
from tests.lib.netlab import SERVER_IP


def test_console_lines_joins_80_column_wraps_and_strips_escapes() -> None:
    raw = (
        "\x1b[0;1miPXE\x1b[0m banner\r\n"
        + "a" * 80 + "\r\n" + "b\r\n"  # 81 characters, wrapped
        + "c" * 80 + "\r\n" + "\r\n"  # exactly 80: the screen adds an empty row
        + "short\r\n"
    )
    assert console_lines(raw) == ["iPXE banner", "a" * 80 + "b", "c" * 80, "short", ""]


def test_drop_progress_keeps_script_lines() -> None:
    lines = ["Configuring (net0 52:54:00:a1:b2:c3)...... ok", "http://192.0.2.1:8080/x... ok",
             "hello http://x"]
    assert drop_progress(lines) == ["hello http://x"]


@pytest.mark.qemu
def test_no_network_run_returns_exactly_the_script_output(tmp_path: Path) -> None:
    long_text = "x" * 100
    script = "\n".join([
        "#!ipxe",
        "set n:int32 0",
        ":loop",
        "inc n",
        "echo n=${n}",
        "iseq ${n} 3 || goto loop",
        "isset ${224} && echo has-224 || echo no-224",
        f"echo {long_text}",
        "echo " + "y" * 80,
        "echo -n no-newline-",
        "echo done",
    ]) + "\n"
    run = run_ipxe_script(script, tmp_path=tmp_path, network=False)
    assert run.succeeded
    assert run.lines == ["n=1", "n=2", "n=3", "no-224", long_text, "y" * 80,
                         "no-newline-done"]
    assert run.seconds < 30


@pytest.mark.qemu
def test_failing_script_reports_failure_and_its_own_error_only(tmp_path: Path) -> None:
    script = "#!ipxe\necho before\nno-such-command\necho after\n"
    run = run_ipxe_script(script, tmp_path=tmp_path, network=False)
    assert not run.succeeded
    assert run.lines == ["before", "no-such-command: command not found"]


@pytest.mark.qemu
@pytest.mark.netns
def test_network_run_sees_dhcp_options_and_fetches_files(tmp_path: Path) -> None:
    script = (
        "#!ipxe\n"
        "echo mac=${net0/mac} ip-set=${net0/ip} url=${224}\n"
        "chain --autofree ${224}\n"
    )
    child = b"#!ipxe\necho child-script-ran\n"
    run = run_ipxe_script(
        script, tmp_path=tmp_path, files={"child.ipxe": child},
        dhcp_options=[f"--dhcp-option-force=224,{HTTP_BASE}/child.ipxe"],
    )
    assert run.succeeded, run.console
    lines = drop_progress(run.lines)
    assert lines[0].startswith(f"mac={GUEST_MAC} ip-set=192.0.2.")
    assert lines[0].endswith(f"url={HTTP_BASE}/child.ipxe")
    assert lines[1:] == ["child-script-ran"]
    assert SERVER_IP in HTTP_BASE
