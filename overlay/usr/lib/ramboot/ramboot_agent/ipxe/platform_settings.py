"""The settings iPXE derives from the machine, read from Linux's sysfs/procfs.

iPXE's net0 settings (net/netdev_settings.c) describe its network device:
`ifname` (net0), `bustype`/`busloc`/`busid` (bus, location, vendor and
device), `chip` (its driver), `linktype`, `hwaddr` (its `mtu` is DHCP
option 26, empty unless the lease or the script sets it). The agent fills
them from the Linux interface that got the lease; on a Raspberry Pi 4 the
Ethernet (bcmgenet) is a device-tree device: bustype DT, busid 0b:00:00:00:00.
`memsize` is iPXE's memory size in MiB; `version` names the agent.
Everything is read below `root`, so tests can use a fixture tree.
"""

from __future__ import annotations

import re
from pathlib import Path

from ramboot_agent import __version__

# iPXE's BUS_TYPE_* (include/ipxe/device.h): what ${busid}'s first byte holds.
BUS_TYPES = {"pci": (1, "PCI"), "usb": (10, "USB"), "xen": (8, "XEN"), "vmbus": (9, "HV"),
             "dt": (11, "DT")}
ARPHRD_ETHER = "1"


def agent_version() -> str:
    """${version}: iPXE gives its own version; the agent gives its name and version."""
    return f"ramboot-agent-{__version__}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _hex_id(path: Path) -> int:
    text = _read(path) or "0"
    try:
        return int(text, 16)
    except ValueError:
        return 0


def _bus(device: Path) -> tuple[str, Path] | None:
    """The bus iPXE would name for `device` (walking up through virtio and the
    like to the PCI or USB device that holds it), with that device's sysfs path."""
    current = device.resolve()
    for _ in range(8):
        subsystem = current / "subsystem"
        kind = subsystem.resolve().name if subsystem.exists() else ""
        if kind == "pci":
            return "pci", current
        if kind == "usb" and (current / "idVendor").exists():
            return "usb", current
        if kind in ("xen", "vmbus"):
            return kind, current
        if kind in ("platform", "amba") and (current / "of_node").exists():
            return "dt", current
        if current.parent == current:
            break
        current = current.parent
    return None


def _pci_location(name: str) -> int:
    # iPXE's PCI_BUSDEVFN(segment, bus, slot, function)
    match = re.fullmatch(r"([0-9a-f]{4,}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", name)
    if not match:
        return 0
    segment, bus, slot, function = (int(part, 16) for part in match.groups())
    return (segment << 16) | (bus << 8) | (slot << 3) | function


def netdev_settings(interface: str, *, root: Path = Path("/")) -> dict[str, str]:
    """net0's iPXE settings for Linux interface `interface`, as text by setting name."""
    base = root / "sys/class/net" / interface
    values = {"ifname": "net0"}
    address = _read(base / "address")
    if address:
        values["hwaddr"] = address.lower()
    if _read(base / "type") == ARPHRD_ETHER:
        values["linktype"] = "Ethernet"
    device = base / "device"
    if not device.exists():
        return values
    driver = device / "driver"
    if driver.exists():
        values["chip"] = driver.resolve().name
    found = _bus(device)
    if found is None:
        return values
    kind, path = found
    code, label = BUS_TYPES[kind]
    vendor = device_id = location = 0
    if kind == "pci":
        vendor, device_id = _hex_id(path / "vendor"), _hex_id(path / "device")
        location = _pci_location(path.name)
    elif kind == "usb":
        vendor, device_id = _hex_id(path / "idVendor"), _hex_id(path / "idProduct")
        busnum, devnum = _read(path / "busnum") or "0", _read(path / "devnum") or "0"
        if busnum.isdigit() and devnum.isdigit():
            location = (int(busnum) << 8) | int(devnum)
    values["bustype"] = label
    values["busloc"] = hex(location)
    values["busid"] = ":".join(f"{b:02x}" for b in bytes([code]) +
                               vendor.to_bytes(2, "big") + device_id.to_bytes(2, "big"))
    return values


def memsize_mib(*, root: Path = Path("/")) -> int | None:
    """${memsize}: the machine's RAM in MiB (System RAM in /proc/iomem, as root;
    otherwise the kernel's MemTotal)."""
    total = 0
    for line in (_read(root / "proc/iomem") or "").splitlines():
        if line.startswith(" ") or not line.endswith(": System RAM"):
            continue  # only top-level entries: nested ones are inside System RAM
        match = re.match(r"([0-9a-f]+)-([0-9a-f]+) :", line)
        start, end = (int(match.group(1), 16), int(match.group(2), 16)) if match else (0, 0)
        if end > start:  # not root: the kernel shows every range as 0-0
            total += end - start + 1
    if total:
        return total >> 20
    match = re.search(r"^MemTotal:\s+(\d+) kB", _read(root / "proc/meminfo") or "", re.M)
    return int(match.group(1)) >> 10 if match else None


def platform_settings(interface: str | None, *, root: Path = Path("/")) -> dict[str, str]:
    """Every machine-derived setting, by `[block/]name`, for build_settings()."""
    values = {"version": agent_version()}
    memsize = memsize_mib(root=root)
    if memsize is not None:
        values["memsize"] = str(memsize)
    if interface:
        values.update({f"net0/{key}": value
                       for key, value in netdev_settings(interface, root=root).items()})
    return values
