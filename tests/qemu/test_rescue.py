"""Boot the in-RAM system with no instructions: it must fail loudly, not hang.

x86_64 (QEMU pc) with a NIC on a hub that nothing else is plugged into, and
the Raspberry Pi 4 (QEMU raspi4b, which has no Ethernet): in both, the agent
finds no DHCP server, shows the failure box, and leaves a rescue shell on the
serial console, where the tests run commands.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.images import ImageSet
from tests.lib.qemu import Qemu, QemuError, aarch64_argv, require_qemu, x86_64_argv
from tests.qemu.conftest import PI_SERIAL_NUMBER

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

# Short network waits: the failure path is under test, not the patience.
AGENT_ARGS = "ramboot.carrier_timeout=3 ramboot.dhcp_timeout=6"
SMBIOS_SERIAL = "RB-QEMU-0001"
RESCUE_BANNER = "ramboot rescue shell ("
SMBIOS_VENDOR = "ramboot-lab"


def identity(shell_lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in shell_lines if "=" in line)


def expect_failure_then_shell(vm: Qemu) -> None:
    vm.expect_exact("ramboot-agent FAILED", timeout=240)
    vm.expect_exact(RESCUE_BANNER, timeout=60)
    # One session, not a respawn loop: a second banner this soon means the
    # shell's session leader exited at once and init started another.
    try:
        vm.expect_exact(RESCUE_BANNER, timeout=4)
    except QemuError:
        return
    pytest.fail("the rescue console session respawns in a loop (its first process exits "
                f"at once: a forking `setsid`?); console:\n{vm.tail()}")


def test_x86_64_without_dhcp_fails_into_a_rescue_shell(
    x86_64_images: ImageSet, tmp_path: Path
) -> None:
    require_qemu("qemu-system-x86_64")
    argv = x86_64_argv(
        kernel=x86_64_images.kernel, initrd=x86_64_images.initramfs, memory_mb=512,
        append=f"console=ttyS0 quiet {AGENT_ARGS}",
        extra=[
            "-smp", "1",
            "-smbios", f"type=1,manufacturer={SMBIOS_VENDOR},serial={SMBIOS_SERIAL}",
            # A NIC with carrier and no peer: what it sends is dropped, no DHCP server.
            "-device", "virtio-net-pci,mac=52:54:00:00:0a:01,romfile=",
        ],
    )
    with Qemu(argv, log_path=tmp_path / "console.log") as vm:
        expect_failure_then_shell(vm)
        box = vm.console_text()
        assert "NetworkError" in box, vm.tail()
        shell = vm.shell(timeout=60)
        cmdline = shell.run_check("cat /proc/cmdline")
        assert AGENT_ARGS in cmdline[0]
        ident = identity(shell.run_check("ramboot-agent identity"))
        assert ident["serial"] == SMBIOS_SERIAL
        assert ident["manufacturer"] == SMBIOS_VENDOR
        assert ident["buildarch"] == "x86_64"
        assert ident["platform"] == "pcbios"
        assert ident["mac"] == ""  # no lease, so no boot interface
        # The image is the real overlay's, started by its init glue.
        assert shell.run_check("cat /run/ramboot/agent-status") != ["0"]


def test_rpi4_without_ethernet_fails_into_a_rescue_shell(
    rpi4_images: ImageSet, rpi4_dtb: Path, tmp_path: Path
) -> None:
    require_qemu("qemu-system-aarch64")
    argv = aarch64_argv(
        machine="raspi4b", kernel=rpi4_images.kernel, initrd=rpi4_images.initramfs,
        dtb=rpi4_dtb, append=f"console=ttyAMA0 quiet {AGENT_ARGS}",
    )
    with Qemu(argv, log_path=tmp_path / "console.log") as vm:
        expect_failure_then_shell(vm)
        shell = vm.shell(timeout=60)
        ident = identity(shell.run_check("ramboot-agent identity"))
        assert ident["product"] == "Raspberry Pi 4 Model B"
        assert ident["manufacturer"] == "Raspberry Pi"
        assert ident["serial"] == PI_SERIAL_NUMBER[-8:]
        assert ident["buildarch"] == "arm64"
        assert ident["platform"] == "rpi"
        assert shell.run_check("uname -m") == ["aarch64"]
