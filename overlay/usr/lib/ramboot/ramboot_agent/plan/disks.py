"""The machine's disks from sysfs, disk selectors, and the disks a plan must not touch.

Everything is read below `root` so tests can point it at a fixture tree.
The RAM system has no udev: `/dev/disk/by-id` names are read when the links
exist and otherwise derived from sysfs the way udev names them
(`nvme-<model>_<serial>`, `ata-<model>_<serial>`, `virtio-<serial>`,
`wwn-<wwid>`, `mmc-<name>_<serial>`, `usb-<vendor>_<model>_<serial>`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ramboot_agent.errors import AgentError
from ramboot_agent.plan.model import DiskSelector

SECTOR = 512
# Block devices that are not disks a plan provisions (still listed by `hardware`
# when real): loop, RAM disks, device mapper and md arrays, NBD, optical drives.
VIRTUAL_PREFIXES = ("loop", "ram", "zram", "dm-", "md", "nbd", "sr", "fd")
# The Pi firmware's chosen/bootloader/boot-mode values that name a disk bus.
PI_BOOT_MODES = {1: "mmc", 6: "nvme"}


class DiskError(AgentError):
    """No disk matches, or the disk must not be written."""


@dataclass(frozen=True)
class Partition:
    name: str  # sda1, nvme0n1p1
    path: str  # /dev/sda1
    number: int
    start: int  # bytes from the start of the disk
    size: int  # bytes
    devno: str  # "8:1"
    partlabel: str = ""  # the GPT partition name, when the kernel knows it


@dataclass(frozen=True)
class Disk:
    name: str  # sda, nvme0n1, vda, mmcblk0
    path: str  # /dev/sda
    size: int  # bytes
    devno: str  # "8:0"
    model: str = ""
    vendor: str = ""
    serial: str = ""
    wwid: str = ""
    bus: str = ""  # mmc, nvme, sata, scsi, usb, virtio; "" when unknown
    rotational: bool = False
    removable: bool = False
    read_only: bool = False
    virtual: bool = False
    logical_block: int = SECTOR
    physical_block: int = SECTOR
    discard: bool = False
    partitions: tuple[Partition, ...] = ()
    holders: tuple[str, ...] = ()  # dm/md devices built on the disk or its partitions
    by_id: tuple[str, ...] = ()

    def describe(self) -> str:
        what = " ".join(part for part in (self.vendor, self.model) if part) or "disk"
        serial = f", serial {self.serial}" if self.serial else ""
        return f"{self.path} ({human_size(self.size)}, {what}{serial}" \
               f"{', ' + self.bus if self.bus else ''})"

    def partition(self, number: int) -> Partition | None:
        return next((part for part in self.partitions if part.number == number), None)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace").replace("\0", "").strip()
    except OSError:
        return ""


def _int(path: Path, default: int = 0) -> int:
    text = _read(path)
    return int(text) if text.isdigit() else default


def _vpd_serial(device: Path) -> str:
    """SCSI/SATA: the unit serial number page (VPD 0x80) the kernel exposes."""
    try:
        page = (device / "vpd_pg80").read_bytes()
    except OSError:
        return ""
    return page[4:4 + page[3]].decode("ascii", errors="replace").strip() if len(page) > 4 else ""


def _uevent(path: Path) -> dict[str, str]:
    values = {}
    for line in _read(path / "uevent").splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def _bus(device_link: str, name: str) -> str:
    """The bus from where the disk sits in /sys/devices."""
    parts = device_link.split("/")
    if name.startswith("mmcblk") or "/mmc_host/" in device_link:
        return "mmc"
    if name.startswith("nvme") or "nvme" in parts:
        return "nvme"
    if name.startswith("vd") or any(part.startswith("virtio") for part in parts):
        return "virtio"
    if any(part.startswith("usb") for part in parts):
        return "usb"
    if any(re.fullmatch(r"ata\d+", part) for part in parts):
        return "sata"
    if any(part.startswith("host") or part.startswith("target") for part in parts):
        return "scsi"
    return ""


def _udev_text(value: str) -> str:
    """udev's whitespace replacement in by-id names."""
    return re.sub(r"\s+", "_", value.strip())


