"""A rendered Kea high-availability pair: two real kea-dhcp4 servers in namespaces.

Both serve (load-balancing), each keeps the other's leases; killed, one leaves
the other to serve every client, options 224 and 225 included.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

from ramboot.errors import RambootError
from ramboot.inventory import parse_inventory
from tests.lib import netlab
from tests.tools.render.helpers import FLEET, make_images, render_fleet

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PEERS = {"dhcp-a": "192.0.2.2", "dhcp-b": "192.0.2.3"}
HA = """
[dhcp_ha]
mode = "load-balancing"
heartbeat_delay = 1000
max_response_delay = 3000
[[dhcp_ha.peers]]
name = "dhcp-a"
url = "http://192.0.2.2:8001/"
[[dhcp_ha.peers]]
name = "dhcp-b"
url = "http://192.0.2.3:8001/"
"""
RESERVED = ("52:54:00:12:34:56", "52:54:00:12:34:57")  # srv-01's NICs in the fixture
FLEET_REPORT = "http://192.0.2.1:8080/events"
SRV_REPORT = "https://192.0.2.1:8443/srv-events"  # srv-01's own
STAGE1 = "http://192.0.2.1/ramboot/stage1/srv-01.ipxe"
STAGE2 = "http://192.0.2.1/ramboot/stage2/srv-01.json"
AGENT_VENDOR_CLASS = "ramboot-agent:0.1.0:x86_64"  # what the agent's udhcpc sends


def _hex(text: str) -> str:
    return text.encode().hex()


def render_pair(tmp_path: Path) -> Path:
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(FLEET.read_text() + HA)
    out = tmp_path / "out"
    render_fleet(make_images(tmp_path / "images"), out, inventory)
    return out


def test_render_writes_one_configuration_per_peer(tmp_path: Path) -> None:
    out = render_pair(tmp_path)
    assert sorted(p.name for p in (out / "dhcp").iterdir()) == [
        "dnsmasq.conf", "kea-dhcp4-dhcp-a.json", "kea-dhcp4-dhcp-b.json"]
    configs = {name: _load(out / f"dhcp/kea-dhcp4-{name}.json") for name in PEERS}
    for name, config in configs.items():
        [_, ha_hook] = config["Dhcp4"]["hooks-libraries"]
        [ha] = ha_hook["parameters"]["high-availability"]
        assert ha["this-server-name"] == name
        assert [p["name"] for p in ha["peers"]] == ["dhcp-a", "dhcp-b"]
        pools = config["Dhcp4"]["subnet4"][0]["pools"]
        assert pools == [{"pool": "192.0.2.100 - 192.0.2.149", "client-class": "HA_dhcp-a"},
                         {"pool": "192.0.2.150 - 192.0.2.199", "client-class": "HA_dhcp-b"}]
    # Apart from who they are, the two are the same configuration.
    a, b = (json.dumps(c, sort_keys=True) for c in configs.values())
    assert a.replace('"this-server-name": "dhcp-a"', "") == \
        b.replace('"this-server-name": "dhcp-b"', "")


@pytest.mark.parametrize(("extra", "message"), [
    ('[dhcp_ha]\npeers = []\n', "exactly two"),
    ('[dhcp_ha]\nmode = "fast"\n[[dhcp_ha.peers]]\nname = "a"\nurl = "http://192.0.2.2:1/"\n'
     '[[dhcp_ha.peers]]\nname = "a"\nurl = "https://192.0.2.3:1/"\n', "mode: 'fast'"),
    ('[dhcp_ha]\nheartbeat_delay = 5000\nmax_response_delay = 1000\n', "longer than"),
])
def test_bad_ha_sections_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(RambootError, match=re.escape(message)):
        parse_inventory(FLEET.read_text() + extra, tmp_path / "fleet.toml")


def _load(path: Path) -> dict[str, Any]:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("//"))
    return dict(json.loads(text))


@dataclass
class Pair:
    hub: netlab.Namespace
    servers: dict[str, netlab.Namespace]
    clients: netlab.Namespace
    kea: dict[str, Popen[Any]]
    workdirs: dict[str, Path]
    next_client: int = 0


def _veth(hub: netlab.Namespace, peer: netlab.Namespace, outer: str, inner: str) -> None:
    hub.ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", peer.name)
    hub.ip("link", "set", outer, "master", "br0")
    hub.ip("link", "set", outer, "up")


@contextlib.contextmanager
def pair_lab(tmp_path: Path, out: Path) -> Iterator[Pair]:
    with contextlib.ExitStack() as stack:
        hub = stack.enter_context(netlab.namespace("rb-hub"))
        hub.ip("link", "add", "br0", "type", "bridge")
        hub.ip("link", "set", "br0", "up")
        clients = stack.enter_context(netlab.namespace("rb-dhc"))
        servers, kea, workdirs = {}, {}, {}
        for index, (name, address) in enumerate(PEERS.items()):
            ns = stack.enter_context(netlab.namespace(f"rb-{name}"))
            _veth(hub, ns, f"vs{index}", "eth0")
            ns.ip("addr", "add", f"{address}/24", "dev", "eth0")
            ns.ip("link", "set", "eth0", "up")
            workdir = tmp_path / name
            workdir.mkdir()
            config = _load(out / f"dhcp/kea-dhcp4-{name}.json")
            dhcp4 = config["Dhcp4"]
            # Site-specific only: the interface, where leases and logs go here.
            dhcp4["interfaces-config"] = {"interfaces": ["eth0"], "dhcp-socket-type": "raw"}
            dhcp4["lease-database"]["name"] = str(workdir / "leases4.csv")
            dhcp4["loggers"] = [{"name": "kea-dhcp4", "severity": "INFO",
                                 "output_options": [{"output": str(workdir / "kea.log")}]}]
            servers[name], workdirs[name] = ns, workdir
            kea[name] = netlab.start_kea(ns, config, workdir)
        pair = Pair(hub, servers, clients, kea, workdirs)
        for name in PEERS:
            wait_state(pair, name, "LOAD-BALANCING")
        yield pair


def wait_state(pair: Pair, name: str, state: str, timeout: float = 40) -> None:
    log = pair.workdirs[name] / "kea.log"
    pattern = re.compile(rf"HA_STATE_TRANSITION .*to {state} state")
    netlab.wait_for(lambda: bool(pattern.search(log.read_text(errors="replace"))),
                    timeout=timeout, what=f"{name} to reach {state}")


def lease(pair: Pair, mac: str, workdir: Path, vendor_class: str | None = None) -> dict[str, str]:
    interface = f"c{pair.next_client}"
    pair.next_client += 1
    _veth(pair.hub, pair.clients, f"v{interface}", interface)
    pair.clients.ip("link", "set", interface, "address", mac)
    pair.clients.ip("link", "set", interface, "up")
    hook = workdir / "hook.sh"
    hook.write_text('#!/bin/sh\n[ "$1" = bound ] && env\nexit 0\n')
    hook.chmod(0o755)
    argv = ["udhcpc", "-f", "-q", "-n", "-t", "10", "-T", "1", "-i", interface, "-s", str(hook)]
    if vendor_class is not None:
        argv += ["-V", vendor_class]
    result = pair.clients.run(argv, timeout=60, check=False)
    assert result.returncode == 0, f"{mac}: no lease: {result.stderr}"
    return dict(line.split("=", 1) for line in result.stdout.splitlines()
                if re.match(r"^\w+=", line))


def test_pair_serves_shares_leases_and_survives_one_dying(tmp_path: Path) -> None:
    netlab.require_netns("kea-dhcp4", "udhcpc")
    out = render_pair(tmp_path)
    macs = [f"52:54:00:aa:00:{n:02x}" for n in range(8)]
    with pair_lab(tmp_path, out) as pair:
        served = {mac: lease(pair, mac, tmp_path) for mac in (*macs, RESERVED[0])}
        by = {mac: env["serverid"] for mac, env in served.items()}
        assert set(by.values()) == set(PEERS.values()), by  # both halves of the pair serve
        for mac, env in served.items():
            expected = SRV_REPORT if mac in RESERVED else FLEET_REPORT
            assert env["opt225"] == _hex(expected), mac
        reserved = served[RESERVED[0]]
        assert reserved["ip"] == "192.0.2.31"
        assert reserved["opt224"] == _hex(STAGE1)  # not the agent: stage 1, from its class
        # Lease updates: each server holds the leases its partner granted.
        deadline = time.monotonic() + 20
        for name in PEERS:
            csv = pair.workdirs[name] / "leases4.csv"
            while not all(mac in csv.read_text() for mac in served):
                assert time.monotonic() < deadline, f"{name} lacks its partner's leases"
                time.sleep(0.2)

        pair.kea["dhcp-a"].kill()  # no goodbye: the partner must notice by itself
        pair.kea["dhcp-a"].wait(timeout=10)
        wait_state(pair, "dhcp-b", "PARTNER-DOWN", timeout=60)
        after = {mac: lease(pair, mac, tmp_path) for mac in
                 (f"52:54:00:bb:00:{n:02x}" for n in range(6))}
        # The host's agent (its vendor class) gets its stage 2 from the survivor.
        after[RESERVED[1]] = lease(pair, RESERVED[1], tmp_path, AGENT_VENDOR_CLASS)
        assert {env["serverid"] for env in after.values()} == {PEERS["dhcp-b"]}
        for mac, env in after.items():
            expected = SRV_REPORT if mac in RESERVED else FLEET_REPORT
            assert env["opt225"] == _hex(expected), mac
            assert env["ip"].startswith("192.0.2.")
        assert after[RESERVED[1]]["opt224"] == _hex(STAGE2)
        # The survivor hands out addresses from the dead server's half too.
        ips = [int(env["ip"].rsplit(".", 1)[1]) for env in after.values()]
        assert any(100 <= ip <= 149 for ip in ips), ips
