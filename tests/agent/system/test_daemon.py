"""The boot flow's own decisions, and `ramboot-agent run` failing cleanly."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent import rescue
from ramboot_agent.cmdline import Settings
from ramboot_agent.daemon import document_kind, instructions_url, script_settings
from ramboot_agent.errors import ConfigError, ScriptError
from ramboot_agent.log import recent_log_lines, setup_logging
from ramboot_agent.net import Lease

REPO = Path(__file__).resolve().parents[3]
LEASE = Lease(
    interface="eth0", mac="52:54:00:12:34:56", ip="192.0.2.100", prefix_len=24,
    router="192.0.2.1", dns=("192.0.2.1",), options={224: b"http://192.0.2.1/boot.ipxe"},
)


IDENTITY = {
    "mac": "52:54:00:12:34:56", "ip": "192.0.2.100", "uuid": "4c4c4544-0042",
    "serial": "SN 42/a&b", "manufacturer": "Dell Inc.", "product": "PowerEdge R650",
    "asset": "", "hostname": "node-1", "buildarch": "x86_64", "platform": "efi",
}
QUERY = (
    "mac=52:54:00:12:34:56&ip=192.0.2.100&uuid=4c4c4544-0042&serial=SN%2042%2Fa%26b"
    "&manufacturer=Dell%20Inc.&product=PowerEdge%20R650&asset=&hostname=node-1"
    "&buildarch=x86_64&platform=efi&stage=agent"
)


def test_kernel_command_line_url_wins_over_dhcp_and_is_used_as_given() -> None:
    url = instructions_url(Settings(url="https://cp/x.ipxe"), LEASE, IDENTITY)
    assert url == "https://cp/x.ipxe"


def test_option_224_gets_the_identity_query_the_embedded_ipxe_script_sends() -> None:
    assert instructions_url(Settings(), LEASE, IDENTITY) == f"http://192.0.2.1/boot.ipxe?{QUERY}"
    lease = Lease(interface="eth0", mac="", ip="192.0.2.9", prefix_len=24,
                  options={224: b"http://cp/boot?site=lab"})
    assert instructions_url(Settings(), lease, IDENTITY) == f"http://cp/boot?site=lab&{QUERY}"
    # Same keys, same order as board/common/ipxe/ramboot.ipxe, then the stage:
    # iPXE (stage 1) sends none, the agent asks for stage 2.
    script = (REPO / "board/common/ipxe/ramboot.ipxe").read_text()
    sent = script.split("set rb-url ${224}?", 1)[1].split("\n", 1)[0]
    assert [pair.split("=")[0] for pair in sent.split("&")] + ["stage"] == [
        pair.split("=")[0] for pair in QUERY.split("&")
    ]
    assert QUERY.endswith("&stage=agent")


def test_no_instructions_is_a_config_error() -> None:
    lease = Lease(interface="eth1", mac="", ip="192.0.2.9", prefix_len=24)
    with pytest.raises(ConfigError, match="option 224 in the lease of eth1"):
        instructions_url(Settings(), lease, IDENTITY)


def test_document_kinds() -> None:
    assert document_kind(b"#!ipxe\necho hi\n", "u") == "ipxe"
    assert document_kind(b"\xef\xbb\xbf#!ipxe\n", "u") == "ipxe"
    assert document_kind(b'  {"ramboot-plan": 1, "actions": []}', "http://cp/p.json") == "plan"
    assert document_kind(b'\xef\xbb\xbf\n{"version": 1}', "http://cp/p.json") == "plan"
    with pytest.raises(ScriptError, match=r"http://cp/x:1: neither an iPXE script.*<html>"):
        document_kind(b"<html>404</html>", "http://cp/x")


def test_script_settings_have_identity_and_every_dhcp_option() -> None:
    store = script_settings({"serial": "d3a8b4f2", "mac": LEASE.mac, "ip": LEASE.ip}, LEASE)
    assert store.get("serial") == "d3a8b4f2"
    assert store.get("224") == store.get("net0/224") == "http://192.0.2.1/boot.ipxe"
    assert store.get("net0/mac") == "52:54:00:12:34:56"
    assert store.get("ip") == "192.0.2.100"
    assert store.get("ramboot-stage") == "agent"  # real iPXE leaves it unset: stage 1


def test_a_value_the_script_settings_cannot_hold_costs_that_setting(
        caplog: pytest.LogCaptureFixture) -> None:
    lease = Lease(interface="eth0", mac="", ip="192.0.2.100", prefix_len=24,
                  options=LEASE.options, next_server="192.0.2.1", boot_file="x\x01")
    with caplog.at_level(logging.WARNING, logger="ramboot"):
        store = script_settings({"mac": "not-a-mac", "uuid": "Not Settable",
                                 "serial": "d3a8b4f2"}, lease)
    assert store.get("mac") is None and store.get("uuid") is None
    assert store.get("serial") == "d3a8b4f2" and store.get("next-server") == "192.0.2.1"
    assert store.get("224") == "http://192.0.2.1/boot.ipxe"
    assert "mac='not-a-mac' cannot be a script setting" in caplog.text
    assert "uuid='Not Settable' cannot be a script setting" in caplog.text


class RecordingReporter:
    """Stands in for events.Reporter (another module): records what the failure path sends."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def emit(self, event: str, **details: Any) -> None:
        self.events.append((event, details))

    def recent(self, n: int) -> list[dict[str, Any]]:
        return [{"seq": i, "event": e} for i, (e, _) in enumerate(self.events[-n:])]

    def close(self, timeout: float) -> None:
        self.closed = True


