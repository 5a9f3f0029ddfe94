"""Both stages of one host, rendered by `ramboot render`, served as rendered, in QEMU.

x86_64: real iPXE (Debian trixie's ipxe.lkrn under SeaBIOS, or its ipxe.efi under
OVMF, running board/common/ipxe/ramboot.ipxe as when embedded) DHCPs from the
rendered Kea configuration, chains to its stage 1, which boots ramboot (the image
set of tests/lib/images.py: the offline image, or a Buildroot output); ramboot's
agent DHCPs with its vendor class, gets its own option 224 from the same Kea,
fetches its stage 2 (a kexec plan) and kexecs the second-stage kernel, which
prints its marker.

aarch64 `virt`, the Pi's path: QEMU plays the Pi firmware (kernel + initramfs, and
the rendered cmdline.txt as the command line); the agent DHCPs from the rendered
Kea configuration, reads its stage 2 from ramboot.url= and kexecs.

The HTTP log proves that neither stage ever asks for the other's URL.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ramboot import targets
from ramboot.inventory import load_inventory
from ramboot.render.tree import render_tree
from tests.lib.httpd import requests, start_httpd
from tests.lib.images import SECOND_STAGE_MARKER, ImageSet
from tests.lib.ipxe import (
    efi_system_partition,
    require_ipxe_efi,
    require_ipxe_lkrn,
    sercon_argv,
)
from tests.lib.netlab import SERVER_IP, require_netns, start_kea, tap_lab
from tests.lib.qemu import (
    Qemu,
    aarch64_argv,
    ovmf_x86_64_argv,
    require_ovmf,
    require_qemu,
    tap_nic_argv,
    x86_64_argv,
)
from tests.qemu.collector import events, start_collector
from tests.qemu.conftest import image_set_or_fail
from tests.tools.render.helpers import kea_for_test

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RAMBOOT_IPXE = REPO / "board" / "common" / "ipxe" / "ramboot.ipxe"
HTTP_PORT = 8080
REPORT_PORT = 8081
BASE = f"http://{SERVER_IP}:{HTTP_PORT}"
GUEST_MAC = "52:54:00:00:2c:01"

INVENTORY = """
[servers]
tftp = "{server}"
http_base = "{base}"
dhcp_interface = "br0"
report_url = "http://{server}:{report_port}/events"

[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]
router = "{server}"

[[hosts]]
name = "{name}"
family = "{family}"
{identity}
macs = ["{mac}"]
console = ["{console}"]
ramboot = {{ debug = 1 }}

[hosts.target]
{target}
"""
KEXEC_TARGET = """kind = "kexec"
kernel = "{family}/{kernel}"
initrds = [{{ url = "{base}/second/second-stage.cpio.gz", digest = "sha256:{digest}" }}]
cmdline = "console={console} quiet rb.target={name}"
"""
RESCUE_TARGET = 'kind = "rescue"'
RESCUE_BANNER = "ramboot rescue shell ("


@dataclass(frozen=True)
class Machine:
    name: str
    family: str  # inventory family
    images: str  # tests.lib.images target
    console: str
    system: str


X86 = Machine("srv-two", "x86_64", "x86_64", "ttyS0", "qemu-system-x86_64")
PI = Machine("pi-two", "rpi4", "aarch64", "ttyAMA0", "qemu-system-aarch64")


def render(machine: Machine, images: ImageSet, tmp_path: Path,
           target: str = KEXEC_TARGET) -> tuple[Path, Any]:
    """Render a one-host fleet for `machine` into tmp_path/out; returns (out, inventory)."""
    given = tmp_path / "images"
    board = given / machine.family
    board.mkdir(parents=True)
    kernel = "bzImage" if machine.family == "x86_64" else "Image"
    shutil.copyfile(images.kernel, board / kernel)
    shutil.copyfile(images.initramfs, board / "rootfs.cpio.zst")
    if machine.family == "rpi4":  # the Pi firmware files render copies; QEMU needs none
        for name in ("start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"):
            (board / name).write_bytes(b"not used by QEMU virt\n")
    digest = hashlib.sha256(images.second_stage.read_bytes()).hexdigest()
    identity = 'serial = "c0ffee42"' if machine.family == "rpi4" else ""
    values = {"server": SERVER_IP, "base": BASE, "report_port": REPORT_PORT,
              "name": machine.name, "family": machine.family, "identity": identity,
              "mac": GUEST_MAC, "console": machine.console, "kernel": kernel, "digest": digest}
    text = INVENTORY.format(**values, target=target.format(**values))
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    inventory = load_inventory(path)
    out = tmp_path / "out"
    from ramboot.lint import lint_plan, lint_text

    render_tree(inventory, given, out, check_script=lint_text, check_plan=lint_plan)
    second = out / "http" / "second"
    second.mkdir()
    shutil.copyfile(images.second_stage, second / "second-stage.cpio.gz")
    return out, inventory


def assert_stages_apart(log: Path, machine: Machine) -> list[tuple[str, str]]:
    """Every request, and that each stage's URL was asked only by its own stage."""
    sent = requests(log)
    seen = [(r["path"], r["raw_query"]) for r in sent if r.get("status") == 200]
    stage1 = f"/stage1/{machine.name}.ipxe"
    stage2 = f"/stage2/{machine.name}.json"
    for path, query in seen:
        if path == stage1:
            assert "stage=agent" not in query, (path, query)
        if path == stage2 and machine.family == "x86_64":
            assert query.endswith("&stage=agent"), (path, query)  # from DHCP, with identity
    assert all(r.get("status") == 200 for r in sent), sent
    return seen


