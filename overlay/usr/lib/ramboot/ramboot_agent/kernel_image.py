"""Is this file a kernel this machine can boot? Decided from its headers, before kexec.

A boot server that answers a kernel URL with an HTML error page, an iPXE
binary (undionly.kpxe, ipxe.efi) or an initramfs must not reach kexec: the
agent refuses it with an error naming what the file is. Recognised kernels:

* x86 bzImage: boot flag 0xAA55 at 0x1FE, "HdrS" at 0x202; an x86_64 machine
  needs the 64-bit entry point (xloadflags bit 0, setup protocol >= 2.12),
  which iPXE's own ipxe.lkrn (a 16-bit bzImage) lacks;
* arm64 Image ("ARM\\x64" at 0x38), riscv64 Image ("RSC\\x05" at 0x38),
  32-bit ARM zImage (0x016F2818 at 0x24);
* EFI zboot (an "MZ" image with "zimg" at 4: a self-decompressing Image);
* ELF (vmlinux, multiboot kernels), by its machine field;
* gzip or xz compressed kernels (looked into with the standard library),
  zstd compressed ones (looked into only where Python has compression.zstd).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ramboot_agent.errors import BootError

HEAD_BYTES = 64 * 1024
# How far a refused PE file is searched for iPXE's signature, to name it.
SIGNATURE_SCAN_BYTES = 4 * 1024 * 1024
XLF_KERNEL_64 = 0x1
_PE_MACHINES = {0x8664: "x86_64", 0x14C: "i386", 0xAA64: "arm64", 0x1C2: "arm32",
                0x5064: "riscv64", 0x6264: "loong64"}
_ELF_MACHINES = {0x3E: "x86_64", 0x03: "i386", 0xB7: "arm64", 0x28: "arm32", 0xF3: "riscv64",
                 0x102: "loong64"}
# ${buildarch} of the running system -> kernel architectures it can kexec
_RUNS_ON = {"x86_64": {"x86_64"}, "i386": {"i386", "x86_64"}, "arm64": {"arm64"},
            "arm32": {"arm32"}, "riscv64": {"riscv64"}, "loong64": {"loong64"}}


class NotAKernel(BootError):
    """The file is not a kernel, or not one for this machine's architecture."""


@dataclass(frozen=True)
class KernelFormat:
    name: str  # e.g. "bzImage", "arm64 Image", "gzip-compressed arm64 Image"
    arch: str | None  # ${buildarch} it runs on; None when it could not be looked into
    ipxe_type: str | None = None  # the type iPXE's imgstat shows for it, if any


def _describe_data(head: bytes) -> str:
    """What a file that is not a kernel looks like, for the error message."""
    if not head:
        return "an empty file"
    if head[:6] in (b"#!ipxe", b"#!gpxe"):
        return "an iPXE script"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:512]:
        return "an HTML page (an error page from the server?)"
    if text.startswith(b"<?xml"):
        return "an XML document"
    if text.startswith(b"{") or text.startswith(b"["):
        return "a JSON document"
    if head[:6] in (b"070701", b"070702", b"070707"):
        return "a cpio archive (an initramfs, not a kernel)"
    if head[:5] == b"\xea\x05\x00\xc0\x07":
        return "a PXE boot program (iPXE's undionly.kpxe and ipxe.pxe start like this)"
    if head[:4] == b"\x7fELF":
        return "an ELF file for an unknown machine"
    try:
        sample = head[:200].decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised data (first bytes {head[:8].hex(' ')})"
    if sample.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in sample):
        first = sample.splitlines()[0][:60] if sample.strip() else ""
        return f"a text file starting {first!r}"
    return f"unrecognised data (first bytes {head[:8].hex(' ')})"


def _pe_machine(head: bytes) -> str | None:
    if len(head) < 0x40:
        return None
    offset = struct.unpack_from("<I", head, 0x3C)[0]
    if offset + 6 > len(head) or head[offset:offset + 4] != b"PE\0\0":
        return None
    return _PE_MACHINES.get(struct.unpack_from("<H", head, offset + 4)[0], "unknown")


