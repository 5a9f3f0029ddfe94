"""The stand-in kernel and boot sector (tests/lib/x86_stubs.py) do what they claim."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ramboot_agent.kernel_image import identify
from tests.lib import x86_stubs
from tests.lib.qemu import Qemu, require_qemu, x86_64_argv


def test_stub_kernel_is_a_64_bit_bzimage_for_the_agent_and_carries_its_tag() -> None:
    data = x86_stubs.kernel(b"http://x/vmlinuz")
    found = identify(data[:4096])
    assert found.arch == "x86_64" and found.ipxe_type == "bzImage"
    assert data[x86_stubs.TAG_OFFSET:].startswith(b"http://x/vmlinuz\0")
    assert struct.unpack_from("<I", data, x86_stubs.HEADER["initrd_addr_max"])[0] == 0x7FFFFFFF
    assert data[x86_stubs.HEADER["loadflags"]] & 1  # loaded high: setup at segment 0x1000
    with pytest.raises(ValueError):
        x86_stubs.kernel(b"x" * 300)


@pytest.mark.qemu
def test_boot_sector_prints_the_bios_drive_it_was_started_from(tmp_path: Path) -> None:
    require_qemu()
    disk = tmp_path / "disk.img"
    disk.write_bytes(x86_stubs.disk_image())
    argv = x86_64_argv(memory_mb=32, extra=["-drive", f"file={disk},format=raw,if=ide"])
    with Qemu(argv, tmp_path / "console.log") as vm:
        vm.expect(x86_stubs.DISK_MARKER.decode() + "80", timeout=30)
