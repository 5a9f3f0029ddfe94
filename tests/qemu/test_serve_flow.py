"""`ramboot serve` end to end on x86_64: real iPXE firmware, the real agent, QEMU TCG.

In a private network namespace: dnsmasq hands out option 224 =
`http://ramboot:<host token>@serve/boot` (iPXE sends the token as Basic after
serve's 401); serve answers stage 1 with a script that boots ramboot from
serve's own tree, the agent asks stage 2 (as an agent: serve tells by its
User-Agent until it adds `stage=agent`) and gets a plan that kexecs the
second stage; its events go to serve with `ramboot.token=`. serve then sees
the machine provisioned, and the next boot of the same VM leaves iPXE for its
disk (a boot sector that prints a marker) until `ramboot reinstall`, after
which it is provisioned again.

The stage documents are the test's (tests/serve/targets.py): the inventory's
targets (ramboot.targets) are wired into serve by the merge of that work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ramboot.tokens import host_token
from tests.lib.images import SECOND_STAGE_MARKER, ImageSet
from tests.lib.ipxe import require_ipxe_lkrn, sercon_argv
from tests.lib.netlab import (
    POOL,
    SERVER_IP,
    Namespace,
    require_netns,
    start_dnsmasq,
    tap_lab,
    wait_for,
)
from tests.lib.qemu import Qemu, aarch64_argv, require_qemu, scaled, tap_nic_argv, x86_64_argv
from tests.qemu.conftest import image_set_or_fail
from tests.serve.harness import INVENTORY, SRV_MAC, write_keys

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RAMBOOT_IPXE = REPO / "board" / "common" / "ipxe" / "ramboot.ipxe"
PORT = 8080
SERVE = f"http://{SERVER_IP}:{PORT}"
DISK_MARKER = "RAMBOOT-DISK-OK"
RAMBOOT_CLI = Path(sys.executable).with_name("ramboot")


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


def serve_tree(root: Path, images: ImageSet) -> None:
    root.mkdir(parents=True)
    shutil.copyfile(images.kernel, root / "bzImage")
    shutil.copyfile(images.initramfs, root / "rootfs.cpio.gz")
    shutil.copyfile(images.second_stage, root / "second-stage.cpio.gz")


def targets(token: str) -> dict[str, str]:
    stage1 = (
        "#!ipxe\n"
        "echo serve-flow: stage 1 for {host}: ramboot\n"
        f"kernel {SERVE}/bzImage console=ttyS0 quiet ramboot.report={SERVE}/events "
        f"ramboot.token={token} ramboot.shell=never ramboot.reboot_delay=off\n"
        f"initrd {SERVE}/rootfs.cpio.gz\n"
        "boot\n"
    )
    stage2 = json.dumps({
        "ramboot-plan": 1, "description": "target of {host}",
        "actions": [{"action": "kexec", "kernel": f"{SERVE}/bzImage",
                     "initrds": [f"{SERVE}/second-stage.cpio.gz"],
                     "cmdline": "console=ttyS0 quiet"}],
    })
    return {"stage1": stage1, "stage2": stage2}


class Operator:
    """The `ramboot` CLI run inside the lab, where serve listens."""

    def __init__(self, ns: Namespace, admin_token: Path) -> None:
        self.ns, self.admin_token = ns, admin_token

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.ns.run([RAMBOOT_CLI, *args, "--server", SERVE, "--admin-token",
                            str(self.admin_token)], check=False, timeout=60)

    def machine(self, name: str) -> dict[str, Any]:
        result = self.run("status", name, "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


def test_provisioned_machine_boots_its_disk_until_reinstall(tmp_path: Path) -> None:
    require_netns("dnsmasq")
    require_qemu("qemu-system-x86_64")
    lkrn = require_ipxe_lkrn()
    images = image_set_or_fail("x86_64")
    secret_path, admin_path, secret = write_keys(tmp_path)
    token = host_token(secret, "srv-01")
    (tmp_path / "targets.json").write_text(json.dumps(targets(token)))
    (tmp_path / "fleet.toml").write_text(INVENTORY)
    tree = tmp_path / "tree"
    serve_tree(tree, images)
    disk = tmp_path / "disk.img"
    disk.write_bytes(boot_sector(DISK_MARKER) + bytes(1024 * 1024 - 512))

    with tap_lab() as lab:
        start_dnsmasq(lab.ns, lab.bridge, tmp_path, [
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,10m",
            f"--dhcp-option-force=224,http://ramboot:{token}@{SERVER_IP}:{PORT}/boot",
        ])
        log = (tmp_path / "serve.log").open("wb")
        lab.ns.popen([sys.executable, "-m", "tests.serve.runner", tmp_path / "fleet.toml",
                      "--database", f"sqlite://{tmp_path / 'serve.db'}",
                      "--machine-secret", secret_path, "--admin-token", admin_path,
                      "--listen", f"{SERVER_IP}:{PORT}", "--tree", tree, "--access-log"],
                     cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                     env={**os.environ,
                          "RAMBOOT_TEST_TARGETS": str(tmp_path / "targets.json")})
        operator = Operator(lab.ns, admin_path)
        wait_for(lambda: operator.run("status").returncode == 0, timeout=60,
                 what="serve to answer")
        tap = lab.add_tap()

        def boot(name: str) -> Qemu:
            argv = x86_64_argv(kernel=lkrn, initrd=RAMBOOT_IPXE,
                               memory_mb=768, extra=[
                                   *sercon_argv(tmp_path),
                                   *tap_nic_argv(tap, mac=SRV_MAC, model="virtio-net-pci"),
                                   "-drive", f"file={disk},format=raw,if=ide,index=0"])
            return Qemu(argv, tmp_path / f"console-{name}.log", lab.ns)

        # 1: provisioned from scratch.
        with boot("first") as vm:
            vm.expect_exact("serve-flow: stage 1 for srv-01: ramboot", timeout=120)
            vm.expect_exact(SECOND_STAGE_MARKER, timeout=600)
            assert vm.wait_exit(timeout=120) == 0
        state = operator.machine("srv-01")
        assert (state["state"], state["provisioned"]) == ("provisioned", True), state
        names = [e["event"] for e in state["events"]]
        assert names[:3] == ["kernel-started", "agent-started", "network-up"], names
        assert "plan-done" in names
        assert [a["kind"] for a in reversed(state["answers"])] == ["ramboot", "target"]

        # 2: the same VM boots again: iPXE is sent to the disk, nothing provisions.
        with boot("second") as vm:
            vm.expect_exact("is provisioned: booting its disk", timeout=120)
            vm.expect_exact(DISK_MARKER, timeout=300)
        state = operator.machine("srv-01")
        assert state["provisioned"] is True
        assert {a["kind"] for a in state["answers"][:1]} == {"disk"}
        assert "target" not in [a["kind"] for a in state["answers"][:3]]

        # 3: after `ramboot reinstall`, it is provisioned again.
        done = operator.run("reinstall", "srv-01")
        assert done.returncode == 0, done.stderr
        assert "provisions it again" in done.stdout
        with boot("third") as vm:
            vm.expect_exact("serve-flow: stage 1 for srv-01: ramboot", timeout=120)
            vm.expect_exact(SECOND_STAGE_MARKER, timeout=600)
            assert vm.wait_exit(timeout=120) == 0
        state = operator.machine("srv-01")
        assert (state["state"], state["provisioned"]) == ("provisioned", True)
        assert len(state["boots"]) == 2  # two boots of ramboot, each with its own boot_id
        table = operator.run("status")
        assert "srv-01" in table.stdout and "provisioned" in table.stdout
        print(table.stdout)
        print(json.dumps(state["stages"], indent=2))


PI_MAC = "52:54:00:00:0c:01"
PI_HOST = """
[[hosts]]
name = "pi-virt"
family = "rpi4"
serial = "0000c0de"
macs = ["52:54:00:00:0c:01"]
profile = "ramboot-pi"
"""


def test_pi_agent_path_on_aarch64_virt(tmp_path: Path) -> None:
    """The Pi's path: ramboot boots every time (the EEPROM loads it from TFTP), so
    only the agent asks serve; a provisioned Pi gets `localboot`, not its target."""
    require_netns("dnsmasq")
    require_qemu("qemu-system-aarch64")
    images = image_set_or_fail("aarch64")
    secret_path, admin_path, secret = write_keys(tmp_path)
    token = host_token(secret, "pi-virt")
    stage2 = json.dumps({
        "ramboot-plan": 1, "description": "target of {host}",
        "actions": [{"action": "kexec", "kernel": f"{SERVE}/Image",
                     "initrds": [f"{SERVE}/second-stage.cpio.gz"],
                     "cmdline": "console=ttyAMA0 quiet"}],
    })
    (tmp_path / "targets.json").write_text(json.dumps({"stage2": stage2}))
    (tmp_path / "fleet.toml").write_text(INVENTORY + PI_HOST)
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copyfile(images.kernel, tree / "Image")
    shutil.copyfile(images.second_stage, tree / "second-stage.cpio.gz")
    # What `render --machine-secret` writes into the Pi's cmdline.txt.
    cmdline = (f"console=ttyAMA0 quiet ramboot.report={SERVE}/events ramboot.token={token} "
               "ramboot.shell=never ramboot.reboot_delay=off")

    with tap_lab() as lab:
        start_dnsmasq(lab.ns, lab.bridge, tmp_path, [
            f"--dhcp-range={POOL[0]},{POOL[1]},255.255.255.0,10m",
            f"--dhcp-option-force=224,{SERVE}/boot",
        ])
        log = (tmp_path / "serve.log").open("wb")
        lab.ns.popen([sys.executable, "-m", "tests.serve.runner", tmp_path / "fleet.toml",
                      "--database", f"sqlite://{tmp_path / 'serve.db'}",
                      "--machine-secret", secret_path, "--admin-token", admin_path,
                      "--listen", f"{SERVER_IP}:{PORT}", "--tree", tree, "--access-log"],
                     cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                     env={**os.environ,
                          "RAMBOOT_TEST_TARGETS": str(tmp_path / "targets.json")})
        operator = Operator(lab.ns, admin_path)
        wait_for(lambda: operator.run("status").returncode == 0, timeout=60,
                 what="serve to answer")
        tap = lab.add_tap()

        def boot(name: str) -> Qemu:
            argv = aarch64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=768,
                                append=cmdline, extra=[
                                    "-smp", "1",
                                    *tap_nic_argv(tap, mac=PI_MAC, model="virtio-net-pci")])
            return Qemu(argv, tmp_path / f"console-{name}.log", lab.ns)

        with boot("first") as vm:
            vm.expect_exact(SECOND_STAGE_MARKER, timeout=900)
            assert vm.wait_exit(timeout=120) == 0
        state = operator.machine("pi-virt")
        assert (state["state"], state["provisioned"]) == ("provisioned", True), state
        assert [a["kind"] for a in state["answers"]] == ["target"]

        # Booted again into ramboot: serve sends it to its disk, not to its target.
        with boot("second") as vm:
            # The agent logs the plan it got (and, while this tree's agent does not
            # know the `localboot` action yet, refuses it): the target never runs.
            seen = vm.expect([SECOND_STAGE_MARKER, "localboot"], timeout=900)
            assert seen == 1, "a provisioned Pi was given its target again"

            def answered_localboot() -> bool:
                answers = operator.machine("pi-virt")["answers"]
                return len(answers) == 2 and answers[0]["kind"] == "localboot"

            wait_for(answered_localboot, timeout=scaled(60), interval=1,
                     what="serve's localboot answer")
            time.sleep(2)
        state = operator.machine("pi-virt")
        assert state["provisioned"] is True

        assert operator.run("reinstall", "pi-virt").returncode == 0
        with boot("third") as vm:
            vm.expect_exact(SECOND_STAGE_MARKER, timeout=900)
            assert vm.wait_exit(timeout=120) == 0
        state = operator.machine("pi-virt")
        assert (state["state"], state["provisioned"]) == ("provisioned", True)
        assert [a["kind"] for a in state["answers"]] == ["target", "localboot", "target"][::-1]
        assert len(state["boots"]) == 3
        print(operator.run("status", "pi-virt").stdout)
