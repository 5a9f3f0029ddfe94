"""The post-image scripts leave the documented netboot tree in BINARIES_DIR."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ramboot.inventory import RPI_MODEL_DTB

from .conftest import REPO, defconfig_values


def run_post_image(board: str, binaries: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BINARIES_DIR": str(binaries)}
    return subprocess.run(
        [str(REPO / "board" / board / "post-image.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def assert_sha256sums(netboot: Path) -> None:
    listed = {}
    for line in (netboot / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert set(listed) == files_under(netboot) - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256((netboot / name).read_bytes()).hexdigest() == digest


def rpi4_dtbs() -> list[str]:
    """The DTB files rpi4_pxe_defconfig has the kernel build (mainline's names)."""
    value = defconfig_values("rpi4")["BR2_LINUX_KERNEL_INTREE_DTS_NAME"]
    return [f"{Path(name).name}.dtb" for name in value.strip('"').split()]


def test_rpi4_builds_the_mainline_dtbs_of_the_supported_models() -> None:
    assert rpi4_dtbs() == ["bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4-io.dtb"]


def test_every_model_the_tools_accept_has_its_dtb_built() -> None:
    # config.txt's device_tree= names RPI_MODEL_DTB's file: the build must make it.
    assert set(RPI_MODEL_DTB.values()) <= set(rpi4_dtbs())


def fake_rpi4_images(binaries: Path) -> None:
    """What Buildroot's linux and rpi-firmware packages install for rpi4_pxe_defconfig
    (no overlays: the firmware's are built for the Raspberry Pi kernel's DT)."""
    firmware = binaries / "rpi-firmware"
    firmware.mkdir(parents=True)
    for name in ("start4.elf", "fixup4.dat"):
        (firmware / name).write_bytes(name.encode())
    shutil.copy(REPO / "board/rpi4/config.txt", firmware / "config.txt")
    shutil.copy(REPO / "board/rpi4/cmdline.txt", firmware / "cmdline.txt")
    for name in (*rpi4_dtbs(), "Image", "rootfs.cpio.zst", "rootfs.cpio"):
        (binaries / name).write_bytes(name.encode())


def test_rpi4_netboot_tree(tmp_path: Path) -> None:
    fake_rpi4_images(tmp_path)
    (tmp_path / "netboot").mkdir()
    (tmp_path / "netboot/stale-from-last-build").write_text("x")
    result = run_post_image("rpi4", tmp_path)
    assert result.returncode == 0, result.stderr

    netboot = tmp_path / "netboot"
    assert files_under(netboot) == {
        "start4.elf",
        "fixup4.dat",
        "config.txt",
        "cmdline.txt",
        "bcm2711-rpi-4-b.dtb",
        "bcm2711-rpi-400.dtb",
        "bcm2711-rpi-cm4-io.dtb",
        "Image",
        "rootfs.cpio.zst",
        "SHA256SUMS",
    }
    assert (netboot / "Image").read_bytes() == b"Image"
    assert_sha256sums(netboot)

    config = (netboot / "config.txt").read_text().splitlines()
    for line in (
        "arm_64bit=1",
        "kernel=Image",
        "initramfs rootfs.cpio.zst followkernel",
        "enable_uart=1",
        "start_file=start4.elf",
        "fixup_file=fixup4.dat",
    ):
        assert line in config

    cmdline = (netboot / "cmdline.txt").read_text()
    assert cmdline.endswith("\n")
    assert cmdline.count("\n") == 1, "the firmware reads cmdline.txt as one line"
    args = cmdline.split()
    # The serial port last: it becomes /dev/console, where the rescue shell runs.
    assert args[:2] == ["console=tty1", "console=ttyS1,115200"]
    assert not [a for a in args if a.startswith(("root=", "init="))]


def test_rpi4_overlays_are_copied_when_the_firmware_installs_them(tmp_path: Path) -> None:
    fake_rpi4_images(tmp_path)
    (tmp_path / "rpi-firmware/overlays").mkdir()
    (tmp_path / "rpi-firmware/overlays/overlay_map.dtb").write_bytes(b"map")
    result = run_post_image("rpi4", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "netboot/overlays/overlay_map.dtb").read_bytes() == b"map"
    assert_sha256sums(tmp_path / "netboot")


def test_rpi4_missing_input_fails_before_writing(tmp_path: Path) -> None:
    fake_rpi4_images(tmp_path)
    (tmp_path / "rpi-firmware/start4.elf").unlink()
    result = run_post_image("rpi4", tmp_path)
    assert result.returncode != 0
    assert "rpi-firmware/start4.elf missing" in result.stderr
    assert not (tmp_path / "netboot").exists()


def test_x86_64_netboot_tree(tmp_path: Path) -> None:
    (tmp_path / "ipxe").mkdir()
    for name in (
        "ipxe/undionly.kpxe",
        "ipxe/ipxe.efi",
        "ipxe/snponly.efi",
        "bzImage",
        "rootfs.cpio.zst",
    ):
        (tmp_path / name).write_bytes(name.encode())
    result = run_post_image("x86_64", tmp_path)
    assert result.returncode == 0, result.stderr
    netboot = tmp_path / "netboot"
    assert files_under(netboot) == {
        "tftp/undionly.kpxe",
        "tftp/ipxe.efi",
        "tftp/snponly.efi",
        "http/bzImage",
        "http/rootfs.cpio.zst",
        "SHA256SUMS",
    }
    assert (netboot / "tftp/ipxe.efi").read_bytes() == b"ipxe/ipxe.efi"
    assert_sha256sums(netboot)


def test_x86_64_missing_kernel_fails(tmp_path: Path) -> None:
    (tmp_path / "rootfs.cpio.zst").write_bytes(b"x")
    result = run_post_image("x86_64", tmp_path)
    assert result.returncode != 0
    assert "bzImage missing" in result.stderr
    assert not (tmp_path / "netboot").exists()
