"""`ramboot serve` end to end under QEMU TCG: real iPXE, the real agent, the rendered DHCP.

The fleet is rendered with `render --machine-secret` and its `http_base` is
serve, which also serves the rendered tree (`--tree`: ramboot's images). The
rendered DHCP configuration (Kea for x86_64, dnsmasq for the Pi) hands each
stage its own option 224: the host's stage URLs with its token as userinfo.
serve answers those URLs from the machine's state, with targets.py's documents
(the ones render writes, plus `ramboot.token=` on ramboot's command line).

x86_64: real iPXE (Debian's ipxe.lkrn running board/common/ipxe/ramboot.ipxe,
as when embedded) asks serve's /stage1/srv-01.ipxe, sends the token as Basic
after serve's 401, boots ramboot; the agent DHCPs with its vendor class, asks
/stage2/srv-01.json and kexecs the second stage; its events reach serve with
the Bearer token from its command line. A second machine, whose target is its
disk, leaves iPXE for that disk at once (`ramboot-next` = `disk`: no retry
rounds), into a boot sector that prints a marker. And the life of an install
target (issue 11's verification): installed (`image`, then `localboot` kexecs
the installed kernel), then at the next boot of the same VM its disk, not
provisioning, until `ramboot reinstall`, after which it is installed again.

aarch64 `virt`, the Pi's path: QEMU plays the Pi firmware with the rendered
cmdline.txt (its stage 2 URL and `ramboot.token=`); the agent asks serve. An
install target there: installed and rebooted; booted into ramboot again, the
agent gets `localboot`, not a second install, until `ramboot reinstall`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ramboot.inventory import load_inventory
from ramboot.lint import lint_plan, lint_text
from ramboot.render.tree import render_tree
from ramboot.tokens import host_token
from tests.lib.images import SECOND_STAGE_MARKER, ImageSet
from tests.lib.ipxe import require_ipxe_lkrn, sercon_argv
from tests.lib.netlab import (
    SERVER_IP,
    Namespace,
    TapLab,
    require_netns,
    start_dnsmasq,
    start_kea,
    tap_lab,
    wait_for,
)
from tests.lib.qemu import Qemu, aarch64_argv, require_qemu, tap_nic_argv, x86_64_argv
from tests.qemu.conftest import image_set_or_fail
from tests.serve.harness import RAMBOOT_CLI, write_keys
from tests.tools.render.helpers import kea_for_test

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RAMBOOT_IPXE = REPO / "board" / "common" / "ipxe" / "ramboot.ipxe"
PORT = 8080
SERVE = f"http://{SERVER_IP}:{PORT}"
DISK_MARKER = "RAMBOOT-DISK-OK"
SRV_MAC = "52:54:00:00:0b:01"
DISK_MAC = "52:54:00:00:0b:03"
INSTALL_MAC = "52:54:00:00:0b:05"
PI_MAC = "52:54:00:00:0c:01"
PI_SERIAL = "0000c0de"

INVENTORY = """
[servers]
tftp = "{server}"
http_base = "{serve}"
dhcp_interface = "br0"
report_url = "{serve}/events"

[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]
router = "{server}"

[defaults]
ramboot = {{ shell = "never", reboot_delay = "off" }}

[profiles.second-x86]
kind = "kexec"
kernel = "x86_64/bzImage"
initrds = [{{ url = "{serve}/second/second-stage.cpio.gz", digest = "sha256:{digest}" }}]
cmdline = "console=ttyS0 quiet rb.target=srv-01"

[profiles.second-pi]
kind = "kexec"
kernel = "rpi4/Image"
initrds = [{{ url = "{serve}/second/second-stage.cpio.gz", digest = "sha256:{digest}" }}]
cmdline = "console=ttyAMA0 quiet rb.target=pi-virt"
"""
HOSTS = {
    "srv-01": """
[[hosts]]
name = "srv-01"
family = "x86_64"
macs = ["{srv_mac}"]
console = ["ttyS0"]
profile = "second-x86"
""",
    # Its stage 2 is a `localboot` plan: render refuses it until the agent has that action.
    "srv-disk": """
