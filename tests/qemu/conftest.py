"""Fixtures of the QEMU boot tests: image sets and a QEMU-ready Pi 4 DTB."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.lib.images import ImageError, ImageSet, image_set

# Peripherals of the BCM2711 that QEMU's raspi4b does not model and that
# fault when the kernel probes them (the HDMI block: its clock, interrupt
# controller, DDC I2C). QEMU itself removes PCIe, RNG, thermal and GENET.
RASPI4B_MISSING_UNIT_PREFIX = "7ef0"
# The Pi 4's PL011 (uart0, ttyAMA0, QEMU's first -serial) carries Bluetooth:
# as serdev, it gets no /dev/ttyAMA0. Disabling that node lets QEMU's first
# serial port be the console here. (A board's console is the mini UART on
# GPIO 14/15, ttyS1 under mainline's aliases: QEMU's second -serial. With the
# console there, Debian's 6.12 stalls in QEMU (RCU stall, soft lockup) after
# "Disabling unused clocks", so the test keeps the PL011.)
PI_BLUETOOTH = "/soc/serial@7e201000/bluetooth"
# What the Pi firmware writes into the DT before starting Linux; QEMU
# does not, so the test plays the firmware's part.
PI_SERIAL_NUMBER = "10000000c0ffee42"


def image_set_or_fail(target: str) -> ImageSet:
    try:
        return image_set(target)
    except ImageError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def x86_64_images() -> ImageSet:
    return image_set_or_fail("x86_64")


@pytest.fixture(scope="session")
def rpi4_images() -> ImageSet:
    return image_set_or_fail("rpi4")


def _fdt(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def raspi4b_dtb(source: Path, dest: Path, *, serial_number: str) -> Path:
    """`source` made bootable by QEMU's raspi4b, with the firmware's serial-number."""
    missing = [tool for tool in ("fdtget", "fdtput") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing (device-tree-compiler; scripts/install-deps)")
    shutil.copyfile(source, dest)
    for node in _fdt("fdtget", "-l", str(dest), "/soc").split():
        if node.partition("@")[2].startswith(RASPI4B_MISSING_UNIT_PREFIX):
            _fdt("fdtput", "-t", "s", str(dest), f"/soc/{node}", "status", "disabled")
    parent, _, child = PI_BLUETOOTH.rpartition("/")
    if child in _fdt("fdtget", "-l", str(dest), parent).split():
        _fdt("fdtput", "-t", "s", str(dest), PI_BLUETOOTH, "status", "disabled")
    _fdt("fdtput", "-t", "s", str(dest), "/", "serial-number", serial_number)
    return dest


@pytest.fixture
def rpi4_dtb(rpi4_images: ImageSet, tmp_path: Path) -> Path:
    assert rpi4_images.dtb is not None
    return raspi4b_dtb(rpi4_images.dtb, tmp_path / "qemu-raspi4b.dtb",
                       serial_number=PI_SERIAL_NUMBER)
