"""Identity variables from fixture sysfs/procfs trees of real machine families."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ramboot_agent.identity import KEYS, board_serial, collect_identity, dhcp_option_settings
from ramboot_agent.net import Lease

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]

LEASE = Lease(
    interface="eth0", mac="dc:a6:32:01:02:03", ip="192.0.2.101", prefix_len=24,
    router="192.0.2.1", hostname="node-17", options={224: b"http://192.0.2.1/boot.ipxe\0"},
)

EXPECTED = {
    "pi4b": ("aarch64", {
        "serial": "d3a8b4f2", "uuid": "", "manufacturer": "Raspberry Pi",
        "product": "Raspberry Pi 4 Model B Rev 1.4", "hostname": "", "buildarch": "arm64",
        "platform": "rpi", "asset": "",
    }),
    "pi400": ("aarch64", {
        "serial": "7e1c0a55", "uuid": "", "manufacturer": "Raspberry Pi",
        "product": "Raspberry Pi 400 Rev 1.0", "hostname": "pi400-lab", "buildarch": "arm64",
        "platform": "rpi", "asset": "",
    }),
    "x86-bios": ("x86_64", {
        "serial": "S123456X9A01234", "uuid": "00000000-0000-0000-0000-ac1f6b4a2b3c",
        "manufacturer": "Supermicro", "product": "SYS-5019C-MR", "hostname": "",
        "buildarch": "x86_64", "platform": "pcbios", "asset": "RACK12-U07",
    }),
    "x86-uefi": ("x86_64", {
        "serial": "7XK2LM3", "uuid": "4c4c4544-0058-4b10-8032-b7c04f4c4d33",
        "manufacturer": "Dell Inc.", "product": "PowerEdge R650", "hostname": "",
        "buildarch": "x86_64", "platform": "efi", "asset": "",
    }),
}


@pytest.mark.parametrize("machine_family", sorted(EXPECTED))
def test_identity_without_lease(machine_family: str) -> None:
    machine, expected = EXPECTED[machine_family]
    identity = collect_identity(None, root=FIXTURES / machine_family, machine=machine)
    assert tuple(identity) == KEYS
    assert identity == {"mac": "", "ip": "", **expected}


def test_lease_supplies_mac_ip_and_hostname() -> None:
    identity = collect_identity(LEASE, root=FIXTURES / "pi4b", machine="aarch64")
    assert (identity["mac"], identity["ip"], identity["hostname"]) == (
        "dc:a6:32:01:02:03", "192.0.2.101", "node-17",
    )


def test_dhcp_options_by_number() -> None:
    assert dhcp_option_settings(LEASE) == {"224": "http://192.0.2.1/boot.ipxe"}
    assert dhcp_option_settings(None) == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("10000000d3a8b4f2", "d3a8b4f2"), ("D3A8B4F2", "d3a8b4f2"), ("", ""), ("not-hex!", "")],
)
def test_board_serial(raw: str, expected: str) -> None:
    assert board_serial(raw) == expected


def test_empty_root_gives_empty_values(tmp_path: Path) -> None:
    identity = collect_identity(None, root=tmp_path, machine="aarch64")
    assert identity["platform"] == "linux"
    assert identity["serial"] == identity["product"] == ""


def run_identity(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "ramboot_agent", "identity", *args], capture_output=True,
        text=True, check=True, timeout=30, cwd=REPO,
    ).stdout


def test_command_prints_key_value_lines_and_json(tmp_path: Path) -> None:
    lease_dir = tmp_path / "run"
    lease_dir.mkdir()
    (lease_dir / "lease.eth9").write_bytes(
        b"interface=eth9\0ip=192.0.2.55\0mask=24\0hostname=bad\nname\0opt224=6869\0"
        b"opt250=6c696e650a1b5b326a\0"  # "line\n\x1b[2j": a newline and a terminal escape
    )
    root = FIXTURES / "x86-uefi"
    text = run_identity("--root", str(root), "--lease-dir", str(lease_dir))
    lines = text.splitlines()
    assert "serial=7XK2LM3" in lines
    assert "ip=192.0.2.55" in lines
    assert "hostname=" in lines  # "bad\\nname" is no host name: dropped, with a warning
    assert "250=line\\x0a\\x1b[2j" in lines  # one line per key, whatever DHCP sent
    assert "224=hi" in lines
    data = json.loads(run_identity("--json", "--root", str(root), "--lease-dir", str(lease_dir)))
    assert data["platform"] == "efi"
    assert data["250"] == "line\n\x1b[2j"
