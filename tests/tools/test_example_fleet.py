"""examples/inventory.toml, each host followed through both stages.

What every host gets from iPXE (or its TFTP directory) at stage 1 and from the
agent's request at stage 2, before and after it is provisioned, and what the
rendered DHCP configurations send each stage. The boots themselves run in
tests/qemu/test_two_stages.py (kexec and rescue targets through real iPXE and
the agent); the plan actions the installs and network roots need are checked
with the agent's validator once the agent has them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ramboot import targets
from ramboot.inventory import Host, Inventory, load_inventory
from ramboot.lint import lint_plan, lint_text
from ramboot.render.kea import kea_config
from ramboot.render.tree import render_tree
from tests.tools.render.helpers import make_images

REPO = Path(__file__).resolve().parents[2]
BASE = "http://10.0.0.1/ramboot"


@pytest.fixture(scope="module")
def fleet() -> Inventory:
    return load_inventory(REPO / "examples" / "inventory.toml")


def host(fleet: Inventory, name: str) -> Host:
    return next(h for h in fleet.hosts if h.name == name)


def plan_of(fleet: Inventory, name: str, *, provisioned: bool = False) -> dict:
    doc = targets.stage2(fleet, host(fleet, name), provisioned=provisioned)
    assert doc.kind == "plan"
    return json.loads(doc.data)


def actions(plan: dict) -> list[str]:
    return [action["action"] for action in plan["actions"]]


def test_the_example_has_the_four_machines(fleet: Inventory) -> None:
    kinds = {(h.name, h.family, h.target.kind) for h in fleet.hosts}
    assert kinds == {("pi-01", "rpi4", "install"), ("pi-02", "rpi4", "netroot"),
                     ("srv-01", "x86_64", "install"), ("srv-02", "x86_64", "rescue")}
    assert len(set(fleet.hosts)) == 4  # hosts (and their targets) hash: serve may key on them
    assert targets.fleet_problems(fleet, ramboot_digests={}, published={
        "rpi4/Image", "rpi4/rootfs.cpio.zst", "x86_64/bzImage", "x86_64/rootfs.cpio.zst"}) == []


def test_pi_installed_to_its_sd_card(fleet: Inventory) -> None:
    pi = host(fleet, "pi-01")
    # Stage 1: its TFTP directory, which names its stage 2.
    cmdline = targets.pi_cmdline(fleet, pi).split()
    assert f"ramboot.url={BASE}/stage2/pi-01.json" in cmdline
    # Stage 2: write the image to the SD card, then reboot into it; the EEPROM
    # tries the SD card before the network (0xf21), so it does not come back.
    plan = plan_of(fleet, "pi-01")
    assert actions(plan) == ["image", "localboot"]
    assert plan["disks"] == {"system": {"bus": "mmc"}}
    assert plan["actions"][0]["bmap"].endswith(".bmap") and plan["actions"][0]["verify"]
    assert plan["actions"][1] == {"action": "localboot", "target": "system", "method": "reboot"}
    assert fleet.eeprom.boot_order == "0xf21"
    # Provisioned (with ramboot serve's state), it is sent to its disk.
    assert actions(plan_of(fleet, "pi-01", provisioned=True)) == ["localboot"]


def test_pi_on_an_nfs_root(fleet: Inventory) -> None:
    plan = plan_of(fleet, "pi-02")
    assert plan["actions"] == [{"action": "netroot", "root": "nfs://10.0.0.1/srv/nfs/pi-root",
                                "overlay": "tmpfs", "init": "/sbin/init"}]
    assert "quiet" in targets.pi_cmdline(fleet, host(fleet, "pi-02")).split()


def test_server_installed_from_an_image(fleet: Inventory) -> None:
    srv = host(fleet, "srv-01")
    stage1 = targets.stage1(fleet, srv, provisioned=False).text
    assert f"kernel {BASE}/images/x86_64/bzImage console=tty0 console=ttyS1,115200" in stage1
    assert "ramboot.shell=never" in stage1
    plan = plan_of(fleet, "srv-01")
    assert actions(plan) == ["image", "localboot"]
    assert plan["disks"]["system"] == {"min_size": "64GiB", "removable": False}
    assert plan["actions"][1]["method"] == "kexec"
    # Once provisioned: stage 1 hands it to its disk, stage 2 (if reached) boots it.
    stage1_after = targets.stage1(fleet, srv, provisioned=True).text
    assert "set ramboot-next disk" in stage1_after and "kernel " not in stage1_after
    assert actions(plan_of(fleet, "srv-01", provisioned=True)) == ["localboot"]


def test_rescue_host(fleet: Inventory) -> None:
    srv = host(fleet, "srv-02")
    assert "ramboot.shell=before" in targets.stage1(fleet, srv, provisioned=False).text
    # provisioned means nothing to a rescue host: it stays a rescue host.
    assert targets.stage1(fleet, srv, provisioned=True) == targets.stage1(
        fleet, srv, provisioned=False)
    assert actions(plan_of(fleet, "srv-02")) == ["shell"]


def test_dhcp_sends_each_stage_its_own_url(fleet: Inventory) -> None:
    classes = {c["name"]: c for c in kea_config(fleet)["Dhcp4"]["client-classes"]}
    def url(name: str) -> str:  # Kea gets it as hex (csv-format false)
        return bytes.fromhex(classes[name]["option-data"][0]["data"]).decode()

    assert url("host-srv-01-stage1") == f"{BASE}/stage1/srv-01.ipxe"
    assert url("host-srv-01-stage2") == f"{BASE}/stage2/srv-01.json"
    assert "member('ramboot-agent')" in classes["host-srv-01-stage2"]["test"]
    assert classes["host-srv-01-stage1"]["test"].startswith("not member('ramboot-agent')")
    # Pis: only the agent's stage 2 (their bootloader reads TFTP, not option 224).
    assert "host-pi-01-stage2" in classes and "host-pi-01-stage1" not in classes


def test_the_example_renders_and_every_document_validates(tmp_path: Path,
                                                          fleet: Inventory) -> None:
    result = render_tree(fleet, make_images(tmp_path / "images"), tmp_path / "out",
                         check_script=lint_text, check_plan=lint_plan)
    assert sorted(result.plans) == [f"http/stage2/{name}.json"
                                    for name in ("pi-01", "pi-02", "srv-01", "srv-02")]
