"""iPXE's machine settings from fixture sysfs/procfs trees (ramboot_agent/ipxe/platform_settings).

Each tree is laid out as the kernel lays it out on that machine: the
/sys/class/net link into /sys/devices, the device's `subsystem`, `driver`
and `of_node` links, its ids. The x86 virtio values are the ones real iPXE
reports on the same QEMU machine (test_differential.py,
test_machine_settings_as_ipxe_sees_the_same_machine); the PCI ones follow
iPXE's PCI_BUSDEVFN, the USB ones its USB_BUSDEV (with Linux's bus numbers).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from ramboot_agent.ipxe.platform_settings import memsize_mib, netdev_settings, platform_settings


def _tree(root: Path, files: Mapping[str, str], links: Mapping[str, str]) -> Path:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for path, points_to in links.items():
        link = root / path
        link.parent.mkdir(parents=True, exist_ok=True)
        (link.parent / points_to).resolve().mkdir(parents=True, exist_ok=True)
        link.symlink_to(points_to)
    return root


def _net(root: Path, ifname: str, device_path: str, *, mac: str) -> None:
    """/sys/class/net/IF -> DEVICE/net/IF, with its address, mtu, type and device link."""
    net = f"sys/{device_path}/net/{ifname}"
    _tree(root, {f"{net}/address": f"{mac}\n", f"{net}/mtu": "1500\n", f"{net}/type": "1\n"},
          {f"sys/class/net/{ifname}": f"../../{device_path}/net/{ifname}",
           f"{net}/device": "../.."})


PI4_GENET = "devices/platform/scb/fd580000.ethernet"


def pi4_genet(root: Path) -> Path:
    # Raspberry Pi 4: the Ethernet is a device-tree platform device (bcmgenet).
    _tree(root, {"sys/firmware/devicetree/base/scb/ethernet@7d580000/compatible":
                 "brcm,bcm2711-genet-v5"}, {
        f"sys/{PI4_GENET}/subsystem": "../../../../bus/platform",
        f"sys/{PI4_GENET}/driver": "../../../../bus/platform/drivers/bcmgenet",
        f"sys/{PI4_GENET}/of_node": "../../../../firmware/devicetree/base/scb/ethernet@7d580000",
        "sys/devices/platform/scb/subsystem": "../../../bus/platform",
    })
    _net(root, "eth0", PI4_GENET, mac="DC:A6:32:01:02:03")
    return root


def x86_virtio(root: Path) -> Path:
    # QEMU virtio-net-pci at 00:02.0: the netdev hangs off virtio0, below the PCI function.
    pci = "devices/pci0000:00/0000:00:02.0"
    _tree(root, {f"sys/{pci}/vendor": "0x1af4\n", f"sys/{pci}/device": "0x1000\n"}, {
        f"sys/{pci}/subsystem": "../../../bus/pci",
        f"sys/{pci}/driver": "../../../bus/pci/drivers/virtio-pci",
        f"sys/{pci}/virtio0/subsystem": "../../../../bus/virtio",
        f"sys/{pci}/virtio0/driver": "../../../../bus/virtio/drivers/virtio_net",
    })
    _net(root, "ens2", f"{pci}/virtio0", mac="52:54:00:a1:b2:c3")
    return root


def x86_e1000(root: Path, address: str = "0000:00:03.0") -> Path:
    pci = f"devices/pci0000:00/{address}"
    _tree(root, {f"sys/{pci}/vendor": "0x8086\n", f"sys/{pci}/device": "0x100e\n"}, {
        f"sys/{pci}/subsystem": "../../../bus/pci",
        f"sys/{pci}/driver": "../../../bus/pci/drivers/e1000",
    })
    _net(root, "ens3", pci, mac="52:54:00:12:34:56")
    return root


PI4_USB = ("devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb2/2-1")


def pi4_usb_nic(root: Path) -> Path:
    # An ASIX AX88179 USB 3 adapter on a Pi 4's VL805: the netdev's device is
    # the USB interface (2-1:1.0); the ids are on the USB device above it.
    _tree(root, {f"sys/{PI4_USB}/idVendor": "0b95\n", f"sys/{PI4_USB}/idProduct": "1790\n",
                 f"sys/{PI4_USB}/busnum": "2\n", f"sys/{PI4_USB}/devnum": "3\n"}, {
        f"sys/{PI4_USB}/subsystem": "../../../../../../../../bus/usb",
        f"sys/{PI4_USB}/2-1:1.0/subsystem": "../../../../../../../../../bus/usb",
        f"sys/{PI4_USB}/2-1:1.0/driver": "../../../../../../../../../bus/usb/drivers/ax88179_178a",
    })
    _net(root, "eth1", f"{PI4_USB}/2-1:1.0", mac="00:0e:c6:aa:bb:cc")
    return root


@pytest.mark.parametrize(("build", "interface", "expected"), [
    (pi4_genet, "eth0", {"ifname": "net0", "hwaddr": "dc:a6:32:01:02:03", "linktype": "Ethernet",
                         "chip": "bcmgenet", "bustype": "DT", "busloc": "0x0",
                         "busid": "0b:00:00:00:00"}),
    (x86_virtio, "ens2", {"ifname": "net0", "hwaddr": "52:54:00:a1:b2:c3", "linktype": "Ethernet",
                          "chip": "virtio_net", "bustype": "PCI", "busloc": "0x10",
                          "busid": "01:1a:f4:10:00"}),
    (x86_e1000, "ens3", {"ifname": "net0", "hwaddr": "52:54:00:12:34:56", "linktype": "Ethernet",
                         "chip": "e1000", "bustype": "PCI", "busloc": "0x18",
                         "busid": "01:80:86:10:0e"}),
    (pi4_usb_nic, "eth1", {"ifname": "net0", "hwaddr": "00:0e:c6:aa:bb:cc",
                           "linktype": "Ethernet", "chip": "ax88179_178a", "bustype": "USB",
                           "busloc": "0x203", "busid": "0a:0b:95:17:90"}),
], ids=["pi4-genet", "x86-virtio", "x86-e1000", "pi4-usb-nic"])
def test_netdev_settings(build: object, interface: str, expected: dict[str, str],
                         tmp_path: Path) -> None:
    root = build(tmp_path)  # type: ignore[operator]
    assert netdev_settings(interface, root=root) == expected


def test_pci_location_has_segment_bus_slot_and_function(tmp_path: Path) -> None:
    # iPXE's PCI_BUSDEVFN(segment, bus, slot, function).
    root = x86_e1000(tmp_path, address="0001:02:1f.7")
    assert netdev_settings("ens3", root=root)["busloc"] == hex((1 << 16) | (2 << 8) | (0x1F << 3)
                                                               | 7)


def test_an_interface_without_a_device_has_only_its_own_settings(tmp_path: Path) -> None:
    _tree(tmp_path, {"sys/devices/virtual/net/br0/address": "02:00:00:00:00:01\n",
                     "sys/devices/virtual/net/br0/type": "1\n"},
          {"sys/class/net/br0": "../../devices/virtual/net/br0"})
    assert netdev_settings("br0", root=tmp_path) == {
        "ifname": "net0", "hwaddr": "02:00:00:00:00:01", "linktype": "Ethernet"}
    assert netdev_settings("missing0", root=tmp_path) == {"ifname": "net0"}


IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-1ffdffff : System RAM
  01000000-01ffffff : Kernel code
1ffe0000-1fffffff : Reserved
"""