def x86_64_firmware_argv(firmware: str, tap: str, tmp_path: Path) -> list[str]:
    """QEMU running ramboot.ipxe in real iPXE: as ipxe.lkrn under SeaBIOS, or as
    ipxe.efi (its autoexec.ipxe) under OVMF."""
    nic = tap_nic_argv(tap, mac=GUEST_MAC, model="virtio-net-pci")
    if firmware == "bios":
        return x86_64_argv(kernel=require_ipxe_lkrn(), initrd=RAMBOOT_IPXE, memory_mb=1024,
                           extra=["-smp", "1", *sercon_argv(tmp_path), *nic])
    esp = efi_system_partition(tmp_path / "esp", require_ipxe_efi(), RAMBOOT_IPXE)
    return ovmf_x86_64_argv(firmware=require_ovmf(), workdir=tmp_path, esp=esp,
                            memory_mb=1024, extra=["-smp", "1", *nic])


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_x86_64_ipxe_stage1_into_ramboot_then_stage2_kexec(tmp_path: Path, firmware: str) -> None:
    require_netns("kea-dhcp4")
    require_qemu(X86.system)
    images = image_set_or_fail(X86.images)
    out, inventory = render(X86, images, tmp_path)
    (host,) = inventory.hosts
    assert targets.stage2_url(inventory, host) == f"{BASE}/stage2/{X86.name}.json"
    http_log, events_log = tmp_path / "http.jsonl", tmp_path / "events.jsonl"
    with tap_lab() as lab:
        start_kea(lab.ns, kea_for_test(out / "dhcp/kea-dhcp4.json", tmp_path), tmp_path)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT, root=out / "http",
                    log_path=http_log)
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        argv = x86_64_firmware_argv(firmware, lab.add_tap(), tmp_path)
        with Qemu(argv, log_path=tmp_path / "console.log", namespace=lab.ns) as vm:
            vm.expect_exact(f"ramboot: chain attempt 1/3: {BASE}/stage1/{X86.name}.ipxe",
                            timeout=180)
            vm.expect_exact("ramboot-agent", timeout=300)  # ramboot's kernel and agent
            vm.expect(rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]", timeout=300)
            assert vm.child is not None
            cmdline = vm.child.match.group(1)
            assert vm.wait_exit(timeout=60) == 0
    assert cmdline.split() == ["console=ttyS0", "quiet", f"rb.target={X86.name}"]
    seen = assert_stages_apart(http_log, X86)
    assert [path for path, _ in seen] == [
        f"/stage1/{X86.name}.ipxe",  # iPXE: stage 1
        "/images/x86_64/bzImage", "/images/x86_64/rootfs.cpio.zst",  # ramboot
        f"/stage2/{X86.name}.json",  # the agent: stage 2
        "/images/x86_64/bzImage", "/second/second-stage.cpio.gz",  # the target
    ]
    names = [e["event"] for e in events(events_log)]
    assert "plan-start" in names and names[-1] in ("boot", "plan-done", "action-done"), names