[[hosts]]
name = "srv-disk"
family = "x86_64"
macs = ["{disk_mac}"]
console = ["ttyS0"]
target = {{ kind = "disk", disk = {{ path = "/dev/sda" }} }}
""",
    "srv-install": """
[[hosts]]
name = "srv-install"
family = "x86_64"
macs = ["{install_mac}"]
console = ["ttyS0"]

[hosts.target]
kind = "install"
url = "{serve}/os/installed.img.zst"
digest = "sha256:{install_digest}"
disk = {{ bus = "virtio" }}
method = "kexec"
""",
    "pi-install": """
[[hosts]]
name = "pi-install"
family = "rpi4"
serial = "{pi_serial}"
macs = ["{pi_mac}"]
console = ["ttyAMA0"]

[hosts.target]
kind = "install"
url = "{serve}/os/installed.img.zst"
digest = "sha256:{install_digest}"
disk = {{ bus = "virtio" }}
""",
    "pi-virt": """
[[hosts]]
name = "pi-virt"
family = "rpi4"
serial = "{pi_serial}"
macs = ["{pi_mac}"]
console = ["ttyAMA0"]
profile = "second-pi"
""",
}


def boot_sector(message: str) -> bytes:
    """A 512-byte MBR that prints `message` through the BIOS (INT 10h) and halts."""
    code = bytes([
        0x31, 0xC0,              # xor ax, ax
        0x8E, 0xD8,              # mov ds, ax
        0x31, 0xDB,              # xor bx, bx (page 0)
        0xBE, 0x17, 0x7C,        # mov si, 0x7c17 (the message)
        0xB4, 0x0E,              # mov ah, 0x0e (teletype)
        0xAC,                    # next: lodsb
        0x84, 0xC0,              # test al, al
        0x74, 0x04,              # jz halt
        0xCD, 0x10,              # int 0x10
        0xEB, 0xF7,              # jmp next
        0xF4,                    # halt: hlt
        0xEB, 0xFD,              # jmp halt
    ])
    sector = code + f"\r\n{message}\r\n".encode() + b"\0"
    assert len(code) == 0x17
    return sector.ljust(510, b"\0") + b"\x55\xaa"


@dataclass
class Fleet:
    out: Path
    secret_path: Path
    admin_path: Path
    secret: bytes


def render_fleet(tmp_path: Path, x86: ImageSet | None, pi: ImageSet | None,
                 hosts: tuple[str, ...], install_digest: str = "0" * 64) -> Fleet:
    """The inventory rendered with --machine-secret, the second stage beside its tree."""
    given = tmp_path / "images"
    booted = x86 or pi
    assert booted is not None
    second_stage = booted.second_stage
    for family, images, kernel in (("x86_64", x86, "bzImage"), ("rpi4", pi, "Image")):
        board = given / family
        board.mkdir(parents=True)
        if images is None:  # render needs each family's files: these are never booted
            for name in (kernel, "rootfs.cpio.zst"):
                (board / name).write_bytes(f"no {family} image in this test\n".encode())
        else:
            shutil.copyfile(images.kernel, board / kernel)
            shutil.copyfile(images.initramfs, board / "rootfs.cpio.zst")
        if family == "rpi4":  # the Pi firmware files render copies; QEMU needs none
            for name in ("start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb"):
                (board / name).write_bytes(b"not used by QEMU virt\n")
    digest = hashlib.sha256(second_stage.read_bytes()).hexdigest()
    text = (INVENTORY + "".join(HOSTS[name] for name in hosts)).format(
        server=SERVER_IP, serve=SERVE, digest=digest, srv_mac=SRV_MAC, disk_mac=DISK_MAC,
        install_mac=INSTALL_MAC, install_digest=install_digest, pi_mac=PI_MAC,
        pi_serial=PI_SERIAL)
    (tmp_path / "fleet.toml").write_text(text)
    secret_path, admin_path, secret = write_keys(tmp_path)
    out = tmp_path / "out"
    render_tree(load_inventory(tmp_path / "fleet.toml"), given, out, check_script=lint_text,
                check_plan=lint_plan, machine_secret=secret)
    (out / "http" / "second").mkdir()
    shutil.copyfile(second_stage, out / "http" / "second" / "second-stage.cpio.gz")
    return Fleet(out, secret_path, admin_path, secret)


class Operator:
    """`ramboot serve` and the `ramboot` CLI, as shipped, inside the lab."""

    def __init__(self, ns: Namespace, fleet: Fleet, tmp_path: Path) -> None:
        self.ns, self.fleet = ns, fleet
        self.log_path = tmp_path / "serve.log"
        with self.log_path.open("wb") as log:
            ns.popen([RAMBOOT_CLI, "serve", tmp_path / "fleet.toml",
                      "--database", f"sqlite://{tmp_path / 'serve.db'}",
                      "--machine-secret", fleet.secret_path, "--admin-token", fleet.admin_path,
                      "--listen", f"{SERVER_IP}:{PORT}", "--tree", fleet.out / "http",
                      "--access-log"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.run("status").returncode == 0, timeout=60,
                 what="serve to answer")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.ns.run([RAMBOOT_CLI, *args, "--server", SERVE, "--admin-token",
                            str(self.fleet.admin_path)], check=False, timeout=60)

    def machine(self, name: str) -> dict[str, Any]:
        result = self.run("status", name, "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def requests(self) -> list[tuple[str, str, int]]:
        """(path, query, status) of every request in serve's access log."""
        pattern = re.compile(r'"GET ([^ ?"]+)\??([^ "]*) HTTP/1\.[01]" (\d{3})')
        text = self.log_path.read_text(errors="replace")
        return [(m.group(1), m.group(2), int(m.group(3))) for m in pattern.finditer(text)]


