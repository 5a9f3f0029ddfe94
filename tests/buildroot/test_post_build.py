"""board/common/post-build.sh byte-compiles the agent the overlay installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPT = REPO / "board/common/post-build.sh"
AGENT = REPO / "overlay/usr/lib/ramboot"


def run_post_build(tmp_path: Path, python_format: str | None) -> subprocess.CompletedProcess[str]:
    """Run the script as Buildroot does, on a fake target holding the overlay's agent."""
    target = tmp_path / "target"
    shutil.copytree(
        AGENT, target / "usr/lib/ramboot", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (target / "usr/bin").mkdir()
    shutil.copy(REPO / "overlay/usr/bin/ramboot-agent", target / "usr/bin")
    # An empty standard library: python-stdlib.py finds nothing to remove.
    (target / f"usr/lib/python{sys.version_info.major}.{sys.version_info.minor}").mkdir()
    host_bin = tmp_path / "host/bin"
    host_bin.mkdir(parents=True)
    # The host python stands in for Buildroot's host-python3.
    (host_bin / "python3").symlink_to(sys.executable)
    config = tmp_path / ".config"
    config.write_text(f"BR2_PACKAGE_PYTHON3_{python_format}=y\n" if python_format else "")
    env = {
        **os.environ,
        "TARGET_DIR": str(target),
        "HOST_DIR": str(tmp_path / "host"),
        "BR2_CONFIG": str(config),
    }
    return subprocess.run(
        [str(SCRIPT), str(target)], env=env, capture_output=True, text=True, check=False
    )


def agent_files(tmp_path: Path, pattern: str) -> list[str]:
    root = tmp_path / "target/usr/lib/ramboot"
    return sorted(str(p.relative_to(root)) for p in root.rglob(pattern))


def test_pyc_only_leaves_sourceless_modules(tmp_path: Path) -> None:
    sources = sorted(str(p.relative_to(AGENT)) for p in AGENT.rglob("*.py"))
    result = run_post_build(tmp_path, "PYC_ONLY")
    assert result.returncode == 0, result.stderr
    assert agent_files(tmp_path, "*.py") == []
    assert agent_files(tmp_path, "*.pyc") == sorted(s + "c" for s in sources)
    assert agent_files(tmp_path, "__pycache__") == []
    # The sourceless package imports, and records its image path, not the build's.
    probe = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import ramboot_agent.cli as c;"
            " print(c.__spec__.loader.get_code('ramboot_agent.cli').co_filename)",
            str(tmp_path / "target/usr/lib/ramboot"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "/usr/lib/ramboot/ramboot_agent/cli.py"


def test_py_pyc_keeps_sources_and_adds_cache(tmp_path: Path) -> None:
    result = run_post_build(tmp_path, "PY_PYC")
    assert result.returncode == 0, result.stderr
    py = agent_files(tmp_path, "*.py")
    pyc = agent_files(tmp_path, "*.pyc")
    assert py
    assert len(pyc) == len(py)
    assert all("/__pycache__/" in p for p in pyc)


def test_py_only_compiles_nothing(tmp_path: Path) -> None:
    result = run_post_build(tmp_path, "PY_ONLY")
    assert result.returncode == 0, result.stderr
    assert agent_files(tmp_path, "*.pyc") == []
    assert agent_files(tmp_path, "*.py")


def test_missing_agent_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    config = tmp_path / ".config"
    config.write_text("BR2_PACKAGE_PYTHON3_PYC_ONLY=y\n")
    env = {
        **os.environ,
        "TARGET_DIR": str(tmp_path / "target"),
        "HOST_DIR": str(tmp_path / "host"),
        "BR2_CONFIG": str(config),
    }
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "usr/lib/ramboot missing" in result.stderr


@pytest.mark.parametrize("variable", ["TARGET_DIR", "HOST_DIR", "BR2_CONFIG"])
def test_unset_environment_is_an_error(tmp_path: Path, variable: str) -> None:
    """set -u: run outside Buildroot, the script stops instead of guessing."""
    shutil.copytree(AGENT, tmp_path / "target/usr/lib/ramboot")
    config = tmp_path / ".config"
    config.write_text("BR2_PACKAGE_PYTHON3_PYC_ONLY=y\n")
    env = {
        **os.environ,
        "TARGET_DIR": str(tmp_path / "target"),
        "HOST_DIR": str(tmp_path / "host"),
        "BR2_CONFIG": str(config),
    }
    del env[variable]
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert variable in result.stderr


def test_an_nbd_client_without_netlink_fails_the_build(tmp_path: Path) -> None:
    """It would stay behind to serve /dev/nbdN, and die with the RAM system."""
    for name, binary, status in (
            ("ioctl", b"\x7fELF...libglib-2.0.so.0\0libc.so.6\0", 1),
            ("netlink", b"\x7fELF...libnl-genl-3.so.200\0libc.so.6\0", 0)):
        sbin = tmp_path / name / "target/usr/sbin"
        sbin.mkdir(parents=True)
        (sbin / "nbd-client").write_bytes(binary)
        result = run_post_build(tmp_path / name, "PYC_ONLY")
        assert result.returncode == status, result.stderr
        assert ("without netlink" in result.stderr) == (status == 1)


def test_init_scripts_the_ram_system_must_not_run_are_removed(tmp_path: Path) -> None:
    """dropbear's S50dropbear goes (the agent starts dropbear for rescue only); the rest stays."""
    init_d = tmp_path / "target/etc/init.d"
    init_d.mkdir(parents=True)
    kept = ["rcS", "rcK", "S02sysctl", "S10coldplug", "S11modules", "S40network"]
    for name in [*kept, "S50dropbear"]:
        (init_d / name).write_text("#!/bin/sh\n")
    result = run_post_build(tmp_path, "PYC_ONLY")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in init_d.iterdir()) == sorted(kept)


@pytest.mark.parametrize("script", ["S10mdev", "S10udev"])
def test_a_second_coldplug_fails_the_build(tmp_path: Path, script: str) -> None:
    """mdev's or eudev's coldplug next to S10coldplug: two module loaders, one must go."""
    init_d = tmp_path / "target/etc/init.d"
    init_d.mkdir(parents=True)
    for name in ("S10coldplug", script):
        (init_d / name).write_text("#!/bin/sh\n")
    result = run_post_build(tmp_path, "PYC_ONLY")
    assert result.returncode == 1
    assert f"/etc/init.d/{script} and S10coldplug both load modules" in result.stderr
    assert "BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_DEVTMPFS" in result.stderr