def _derived_by_id(bus: str, model: str, serial: str, wwid: str, vendor: str) -> list[str]:
    names = []
    model_, serial_ = _udev_text(model), _udev_text(serial)
    if bus == "nvme" and model_ and serial_:
        names.append(f"nvme-{model_}_{serial_}")
    elif bus == "sata" and model_ and serial_:
        names.append(f"ata-{model_}_{serial_}")
    elif bus == "virtio" and serial_:
        names.append(f"virtio-{serial_}")
    elif bus == "usb" and serial_:
        names.append(f"usb-{_udev_text(vendor)}_{model_}_{serial_}-0:0")
    elif bus == "mmc" and serial_:
        names.append(f"mmc-{model_}_{serial_}")
    elif bus == "scsi" and wwid:
        names.append(f"scsi-{_udev_text(wwid)}")
    if wwid.startswith(("naa.", "eui.", "wwn-")):
        names.append("wwn-0x" + wwid.split(".", 1)[1] if "." in wwid else wwid)
    if bus == "nvme" and wwid.startswith("eui."):
        names.append(f"nvme-{wwid}")
    return names


def _by_id_links(root: Path) -> dict[str, list[str]]:
    """Device name -> its /dev/disk/by-id names, when udev made the links."""
    links: dict[str, list[str]] = {}
    directory = root / "dev/disk/by-id"
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return links
    for entry in entries:
        try:
            target = str(entry.readlink())
        except OSError:
            continue
        links.setdefault(Path(target).name, []).append(entry.name)
    return links


def _partitions(block: Path, disk_name: str) -> tuple[Partition, ...]:
    found = []
    for entry in sorted(block.iterdir()):
        if not entry.name.startswith(disk_name) or not (entry / "partition").exists():
            continue
        uevent = _uevent(entry)
        found.append(Partition(
            name=entry.name, path=f"/dev/{entry.name}", number=_int(entry / "partition"),
            start=_int(entry / "start") * SECTOR, size=_int(entry / "size") * SECTOR,
            devno=_read(entry / "dev"), partlabel=uevent.get("PARTNAME", "")))
    return tuple(sorted(found, key=lambda part: part.number))


def read_disk(root: Path, name: str, links: dict[str, list[str]] | None = None) -> Disk | None:
    """The disk `name` (as in /sys/block), or None when there is none."""
    block = root / "sys/block" / name
    if not block.is_dir():
        return None
    device = block / "device"
    try:
        device_link = str(block.readlink())
    except OSError:
        device_link = ""
    bus = _bus(device_link, name)
    model = _read(device / "model") or _read(device / "name")
    vendor = _read(device / "vendor")
    if vendor.startswith("0x"):
        vendor = ""  # a virtio or PCI vendor number, not a name
    serial = _read(block / "serial") or _read(device / "serial") or _vpd_serial(device)
    wwid = _read(device / "wwid") or _read(block / "wwid")
    holders = [entry.name for entry in sorted((block / "holders").glob("*"))]
    partitions = _partitions(block, name)
    for part in partitions:
        holders += [entry.name for entry in sorted((block / part.name / "holders").glob("*"))]
    by_id = (links or {}).get(name) or _derived_by_id(bus, model, serial, wwid, vendor)
    return Disk(
        name=name, path=f"/dev/{name}", size=_int(block / "size") * SECTOR,
        devno=_read(block / "dev"), model=model, vendor=vendor, serial=serial, wwid=wwid,
        bus=bus, rotational=_read(block / "queue/rotational") == "1",
        removable=_read(block / "removable") == "1", read_only=_read(block / "ro") == "1",
        virtual=name.startswith(VIRTUAL_PREFIXES),
        logical_block=_int(block / "queue/logical_block_size", SECTOR),
        physical_block=_int(block / "queue/physical_block_size", SECTOR),
        discard=_int(block / "queue/discard_max_bytes") > 0,
        partitions=partitions, holders=tuple(holders), by_id=tuple(by_id))


def list_disks(root: Path = Path("/")) -> list[Disk]:
    """Every whole block device the kernel has (virtual ones flagged), by name."""
    links = _by_id_links(root)
    try:
        names = sorted(entry.name for entry in (root / "sys/block").iterdir())
    except OSError as error:
        raise DiskError(f"cannot list {root / 'sys/block'}: {error.strerror}") from None
    disks = [read_disk(root, name, links) for name in names]
    return [disk for disk in disks if disk is not None]


# --- what must not be written ----------------------------------------------------------------


