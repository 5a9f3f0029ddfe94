"""kernel-modules.py and prune-libraries.py on fake target directories."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import BOARDS, REPO, defconfig_values, expand_external
from .test_busybox_applets import ram_system_calls

MODULES = REPO / "board/common/kernel-modules.py"
LIBRARIES = REPO / "board/common/prune-libraries.py"
VERSION = "6.12.91"


def fake_kernel(root: Path) -> Path:
    """lib/modules/VERSION with four modules: b needs c, a stands alone, d too."""
    version = root / "lib/modules" / VERSION
    for name in ("a", "b-x", "c", "d"):
        path = version / f"kernel/drivers/{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"module")
    (version / "modules.dep").write_text(
        "kernel/drivers/a.ko:\nkernel/drivers/b-x.ko: kernel/drivers/c.ko\n"
        "kernel/drivers/c.ko:\nkernel/drivers/d.ko:\n")
    (version / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
    return version


def depmod_stub(tmp_path: Path) -> Path:
    stub = tmp_path / "depmod"
    stub.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'depmod.args'}\n")
    stub.chmod(0o755)
    return stub


def run_modules(tmp_path: Path, listing: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "modules.txt"
    path.write_text(listing)
    return subprocess.run([sys.executable, str(MODULES), "--depmod", str(depmod_stub(tmp_path)),
                           str(tmp_path / "target"), str(path)],
                          capture_output=True, text=True, check=False)


def remaining(version: Path) -> list[str]:
    return sorted(p.name for p in version.rglob("*.ko"))


def test_listed_modules_and_their_dependencies_stay_and_depmod_runs(tmp_path: Path) -> None:
    version = fake_kernel(tmp_path / "target")
    done = run_modules(tmp_path, "# comment\nb_x  # underscores match dashes\next4\n")
    assert done.returncode == 0, done.stderr
    assert remaining(version) == ["b-x.ko", "c.ko"]
    assert (tmp_path / "depmod.args").read_text().split() == [
        "-a", "-b", str(tmp_path / "target"), VERSION]


def test_an_empty_list_removes_every_module(tmp_path: Path) -> None:
    version = fake_kernel(tmp_path / "target")
    assert run_modules(tmp_path, "# none\n").returncode == 0
    assert remaining(version) == []
    assert not (version / "kernel").exists()


@pytest.mark.parametrize(("listing", "message"), [
    ("a\nnope\n", "modules.txt:2: nope is neither a module of 6.12.91 nor built into it"),
    ("a b\n", "modules.txt:1: not a module name: 'a b'"),
])
def test_a_bad_list_names_its_line_and_removes_nothing(
        tmp_path: Path, listing: str, message: str) -> None:
    version = fake_kernel(tmp_path / "target")
    done = run_modules(tmp_path, listing)
    assert done.returncode == 1
    assert message in done.stderr
    assert len(remaining(version)) == 4


def test_each_defconfig_names_a_modules_list_that_exists() -> None:
    for board in BOARDS:
        value = defconfig_values(board)["BR2_PACKAGE_RAMBOOT_AGENT_KERNEL_MODULES"]
        assert expand_external(value) == REPO / f"board/{board}/modules.txt"
        assert expand_external(value).is_file()


def host_elf(name: str) -> Path:
    """A shared library of this host, found by its soname."""
    for directory in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                      "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/lib"):
        path = Path(directory) / name
        if path.exists():
            return path.resolve()
    pytest.skip(f"no {name} on this host")


def test_unlinked_libraries_go_linked_and_glibc_loaded_ones_stay(tmp_path: Path) -> None:
    root = tmp_path / "target"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib").mkdir()
    (root / "lib").mkdir()
    gzip_binary = shutil.which("gzip")
    assert gzip_binary
    shutil.copy(gzip_binary, root / "usr/bin/gzip")  # needs libc alone
    libc = host_elf("libc.so.6")
    shutil.copy(libc, root / "lib/libc.so.6")
    zlib = host_elf("libz.so.1")
    shutil.copy(zlib, root / "usr/lib/libz.so.1.2.13")
    (root / "usr/lib/libz.so.1").symlink_to("libz.so.1.2.13")
    (root / "usr/lib/libnss_files.so.2").write_bytes(libc.read_bytes())  # dlopen()ed by libc
    # A relative target: the library symlinks still resolve inside it.
    done = subprocess.run([sys.executable, str(LIBRARIES), "target"], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (root / "usr/lib").iterdir()) == ["libnss_files.so.2"]
    assert (root / "lib/libc.so.6").is_file()
    assert "removing /usr/lib/libz.so.1.2.13" in done.stderr
    assert "removing /usr/lib/libz.so.1\n" in done.stderr


def test_a_library_a_python_extension_links_stays(tmp_path: Path) -> None:
    root = tmp_path / "target"
    dynload = root / "usr/lib/python3.14/lib-dynload"
    dynload.mkdir(parents=True)
    extension = next(Path(p) for p in sys.path if p.endswith("lib-dynload"))
    zlib_module = next(extension.glob("zlib.*so"), None)
    if zlib_module is None:
        pytest.skip("this Python has zlib built in")
    shutil.copy(zlib_module, dynload / zlib_module.name)
    shutil.copy(host_elf("libz.so.1"), root / "usr/lib/libz.so.1")
    done = subprocess.run([sys.executable, str(LIBRARIES), "--dry-run", str(root)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "libz" not in done.stderr


def test_elf_parsing_reads_needed_and_soname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(LIBRARIES.parent)  # its `import elf`, as when run as a script
    spec = importlib.util.spec_from_file_location("prune_libraries", LIBRARIES)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["prune_libraries"] = module  # for its dataclasses
    spec.loader.exec_module(module)
    zlib = module.read_elf(host_elf("libz.so.1"))
    assert zlib.soname == "libz.so.1"
    assert "libc.so.6" in zlib.needed
    assert module.read_elf(REPO / "README.md") is None


def test_post_build_slim_takes_the_list_from_the_buildroot_config(tmp_path: Path) -> None:
    """As Buildroot runs it: the list's $(BR2_EXTERNAL_RAMBOOT_PATH) expanded."""
    root = tmp_path / "target"
    version = fake_kernel(root)
    shutil.copytree(REPO / "overlay/usr/lib/ramboot", root / "usr/lib/ramboot")
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(REPO / "overlay/usr/bin/ramboot-agent", root / "usr/bin")
    (root / f"usr/lib/python{sys.version_info.major}.{sys.version_info.minor}").mkdir()
    (tmp_path / "host/bin").mkdir(parents=True)
    (tmp_path / "host/bin/python3").symlink_to(sys.executable)
    (tmp_path / "host/sbin").mkdir()
    shutil.copy(depmod_stub(tmp_path), tmp_path / "host/sbin/depmod")
    config = tmp_path / ".config"
    config.write_text("BR2_PACKAGE_RAMBOOT_AGENT_KERNEL_MODULES="
                      '"$(BR2_EXTERNAL_RAMBOOT_PATH)/board/x86_64/modules.txt"\n')
    env = {**os.environ, "TARGET_DIR": str(root), "HOST_DIR": str(tmp_path / "host"),
           "BR2_CONFIG": str(config), "BR2_EXTERNAL_RAMBOOT_PATH": str(REPO)}
    done = subprocess.run([str(REPO / "board/common/post-build-slim.sh")], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert remaining(version) == []
    assert f"kernel-modules: kept 0 of 4 modules ({REPO}/board/x86_64/modules.txt)" \
        in done.stderr


def test_no_unused_program_is_one_the_ram_system_runs() -> None:
    listed = [line for line in (REPO / "board/common/unused-programs.txt").read_text()
              .splitlines() if line and not line.startswith("#")]
    assert listed
    assert len(listed) == len(set(listed)), "a path listed twice"
    run = {Path(call.program).name: call for call in ram_system_calls()}
    for line in listed:
        name = Path(line).name
        assert name not in run, f"{line} is run by {run[name].path}:{run[name].line}"


def agent_target(tmp_path: Path) -> Path:
    """A target with the agent and an empty standard library, and a host python3."""
    root = tmp_path / "target"
    shutil.copytree(REPO / "overlay/usr/lib/ramboot", root / "usr/lib/ramboot")
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(REPO / "overlay/usr/bin/ramboot-agent", root / "usr/bin")
    (root / f"usr/lib/python{sys.version_info.major}.{sys.version_info.minor}").mkdir()
    (tmp_path / "host/bin").mkdir(parents=True)
    (tmp_path / "host/bin/python3").symlink_to(sys.executable)
    (tmp_path / ".config").write_text("")
    return root


def run_slim(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TARGET_DIR": str(tmp_path / "target"),
           "HOST_DIR": str(tmp_path / "host"), "BR2_CONFIG": str(tmp_path / ".config"), **extra}
    return subprocess.run([str(REPO / "board/common/post-build-slim.sh")], env=env,
                          capture_output=True, text=True, check=False)


def test_post_build_slim_removes_the_unused_programs(tmp_path: Path) -> None:
    root = agent_target(tmp_path)
    (root / "usr/bin/gio").write_bytes(b"#!/bin/sh\n")
    (root / "usr/bin/keep-me").write_bytes(b"#!/bin/sh\n")
    done = run_slim(tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (root / "usr/bin/gio").exists()
    assert (root / "usr/bin/keep-me").exists()


def test_a_removed_program_busybox_also_has_becomes_its_applet(tmp_path: Path) -> None:
    root = agent_target(tmp_path)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(b"\x7fELF")
    (root / "bin/busybox").chmod(0o755)
    for name in ("hexdump", "lscpu"):  # util-linux's; busybox builds hexdump only
        (root / "usr/bin" / name).write_bytes(b"\x7fELF")
    links = tmp_path / "build/busybox-1.37.0/busybox.links"
    links.parent.mkdir(parents=True)
    links.write_text("/bin/ls\n/usr/bin/hexdump\n/usr/bin/dump\n")
    done = run_slim(tmp_path, BUILD_DIR=str(tmp_path / "build"))
    assert done.returncode == 0, done.stderr
    assert (root / "usr/bin/hexdump").readlink() == Path("/bin/busybox")
    assert not (root / "usr/bin/lscpu").exists() and not (root / "usr/bin/lscpu").is_symlink()
    assert not (root / "bin/ls").exists()  # only what the list removed is linked
