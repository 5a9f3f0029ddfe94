"""serve's answers are what `ramboot render` writes, host by host and stage by stage.

The same inventory is rendered into a tree and given to serve's targets
(InventoryTargets over ramboot/targets.py): stage 2 is byte for byte the
rendered file; stage 1 is too, except for the host's token on ramboot's kernel
line (serve's answers are not public; the tree is); provisioned changes only what
targets.py says it changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ramboot import targets
from ramboot.inventory import Inventory, load_inventory, parse_inventory
from ramboot.lint import lint_plan, lint_text
from ramboot.render.tree import render_tree
from ramboot.serve.identify import parse_identity
from ramboot.serve.inventory_targets import InventoryTargets
from ramboot.serve.states import Answer
from ramboot.serve.targets_port import StageRefused
from ramboot.tokens import fleet_token, host_token
from tests.tools.render.helpers import FLEET, LANDED, make_images

SECRET = b"serve-merge-test-secret-0123456789"


def rendered(inventory_path: Path, tmp_path: Path) -> tuple[Inventory, Path]:
    inventory = load_inventory(inventory_path)
    out = tmp_path / "out"
    render_tree(inventory, make_images(tmp_path / "images"), out, check_script=lint_text,
                check_plan=lint_plan, machine_secret=SECRET)
    return inventory, out / "http"


def with_token(static: bytes, token: str) -> bytes:
    """The rendered stage 1 with `ramboot.token=` where serve puts it: after the
    ramboot.* words, before the host's own kernel_args."""
    lines = static.decode().splitlines(keepends=True)
    out = []
    for line in lines:
        if not line.startswith("kernel "):
            out.append(line)
            continue
        words = line.split(" ")
        last = max(i for i, w in enumerate(words) if w.startswith(("ramboot.", "console=")))
        words.insert(last + 1, f"ramboot.token={token}")
        out.append(" ".join(words))
    return "".join(out).encode()


def check_fleet(inventory: Inventory, http: Path) -> int:
    answers = InventoryTargets(inventory, machine_secret=SECRET, tree=http)
    compared = 0
    for host in inventory.hosts:
        stage2 = answers.stage2(host, provisioned=False)
        assert stage2.body == (http / targets.stage2_path(host)).read_bytes(), host.name
        assert answers.stage2(host, provisioned=True).body == \
            targets.stage2(inventory, host, provisioned=True).data, host.name
        assert stage2.media_type == targets.stage2(inventory, host).content_type
        compared += 1
        if host.family != "x86_64":
            with pytest.raises(StageRefused) as refused:
                answers.stage1(host, provisioned=False)
            assert refused.value.status == 404
            assert "TFTP directory" in str(refused.value)
            continue
        # What provisioned changes is exactly what targets.py changes (the adapter keeps
        # one document per host, stage and boots_disk).
        again = answers.stage1(host, provisioned=True)
        direct = targets.stage1(inventory, host, provisioned=True,
                                token=host_token(SECRET, host.name))
        assert again.body == direct.data, host.name
        stage1 = answers.stage1(host, provisioned=False)
        static = (http / targets.stage1_path(host)).read_bytes()
        token = host_token(SECRET, host.name)
        if stage1.kind is Answer.DISK:
            assert stage1.body == static, host.name  # nothing to authenticate: no ramboot
        else:
            assert stage1.body == with_token(static, token), host.name
            assert token.encode() not in static
        compared += 1
    return compared


def test_every_landed_host_and_stage_as_rendered(tmp_path: Path) -> None:
    inventory, http = rendered(LANDED, tmp_path)
    assert check_fleet(inventory, http) == 2 * len(inventory.hosts) - 1  # pi-01: no iPXE


def test_every_host_of_the_full_fixture_as_rendered(tmp_path: Path) -> None:
    """Every target kind once (install, netroot, ramroot, disk, kexec, plan, rescue)."""
    inventory, http = rendered(FLEET, tmp_path)
    check_fleet(inventory, http)