def x86_vm(lab: TapLab, tmp_path: Path, lkrn: Path, tap: str, *, mac: str, name: str,
           disk: Path | None = None, virtio_disk: Path | None = None) -> Qemu:
    extra = [*sercon_argv(tmp_path), *tap_nic_argv(tap, mac=mac, model="virtio-net-pci")]
    if disk is not None:
        extra += ["-drive", f"file={disk},format=raw,if=ide,index=0"]
    if virtio_disk is not None:  # what ramboot installs to, and the firmware boots
        extra += ["-drive", f"if=none,id=d0,format=raw,file={virtio_disk}",
                  "-device", "virtio-blk-pci,drive=d0,serial=rb-serve-disk"]
    argv = x86_64_argv(kernel=lkrn, initrd=RAMBOOT_IPXE, memory_mb=1024,
                       extra=["-smp", "1", *extra])
    return Qemu(argv, tmp_path / f"console-{name}.log", lab.ns)


def test_x86_64_both_stages_from_serve(tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    lkrn = require_ipxe_lkrn()
    images = image_set_or_fail("x86_64")
    fleet = render_fleet(tmp_path, images, None, ("srv-01",))

    with tap_lab() as lab:
        start_kea(lab.ns, kea_for_test(fleet.out / "dhcp/kea-dhcp4.json", tmp_path), tmp_path)
        operator = Operator(lab.ns, fleet, tmp_path)
        tap = lab.add_tap()
        with x86_vm(lab, tmp_path, lkrn, tap, mac=SRV_MAC, name="srv-01") as vm:
            # iPXE's own progress line leaves the userinfo out (the script's echo has it).
            vm.expect_exact(f"{SERVE}/stage1/srv-01.ipxe... ok", timeout=120)
            vm.expect_exact("ramboot-agent", timeout=300)  # ramboot's kernel and agent
            vm.expect(rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]", timeout=300)
            assert vm.child is not None
            cmdline = vm.child.match.group(1)
            assert vm.wait_exit(timeout=60) == 0
        assert cmdline.split() == ["console=ttyS0", "quiet", "rb.target=srv-01"]
        state = operator.machine("srv-01")
        assert (state["state"], state["provisioned"], state["next_boot"]) == \
            ("provisioned", True, "target"), state
        names = [e["event"] for e in state["events"]]
        assert names[:3] == ["kernel-started", "agent-started", "network-up"], names
        assert "plan-done" in names
        assert [a["kind"] for a in reversed(state["answers"])] == ["ramboot", "target"]
        seen = operator.requests()
        stage1 = [(q, s) for p, q, s in seen if p == "/stage1/srv-01.ipxe"]
        stage2 = [(q, s) for p, q, s in seen if p == "/stage2/srv-01.json"]
        # iPXE: refused without the token, then sends it as Basic; the agent: at once.
        assert [s for _, s in stage1] == [401, 200], seen
        assert all("stage=agent" not in q for q, _ in stage1)
        assert [s for _, s in stage2] == [200] and stage2[0][0].endswith("&stage=agent")
        assert not [p for p, _, _ in seen if p == "/boot"]
        # The agent's events, with the Bearer token of its ramboot.token= (from serve's
        # stage 1): every one stored at the first try.
        posted = operator.log_path.read_text(errors="replace").count('"POST /events HTTP/1.1" 201')
        assert posted == len(names), (posted, names)
        assert ("/images/x86_64/rootfs.cpio.zst", "", 200) in seen
        print(operator.run("status").stdout)


def test_x86_64_a_disk_target_leaves_ipxe_for_its_disk_at_once(tmp_path: Path) -> None:
    """serve's stage 1 for a machine bound for its disk: `ramboot-next` = `disk`, which
    the embedded script turns into `exit` at once (no retry rounds), into the disk."""
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    lkrn = require_ipxe_lkrn()
    images = image_set_or_fail("x86_64")
    fleet = render_fleet(tmp_path, images, None, ("srv-disk",))
    disk = tmp_path / "disk.img"
    disk.write_bytes(boot_sector(DISK_MARKER) + bytes(1024 * 1024 - 512))
    with tap_lab() as lab:
        start_kea(lab.ns, kea_for_test(fleet.out / "dhcp/kea-dhcp4.json", tmp_path), tmp_path)
        operator = Operator(lab.ns, fleet, tmp_path)
        tap = lab.add_tap()
        with x86_vm(lab, tmp_path, lkrn, tap, mac=DISK_MAC, name="srv-disk",
                    disk=disk) as vm:
            vm.expect_exact("ramboot: srv-disk boots from its local disk", timeout=120)
            vm.expect_exact("ramboot: the boot server sends this machine to its local disk",
                            timeout=60)
            vm.expect_exact(DISK_MARKER, timeout=120)
            assert "NETWORK BOOT FAILED" not in vm.console_text()
        state = operator.machine("srv-disk")
        assert [a["kind"] for a in state["answers"]] == ["disk"]  # once: no retry rounds
        assert (state["state"], state["next_boot"]) == ("provisioned", "disk")
        print(operator.run("status").stdout)


def installed_system(images: ImageSet, work: Path) -> Path:
    """tests/qemu/test_plan_disk.py's installed system (GPT, an ext4 partition with a
    BLS entry, the kernel, the second stage as initrd), whose MBR boot code prints
    DISK_MARKER: what the firmware shows when it boots this disk itself."""
    from tests.qemu.test_plan_disk import build_installed_disk

    disk = build_installed_disk(images, work)
    code = boot_sector(DISK_MARKER)[:440]  # the protective MBR's boot code area
    with disk.open("r+b") as stream:
        stream.write(code)
    subprocess.run(["zstd", "-q", "-3", str(disk), "-o", str(work / "installed.img.zst")],
                   check=True)
    return work / "installed.img.zst"


def test_x86_64_install_then_its_disk_until_reinstall(tmp_path: Path) -> None:
    """Installed, then the same VM boots its disk at every boot (serve says so at
    stage 1: no ramboot, no agent), until `ramboot reinstall` provisions it again."""
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    lkrn = require_ipxe_lkrn()
    images = image_set_or_fail("x86_64")
    image = installed_system(images, tmp_path)
    fleet = render_fleet(tmp_path, images, None, ("srv-install",),
                         install_digest=hashlib.sha256(image.read_bytes()).hexdigest())
    (fleet.out / "http" / "os").mkdir()
    shutil.copyfile(image, fleet.out / "http" / "os" / "installed.img.zst")
    guest_disk = tmp_path / "guest-disk.raw"
    with guest_disk.open("wb") as stream:
        stream.truncate(128 << 20)

    def install(vm: Qemu) -> None:
        vm.expect_exact(f"{SERVE}/stage1/srv-install.ipxe... ok", timeout=120)
        vm.expect_exact("ramboot-agent", timeout=300)
        vm.expect(rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]", timeout=600)
        assert vm.child is not None
        assert vm.child.match.group(1) == "console=ttyS0 quiet rb.installed=bls"
        assert vm.wait_exit(timeout=60) == 0

    with tap_lab() as lab:
        start_kea(lab.ns, kea_for_test(fleet.out / "dhcp/kea-dhcp4.json", tmp_path), tmp_path)
        operator = Operator(lab.ns, fleet, tmp_path)
        tap = lab.add_tap()

        def boot(name: str) -> Qemu:
            return x86_vm(lab, tmp_path, lkrn, tap, mac=INSTALL_MAC, name=name,
                          virtio_disk=guest_disk)

        # 1: from a blank disk: ramboot, the install plan, the installed kernel by kexec.
        with boot("first") as vm:
            install(vm)
        state = operator.machine("srv-install")
        assert (state["state"], state["provisioned"], state["next_boot"]) == \
            ("provisioned", True, "disk"), state
        names = [e["event"] for e in state["events"]]
        assert names.index("action-done") < names.index("localboot") < names.index("plan-done")
        assert [a["kind"] for a in reversed(state["answers"])] == ["ramboot", "target"]

        # 2: the same VM again: serve's stage 1 sends it to its disk; the firmware boots it.
        with boot("second") as vm:
            vm.expect_exact("ramboot: srv-install boots from its local disk (provisioned)",
                            timeout=120)
            vm.expect_exact(DISK_MARKER, timeout=120)
            console = vm.console_text()
            assert "NETWORK BOOT FAILED" not in console and "ramboot-agent" not in console
        state = operator.machine("srv-install")
        assert [a["kind"] for a in state["answers"]][:1] == ["disk"]
        assert len(state["answers"]) == 3  # one answer: no retry rounds

        # 3: `ramboot reinstall`: the next boot installs it again.
        done = operator.run("reinstall", "srv-install")
        assert done.returncode == 0, done.stderr
        assert "provisions it again" in done.stdout
        assert operator.machine("srv-install")["next_boot"] == "target"
        with boot("third") as vm:
            install(vm)
        state = operator.machine("srv-install")
        assert (state["state"], state["provisioned"]) == ("provisioned", True)
        assert [a["kind"] for a in reversed(state["answers"])] == [
            "ramboot", "target", "disk", "ramboot", "target"]
        assert len(state["boots"]) == 2  # two boots of ramboot, each with its own boot_id
        print(operator.run("status", "srv-install").stdout)


# Extended: the install test below takes the same path through serve, and more.
@pytest.mark.extended
def test_pi_agent_path_on_aarch64_virt(tmp_path: Path) -> None:
    """The Pi's path: the EEPROM's stage 1 is TFTP (here QEMU with the rendered
    cmdline.txt), so only the agent asks serve: the URL and token its cmdline.txt has."""
    require_netns("dnsmasq")
    require_qemu("qemu-system-aarch64")
    images = image_set_or_fail("aarch64")
    fleet = render_fleet(tmp_path, None, images, ("pi-virt",))
    token = host_token(fleet.secret, "pi-virt")
    cmdline = (fleet.out / "tftp" / PI_SERIAL / "cmdline.txt").read_text().strip()
    assert f"ramboot.url={SERVE}/stage2/pi-virt.json" in cmdline.split()
    assert f"ramboot.token={token}" in cmdline.split()

    with tap_lab() as lab:
        start_dnsmasq(lab.ns, lab.bridge, tmp_path,
                      [f"--conf-file={fleet.out / 'dhcp/dnsmasq.conf'}"])
        operator = Operator(lab.ns, fleet, tmp_path)
        tap = lab.add_tap()
        argv = aarch64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=1024,
                            append=cmdline, extra=[
                                "-smp", "1", *tap_nic_argv(tap, mac=PI_MAC,
                                                           model="virtio-net-pci")])
        with Qemu(argv, tmp_path / "console-pi.log", lab.ns) as vm:
            seen = vm.expect([rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]",
                              "ramboot-agent FAILED"], timeout=600)
            assert seen == 0, vm.tail(40)
            assert vm.child is not None
            marker_cmdline = vm.child.match.group(1)
            assert vm.wait_exit(timeout=60) == 0
        assert marker_cmdline.split() == ["console=ttyAMA0", "quiet", "rb.target=pi-virt"]
        state = operator.machine("pi-virt")
        assert (state["state"], state["provisioned"]) == ("provisioned", True), state
        assert [a["kind"] for a in state["answers"]] == ["target"]
        # ramboot.url= is used as given, without an identity query: the record keeps the
        # identity of the first event, or none if the stage 2 request came first.
        assert state["identity"].get("mac") in (None, PI_MAC), state["identity"]
        requests = operator.requests()
        assert [(p, q, s) for p, q, s in requests if p.startswith("/stage")] == [
            ("/stage2/pi-virt.json", "", 200)]  # with the Bearer token at once: no 401
        assert [e["event"] for e in state["events"]][:3] == [
            "kernel-started", "agent-started", "network-up"]
        print(operator.run("status", "pi-virt").stdout)


