"""net.bring_up against real Kea, in network namespaces, through real busybox udhcpc."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ramboot_agent.net import parse_lease
from tests.lib.netlab import (
    PREFIX_LEN,
    SERVER_IP,
    Namespace,
    kea_config,
    namespace,
    require_netns,
    start_kea,
    wait_for,
)

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[3]
HOOK = REPO / "overlay/usr/share/ramboot/udhcpc.script"
URL = "http://192.0.2.1/boot.ipxe?serial=$(reboot)&q=\"x\""
MACS = ("52:54:00:00:00:0a", "52:54:00:00:00:0b")


@dataclass
class Lab:
    server: Namespace
    client: Namespace
    workdir: Path


@contextlib.contextmanager
def bridged_lab(tmp_path: Path, client_links: int) -> Iterator[Lab]:
    """Kea on a bridge in the server namespace; `client_links` veths into the client one."""
    require_netns("kea-dhcp4", "udhcpc")
    with namespace("rb-srv") as server, namespace("rb-cli") as client:
        server.ip("link", "add", "br0", "type", "bridge")
        server.ip("addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", "br0")
        server.ip("link", "set", "br0", "up")
        for index in range(client_links):
            server.ip("link", "add", f"srv{index}", "type", "veth", "peer", "name", f"eth{index}",
                      "netns", client.name)
            server.ip("link", "set", f"srv{index}", "master", "br0")
            server.ip("link", "set", f"srv{index}", "up")
            client.ip("link", "set", f"eth{index}", "address", MACS[index])
            client.ip("link", "set", f"eth{index}", "up")
        # Kea opens no socket on a bridge without carrier: wait for a port to come up.
        wait_for(
            lambda: "LOWER_UP" in server.run(["ip", "link", "show", "br0"]).stdout,
            timeout=10, what="br0 carrier",
        )
        start_kea(server, kea_config("br0", tmp_path, option_224=URL), tmp_path)
        yield Lab(server, client, tmp_path)


def bring_up(lab: Lab, cmdline: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return lab.client.run(
        [sys.executable, "-m", "ramboot_agent.net", "--force", "--cmdline", cmdline,
         "--runtime-dir", lab.workdir / "run", "--resolv-conf", lab.workdir / "resolv.conf",
         "--hook", HOOK],
        check=False, timeout=timeout, cwd=REPO,
    )


def test_lease_with_option_224_configures_the_namespace(tmp_path: Path) -> None:
    with bridged_lab(tmp_path, 1) as lab:
        result = bring_up(lab, "ramboot.dhcp_timeout=30")
        assert result.returncode == 0, result.stderr
        lease = json.loads(result.stdout)
        assert lease["interface"] == "eth0"
        assert lease["mac"] == MACS[0]
        assert bytes.fromhex(lease["options"]["224"]).decode() == URL
        assert lease["router"] == SERVER_IP
        # The record the hook left parses to the same lease, option 224 verbatim.
        recorded = parse_lease((tmp_path / "run" / "lease.eth0").read_bytes())
        assert recorded.option_text(224) == URL
        addresses = lab.client.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"{lease['ip']}/{PREFIX_LEN}" in addresses
        routes = lab.client.run(["ip", "-4", "route", "show", "default"]).stdout
        assert f"via {SERVER_IP} dev eth0" in routes
        assert (tmp_path / "resolv.conf").read_text() == f"nameserver {SERVER_IP}\n"
        # Nothing the option contained was executed by anyone.
        assert not list(REPO.glob("reboot*"))


def test_bootif_interface_is_preferred(tmp_path: Path) -> None:
    with bridged_lab(tmp_path, 2) as lab:
        unpreferred = bring_up(lab, "ramboot.dhcp_timeout=30")
        assert unpreferred.returncode == 0, unpreferred.stderr
        assert json.loads(unpreferred.stdout)["interface"] == "eth0"  # name order
        chosen = bring_up(lab, f"BOOTIF=01-{MACS[1].replace(':', '-')} ramboot.dhcp_timeout=30")
        assert chosen.returncode == 0, chosen.stderr
        lease = json.loads(chosen.stdout)
        assert (lease["interface"], lease["mac"]) == ("eth1", MACS[1])


def test_no_carrier_fails_within_the_bound(tmp_path: Path) -> None:
    require_netns("udhcpc")
    with namespace("rb-cli") as client:
        # A veth whose peer stays down never gets carrier.
        client.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        lab = Lab(client, client, tmp_path)
        started = time.monotonic()
        result = bring_up(
            lab, "ramboot.iface=eth0 ramboot.carrier_timeout=1.5 ramboot.dhcp_timeout=5",
            timeout=30,
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert "NetworkError: no carrier on eth0 after 1.5 s" in result.stderr
        assert elapsed < 15


def test_no_dhcp_server_fails_within_the_bound(tmp_path: Path) -> None:
    require_netns("udhcpc")
    with namespace("rb-cli") as client:
        client.ip("link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        client.ip("link", "set", "peer0", "up")
        lab = Lab(client, client, tmp_path)
        started = time.monotonic()
        result = bring_up(lab, "ramboot.iface=eth0 ramboot.dhcp_timeout=3", timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        assert "NetworkError: no DHCP lease on eth0 within 3 s" in result.stderr
        assert elapsed < 30


def test_the_agent_announces_itself_and_gets_its_own_option_224(tmp_path: Path) -> None:
    """Option 60 is exactly ramboot-agent:<version>:<buildarch>; Kea keys a class on it."""
    import os

    from ramboot_agent import __version__
    from ramboot_agent.arch import buildarch

    vendor = f"ramboot-agent:{__version__}:{buildarch(os.uname().machine)}"
    agent_url, other_url = "http://192.0.2.1/stage2/h.json", "http://192.0.2.1/stage1/h.ipxe"
    config = kea_config("br0", tmp_path)
    dhcp4 = config["Dhcp4"]
    dhcp4["option-def"] = [
        {"name": "ramboot-url", "code": 224, "type": "string", "space": "dhcp4"}]
    dhcp4["client-classes"] = [
        {"name": "agent", "test": f"option[60].text == '{vendor}'",
         "option-data": [{"name": "ramboot-url", "data": agent_url, "always-send": True}]},
        {"name": "other", "test": "not member('agent')",
         "option-data": [{"name": "ramboot-url", "data": other_url, "always-send": True}]},
    ]
    require_netns("kea-dhcp4", "udhcpc")
    with namespace("rb-srv") as server, namespace("rb-cli") as client:
        server.ip("link", "add", "srv0", "type", "veth", "peer", "name", "eth0",
                  "netns", client.name)
        server.ip("addr", "add", f"{SERVER_IP}/{PREFIX_LEN}", "dev", "srv0")
        server.ip("link", "set", "srv0", "up")
        client.ip("link", "set", "eth0", "address", MACS[0])
        client.ip("link", "set", "eth0", "up")
        dhcp4["interfaces-config"]["interfaces"] = ["srv0"]
        start_kea(server, config, tmp_path)
        lab = Lab(server, client, tmp_path)
        result = bring_up(lab, "ramboot.dhcp_timeout=30")
        assert result.returncode == 0, result.stderr
        lease = json.loads(result.stdout)
        assert bytes.fromhex(lease["options"]["224"]).decode() == agent_url
