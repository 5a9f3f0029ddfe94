"""`localboot`: boot the system installed on a disk, by kexec or by a reboot.

kexec finds the kernel the installed system's boot loader would start (BLS
entries, else GRUB's default entry, else the Pi's config.txt/cmdline.txt; see
plan/bootentries.py), loads it from the disk with its initrds and command
line, and jumps to it; on the Pi the kernel gets the device tree the firmware
handed to this one (kexec-tools' default, /sys/firmware/fdt). `reboot`
leaves the choice to the firmware: the machine's boot order must put the
disk before the network (docs/plans.md).

`localboot_handoff` is the same without a plan, for the boot flow's
"boot the next device" path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import DiskSelector, Fields, Handoff
from ramboot_agent.plan.refs import disk_selector

log = logging.getLogger("ramboot.plan")

METHODS = ("kexec", "reboot")
MAX_APPEND = 4096
MAX_ENTRIES = 64
CONFIG_LIMIT = 1 << 20
# Where boot loaders keep their configuration, relative to a partition's root.
BLS_DIRS = ("loader/entries", "boot/loader/entries")
GRUB_FILES = ("boot/grub/grub.cfg", "grub/grub.cfg", "boot/grub2/grub.cfg", "grub2/grub.cfg")
MOUNTABLE = ("vfat", "ext2", "ext3", "ext4", "xfs", "btrfs")


@dataclass(frozen=True)
class LocalbootSpec:
    target: DiskSelector
    method: str
    append: str = ""


class Localboot(ActionKind[LocalbootSpec]):
    required = ("target", "method")
    optional = ("append",)
    terminal = True
    default_timeout = 300.0

    def parse(self, fields: Fields) -> LocalbootSpec | None:
        nodes = fields.nodes
        target = disk_selector(nodes["target"], fields.disks) if "target" in nodes else None
        method = nodes["method"].choice(METHODS) if "method" in nodes else None
        append = nodes["append"].string(max_length=MAX_APPEND, allow_empty=True) \
            if "append" in nodes else ""
        if target is None or method is None or append is None:
            return None
        return LocalbootSpec(target, method, append)

    def describe(self, spec: LocalbootSpec, ctx: Context) -> str:
        from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

        disk = resolve_disk(ctx, spec.target, writing=False)
        if spec.method == "reboot":
            return (f"would reboot, for the firmware to boot {disk.describe()} "
                    "(its boot order must try the disk before the network)")
        found = find_entry(ctx, disk.path, dry_run=True)
        return (f"would kexec {found.describe()} from {disk.describe()}"
                + (f", appending {spec.append!r}" if spec.append else ""))

    def run(self, spec: LocalbootSpec, ctx: Context) -> Result:
        return localboot_handoff(spec.target, ctx, method=spec.method, append=spec.append)


@dataclass(frozen=True)
class Found:
    """A boot entry and the partition its files are on."""

    device: str  # the partition holding the kernel and initrds
    fstype: str
    entry: object  # bootentries.BootEntry
    kind: str  # "bls", "grub", "pi"

    def describe(self) -> str:
        from ramboot_agent.plan.bootentries import BootEntry  # noqa: PLC0415

        entry = self.entry
        assert isinstance(entry, BootEntry)
        initrds = " + ".join(entry.initrds) or "no initrd"
        return (f"{entry.title!r} ({self.kind}, {entry.source}): {self.device}:{entry.kernel}, "
                f"{initrds}, command line {entry.cmdline!r}")


def localboot_handoff(selector: DiskSelector, ctx: Context, *, method: str = "kexec",
                      append: str = "") -> Handoff:
    """Prepare to boot the disk `selector` names; the caller flushes events, then performs.

    With "kexec" the kernel is loaded before this returns (a load failure is
    an ActionError, and the RAM system carries on); with "reboot" nothing is
    loaded and the firmware picks the boot device.
    """
    from ramboot_agent.plan.target import resolve_disk  # noqa: PLC0415

    disk = resolve_disk(ctx, selector, writing=False)
    if method == "reboot":
        if not disk.partitions:
            raise ActionError(f"{disk.describe()} has no partitions: nothing to reboot into")
        from ramboot_agent import rescue  # noqa: PLC0415

        ctx.say(f"rebooting into {disk.describe()}")
        return Handoff("reboot", lambda: rescue.power("reboot"))
    found = find_entry(ctx, disk.path)
    return _load(found, ctx, append)


def first_disk_handoff(ctx: Context) -> Handoff:
    """Boot what a machine's own disks hold, as firmware tries its boot devices.

    For a script's "boot the next device" (`exit`, `sanboot --drive 0x80`):
    fixed disks first, then removable ones, each in the kernel's order; the
    first whose boot loader configuration names a kernel is loaded.
    """
    from ramboot_agent.plan.disks import list_disks  # noqa: PLC0415
    from ramboot_agent.plan.target import resolve_disk, sysroot  # noqa: PLC0415

    tried = []
    for disk in sorted(list_disks(sysroot(ctx)), key=lambda d: (d.removable, d.name)):
        try:
            resolve_disk(ctx, DiskSelector(path=f"/dev/{disk.name}"), writing=False)
            return _load(find_entry(ctx, f"/dev/{disk.name}"), ctx, "")
        except ActionError as error:
            tried.append(f"{disk.name}: {error}")
    raise ActionError("no local disk holds a system to boot"
                      + (f" ({'; '.join(tried)})" if tried else " (this machine has no disks)"))


def _partitions_in_order(ctx: Context, disk_path: str) -> list[tuple[str, str]]:
    """(device, fstype) of the disk's mountable partitions: ESP and XBOOTLDR first."""
    from ramboot_agent.plan.disks import read_disk  # noqa: PLC0415
    from ramboot_agent.plan.mounts import filesystem_type  # noqa: PLC0415
    from ramboot_agent.plan.target import sysroot  # noqa: PLC0415

    disk = read_disk(sysroot(ctx), Path(disk_path).name)
    if disk is None or not disk.partitions:
        raise ActionError(f"{disk_path} has no partitions: nothing to boot")
    found = []
    for part in disk.partitions:
        fstype = filesystem_type(ctx, part.path)
        if fstype in MOUNTABLE:
            found.append((part.path, fstype))
    found.sort(key=lambda item: item[1] != "vfat")  # stable: ESP / Pi boot partition first
    if not found:
        raise ActionError(f"{disk_path}: no partition holds a filesystem a boot loader "
                          f"reads ({', '.join(MOUNTABLE)})")
    return found


