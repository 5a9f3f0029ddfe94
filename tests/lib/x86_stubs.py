"""Tiny x86 programs that tell a test what a BIOS boot loader handed them.

Real iPXE is the reference for what the agent boots, but booting a real
kernel per case costs a Linux boot under TCG. These stand-ins cost nothing:

* `kernel(tag)`: a bzImage (setup protocol 2.15, loaded high, 64-bit entry
  flag, as a real kernel's header says) whose real-mode entry prints
  KERNEL_MARKER on COM1 and halts. The loader's view stays in guest memory
  for the test to read (QEMU's monitor): the setup header at 0x10000 (a
  loaded-high bzImage's real-mode segment is 0x1000) with cmd_line_ptr,
  ramdisk_image and ramdisk_size filled in. `tag` is kept at offset 0x300,
  so the test can also tell which kernel ran.
* `boot_sector()`: a disk's MBR that prints DISK_MARKER and the BIOS drive
  number it was started with (DL) on COM1, then gives control back with
  INT 18h: iPXE's `sanboot` hooks INT 18h and returns "boot failed" to the
  script, so one iPXE session can see several local boots.

The machine code is written out byte by byte with its assembly beside it;
tests/lib/test_x86_stubs.py disassembles it (objdump) and runs both in QEMU.
"""

from __future__ import annotations

import struct

KERNEL_MARKER = b"RB-STUB-KERNEL"
DISK_MARKER = b"RB-STUB-DISK drive=0x"
KERNEL_SEGMENT = 0x1000  # iPXE (and other loaders) put a loaded-high bzImage's setup here
SETUP_SECTS = 1  # real-mode part: boot sector + 1 sector (1024 bytes)
TAG_OFFSET = 0x300
HEADER = {  # offsets of the x86 boot protocol's setup header fields we read or write
    "setup_sects": 0x1F1, "syssize": 0x1F4, "boot_flag": 0x1FE, "jump": 0x200, "header": 0x202,
    "version": 0x206, "type_of_loader": 0x210, "loadflags": 0x211, "code32_start": 0x214,
    "ramdisk_image": 0x218, "ramdisk_size": 0x21C, "cmd_line_ptr": 0x228,
    "initrd_addr_max": 0x22C, "xloadflags": 0x236, "cmdline_size": 0x238,
}
_KERNEL_CODE = 0x280  # after the setup header (which ends at 0x268 in protocol 2.15)
_KERNEL_MESSAGE = 0x2C0


def _kernel_code() -> bytes:
    # Entered in real mode at CS = segment + 0x20, IP = 0: CS:0 is file offset 0x200.
    message = _KERNEL_MESSAGE - 0x200
    return bytes([
        0xBA, 0xF8, 0x03,                       # mov dx, 0x3f8       ; COM1 data port
        0xBE, message & 0xFF, message >> 8,     # mov si, message
        0x2E, 0xAC,                             # next: cs lodsb
        0x84, 0xC0,                             # test al, al
        0x74, 0x03,                             # jz halt
        0xEE,                                   # out dx, al
        0xEB, 0xF7,                             # jmp next
        0xFA,                                   # halt: cli
        0xF4,                                   # hlt
        0xEB, 0xFC,                             # jmp halt
    ])


def kernel(tag: bytes = b"", *, size: int = 8192) -> bytes:
    """A bzImage stand-in whose entry point prints KERNEL_MARKER and halts."""
    if len(tag) > 0x100 - 1:
        raise ValueError("a stub kernel's tag must be shorter than 255 bytes")
    setup = (SETUP_SECTS + 1) * 512
    data = bytearray(max(size, setup + 512))
    data[HEADER["setup_sects"]] = SETUP_SECTS
    struct.pack_into("<I", data, HEADER["syssize"], (len(data) - setup + 15) // 16)
    data[HEADER["boot_flag"]:HEADER["boot_flag"] + 2] = b"\x55\xaa"
    data[HEADER["jump"]:HEADER["jump"] + 2] = bytes([0xEB, _KERNEL_CODE - (HEADER["jump"] + 2)])
    data[HEADER["header"]:HEADER["header"] + 4] = b"HdrS"
    struct.pack_into("<H", data, HEADER["version"], 0x020F)
    data[HEADER["loadflags"]] = 0x01  # LOADED_HIGH: protected-mode part at 1 MiB
    struct.pack_into("<I", data, HEADER["code32_start"], 0x100000)
    struct.pack_into("<I", data, HEADER["initrd_addr_max"], 0x7FFFFFFF)
    struct.pack_into("<H", data, HEADER["xloadflags"], 0x7F)  # 64-bit entry, as a real kernel
    struct.pack_into("<I", data, HEADER["cmdline_size"], 2047)
    code = _kernel_code()
    data[_KERNEL_CODE:_KERNEL_CODE + len(code)] = code
    message = KERNEL_MARKER + b"\r\n\0"
    data[_KERNEL_MESSAGE:_KERNEL_MESSAGE + len(message)] = message
    data[TAG_OFFSET:TAG_OFFSET + len(tag)] = tag
    return bytes(data)


_BOOT_MESSAGE = 0x60  # offset of the message in the boot sector


def boot_sector() -> bytes:
    """A 512-byte MBR that prints DISK_MARKER + DL in hex on COM1, then INT 18h."""
    message = 0x7C00 + _BOOT_MESSAGE
    code = bytes([
        0x88, 0xD3,                             # mov bl, dl          ; the BIOS drive
        0xBA, 0xF8, 0x03,                       # mov dx, 0x3f8
        0xBE, message & 0xFF, message >> 8,     # mov si, message     ; CS = DS = 0
        0x2E, 0xAC,                             # next: cs lodsb
        0x84, 0xC0,                             # test al, al
        0x74, 0x03,                             # jz digits
        0xEE,                                   # out dx, al
        0xEB, 0xF7,                             # jmp next
        0x88, 0xD8,                             # digits: mov al, bl
        0xC0, 0xE8, 0x04,                       # shr al, 4
        0xE8, 0x13, 0x00,                       # call hex
        0x88, 0xD8,                             # mov al, bl
        0x24, 0x0F,                             # and al, 0x0f
        0xE8, 0x0C, 0x00,                       # call hex
        0xB0, 0x0D,                             # mov al, 0x0d
        0xEE,                                   # out dx, al
        0xB0, 0x0A,                             # mov al, 0x0a
        0xEE,                                   # out dx, al
        0xCD, 0x18,                             # int 0x18            ; back to iPXE (or the BIOS)
        0xFA,                                   # halt: cli
        0xF4,                                   # hlt
        0xEB, 0xFC,                             # jmp halt
        0x04, 0x30,                             # hex: add al, '0'
        0x3C, 0x39,                             # cmp al, '9'
        0x76, 0x02,                             # jbe print
        0x04, 0x07,                             # add al, 'A' - '9' - 1
        0xEE,                                   # print: out dx, al
        0xC3,                                   # ret
    ])
    sector = bytearray(512)
    sector[:len(code)] = code
    text = DISK_MARKER + b"\0"
    sector[_BOOT_MESSAGE:_BOOT_MESSAGE + len(text)] = text
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def disk_image(size: int = 1 << 20) -> bytes:
    """A raw disk whose MBR is boot_sector()."""
    return boot_sector() + bytes(size - 512)