@dataclass
class InUse:
    """Why disks are busy: device numbers and names of what is mounted, swap, the boot disk."""

    mounted: dict[str, str] = field(default_factory=dict)  # devno or name -> mount point
    swap: set[str] = field(default_factory=set)  # device names
    boot: dict[str, str] = field(default_factory=dict)  # disk or partition name -> why

    def reasons(self, disk: Disk) -> list[str]:
        """Why `disk` must not be written; empty when it may be."""
        found = []
        nodes = [(disk.name, disk.devno), *((p.name, p.devno) for p in disk.partitions)]
        for name, devno in nodes:
            point = self.mounted.get(devno) or self.mounted.get(name)
            if point:
                found.append(f"/dev/{name} is mounted on {point}")
            if name in self.swap:
                found.append(f"/dev/{name} is active swap")
            if name in self.boot:
                found.append(f"it is the disk the system booted from ({self.boot[name]})")
        booted = next((why for name, why in self.boot.items()
                       if name not in {n for n, _ in nodes} and whole_disk(name) == disk.name),
                      None)
        if booted:  # a partition the kernel does not show (yet): by its name
            found.append(f"it is the disk the system booted from ({booted})")
        if disk.holders:
            found.append(f"it is in use by {', '.join(sorted(set(disk.holders)))}")
        if disk.read_only:
            found.append("it is read-only")
        return found


def whole_disk(name: str) -> str:
    """The disk a partition name belongs to: sda2 -> sda, nvme0n1p2 -> nvme0n1."""
    match = re.fullmatch(r"(.*\d)p\d+|([a-z]+)\d+", name)
    if match is None:
        return name
    return match.group(1) or match.group(2)