def find_entry(ctx: Context, disk_path: str, *, dry_run: bool = False) -> Found:
    """Look through the disk's partitions for BLS entries, then GRUB, then the Pi's files."""
    from ramboot_agent.plan import bootentries  # noqa: PLC0415
    from ramboot_agent.plan.mounts import mounted, read_inside  # noqa: PLC0415

    partitions = _partitions_in_order(ctx, disk_path)
    grub: list[tuple[str, str, str, str]] = []  # device, fstype, source, text
    pi: list[tuple[str, str, str, dict[str, str], set[str]]] = []
    uuids: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for device, fstype in partitions:
        uuids[_fs_uuid(ctx, device)] = (device, fstype)
        with mounted(ctx, device, read_only=True, fstype=fstype, replay=not dry_run) as root:
            for directory in BLS_DIRS:
                entries = _read_entries(root / directory, directory)
                if entries:
                    conf = read_inside(root, "loader/loader.conf")
                    try:
                        entry = bootentries.choose_bls(
                            entries, conf.decode(errors="replace") if conf else None)
                    except bootentries.EntryError as error:
                        problems.append(f"{device}: {error}")
                        continue
                    return Found(device, fstype, _rooted(root, entry, directory), "bls")
            for name in (*GRUB_FILES, *_efi_grub(root)):
                data = read_inside(root, name, limit=CONFIG_LIMIT)
                if data and b"menuentry" in data:
                    grub.append((device, fstype, name, data.decode(errors="replace")))
            config = read_inside(root, "config.txt", limit=CONFIG_LIMIT)
            if config is not None:
                present = {p.name for p in root.iterdir()}
                texts = {name: (read_inside(root, name, limit=CONFIG_LIMIT) or b"").decode(
                    errors="replace") for name in present if name.endswith(".txt")}
                pi.append((device, fstype, config.decode(errors="replace"), texts, present))
    for device, fstype, source, text in grub:
        try:
            entry = bootentries.choose_grub(text, f"{device}:{source}")
        except bootentries.EntryError as error:
            problems.append(str(error))
            continue
        holder = uuids.get(entry.fs_uuid or "", (device, fstype))
        return Found(holder[0], holder[1], entry, "grub")
    if pi:
        device, fstype, config_text, texts, present = pi[0]
        entry = bootentries.choose_pi(config_text, texts, _board_model(ctx), present)
        return Found(device, fstype, entry, "pi")
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise ActionError(f"{disk_path}: no boot entry found: no /loader/entries/*.conf, "
                      f"no grub.cfg with a menuentry, no config.txt{detail}")


