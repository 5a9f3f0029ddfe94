"""tests/lib/image_parts.py sorts an initramfs into parts; the budget test can fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lib.cpio import DIRECTORY, EXECUTABLE, FILE, newc, zstd_compressed
from tests.lib.image_parts import BUDGET, breakdown

from . import test_budget as budget

ELF = b"\x7fELF" + bytes(60)


def write_image(path: Path, extra: dict[str, tuple[int, bytes]]) -> Path:
    entries = {".": (DIRECTORY, b""), **extra}
    path.mkdir(parents=True, exist_ok=True)
    (path / "rootfs.cpio.zst").write_bytes(zstd_compressed(newc(entries), level=1))
    return path


def test_files_land_in_their_parts(tmp_path: Path) -> None:
    images = write_image(tmp_path, {
        "usr/lib/python3.14/json/__init__.pyc": (FILE, b"x" * 10),
        "usr/lib/python3.14/lib-dynload/_ssl.cpython-314-x86_64-linux-gnu.so": (FILE, ELF),
        "usr/lib/libssl.so.3": (FILE, ELF),
        "bin/busybox": (EXECUTABLE, ELF),
        "usr/sbin/kexec": (EXECUTABLE, ELF),
        "lib/modules/6.12.91/kernel/a.ko": (FILE, ELF),
        "lib/firmware/rtl_nic/rtl8168h-2.fw": (FILE, b"fw"),
        "usr/lib/ramboot/ramboot_agent/cli.pyc": (FILE, b"agent"),
        "etc/ssl/certs/ca-certificates.crt": (FILE, b"pem"),
        "etc/inittab": (FILE, b"::sysinit:\n"),
    })
    parts = breakdown(images / "rootfs.cpio.zst").parts
    files = {name: part.files for name, part in parts.items() if part.files}
    assert files == {"Python stdlib": 1, "Python extension modules": 1, "libraries": 1,
                     "busybox": 1, "other binaries": 1, "kernel modules": 1, "firmware": 1,
                     "agent": 1, "CA certs": 1, "rest": 1}
    assert parts["Python stdlib"].unpacked == 10


def runtime_entries() -> dict[str, tuple[int, bytes]]:
    """One file for each RUNTIME pattern (a '*' as the shortest match)."""
    return {pattern.replace("*", "x").lstrip("x").lstrip("/"): (FILE, ELF)
            for pattern in budget.RUNTIME}


def test_an_image_over_budget_fails_with_its_table(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    images = write_image(tmp_path, {**runtime_entries(),
                                    "usr/share/noise": (FILE, os.urandom(BUDGET + 1))})
    monkeypatch.setenv("RAMBOOT_IMAGES_X86_64", str(images))
    with pytest.raises(AssertionError, match=r"(?s)x86_64 over budget:\n.*\| rest \| 1 \|"):
        budget.test_rootfs_fits_the_budget_and_keeps_the_agents_runtime("x86_64")


def test_an_image_without_the_agents_runtime_fails(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    entries = runtime_entries()
    del entries["usr/bin/kexec".replace("usr/", "")]
    images = write_image(tmp_path, entries)
    monkeypatch.setenv("RAMBOOT_IMAGES_RPI4", str(images))
    with pytest.raises(AssertionError, match=r"rpi4: the image lacks \['\*bin/kexec'\]"):
        budget.test_rootfs_fits_the_budget_and_keeps_the_agents_runtime("rpi4")


def test_a_small_complete_image_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMBOOT_IMAGES_X86_64", str(write_image(tmp_path, runtime_entries())))
    budget.test_rootfs_fits_the_budget_and_keeps_the_agents_runtime("x86_64")


def test_dynamic_symbols_of_a_host_library() -> None:
    from tests.lib.elf_symbols import dynamic_symbols
    zlib_path = next(p for p in (Path("/lib/x86_64-linux-gnu/libz.so.1"),
                                 Path("/usr/lib/x86_64-linux-gnu/libz.so.1"),
                                 Path("/lib/aarch64-linux-gnu/libz.so.1")) if p.exists())
    symbols = dynamic_symbols(zlib_path.read_bytes())
    assert {"inflate", "deflate", "crc32"} <= symbols.provided
    assert "malloc" in symbols.needed
    with pytest.raises(ValueError, match="not an ELF file"):
        dynamic_symbols(b"#!/bin/sh\n")
