"""kernel-firmware.py on fake targets whose modules are real ELF objects."""

from __future__ import annotations

import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

FIRMWARE = REPO / "board/common/kernel-firmware.py"
VERSION = "6.12.91"


def compiled_module(path: Path, *firmware: str) -> None:
    """A relocatable ELF object, as gcc makes one, whose .modinfo names `firmware`."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    strings = "".join(f'"firmware={name}\\0"' for name in firmware) or '""'
    source = path.with_suffix(".c")
    source.write_text("__attribute__((section(\".modinfo\"), used))\n"
                      f"static const char modinfo[] = \"license=GPL\\0\" {strings};\n")
    subprocess.run([compiler, "-c", "-o", str(path), str(source)], check=True)
    source.unlink()


def fake_target(root: Path) -> Path:
    version = root / "lib/modules" / VERSION
    (version / "kernel/drivers").mkdir(parents=True)
    (version / "modules.builtin.modinfo").write_bytes(
        b"bnx2x.license=GPL\0bnx2x.firmware=bnx2x/bnx2x-e2-7.13.21.0.fw\0"
        b"bnx2x.firmware=bnx2x/bnx2x-e2-7.13.15.0.fw\0bnx2x.firmware=bnx2x/bnx2x-e1-7.13.15.0.fw\0"
        b"tg3.firmware=tigon/tg3.bin\0")
    firmware = root / "lib/firmware"
    for name in ("bnx2x/bnx2x-e2-7.13.21.0.fw", "bnx2x/bnx2x-e2-7.13.15.0.fw",
                 "bnx2x/bnx2x-e1-7.13.15.0.fw", "bnx2x/bnx2x-e2-7.8.2.0.fw",
                 "rtl_nic/rtl8168h-2.fw", "rtl_nic/rtl8125a-3.fw", "tigon/tg3-real.bin",
                 "other/unused.bin", "LICENCE.broadcom_bcm43xx", "WHENCE"):
        (firmware / name).parent.mkdir(parents=True, exist_ok=True)
        (firmware / name).write_bytes(name.encode())
    (firmware / "tigon/tg3.bin").symlink_to("tg3-real.bin")
    return version


def run(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FIRMWARE), *extra, str(root)],
                          capture_output=True, text=True, check=False)


def left(root: Path) -> list[str]:
    firmware = root / "lib/firmware"
    return sorted(str(p.relative_to(firmware)) for p in firmware.rglob("*")
                  if p.is_file() or p.is_symlink())


def test_only_what_built_in_drivers_and_modules_name_stays(tmp_path: Path) -> None:
    root = tmp_path / "target"
    version = fake_target(root)
    compiled_module(version / "kernel/drivers/r8169.ko", "rtl_nic/rtl8168h-2.fw")
    done = run(root)
    assert done.returncode == 0, done.stderr
    # e2 7.13.15 is the driver's fallback for 7.13.21; e1 has only 7.13.15 here.
    assert left(root) == ["LICENCE.broadcom_bcm43xx", "WHENCE", "bnx2x/bnx2x-e1-7.13.15.0.fw",
                          "bnx2x/bnx2x-e2-7.13.21.0.fw", "rtl_nic/rtl8168h-2.fw",
                          "tigon/tg3-real.bin", "tigon/tg3.bin"]
    assert not (root / "lib/firmware/other").exists()
    assert "kept 7 of 11 files" in done.stderr


def test_an_xz_compressed_module_is_read(tmp_path: Path) -> None:
    root = tmp_path / "target"
    version = fake_target(root)
    plain = version / "kernel/drivers/r8169.ko"
    compiled_module(plain, "rtl_nic/rtl8125a-3.fw")
    (version / "kernel/drivers/r8169.ko.xz").write_bytes(lzma.compress(plain.read_bytes()))
    plain.unlink()
    assert run(root).returncode == 0
    assert "rtl_nic/rtl8125a-3.fw" in left(root)
    assert "rtl_nic/rtl8168h-2.fw" not in left(root)


def test_dry_run_lists_and_keeps(tmp_path: Path) -> None:
    root = tmp_path / "target"
    fake_target(root)
    before = left(root)
    done = run(root, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "lib/firmware/other/unused.bin" in done.stdout.split()
    assert left(root) == before


def test_without_a_kernel_nothing_goes(tmp_path: Path) -> None:
    root = tmp_path / "target"
    fake_target(root)
    shutil.rmtree(root / "lib/modules")
    before = left(root)
    assert run(root).returncode == 0
    assert left(root) == before


def test_a_module_that_is_not_elf_fails_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "target"
    version = fake_target(root)
    (version / "kernel/drivers/broken.ko").write_bytes(b"not elf")
    before = left(root)
    done = run(root)
    assert done.returncode == 1
    assert "broken.ko: not an ELF file" in done.stderr
    assert left(root) == before
