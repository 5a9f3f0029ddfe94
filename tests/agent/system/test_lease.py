"""The udhcpc hook (run by real busybox) and parsing of the lease it records."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramboot_agent.errors import AgentError, NetworkError
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
        ({"ip": "192.0.2.3"}, "no 'interface'"),
        ({"interface": "eth0", "ip": "192.0.2.300"}, "malformed address"),
        ({"interface": "eth0", "ip": "gateway"}, "malformed address"),
    ],
)
def test_a_record_without_a_usable_address_is_a_network_error(env: dict[str, str],
                                                               message: str) -> None:
    with pytest.raises(NetworkError, match=message):
        parse_lease(record(**env))


@pytest.mark.parametrize(
    ("env", "warning", "check"),
    [
        ({"mask": "40", "subnet": "255.255.255.0"}, "mask='40' is malformed; trying the subnet",
         lambda lease: lease.prefix_len == 24),
        ({"mask": "x", "subnet": "garbage"}, "subnet='garbage' is malformed; using /32",
         lambda lease: lease.prefix_len == 32),
        ({"opt224": "zz"}, "opt224='zz' is not option data",
         lambda lease: 224 not in lease.options),
        ({"opt999": "00"}, "opt999='00' is not option data",
         lambda lease: 999 not in lease.options),
        ({"router": "gateway 192.0.2.9"}, "router: 'gateway' is not an IPv4 address",
         lambda lease: lease.router == "192.0.2.9" and lease.options[3] == bytes([192, 0, 2, 9])),
        ({"dns": "192.0.2.1 ::1 nope"}, "dns: '::1' is not an IPv4 address",
         lambda lease: lease.dns == ("192.0.2.1",)),
        ({"serverid": "me"}, "serverid='me' is malformed",
         lambda lease: lease.server_id is None and 54 not in lease.options),
        ({"siaddr": "next"}, "siaddr: 'next' is not an IPv4 address",
         lambda lease: lease.next_server is None),
        ({"lease": "forever"}, "lease='forever' is malformed",
         lambda lease: 51 not in lease.options),
        ({"mtu": "99999"}, "mtu='99999' is malformed", lambda lease: 26 not in lease.options),
        ({"hostname": "pi 01\x1b[2J"}, "hostname='pi 01\\x1b[2J' is malformed",
         lambda lease: lease.hostname is None),
        ({"domain": "lab\nnameserver 6.6.6.6"}, "domain='lab\\x0anameserver 6.6.6.6'",
         lambda lease: lease.domain is None),
    ],
)
def test_one_malformed_field_costs_that_field_not_the_lease(
        env: dict[str, str], warning: str, check: object) -> None:
    warnings: list[str] = []
    base = {"interface": "eth0", "ip": "192.0.2.3", "mask": "24", "opt224": "6869"}
    lease = parse_lease(record(**{**base, **env}), warn=warnings.append)
    assert lease.ip == "192.0.2.3"
    assert any(warning in line for line in warnings), warnings
    assert check(lease)  # type: ignore[operator]
    if "opt224" not in env:
        assert lease.option_text(224) == "hi"  # the rest of the lease is all there


def test_text_fields_never_carry_undecodable_bytes() -> None:
    raw = b"interface=eth0\0ip=192.0.2.3\0hostname=pi-\xff\0domain=lab\xfe.example\0"
    warnings: list[str] = []
    lease = parse_lease(raw, warn=warnings.append)
    assert lease.hostname is None and lease.domain is None and len(warnings) == 2
    assert lease.options[12] == b"pi-\xff"  # the option itself keeps the server's bytes


ENV_NAMES = st.sampled_from(["interface", "ip", "mask", "subnet", "router", "dns", "hostname",
                             "domain", "serverid", "siaddr", "boot_file", "lease", "mtu",
                             "opt224", "opt225", "opt0", "opt255", "opt1x", "staticroutes",
                             "timezone", "vlanid", "=", ""])
ENV_VALUES = st.one_of(
    st.binary(max_size=30).filter(lambda value: b"\0" not in value),
    st.sampled_from([b"192.0.2.1", b"192.0.2.1 192.0.2.2", b"24", b"255.255.255.0", b"6869",
                     b"zz", b"-1", b"99999999999", b"\xff\xfe", b"pi-01", b"a..b"]),
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.tuples(ENV_NAMES, ENV_VALUES), max_size=12), st.binary(max_size=40))
def test_any_record_is_a_lease_or_a_network_error(pairs: list[tuple[str, bytes]],
                                                  noise: bytes) -> None:
    raw = b"\0".join(name.encode() + b"=" + value for name, value in pairs) + b"\0" + noise
    try:
        lease = parse_lease(raw, warn=lambda _message: None)
    except AgentError as error:
        assert isinstance(error, NetworkError)
        return
    ipaddress.IPv4Address(lease.ip)
    assert 0 <= lease.prefix_len <= 32
    for address in (lease.router, lease.server_id, lease.next_server, *lease.dns):
        if address is not None:
            ipaddress.IPv4Address(address)
    assert all(1 <= code <= 254 for code in lease.options)
    for text in (lease.hostname, lease.domain, lease.boot_file):
        assert text is None or (text.isprintable() and "\ufffd" not in text)
    json.dumps(lease.to_json())


def test_to_json_hex_encodes_options() -> None:
    lease = parse_lease(record(interface="eth0", ip="192.0.2.7", mask="24", opt224="6869"))
    assert lease.to_json()["options"] == {"224": "6869"}
