"""What real iPXE boots: one guest, reset between runs, read back through QEMU's monitor.

`IpxeGuest` runs an ipxe.lkrn whose command line is

    dhcp && chain http://192.0.2.1:8080/rb-driver.ipxe

with an e1000 NIC on a tests.lib.ipxe lab (vhost layout), an IDE disk whose
MBR is tests.lib.x86_stubs.boot_sector() and a QMP socket. `run(driver)`
publishes `driver` as rb-driver.ipxe, restarts the guest (QMP
system_reset: the firmware and iPXE start afresh, nothing a previous run
set survives) and waits for the first of:

* the stub kernel's marker: iPXE booted a kernel. Its setup header in guest
  memory gives the command line and the initrd memory exactly as iPXE
  handed them over (Boot);
* the stub MBR's marker: iPXE booted BIOS drive N (`sanboot`, or the
  firmware after `exit`); the MBR returns with INT 18h, so the script goes
  on, but the run's outcome is that drive;
* the driver's own result line (`ipxe_boots.result_line()`), printed after
  the script returned: its status (0, or iPXE's ${errno});
* QEMU exiting: `poweroff`.

Everything the guest printed during the run is kept (console lines).
"""

from __future__ import annotations

import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect

from tests.lib import x86_stubs
from tests.lib.httpd import vhost_path
from tests.lib.ipxe import GUEST_MAC, HTTP_PORT, NIC_MODEL, IpxeNetwork, console_lines, ipxe_argv
from tests.lib.netlab import SERVER_IP
from tests.lib.qemu import Qemu, QemuError, scaled, tap_nic_argv
from tests.lib.qmp import Qmp, qmp_argv

DRIVER_PATH = "/rb-driver.ipxe"
DRIVER_URL = f"http://{SERVER_IP}:{HTTP_PORT}{DRIVER_PATH}"
MAX_INITRD = 64 << 20  # what a stub kernel's initrd may be, to read it back
_HEADER = x86_stubs.HEADER


@dataclass(frozen=True)
class Boot:
    """What iPXE handed a stub kernel."""

    tag: bytes  # the stub's tag: which kernel it was
    cmdline: str
    initrd: bytes  # the initrd memory (ramdisk_image, ramdisk_size)


@dataclass
class Outcome:
    kind: str  # "kernel", "disk", "returned", "poweroff"
    lines: list[str] = field(default_factory=list)
    boot: Boot | None = None
    drive: int | None = None
    status: int | None = None  # "returned": 0, or ${errno} when the script failed
    seconds: float = 0.0  # from the guest's reset (or QEMU's start) to the outcome

    def describe(self) -> str:
        if self.kind == "disk":
            return f"booted drive {self.drive:#04x}"
        if self.kind == "returned":
            return f"returned, status {self.status:#x}"
        return self.kind if self.boot is None else f"kernel {self.boot.tag!r}"


def result_line(token: str) -> str:
    """The driver line that runs `chain URL` and reports how it returned."""
    return f"RB-RESULT-{token}"


def chain_and_report(url: str, token: str) -> str:
    """Driver lines: chain `url`, print the result line with 0 or ${errno}, then
    stay (so the firmware does not go on to boot the disk)."""
    marker = result_line(token)
    return (f"chain {url} && echo {marker} 0x0 || echo {marker} ${{errno}}\n"
            ":rb-park\nsleep 3600\ngoto rb-park")


@dataclass
class GuestMachine:
    """What the guest is: its SMBIOS identity and RAM."""

    uuid: str
    manufacturer: str = "QEMU"
    product: str = "Standard PC"
    serial: str = "S1"
    memory_mb: int = 256

    def argv(self) -> list[str]:
        return ["-uuid", self.uuid, "-smbios",
                f"type=1,manufacturer={self.manufacturer},product={self.product},"
                f"serial={self.serial}"]