def _identify_plain(head: bytes) -> KernelFormat | None:
    if len(head) >= 0x240 and head[0x1FE:0x200] == b"\x55\xaa" and head[0x202:0x206] == b"HdrS":
        version = struct.unpack_from("<H", head, 0x206)[0]
        xloadflags = struct.unpack_from("<H", head, 0x236)[0] if version >= 0x20C else 0
        arch = "x86_64" if xloadflags & XLF_KERNEL_64 else "i386"
        return KernelFormat(f"bzImage (setup protocol {version >> 8}.{version & 0xFF:02d})",
                            arch, "bzImage")
    if len(head) >= 0x40 and head[0x38:0x3C] == b"ARM\x64":
        return KernelFormat("arm64 Image", "arm64", "EFI" if head[:2] == b"MZ" else None)
    if len(head) >= 0x40 and head[0x38:0x3C] == b"RSC\x05":
        return KernelFormat("riscv64 Image", "riscv64", "EFI" if head[:2] == b"MZ" else None)
    if len(head) >= 0x30 and struct.unpack_from("<I", head, 0x24)[0] == 0x016F2818:
        return KernelFormat("ARM zImage", "arm32")
    if head[:2] == b"MZ" and head[4:8] == b"zimg" and len(head) >= 0x20:
        compression = head[0x18:0x20].rstrip(b"\0").decode("ascii", "replace") or "?"
        return KernelFormat(f"EFI zboot ({compression})", _pe_machine(head), "EFI")
    if head[:4] == b"\x7fELF" and len(head) >= 0x14:
        little = head[5] == 1
        machine = struct.unpack_from("<H" if little else ">H", head, 0x12)[0]
        elf_arch = _ELF_MACHINES.get(machine)
        if elf_arch is not None:
            return KernelFormat("ELF", elf_arch, "ELF")
    return None


def _inflate_head(head: bytes, kind: str) -> bytes | None:
    """The first bytes of a compressed stream, or None if it cannot be looked into."""
    try:
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
        if kind == "xz":
            try:
                import lzma  # noqa: PLC0415 - optional in a small Python build
            except ImportError:
                return None
            try:
                return lzma.LZMADecompressor().decompress(head, max_length=HEAD_BYTES)
            except lzma.LZMAError:
                return b""
        try:
            from compression import zstd  # type: ignore[import-not-found]  # noqa: PLC0415
        except ImportError:
            return None
        result: bytes = zstd.ZstdDecompressor().decompress(head, max_length=HEAD_BYTES)
        return result
    except (zlib.error, EOFError, ValueError, OSError):
        return b""  # corrupt: looked into, nothing there


_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))


def identify(head: bytes) -> KernelFormat:
    """The kernel format of a file starting with `head`; raises NotAKernel."""
    found = _identify_plain(head)
    if found is not None:
        return found
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            inner = _inflate_head(head, kind)
            if inner is None:
                return KernelFormat(f"{kind}-compressed (contents not checked)", None)
            found = _identify_plain(inner)
            if found is None:
                raise NotAKernel(f"{kind}-compressed data: {_describe_data(inner)}")
            return KernelFormat(f"{kind}-compressed {found.name}", found.arch,
                                "gzip" if kind == "gzip" else None)
    if head[:2] == b"MZ":
        machine = _pe_machine(head)
        if machine is not None:
            raise NotAKernel(f"an EFI application for {machine} that is not a Linux kernel")
    raise NotAKernel(_describe_data(head))


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(HEAD_BYTES)
    except OSError as error:
        raise BootError(f"cannot read {path}: {error.strerror}") from None


def _is_ipxe(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            data = stream.read(SIGNATURE_SCAN_BYTES)
    except OSError:
        return False
    return b"ipxe.org" in data or b"iPXE" in data


def require_kernel(path: Path, *, buildarch: str | None, name: str | None = None) -> KernelFormat:
    """The format of kernel `path` (called `name` in messages), when this
    machine (`buildarch`, None: any) can boot it; raises NotAKernel otherwise."""
    shown = name or str(path)
    try:
        found = identify(_read_head(path))
    except NotAKernel as error:
        reason = str(error)
        if reason.startswith("an EFI application") and _is_ipxe(path):
            reason = f"an iPXE binary ({reason})"
        raise NotAKernel(f"{shown}: not a kernel: {reason}") from None
    allowed = _RUNS_ON.get(buildarch or "")
    if allowed is not None and found.arch is not None and found.arch not in allowed:
        hint = ""
        if found.arch == "i386" and found.name.startswith("bzImage"):
            hint = ": no 64-bit entry point (iPXE's ipxe.lkrn is such an image)"
        raise NotAKernel(f"{shown}: {found.name}, for {found.arch}: this machine is "
                         f"{buildarch}{hint}")
    return found