def _read_entries(directory: Path, relative: str) -> dict[str, str]:
    try:
        names = sorted(p.name for p in directory.iterdir() if p.name.endswith(".conf"))
    except OSError:
        return {}
    entries = {}
    for name in names[:MAX_ENTRIES]:
        path = directory / name
        if path.is_symlink() or not path.is_file():
            continue
        entries[f"{relative}/{name}"] = path.read_bytes()[:CONFIG_LIMIT].decode(
            errors="replace")
    return entries


def _rooted(root: Path, entry: object, directory: str) -> object:
    """Entries under /boot/loader on a root filesystem name files relative to /boot."""
    from dataclasses import replace  # noqa: PLC0415

    from ramboot_agent.plan.bootentries import BootEntry  # noqa: PLC0415

    assert isinstance(entry, BootEntry)
    if directory.startswith("boot/") and not (root / entry.kernel.lstrip("/")).exists() \
            and (root / "boot" / entry.kernel.lstrip("/")).exists():
        return replace(entry, kernel="/boot/" + entry.kernel.lstrip("/"),
                       initrds=tuple("/boot/" + p.lstrip("/") for p in entry.initrds))
    return entry


def _efi_grub(root: Path) -> list[str]:
    efi = root / "EFI"
    try:
        return sorted(f"EFI/{d.name}/grub.cfg" for d in efi.iterdir() if d.is_dir())
    except OSError:
        return []


def _fs_uuid(ctx: Context, device: str) -> str:
    from ramboot_agent.plan.probe import probe  # noqa: PLC0415

    return probe(device).uuid.lower()


def _board_model(ctx: Context) -> str:
    from ramboot_agent.plan.target import sysroot  # noqa: PLC0415

    for base in ("proc/device-tree", "sys/firmware/devicetree/base"):
        try:
            return (sysroot(ctx) / base / "model").read_bytes().decode(
                errors="replace").strip("\0 \n")
        except OSError:
            continue
    return "Raspberry Pi 4"


def _inside(root: Path, relative: str, what: str) -> Path:
    """`root/relative` if it is a file that really is inside `root`."""
    candidate = (root / relative.lstrip("/")).resolve()
    if root.resolve() not in candidate.parents or not candidate.is_file():
        raise ActionError(f"the boot entry's {what} {relative!r} is not a file on its "
                          "partition")
    return candidate


def _load(found: Found, ctx: Context, append: str) -> Handoff:
    from ramboot_agent.errors import BootError  # noqa: PLC0415
    from ramboot_agent.kexec import BootSpec, Kexec  # noqa: PLC0415
    from ramboot_agent.plan.bootentries import BootEntry  # noqa: PLC0415
    from ramboot_agent.plan.mounts import mounted  # noqa: PLC0415

    entry = found.entry
    assert isinstance(entry, BootEntry)
    cmdline = " ".join(part for part in (entry.cmdline, append) if part)
    work = ctx.runtime_dir / "plan" / "localboot"
    work.mkdir(parents=True, exist_ok=True)
    ctx.say(f"localboot: {found.describe()}")
    kexec = Kexec(dry_run=ctx.dry_run, reporter=ctx.reporter, work_dir=work)
    with mounted(ctx, found.device, read_only=True, fstype=found.fstype) as root:
        spec = BootSpec(kernel=_inside(root, entry.kernel, "kernel"),
                        initrds=[_inside(root, p, "initrd") for p in entry.initrds],
                        cmdline=cmdline)
        try:
            kexec.load(spec)  # reads the files now: the partition may go after this
        except BootError as error:
            raise ActionError(str(error)) from None
    ctx.reporter.emit("localboot", device=found.device, kind=found.kind, source=entry.source,
                      title=entry.title, kernel=entry.kernel, initrds=list(entry.initrds),
                      cmdline=cmdline)
    return Handoff("kexec", kexec.execute)
