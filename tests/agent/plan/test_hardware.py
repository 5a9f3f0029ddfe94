"""The hardware report from fixture trees: a server (DMI, NVMe/SATA/USB disks, NICs) and a Pi."""

from __future__ import annotations

import os
from pathlib import Path

from ramboot_agent.plan.actions.hardware import collect
from tests.agent.plan import sysfs


def add_nic(root: Path, name: str, mac: str, *, driver: str, speed: str, carrier: str) -> None:
    device = root / "sys/devices/pci0000:00/0000:00:1f.6" / name
    device.mkdir(parents=True)
    (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
    (device / "driver").symlink_to(os.path.relpath(root / "sys/bus/pci/drivers" / driver, device))
    net = root / "sys/class/net" / name
    net.mkdir(parents=True)
    (net / "device").symlink_to(os.path.relpath(device, net))
    for key, value in (("address", mac), ("speed", speed), ("carrier", carrier), ("mtu", "1500"),
                       ("operstate", "up" if carrier == "1" else "down")):
        (net / key).write_text(value + "\n")


def test_a_server_is_reported_whole(tmp_path: Path) -> None:
    root = sysfs.server(tmp_path)
    (root / "proc/cpuinfo").write_text("".join(
        f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold "
        "6338 CPU @ 2.00GHz\n\n" for n in range(4)))
    (root / "proc/meminfo").write_text("MemTotal:       263842716 kB\nMemFree: 1 kB\n")
    dmi = root / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    for key, value in (("sys_vendor", "Dell Inc."), ("product_name", "PowerEdge R650"),
                       ("product_serial", "7XK2L53"), ("bios_version", "1.10.2")):
        (dmi / key).write_text(value + "\n")
    add_nic(root, "eno1", "B0:7B:25:01:02:03", driver="ice", speed="25000", carrier="1")
    add_nic(root, "eno2", "b0:7b:25:01:02:04", driver="ice", speed="-1", carrier="0")
    (root / "sys/class/net/lo").mkdir(parents=True)
    report = collect(root)
    assert report["cpu"]["count"] == 4
    assert report["cpu"]["model"] == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert report["memory"] == 263842716 * 1024
    assert [d["path"] for d in report["disks"]] == ["/dev/nvme0n1", "/dev/nvme1n1", "/dev/sda",
                                                    "/dev/sdb", "/dev/sdc"]  # no loop0
    sdb = report["disks"][3]
    assert (sdb["model"], sdb["serial"], sdb["rotational"], sdb["bus"], sdb["size"]) == (
        "ST8000NM000A-2KE101", "WKD0ABCD", True, "sata", 8 * 10**12)
    assert report["disks"][4]["removable"] is True
    assert report["nics"] == [
        {"name": "eno1", "mac": "b0:7b:25:01:02:03", "driver": "ice", "speed_mbps": 25000,
         "link": True, "mtu": 1500, "operstate": "up"},
        {"name": "eno2", "mac": "b0:7b:25:01:02:04", "driver": "ice", "speed_mbps": None,
         "link": False, "mtu": 1500, "operstate": "down"}]
    assert report["dmi"] == {"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R650",
                             "product_serial": "7XK2L53", "bios_version": "1.10.2"}
    assert "devicetree" not in report


def test_a_pi_reports_its_model_serial_and_revision(tmp_path: Path) -> None:
    root = sysfs.pi4(tmp_path)
    (root / "proc/device-tree/serial-number").write_bytes(b"10000000c0ffee42\0")
    (root / "proc/cpuinfo").write_text(
        "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\n"
        "Revision\t: d03114\nSerial\t\t: 10000000c0ffee42\nModel\t\t: Raspberry Pi 4 Model B "
        "Rev 1.4\n")
    report = collect(root)
    assert report["devicetree"] == {"model": "Raspberry Pi 4 Model B Rev 1.4",
                                    "serial": "10000000c0ffee42", "revision": "d03114"}
    assert report["cpu"]["model"] == "ARM Cortex-A72"
    assert report["dmi"] is None
    assert [d["bus"] for d in report["disks"]] == ["mmc", "usb"]
