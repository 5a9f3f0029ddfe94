"""The new root's init is checked from inside the root, as the new system will see it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ramboot_agent.roots.helpers import helper_argv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")

BUSYBOX = Path("/bin/busybox")  # busybox-static: an ELF program with no interpreter


def inspect(root: Path, init: str, *dirs: str) -> dict[str, object]:
    argv = helper_argv("inspect", str(root), init, *(a for d in dirs for a in ("--mkdir", d)))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(done.stdout)
    assert done.returncode == (2 if report["problems"] else 0), done.stderr
    return dict(report)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if not BUSYBOX.is_file():
        pytest.skip("busybox-static is not installed")
    (tmp_path / "bin").mkdir()
    (tmp_path / "sbin").mkdir()
    shutil.copy2(BUSYBOX, tmp_path / "bin/busybox")
    (tmp_path / "bin/sh").symlink_to("busybox")
    return tmp_path


def test_an_absolute_symlink_resolves_inside_the_new_root(root: Path) -> None:
    (root / "sbin/init").symlink_to("/bin/busybox")
    report = inspect(root, "/sbin/init", "dev", "run", "var/tmp")
    assert report["problems"] == []
    assert (report["resolved"], report["kind"]) == ("/bin/busybox", "elf")
    assert set(report["modes"]) == {"/dev", "/run", "/var/tmp"}  # type: ignore[arg-type]
    assert (root / "var/tmp").is_dir()


def test_a_script_and_its_interpreter(root: Path) -> None:
    (root / "sbin/init").write_text("#!/bin/sh\nexec /bin/busybox init\n")
    (root / "sbin/init").chmod(0o755)
    assert inspect(root, "/sbin/init")["kind"] == "script"
    (root / "bin/sh").unlink()
    [problem] = inspect(root, "/sbin/init")["problems"]  # type: ignore[misc]
    assert problem == "the interpreter of /sbin/init, /bin/sh does not exist in the new root"


def test_a_dynamic_program_without_its_loader(root: Path) -> None:
    shutil.copy2("/bin/true", root / "sbin/init")  # dynamically linked on Debian
    [problem] = inspect(root, "/sbin/init")["problems"]  # type: ignore[misc]
    assert problem.startswith("init /sbin/init needs the program interpreter /lib")
    assert problem.endswith("which the new root does not have")


@pytest.mark.parametrize(("setup", "expected"), [
    (lambda r: None, "init /sbin/init does not exist in the new root"),
    (lambda r: (r / "sbin/init").symlink_to("/lib/systemd/systemd"),
     "init /sbin/init (-> /lib/systemd/systemd) does not exist in the new root"),
    (lambda r: (r / "sbin/init").write_bytes(b"\x7fELF"),
     "init /sbin/init is not executable"),
    (lambda r: (r / "sbin/init").mkdir(), "init /sbin/init is not a regular file"),
])
def test_an_init_that_cannot_start(root: Path, setup: object, expected: str) -> None:
    assert callable(setup)
    setup(root)
    assert inspect(root, "/sbin/init")["problems"] == [expected]


def test_a_program_for_another_machine(root: Path) -> None:
    program = bytearray(BUSYBOX.read_bytes()[:4096])
    program[18:20] = (183 if os.uname().machine != "aarch64" else 62).to_bytes(2, "little")
    (root / "sbin/init").write_bytes(bytes(program))
    (root / "sbin/init").chmod(0o755)
    [problem] = inspect(root, "/sbin/init")["problems"]  # type: ignore[misc]
    assert "is a program for" in problem and os.uname().machine in problem


def test_a_read_only_mount_point_that_is_missing(root: Path) -> None:
    (root / "sbin/init").symlink_to("/bin/busybox")
    (root / "run").write_text("a file where a directory must be")
    [problem] = inspect(root, "/sbin/init", "run")["problems"]  # type: ignore[misc]
    assert problem.startswith("cannot create /run in the new root")


def test_a_root_owned_by_nobody_is_refused(root: Path) -> None:
    """What an NFSv4 export looks like when its server sends user@domain owners."""
    (root / "sbin/init").symlink_to("/bin/busybox")
    os.chown(root, 65534, 65534)
    [problem] = inspect(root, "/sbin/init")["problems"]  # type: ignore[misc]
    assert problem.startswith("the new root's / is owned by uid 65534 (nobody)")
