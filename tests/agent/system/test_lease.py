"""The udhcpc hook (run by real busybox) and parsing of the lease it records."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ramboot_agent.errors import NetworkError
from ramboot_agent.net import parse_lease

REPO = Path(__file__).resolve().parents[3]
HOOK = REPO / "overlay/usr/share/ramboot/udhcpc.script"

HOSTILE = {
    "opt224": "687474703a2f2f3139322e302e322e312f6124287265626f6f7429",  # http://192.0.2.1/a$(reboot)
    "rootpath": "/srv/$(touch PWNED)/`touch PWNED2`;touch PWNED3",
    "message": "line one\nline two \"quoted\" 'single' \\ back",
    "hostname": "pi-0a1b2c3d",
}


def busybox() -> str:
    found = shutil.which("busybox")
    if found is None:
        pytest.skip("busybox is not installed (run scripts/install-deps)")
    return found


def run_hook(
    tmp_path: Path, event: str, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin", "RAMBOOT_LEASE_FILE": str(tmp_path / "lease"),
        "interface": "eth0", "ip": "192.0.2.100", "mask": "24", "subnet": "255.255.255.0",
        "router": "192.0.2.1", "dns": "192.0.2.1 192.0.2.2", "serverid": "192.0.2.1",
        "lease": "600", **extra_env,
    }
    return subprocess.run(
        [busybox(), "sh", str(HOOK), event], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=10, check=False,
    )


def test_hook_stores_hostile_values_verbatim_and_runs_nothing(tmp_path: Path) -> None:
    result = run_hook(tmp_path, "bound", HOSTILE)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lease"]  # no PWNED*, no temp file
    lease = parse_lease((tmp_path / "lease").read_bytes(), mac="52:54:00:12:34:56")
    assert lease.option_text(224) == "http://192.0.2.1/a$(reboot)"
    assert lease.options[17] == HOSTILE["rootpath"].encode()
    assert lease.options[56] == HOSTILE["message"].encode()
    assert (lease.interface, lease.ip, lease.prefix_len) == ("eth0", "192.0.2.100", 24)
    assert lease.router == "192.0.2.1"
    assert lease.dns == ("192.0.2.1", "192.0.2.2")
    assert lease.hostname == "pi-0a1b2c3d"
    assert lease.options[3] == bytes([192, 0, 2, 1])
    assert lease.options[6] == bytes([192, 0, 2, 1, 192, 0, 2, 2])
    assert lease.options[51] == (600).to_bytes(4, "big")


@pytest.mark.parametrize("event", ["deconfig", "leasefail", "nak"])
def test_hook_ignores_other_events(tmp_path: Path, event: str) -> None:
    result = run_hook(tmp_path, event, {})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "lease").exists()


def test_hook_without_lease_file_variable_fails(tmp_path: Path) -> None:
    result = subprocess.run(
        [busybox(), "sh", str(HOOK), "bound"], env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=10, check=False,
    )
    assert result.returncode != 0
    assert "RAMBOOT_LEASE_FILE" in result.stderr


def test_hook_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    subprocess.run(["shellcheck", str(HOOK)], check=True, timeout=30)
    assert os.access(HOOK, os.X_OK)


def record(**env: str) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())


def test_prefix_from_subnet_when_mask_is_absent() -> None:
    lease = parse_lease(record(interface="eth0", ip="192.0.2.7", subnet="255.255.0.0"))
    assert lease.prefix_len == 16
    assert lease.router is None
    assert lease.option_text(224) is None


def test_unknown_option_without_name_keeps_raw_bytes() -> None:
    lease = parse_lease(record(interface="eth0", ip="192.0.2.7", mask="24", opt150="c0000201"))
    assert lease.options[150] == bytes([192, 0, 2, 1])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"interface": "eth0"}, "no 'ip'"),
        ({"interface": "eth0", "ip": "192.0.2.300"}, "malformed address"),
        ({"interface": "eth0", "ip": "192.0.2.3", "mask": "40"}, "malformed address"),
        ({"interface": "eth0", "ip": "192.0.2.3", "opt224": "zz"}, "opt224 is not hex"),
        ({"interface": "eth0", "ip": "192.0.2.3", "router": "gateway"}, "router"),
    ],
)
def test_malformed_records_are_network_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        parse_lease(record(**env))


def test_to_json_hex_encodes_options() -> None:
    lease = parse_lease(record(interface="eth0", ip="192.0.2.7", mask="24", opt224="6869"))
    assert lease.to_json()["options"] == {"224": "6869"}