def test_failure_is_shown_reported_and_leads_to_a_shell() -> None:
    out = io.StringIO()
    setup_logging(0, kmsg=False, stream=io.StringIO())
    logging.getLogger("ramboot").info("eth0: DHCP (attempt 1)")
    reporter = RecordingReporter()
    reporter.emit("network-up")
    status = rescue.fail("FetchError: http://192.0.2.1/x: 404", reporter, Settings(), out=out)
    assert status == rescue.EXIT_RESCUE
    text = out.getvalue()
    assert "ramboot-agent FAILED" in text
    assert "FetchError: http://192.0.2.1/x: 404" in text
    assert "network-up" in text and "eth0: DHCP (attempt 1)" in text
    event, details = reporter.events[-1]
    assert event == "failure"
    assert details["reason"] == "FetchError: http://192.0.2.1/x: 404"
    assert any("DHCP (attempt 1)" in line for line in details["log_tail"])
    assert reporter.closed
    assert recent_log_lines(1)[0].endswith("FetchError: http://192.0.2.1/x: 404")


def test_failure_box_lines_fit_the_box() -> None:
    box = rescue.failure_box("x" * 300, [{"seq": 1, "event": "boot"}], ["y" * 200])
    assert {len(line) for line in box.splitlines()} == {rescue.BOX_WIDTH}


def test_authorized_keys_keeps_only_public_keys() -> None:
    text = (
        "# fleet operators\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB op@example\n"
        "command=\"reboot\" ssh-rsa AAAAB3 evil\n"
        "not a key\n"
        "ecdsa-sha2-nistp256 AAAAE2VjZHNh\n"
    )
    assert rescue.authorized_keys(text) == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB op@example", "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
    ]


def run_agent(cmdline: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "cmdline"
    path.write_text(cmdline)
    return subprocess.run(
        [sys.executable, "-m", "ramboot_agent", "run", "--force", "--cmdline", str(path),
         "--no-kmsg"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )


def test_run_refuses_outside_the_ram_system_and_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cmdline"
    path.write_text("ramboot.url=http://192.0.2.1/boot.ipxe\n")
    runtime = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "ramboot_agent", "run", "--cmdline", str(path), "--no-kmsg",
         "--runtime-dir", str(runtime)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("ramboot-agent: refusing to run ramboot-agent run: / is ")
    assert "not the in-RAM ramboot system" in result.stderr and "--force" in result.stderr
    assert "FAILED" not in result.stderr and not runtime.exists()


@pytest.mark.parametrize(("root", "refused"), [
    ("1 1 0:2 / / rw - rootfs rootfs rw,size=4004516k,nr_inodes=1001129", False),
    ("20 1 0:19 / / rw,relatime shared:1 - tmpfs tmpfs rw", False),
    ("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw", True),
    ("27 1 0:30 / / rw - overlay overlay rw,lowerdir=/x", True),
])
def test_the_ram_system_is_recognised_by_its_root(tmp_path: Path, root: str,
                                                  refused: bool) -> None:
    from ramboot_agent.net import refuse_outside_ram_system

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"{root}\n22 27 0:21 / /proc rw,relatime - proc proc rw\n")
    refusal = refuse_outside_ram_system("run", force=False, mountinfo=mountinfo)
    assert (refusal is not None) == refused
    assert refuse_outside_ram_system("run", force=True, mountinfo=mountinfo) is None


def test_run_with_a_bad_command_line_fails_into_the_rescue_shell(tmp_path: Path) -> None:
    result = run_agent("console=ttyS0 ramboot.shell=sometimes\n", tmp_path)
    assert result.returncode == rescue.EXIT_RESCUE
    assert "ramboot-agent FAILED" in result.stderr
    assert "ramboot.shell='sometimes': expected one of never, failure, before, after" in (
        result.stderr
    )
