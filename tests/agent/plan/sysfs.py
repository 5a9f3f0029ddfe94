"""Fixture machines: sysfs/procfs trees laid out as the kernel lays them out.

Each disk is a directory under sys/devices (the real path shape of its bus:
PCI NVMe, AHCI SATA, USB mass storage, virtio, SD/MMC) with sys/block/<name>
a relative symlink to it, as on a live system. The attribute files are the
ones the agent reads (size in 512-byte sectors, queue/rotational, removable,
ro, device/model, serial, wwid, partitions with partition/start/size/uevent).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1 << 30

BUS_PATHS = {
    "nvme": "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/{name}",
    "sata": "devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/{name}",
    "usb": "devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/"
           "block/{name}",
    "virtio": "devices/pci0000:00/0000:00:04.0/virtio1/block/{name}",
    "mmc": "devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/{name}",
    "loop": "devices/virtual/block/{name}",
}


@dataclass
class FakeDisk:
    name: str
    bus: str
    size: int
    devno: str
    model: str = ""
    serial: str = ""
    vendor: str = ""
    wwid: str = ""
    rotational: bool = False
    removable: bool = False
    # (number, start, size, GPT name)
    partitions: list[tuple[int, int, int, str]] = field(default_factory=list)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def add_disk(root: Path, disk: FakeDisk) -> None:
    device_dir = root / "sys" / BUS_PATHS[disk.bus].format(name=disk.name)
    device_dir.mkdir(parents=True, exist_ok=True)
    block = root / "sys/block"
    block.mkdir(parents=True, exist_ok=True)
    (block / disk.name).symlink_to(os.path.relpath(device_dir, block))
    _write(device_dir / "size", str(disk.size // 512))
    _write(device_dir / "dev", disk.devno)
    _write(device_dir / "ro", "0")
    _write(device_dir / "removable", "1" if disk.removable else "0")
    _write(device_dir / "queue/rotational", "1" if disk.rotational else "0")
    _write(device_dir / "queue/logical_block_size", "512")
    _write(device_dir / "queue/physical_block_size", "4096")
    _write(device_dir / "queue/discard_max_bytes", "0" if disk.rotational else "2147450880")
    (device_dir / "holders").mkdir(exist_ok=True)
    if disk.bus != "loop":
        device = device_dir / "device"
        device.mkdir(exist_ok=True)
        if disk.bus == "mmc":
            _write(device / "name", disk.model)
            _write(device / "serial", disk.serial)
        elif disk.bus == "virtio":
            _write(device_dir / "serial", disk.serial)
            _write(device / "vendor", "0x1af4")
        else:
            _write(device / "model", disk.model)
            _write(device / "vendor", disk.vendor)
            if disk.bus == "nvme":
                _write(device / "serial", disk.serial)
            else:  # SCSI and SATA: the unit serial number VPD page
                raw = disk.serial.encode()
                (device / "vpd_pg80").write_bytes(bytes([0, 0x80, 0, len(raw)]) + raw)
            if disk.wwid:
                _write(device / "wwid", disk.wwid)
    major, minor = disk.devno.split(":")
    for number, start, size, label in disk.partitions:
        sep = "p" if disk.name[-1].isdigit() else ""
        part = device_dir / f"{disk.name}{sep}{number}"
        _write(part / "partition", str(number))
        _write(part / "start", str(start // 512))
        _write(part / "size", str(size // 512))
        _write(part / "dev", f"{major}:{int(minor) + number}")
        _write(part / "uevent", f"MAJOR={major}\nMINOR={int(minor) + number}\n"
               f"DEVNAME={part.name}\nDEVTYPE=partition\nPARTN={number}\nPARTNAME={label}")
        (part / "holders").mkdir(exist_ok=True)
        class_block = root / "sys/class/block"
        class_block.mkdir(parents=True, exist_ok=True)
        (class_block / part.name).symlink_to(os.path.relpath(part, class_block))
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev" / part.name).touch()


def server(root: Path) -> Path:
    """A server: two NVMe drives, a SATA SSD, a spinning SATA disk, a USB stick, a loop."""
    disks = [
        FakeDisk("nvme0n1", "nvme", 960 * 10**9, "259:0", "SAMSUNG MZQL2960HCJR-00A07",
                 "S64FNE0R123456", wwid="eui.36344630528012340025384500000001",
                 partitions=[(1, 1 << 20, 512 << 20, "EFI"), (2, 513 << 20, 100 * GiB, "root")]),
        FakeDisk("nvme1n1", "nvme", 3840 * 10**9, "259:4", "SAMSUNG MZQL23T8HCLS-00A07",
                 "S64HNE0R654321"),
        FakeDisk("sda", "sata", 480 * 10**9, "8:0", "INTEL SSDSC2KB480G8", "PHYF123400ABC480BGN",
                 vendor="ATA", wwid="naa.55cd2e4150a1b2c3"),
        FakeDisk("sdb", "sata", 8 * 10**12, "8:16", "ST8000NM000A-2KE101", "WKD0ABCD",
                 vendor="ATA", rotational=True),
        FakeDisk("sdc", "usb", 32 * 10**9, "8:32", "Ultra Fit", "4C530001230101111234",
                 vendor="SanDisk", removable=True),
        FakeDisk("loop0", "loop", 1 * GiB, "7:0"),
    ]
    for disk in disks:
        add_disk(root, disk)
    _write(root / "proc/self/mountinfo",
           "22 1 0:21 / / rw,relatime - rootfs rootfs rw\n"
           "23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw")
    _write(root / "proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority")
    _write(root / "proc/cmdline", "console=ttyS0,115200 ramboot.url=http://boot/")
    return root


def pi4(root: Path) -> Path:
    """A Pi 4 with an SD card and a USB SSD, booted from the SD card (boot-mode 1)."""
    add_disk(root, FakeDisk("mmcblk0", "mmc", 32 * 10**9, "179:0", "SN32G", "0x9d3a1234",
                            partitions=[(1, 4 << 20, 512 << 20, ""),
                                        (2, 516 << 20, 20 * GiB, "")]))
    add_disk(root, FakeDisk("sda", "usb", 500 * 10**9, "8:0", "Portable SSD T7", "S5SXNS0R700001",
                            vendor="Samsung"))
    bootloader = root / "proc/device-tree/chosen/bootloader"
    bootloader.mkdir(parents=True)
    (bootloader / "boot-mode").write_bytes((1).to_bytes(4, "big"))
    (root / "proc/device-tree/model").write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    _write(root / "proc/self/mountinfo", "22 1 0:21 / / rw - rootfs rootfs rw")
    _write(root / "proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority")
    _write(root / "proc/cmdline", "console=serial0,115200")
    return root
