"""`render --machine-secret`: each machine's token where it reads it, never in the HTTP tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ramboot.errors import RambootError
from ramboot.inventory import load_inventory, parse_inventory
from ramboot.render.tree import render_tree
from ramboot.tokens import fleet_token, host_token, read_secret, with_token
from tests.tools.render.helpers import FLEET, make_images
from tests.tools.render.test_kea_ha import HA


def agent_settings(words: list[str]) -> Any:
    from ramboot_agent.cmdline import parse_cmdline

    return parse_cmdline(" ".join(words))

SECRET = b"0123456789abcdef0123456789abcdef"


def _kea(out: Path, name: str = "kea-dhcp4.json") -> dict[str, Any]:
    text = (out / "dhcp" / name).read_text()
    return dict(json.loads("\n".join(line for line in text.splitlines()
                                     if not line.startswith("//"))))


def _value(option: dict[str, Any]) -> str:  # Kea string options are written as hex
    data = str(option["data"])
    return bytes.fromhex(data).decode() if option.get("csv-format") is False else data


def test_tokens_go_to_dhcp_and_cmdline_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_tree(load_inventory(FLEET), make_images(tmp_path / "images"), out,
                machine_secret=SECRET)
    srv, pi, fleet = host_token(SECRET, "srv-01"), host_token(SECRET, "pi-01"), fleet_token(SECRET)
    base = "192.0.2.1/ramboot"
    kea = _kea(out)["Dhcp4"]
    subnet = kea["subnet4"][0]
    [pool_report] = [_value(o) for o in subnet["option-data"] if o["name"] == "ramboot-report"]
    assert pool_report == f"http://ramboot:{fleet}@192.0.2.1:8080/events"
    srv_options = {o["name"]: _value(o) for r in subnet["reservations"]
                   if r["hostname"] == "srv-01" for o in r["option-data"]}
    assert srv_options == {"ramboot-report": f"https://ramboot:{srv}@192.0.2.1:8443/srv-events"}
    # Option 224 of each stage, from the host's two stage classes, carries its token.
    classes = {c["name"]: [_value(o) for o in c.get("option-data", [])]
               for c in kea["client-classes"] if c["name"].startswith("host-")}
    assert classes["host-srv-01-stage1"] == [f"http://ramboot:{srv}@{base}/stage1/srv-01.ipxe"]
    assert classes["host-srv-01-stage2"] == [f"http://ramboot:{srv}@{base}/stage2/srv-01.json"]
    assert classes["host-pi-01-stage2"] == [f"http://ramboot:{pi}@{base}/stage2/pi-01.json"]
    dnsmasq = (out / "dhcp/dnsmasq.conf").read_text()
    assert f'225,"http://ramboot:{fleet}@192.0.2.1:8080/events"' in dnsmasq
    assert (f'tag:host-srv-01,tag:!ramboot-agent,224,"http://ramboot:{srv}@{base}/stage1/'
            'srv-01.ipxe"') in dnsmasq
    assert (f'tag:host-srv-01,tag:ramboot-agent,224,"http://ramboot:{srv}@{base}/stage2/'
            'srv-01.json"') in dnsmasq
    assert f'tag:host-srv-01,225,"https://ramboot:{srv}@192.0.2.1:8443/srv-events"' in dnsmasq
    # The Pi reads its own from cmdline.txt (its TFTP directory), after its stage 2 URL.
    cmdline = (out / "tftp/1a2b3c4d/cmdline.txt").read_text().split()
    assert f"ramboot.url=http://{base}/stage2/pi-01.json" in cmdline
    assert f"ramboot.token={pi}" in cmdline
    assert agent_settings(cmdline).token == pi
    # The HTTP tree is public: no token in any of its files.
    for path in (out / "http").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert all(t.encode() not in data for t in (srv, pi, fleet)), path


def test_the_ha_pair_carries_the_same_tokens(tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(FLEET.read_text() + HA)
    out = tmp_path / "out"
    render_tree(load_inventory(inventory), make_images(tmp_path / "images"), out,
                machine_secret=SECRET)
    single = tmp_path / "single"
    render_tree(load_inventory(FLEET), make_images(tmp_path / "images"), single,
                machine_secret=SECRET)
    classes = _kea(single)["Dhcp4"]["client-classes"]
    for peer in ("dhcp-a", "dhcp-b"):
        assert _kea(out, f"kea-dhcp4-{peer}.json")["Dhcp4"]["client-classes"] == classes


def test_without_a_secret_nothing_changes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_tree(load_inventory(FLEET), make_images(tmp_path / "images"), out)
    assert "ramboot:" not in (out / "dhcp/kea-dhcp4.json").read_text()
    assert "ramboot.token" not in (out / "tftp/1a2b3c4d/cmdline.txt").read_text()


def test_no_token_in_the_inventory(tmp_path: Path) -> None:
    text = FLEET.read_text().replace("ramboot = { debug = 1 }",
                                     'ramboot = { debug = 1, token = "0123456789abcdef0" }')
    with pytest.raises(RambootError, match="machine tokens come from"):
        parse_inventory(text, tmp_path / "fleet.toml")
    text = FLEET.read_text().replace('kernel_args = ["quiet"]',
                                     'kernel_args = ["quiet", "ramboot.token=0123456789abcdef0"]')
    with pytest.raises(RambootError, match=r"kernel_args: ramboot\.token=: machine tokens"):
        parse_inventory(text, tmp_path / "fleet.toml")


def test_with_token_and_secret_files(tmp_path: Path) -> None:
    assert with_token("http://h:8080/boot", "t") == "http://ramboot:t@h:8080/boot"
    assert with_token("tftp://h/x", "t") == "tftp://h/x"
    assert with_token("http://u:p@h/x", "t") == "http://u:p@h/x"
    secret = tmp_path / "secret"
    secret.write_bytes(b"short")
    secret.chmod(0o600)
    with pytest.raises(RambootError, match="at least 16"):
        read_secret(secret)
    secret.write_bytes(SECRET)
    secret.chmod(0o644)
    with pytest.raises(RambootError, match="readable by everyone"):
        read_secret(secret)
    secret.chmod(0o600)
    assert read_secret(secret) == SECRET