def test_pi_install_then_localboot_until_reinstall_on_aarch64_virt(tmp_path: Path) -> None:
    """The Pi's agent path of an install target: installed, then rebooted (the Pi's
    localboot default); booted into ramboot again (its EEPROM netboots), its agent is
    sent to its disk (a localboot plan), not into a second install, until reinstall."""
    require_netns("dnsmasq")
    require_qemu("qemu-system-aarch64")
    images = image_set_or_fail("aarch64")
    image = installed_system(images, tmp_path)
    fleet = render_fleet(tmp_path, None, images, ("pi-install",),
                         install_digest=hashlib.sha256(image.read_bytes()).hexdigest())
    (fleet.out / "http" / "os").mkdir()
    shutil.copyfile(image, fleet.out / "http" / "os" / "installed.img.zst")
    cmdline = (fleet.out / "tftp" / PI_SERIAL / "cmdline.txt").read_text().strip()
    guest_disk = tmp_path / "guest-disk.raw"
    with guest_disk.open("wb") as stream:
        stream.truncate(128 << 20)

    with tap_lab() as lab:
        start_dnsmasq(lab.ns, lab.bridge, tmp_path,
                      [f"--conf-file={fleet.out / 'dhcp/dnsmasq.conf'}"])
        operator = Operator(lab.ns, fleet, tmp_path)
        tap = lab.add_tap()

        def boot(name: str, expected: list[str]) -> None:
            argv = aarch64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=1024,
                                append=cmdline, extra=[
                                    "-smp", "1", *tap_nic_argv(tap, mac=PI_MAC,
                                                               model="virtio-net-pci"),
                                    "-drive", f"if=none,id=d0,format=raw,file={guest_disk}",
                                    "-device", "virtio-blk-pci,drive=d0,serial=rb-pi-disk"])
            with Qemu(argv, tmp_path / f"console-{name}.log", lab.ns) as vm:
                for text in expected:
                    seen = vm.expect([re.escape(text), "ramboot-agent FAILED"], timeout=600)
                    assert seen == 0, vm.tail(40)
                assert vm.wait_exit(timeout=120) == 0  # the reboot: QEMU runs -no-reboot

        installing = ["event action-done {\"action\": \"image\"",
                      "actions[1] (localboot): handing off (reboot)"]
        boot("first", installing)
        state = operator.machine("pi-install")
        assert (state["state"], state["provisioned"], state["next_boot"]) == \
            ("provisioned", True, "disk"), state
        boot("second", ["actions[0] (localboot): handing off (reboot)"])
        state = operator.machine("pi-install")
        assert [a["kind"] for a in reversed(state["answers"])] == ["target", "localboot"]
        assert "image" not in [e["details"].get("action") for e in state["events"]]

        assert operator.run("reinstall", "pi-install").returncode == 0
        boot("third", installing)
        state = operator.machine("pi-install")
        assert (state["state"], state["provisioned"]) == ("provisioned", True)
        assert [a["kind"] for a in reversed(state["answers"])] == [
            "target", "localboot", "target"]
        assert len(state["boots"]) == 3
        print(operator.run("status", "pi-install").stdout)