def test_x86_64_rescue_target_stays_in_ramboot_with_a_shell(tmp_path: Path) -> None:
    """The example fleet's rescue host: stage 1 into ramboot, stage 2 a shell, no more."""
    require_netns("kea-dhcp4")
    require_qemu(X86.system)
    lkrn = require_ipxe_lkrn()
    images = image_set_or_fail(X86.images)
    out, _ = render(X86, images, tmp_path, target=RESCUE_TARGET)
    http_log, events_log = tmp_path / "http.jsonl", tmp_path / "events.jsonl"
    with tap_lab() as lab:
        start_kea(lab.ns, kea_for_test(out / "dhcp/kea-dhcp4.json", tmp_path), tmp_path)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT, root=out / "http",
                    log_path=http_log)
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        tap = lab.add_tap()
        argv = x86_64_argv(kernel=lkrn, initrd=RAMBOOT_IPXE, memory_mb=1024, extra=[
            "-smp", "1", *sercon_argv(tmp_path),
            *tap_nic_argv(tap, mac=GUEST_MAC, model="virtio-net-pci")])
        with Qemu(argv, log_path=tmp_path / "console.log", namespace=lab.ns) as vm:
            vm.expect_exact(RESCUE_BANNER, timeout=300)
            shell = vm.shell()
            lines = shell.run_check("cat /proc/cmdline")
    assert "ramboot.report=http://192.0.2.1:8081/events" in " ".join(lines)
    seen = assert_stages_apart(http_log, X86)
    assert [path for path, _ in seen] == [
        f"/stage1/{X86.name}.ipxe", "/images/x86_64/bzImage", "/images/x86_64/rootfs.cpio.zst",
        f"/stage2/{X86.name}.json"]
    names = [e["event"] for e in events(events_log)]
    assert "plan-start" in names and "shell" in names, names


def test_aarch64_pi_agent_path_stage2_then_kexec(tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu(PI.system)
    images = image_set_or_fail(PI.images)
    out, _ = render(PI, images, tmp_path)
    cmdline = (out / "tftp" / "c0ffee42" / "cmdline.txt").read_text().strip()
    assert f"ramboot.url={BASE}/stage2/{PI.name}.json" in cmdline.split()
    http_log, events_log = tmp_path / "http.jsonl", tmp_path / "events.jsonl"
    kea = kea_for_test(out / "dhcp/kea-dhcp4.json", tmp_path)
    with tap_lab() as lab:
        start_kea(lab.ns, kea, tmp_path)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT, root=out / "http",
                    log_path=http_log)
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        tap = lab.add_tap()
        # QEMU plays the Pi firmware: what tftp/<serial>/ would have loaded.
        argv = aarch64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=1024,
                            append=cmdline, extra=[
                                "-smp", "1",
                                *tap_nic_argv(tap, mac=GUEST_MAC, model="virtio-net-pci")])
        with Qemu(argv, log_path=tmp_path / "console.log", namespace=lab.ns) as vm:
            vm.expect(rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]", timeout=300)
            assert vm.child is not None
            marker_cmdline = vm.child.match.group(1)
            assert vm.wait_exit(timeout=60) == 0
    assert marker_cmdline.split() == ["console=ttyAMA0", "quiet", f"rb.target={PI.name}"]
    seen = assert_stages_apart(http_log, PI)
    assert [path for path, _ in seen] == [
        f"/stage2/{PI.name}.json", "/images/rpi4/Image", "/second/second-stage.cpio.gz"]
    network_up = next(e for e in events(events_log) if e["event"] == "network-up")
    assert network_up["identity"]["mac"] == GUEST_MAC
    print("events:", json.dumps([e["event"] for e in events(events_log)]))