def _unescape_mount(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def in_use(root: Path = Path("/"),
           lookup: Callable[[str, str], str | None] | None = None) -> InUse:
    """What is mounted, swapped on, and booted from, as the kernel reports it.

    `lookup(tag, value)` resolves `root=PARTUUID=…`-style references to a
    device name (blkid, on a live system); without it only `/dev/…` works.
    """
    state = InUse()
    for line in _read(root / "proc/self/mountinfo").splitlines():
        fields = line.split()
        if len(fields) < 10 or "-" not in fields:
            continue
        point = _unescape_mount(fields[4])
        state.mounted.setdefault(fields[2], point)
        source = fields[fields.index("-") + 2]
        if source.startswith("/dev/"):
            state.mounted.setdefault(Path(source).name, point)
    for line in _read(root / "proc/swaps").splitlines()[1:]:
        if line.split():
            state.swap.add(Path(_unescape_mount(line.split()[0])).name)
    _boot_devices(root, state, lookup)
    return state


def _boot_devices(root: Path, state: InUse,
                  lookup: Callable[[str, str], str | None] | None) -> None:
    for word in _read(root / "proc/cmdline").split():
        key, _, value = word.partition("=")
        if key != "root" or not value:
            continue
        tag, _, rest = value.partition("=")
        if value.startswith("/dev/"):
            state.boot[Path(os.path.normpath(value)).name] = f"root={value}"
        elif tag in ("PARTUUID", "UUID", "LABEL", "PARTLABEL") and rest and lookup:
            name = lookup(tag, rest)
            if name:
                state.boot[name] = f"root={value}"
    # systemd-boot and the systemd stub record the ESP they started from.
    for path in (root / "sys/firmware/efi/efivars").glob("LoaderDevicePartUUID-*"):
        try:
            raw = path.read_bytes()[4:]
        except OSError:
            continue
        partuuid = raw.decode("utf-16-le", errors="ignore").strip("\0").strip().lower()
        name = lookup("PARTUUID", partuuid) if lookup and partuuid else None
        if name:
            state.boot[name] = f"the EFI loader's partition {partuuid}"
    # The Pi firmware says where it loaded the kernel from (2 is the network).
    for base in ("proc/device-tree", "sys/firmware/devicetree/base"):
        raw_mode = root / base / "chosen/bootloader/boot-mode"
        try:
            mode = int.from_bytes(raw_mode.read_bytes()[:4], "big")
        except OSError:
            continue
        bus = PI_BOOT_MODES.get(mode)
        if bus is not None:
            state.boot[f"bus:{bus}"] = f"the Pi firmware's boot-mode {mode}"
        break


# --- selection -------------------------------------------------------------------------------


def _matches(disk: Disk, selector: DiskSelector) -> list[str]:
    """Why `disk` does not meet the selector's criteria (empty: it does)."""
    misses = []
    if selector.min_size is not None and disk.size < selector.min_size:
        misses.append(f"smaller than {human_size(selector.min_size)}")
    if selector.max_size is not None and disk.size > selector.max_size:
        misses.append(f"larger than {human_size(selector.max_size)}")
    if selector.model is not None and selector.model.lower() not in disk.model.lower():
        misses.append(f"model {disk.model!r} does not contain {selector.model!r}")
    if selector.serial is not None and selector.serial.lower() not in disk.serial.lower():
        misses.append(f"serial {disk.serial!r} does not contain {selector.serial!r}")
    if selector.bus is not None and disk.bus != selector.bus:
        misses.append(f"bus is {disk.bus or 'unknown'}, not {selector.bus}")
    if selector.removable is not None and disk.removable != selector.removable:
        misses.append("removable" if disk.removable else "not removable")
    if selector.rotational is not None and disk.rotational != selector.rotational:
        misses.append("rotational" if disk.rotational else "not rotational")
    return misses


def _named(selector: DiskSelector, disks: list[Disk], root: Path) -> Disk:
    if selector.by_id is not None:
        for disk in disks:
            if selector.by_id in disk.by_id:
                return disk
        known = ", ".join(name for disk in disks for name in disk.by_id) or "none"
        raise DiskError(f"no disk is /dev/disk/by-id/{selector.by_id} (known: {known})")
    assert selector.path is not None
    name = _device_name(root, selector.path)
    by_name = {disk.name: disk for disk in disks}
    if name in by_name:
        return by_name[name]
    if (root / "sys/class/block" / name / "partition").exists():
        raise DiskError(f"{selector.path} is a partition, not a whole disk")
    raise DiskError(f"{selector.path}: no such disk (disks: "
                    f"{', '.join(d.path for d in disks) or 'none'})")


def _device_name(root: Path, path: str) -> str:
    """The kernel name behind `path`, following symlinks inside `root`."""
    current = path
    for _ in range(16):
        link = root / current.lstrip("/")
        try:
            target = str(link.readlink())
        except OSError:
            break
        current = os.path.normpath(Path(current).parent / target)
    return Path(current).name


def select_disk(selector: DiskSelector, *, root: Path = Path("/"),
                disks: list[Disk] | None = None, busy: InUse | None = None) -> Disk:
    """The one disk `selector` names, and that may be written.

    A named disk (path, by_id) must meet the other criteria and not be in
    use; without a name, the smallest (or largest) real disk that meets
    them and is not in use. DiskError says why when there is none.
    """
    busy = in_use(root) if busy is None else busy
    if disks is None and selector.path is not None:  # no need to read every disk
        named = read_disk(root, _device_name(root, selector.path), _by_id_links(root))
        disks = [named] if named is not None else None
    disks = list_disks(root) if disks is None else disks
    if selector.path is not None or selector.by_id is not None:
        disk = _named(selector, disks, root)
        misses = _matches(disk, selector)
        if misses:
            raise DiskError(f"{disk.describe()} does not match the selector: "
                            + "; ".join(misses))
        refused = refusals(disk, busy)
        if refused:
            raise DiskError(f"refusing {disk.describe()}: " + "; ".join(refused))
        return disk
    candidates, rejected = [], []
    for disk in disks:
        if disk.virtual:
            continue
        reasons = _matches(disk, selector) or refusals(disk, busy)
        if reasons:
            rejected.append(f"{disk.path}: {'; '.join(reasons)}")
        else:
            candidates.append(disk)
    if not candidates:
        detail = "; ".join(rejected) if rejected else "the machine has no disks"
        raise DiskError(f"no disk is {selector.describe()} ({detail})")
    key: Callable[[Disk], tuple[int, str]] = (
        (lambda d: (-d.size, d.name)) if selector.prefer == "largest"
        else (lambda d: (d.size, d.name)))
    return sorted(candidates, key=key)[0]


def refusals(disk: Disk, busy: InUse) -> list[str]:
    reasons = busy.reasons(disk)
    bus_reason = busy.boot.get(f"bus:{disk.bus}") if disk.bus else None
    if bus_reason and not disk.virtual:
        reasons.append(f"it is on the bus the system booted from ({bus_reason})")
    return reasons
