"""Stand-in kernels for tests: the headers a real kernel has, nothing bootable behind them.

The agent checks a kernel's format before kexec (ramboot_agent.kernel_image),
so tests that never boot still need files that look like kernels. Each
stand-in carries a tag after its header, so a test can tell which file booted.
"""

from __future__ import annotations

import os
import struct

from ramboot_agent.arch import buildarch as _buildarch


def bzimage(tag: bytes = b"", *, size: int = 4096, kernel_64: bool = True) -> bytes:
    """An x86 bzImage header (setup protocol 2.15, 64-bit entry point unless asked)."""
    data = bytearray(max(size, 0x400))
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)
    struct.pack_into("<H", data, 0x236, 0x7F if kernel_64 else 0)
    data[0x300:0x300 + len(tag)] = tag
    return bytes(data)


def arm64_image(tag: bytes = b"", *, size: int = 4096) -> bytes:
    """An arm64 Image header ("MZ" for the EFI stub, "ARM\\x64" at 0x38)."""
    data = bytearray(max(size, 0x100))
    data[0:2] = b"MZ"
    data[0x38:0x3C] = b"ARM\x64"
    data[0x80:0x80 + len(tag)] = tag
    return bytes(data)


def for_arch(arch: str, tag: bytes = b"", *, size: int = 4096) -> bytes:
    """A stand-in kernel for ${buildarch} `arch` (x86 for i386/x86_64, else arm64)."""
    return bzimage(tag, size=size) if arch in ("x86_64", "i386") else arm64_image(tag, size=size)


def for_this_machine(tag: bytes = b"", *, size: int = 4096) -> bytes:
    return for_arch(_buildarch(os.uname().machine), tag, size=size)
