"""Every line of the kernel fragments lands in a real 6.12 kernel configuration.

Buildroot applies the fragments with merge_config.sh and olddefconfig, which
silently drop unknown symbols and options whose dependencies are unmet. This
repeats that on Debian's linux-source-6.12 (the x86_64 board's kernel series)
and reports "requested, actual" for each line that did not stick. Both boards
build mainline 6.12; the Pi's base is arm64 `defconfig` (docs/rpi4-kernel.md).
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from .conftest import defconfig_values, expand_external

pytestmark = pytest.mark.slow

SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
TOP = "linux-source-6.12"
# Enough of the tree for the configuration targets: the build system, every
# Kconfig file, the architectures' Makefiles and defconfigs.
KCONFIG_MEMBERS = ("Makefile", "scripts/*", "*Kconfig*", "arch/*/Makefile*", "arch/*/configs/*")
BASES = {"x86_64": ("x86_64", "x86_64_defconfig"), "rpi4": ("arm64", "defconfig")}


def wanted_member(name: str) -> bool:
    rel = name.removeprefix(f"{TOP}/")
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in KCONFIG_MEMBERS)


@pytest.fixture(scope="session")
def kernel_kconfig_tree(ramboot_cache: Path) -> Path:
    """The Kconfig part of linux-source-6.12, unpacked once into the cache."""
    for tool in ("make", "gcc", "flex", "bison"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (needed to run the kernel's kconfig)")
    if not SOURCE_TARBALL.is_file():
        pytest.skip(f"{SOURCE_TARBALL} is missing (Debian package linux-source-6.12)")
    # scripts/install-deps unpacks the whole tree for `ramboot check`: reuse it.
    for tree in (ramboot_cache / "linux-source-6.12", ramboot_cache / "linux-kconfig-6.12"):
        if (tree / "Makefile").is_file():
            return tree
    partial = ramboot_cache / "linux-kconfig-6.12.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(SOURCE_TARBALL) as archive:
        members = [m for m in archive if m.isfile() and wanted_member(m.name)]
        for member in members:
            member.name = member.name.removeprefix(f"{TOP}/")
        archive.extractall(partial, members=members, filter="data")
    shutil.rmtree(tree, ignore_errors=True)
    partial.rename(tree)
    return tree


def config_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_"):
            symbol, _, value = line.partition("=")
            values[symbol] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            values[line.split()[1]] = "n"
    return values


def lost_lines(tree: Path, arch: str, base: str, fragments: list[Path], out: Path) -> list[str]:
    """Apply fragments as Buildroot does; the lines whose value did not stick."""
    make = ["make", "-s", "-C", str(tree), f"ARCH={arch}", f"O={out}"]
    steps = [
        [*make, base],
        [
            str(tree / "scripts/kconfig/merge_config.sh"),
            "-m",
            "-O",
            str(out),
            str(out / ".config"),
            *map(str, fragments),
        ],
        [*make, "olddefconfig"],
    ]
    for step in steps:
        result = subprocess.run(
            step, capture_output=True, text=True, check=False, timeout=600, cwd=tree
        )
        assert result.returncode == 0, result.stdout + result.stderr
    actual = config_values(out / ".config")
    return [
        f"{fragment.name}: {symbol} requested {requested}, actual {actual.get(symbol, 'absent')}"
        for fragment in fragments
        for symbol, requested in config_values(fragment).items()
        if actual.get(symbol, "absent") != requested
    ]


@pytest.mark.parametrize("board", sorted(BASES))
def test_fragments_stick(kernel_kconfig_tree: Path, tmp_path: Path, board: str) -> None:
    arch, base = BASES[board]
    value = defconfig_values(board)["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"]
    fragments = [expand_external(f) for f in value.strip('"').split()]
    lost = lost_lines(kernel_kconfig_tree, arch, base, fragments, tmp_path / "linux")
    assert not lost, "\n".join(lost)


def test_a_dropped_line_is_reported(kernel_kconfig_tree: Path, tmp_path: Path) -> None:
    """Control: an option kconfig does not know is reported, not ignored."""
    fragment = tmp_path / "bogus.fragment"
    fragment.write_text("CONFIG_TMPFS=y\nCONFIG_RAMBOOT_NO_SUCH_OPTION=y\n")
    lost = lost_lines(
        kernel_kconfig_tree, "x86_64", "x86_64_defconfig", [fragment], tmp_path / "linux"
    )
    assert lost == ["bogus.fragment: CONFIG_RAMBOOT_NO_SUCH_OPTION requested y, actual absent"]


# Buildroot installs every module into the initramfs: arm64 defconfig alone
# has about 1,160; the Pi's fragment turns off the SoC families and device
# classes a netbooted Pi never has (227 remain with Linux 6.12.95).
PI_MODULE_CEILING = 260


def test_the_pi_kernel_carries_few_modules(kernel_kconfig_tree: Path, tmp_path: Path) -> None:
    arch, base = BASES["rpi4"]
    value = defconfig_values("rpi4")["BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"]
    fragments = [expand_external(f) for f in value.strip('"').split()]
    out = tmp_path / "linux"
    lost_lines(kernel_kconfig_tree, arch, base, fragments, out)
    modules = sorted(s for s, v in config_values(out / ".config").items() if v == "m")
    assert len(modules) <= PI_MODULE_CEILING, f"{len(modules)} modules: {' '.join(modules)}"