def test_provisioned_changes_only_what_installs(tmp_path: Path) -> None:
    inventory = load_inventory(FLEET)
    answers = InventoryTargets(inventory, machine_secret=SECRET)
    by_name = {host.name: host for host in inventory.hosts}
    for name, installed in (("srv-01", True), ("srv-03", False), ("srv-05", False),
                            ("srv-06", False)):
        host = by_name[name]
        first = answers.stage1(host, provisioned=False)
        after = answers.stage1(host, provisioned=True)
        if installed:  # an install: its disk, through the embedded script's protocol
            assert first.kind is Answer.RAMBOOT and after.kind is Answer.DISK
            assert after.body.endswith(b"set ramboot-next disk\nexit 0\n")
            assert after.body == targets.stage1(inventory, host, provisioned=True).data
        else:  # a RAM root, a kernel, rescue: no disk to go back to
            assert first == after and after.kind is Answer.RAMBOOT
    # A disk target goes to its disk without ever being provisioned.
    assert answers.stage1(by_name["srv-04"], provisioned=False).kind is Answer.DISK
    # provisioned = true in the inventory counts as provisioned.
    assert answers.stage1(by_name["srv-02"], provisioned=False).kind is Answer.DISK


def test_provisioned_install_at_stage_2_is_localboot(tmp_path: Path) -> None:
    inventory = load_inventory(FLEET)
    answers = InventoryTargets(inventory, machine_secret=SECRET)
    pi = next(host for host in inventory.hosts if host.name == "pi-01")
    answer = answers.stage2(pi, provisioned=True)
    assert answer.kind is Answer.LOCALBOOT
    assert answer.body == targets.stage2(inventory, pi, provisioned=True).data


def test_discovery_answers(tmp_path: Path) -> None:
    inventory = load_inventory(LANDED)
    answers = InventoryTargets(inventory, machine_secret=SECRET,
                               report_url="http://192.0.2.1:8080/events")
    stranger = parse_identity({"mac": "52:54:00:99:99:99", "buildarch": "i386"})
    stage1 = answers.discovery(1, stranger)
    assert stage1.kind is Answer.DISCOVERY
    assert lint_text("discovery", stage1.body.decode()) == []
    kernel = next(line for line in stage1.body.decode().splitlines()
                  if line.startswith("kernel "))
    assert kernel.split()[1:] == [
        "http://192.0.2.1/ramboot/images/x86_64/bzImage", "console=tty0",
        "console=ttyS0,115200", "ramboot.report=http://192.0.2.1:8080/events",
        f"ramboot.token={fleet_token(SECRET)}", "||", "goto", "failed"]
    stage2 = answers.discovery(2, stranger)
    assert stage2.kind is Answer.DISCOVERY and stage2.media_type == "application/json"
    assert b'"action": "hardware"' in stage2.body
    assert lint_plan("discovery", stage2.body) == []
    pi = parse_identity({"serial": "12345678", "buildarch": "arm64"})
    with pytest.raises(StageRefused, match="only x86_64"):
        answers.discovery(1, pi)


def test_a_looping_inventory_is_refused_when_loaded(tmp_path: Path) -> None:
    text = LANDED.read_text().replace(
        'target = { kind = "script", url = "http://192.0.2.1/other.ipxe" }',
        'target = { kind = "script", url = "http://192.0.2.1/ramboot/stage1/srv-01.ipxe" }')
    inventory = parse_inventory(text, tmp_path / "fleet.toml")
    with pytest.raises(targets.TargetError, match=r"srv-02.*stage 2 boots ramboot again"):
        InventoryTargets(inventory, machine_secret=SECRET)
    # With a tree, ramboot's initramfs is known by its digest, and kexec files by path.
    _, http = rendered(LANDED, tmp_path)
    moved = LANDED.read_text().replace('initrds = ["http://192.0.2.1/i.gz"]',
                                       'initrds = ["x86_64/missing.gz"]')
    with pytest.raises(targets.TargetError, match=r"'x86_64/missing\.gz' is not under"):
        InventoryTargets(parse_inventory(moved, tmp_path / "fleet.toml"),
                         machine_secret=SECRET, tree=http)