class IpxeGuest:
    def __init__(self, net: IpxeNetwork, workdir: Path, lkrn: Path, machine: GuestMachine,
                 *, http_root: Path) -> None:
        self.net, self.workdir, self.lkrn, self.machine = net, workdir, lkrn, machine
        self.http_root = http_root
        self.disk = workdir / "disk.img"
        self.disk.write_bytes(x86_stubs.disk_image())
        self.vm: Qemu | None = None
        self.qmp: Qmp | None = None
        self.runs = 0

    def close(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.vm is not None:
            self.vm.stop()
            self.vm = None

    def __enter__(self) -> IpxeGuest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        socket = self.workdir / f"qmp-{secrets.token_hex(3)}.sock"
        argv = ipxe_argv(self.lkrn, self.workdir, cmdline=f"dhcp && chain {DRIVER_URL}",
                         memory_mb=self.machine.memory_mb, extra=[
                             *tap_nic_argv(self.net.tap, mac=GUEST_MAC, model=NIC_MODEL),
                             "-drive", f"file={self.disk},format=raw,if=ide",
                             *self.machine.argv(), *qmp_argv(socket)])
        self.vm = Qemu(argv, self.workdir / f"console-{self.runs}.log", self.net.lab.ns)
        self.vm.start()
        self.qmp = Qmp(socket)

    def run(self, driver: str, *, token: str, keys: tuple[tuple[str, str], ...] = (),
            timeout: float = 90) -> Outcome:
        """Run `driver` (an iPXE script) in a freshly reset guest; what it ended in.

        `keys`: (regex, text) pairs: wait for regex on the console, then type text.
        """
        target = self.http_root / vhost_path(SERVER_IP, HTTP_PORT, DRIVER_PATH).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(driver)
        started = time.monotonic()
        if self.vm is None or self.vm.child is None or not self.vm.child.isalive():
            self.close()
            self._start()
        else:
            assert self.qmp is not None
            self.qmp.reset()
        self.runs += 1
        vm = self.vm
        assert vm is not None and vm.child is not None
        vm.expect(re.escape(f"RB-CASE-{token}"), timeout=timeout)
        for pattern, text in keys:
            vm.expect(pattern, timeout=timeout)
            vm.send(text)
        patterns: list[Any] = [
            re.escape(x86_stubs.KERNEL_MARKER.decode()),
            re.escape(x86_stubs.DISK_MARKER.decode()) + r"([0-9A-F]{2})",
            re.escape(result_line(token)) + r" (0x[0-9a-f]+)",
            pexpect.EOF,
        ]
        try:
            index = vm.child.expect(patterns, timeout=scaled(timeout))
        except pexpect.TIMEOUT:
            raise QemuError(f"run {token}: no outcome within {timeout}s; last output:\n"
                            f"{vm.tail()}") from None
        seconds = time.monotonic() - started
        lines = console_lines(str(vm.child.before or ""))
        if index == 0:
            return Outcome("kernel", lines, boot=self._read_boot(), seconds=seconds)
        if index == 1:
            return Outcome("disk", lines, drive=int(vm.child.match.group(1), 16),
                           seconds=seconds)
        if index == 2:
            return Outcome("returned", lines, status=int(vm.child.match.group(1), 16),
                           seconds=seconds)
        vm.child.close()
        return Outcome("poweroff", lines, seconds=seconds)

    def _read_boot(self) -> Boot:
        assert self.qmp is not None
        scratch = self.workdir / "memory.bin"
        base = x86_stubs.KERNEL_SEGMENT << 4
        setup = self.qmp.read_memory(base, (x86_stubs.SETUP_SECTS + 1) * 512, scratch)
        cmdline_at, = struct.unpack_from("<I", setup, _HEADER["cmd_line_ptr"])
        initrd_at, initrd_size = struct.unpack_from("<II", setup, _HEADER["ramdisk_image"])
        if initrd_size > MAX_INITRD:
            raise QemuError(f"the stub kernel was given a {initrd_size}-byte initrd")
        cmdline = self.qmp.read_memory(cmdline_at, 2048, scratch).split(b"\0")[0] \
            if cmdline_at else b""
        initrd = self.qmp.read_memory(initrd_at, initrd_size, scratch) if initrd_size else b""
        tag = setup[x86_stubs.TAG_OFFSET:x86_stubs.TAG_OFFSET + 0x100].split(b"\0")[0]
        return Boot(tag, cmdline.decode(errors="replace"), initrd)