def test_memsize_is_system_ram_in_mib(tmp_path: Path) -> None:
    # QEMU -m 512 (the e820 map iPXE sums too: it reports 511 on that machine).
    _tree(tmp_path, {"proc/iomem": IOMEM, "proc/meminfo": "MemTotal:  480000 kB\n"}, {})
    assert memsize_mib(root=tmp_path) == 511


def test_memsize_falls_back_to_memtotal_when_iomem_is_hidden(tmp_path: Path) -> None:
    # Without CAP_SYS_ADMIN the kernel shows every address as zero.
    hidden = "".join(f"00000000-00000000 : {line.split(' : ')[1]}\n"
                     for line in IOMEM.splitlines())
    _tree(tmp_path, {"proc/iomem": hidden, "proc/meminfo": "MemTotal:  480000 kB\n"}, {})
    assert memsize_mib(root=tmp_path) == 468


def test_platform_settings_put_the_netdev_in_net0(tmp_path: Path) -> None:
    root = pi4_genet(tmp_path)
    _tree(root, {"proc/meminfo": "MemTotal:  3884000 kB\n"}, {})
    values = platform_settings("eth0", root=root)
    assert values["net0/chip"] == "bcmgenet" and values["net0/bustype"] == "DT"
    assert values["memsize"] == "3792" and values["version"].startswith("ramboot-agent-")
    assert "net0/mtu" not in values  # iPXE's mtu is DHCP option 26
    assert platform_settings(None, root=root).keys() == {"version", "memsize"}
