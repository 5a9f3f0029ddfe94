"""`hardware`: report the machine as one `hardware` event (what MAAS commissioning and
Foreman discovery collect): CPU, memory, every disk, every NIC, DMI or the Pi's board."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ramboot_agent.plan.context import Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields

DMI_KEYS = ("sys_vendor", "product_name", "product_version", "product_serial", "product_uuid",
            "product_sku", "product_family", "board_vendor", "board_name", "board_serial",
            "chassis_vendor", "chassis_type", "chassis_serial", "chassis_asset_tag",
            "bios_vendor", "bios_version", "bios_date")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace").replace("\0", " ").strip()
    except OSError:
        return ""


# (CPU implementer, CPU part) of /proc/cpuinfo -> the core's name.
ARM_CORES = {
    ("0x41", "0xd03"): "ARM Cortex-A53", ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0x41", "0xd08"): "ARM Cortex-A72", ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1", ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd49"): "ARM Neoverse-N2", ("0x41", "0xd4f"): "ARM Neoverse-V2",
}


def _field(text: str, key: str) -> str:
    match = re.search(rf"^{re.escape(key)}\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else ""


def cpu(root: Path) -> dict[str, Any]:
    text = _read(root / "proc/cpuinfo")
    processors = len(re.findall(r"^processor\s*:", text, re.M))
    model = _field(text, "model name")
    implementer, part = _field(text, "CPU implementer"), _field(text, "CPU part")
    if not model and implementer and part:  # arm64: the core from its part number
        model = ARM_CORES.get((implementer.lower(), part.lower()),
                              f"implementer {implementer} part {part}")
    model = model or _field(text, "cpu model") or _field(text, "Hardware")
    return {"model": model, "count": processors or os.cpu_count() or 0,
            "architecture": os.uname().machine}


def memory(root: Path) -> int:
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read(root / "proc/meminfo"), re.M)
    return int(match.group(1)) * 1024 if match else 0


def disks(root: Path) -> list[dict[str, Any]]:
    from ramboot_agent.plan.disks import list_disks  # noqa: PLC0415

    return [{
        "path": d.path, "size": d.size, "model": d.model, "vendor": d.vendor,
        "serial": d.serial, "wwid": d.wwid, "bus": d.bus, "rotational": d.rotational,
        "removable": d.removable, "read_only": d.read_only, "by_id": list(d.by_id),
        "logical_block": d.logical_block, "physical_block": d.physical_block,
        "partitions": len(d.partitions),
    } for d in list_disks(root) if not d.virtual]


def nics(root: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    base = root / "sys/class/net"
    try:
        names = sorted(entry.name for entry in base.iterdir())
    except OSError:
        return found
    for name in names:
        entry = base / name
        if name == "lo" or not (entry / "device").exists():
            continue  # virtual interfaces (bridges, veth, tun) are not hardware
        try:
            driver = (entry / "device/driver").readlink().name
        except OSError:
            driver = ""
        speed = _read(entry / "speed")
        found.append({
            "name": name, "mac": _read(entry / "address").lower(), "driver": driver,
            "speed_mbps": int(speed) if speed.isdigit() else None,
            "link": _read(entry / "carrier") == "1", "mtu": int(_read(entry / "mtu") or 0),
            "operstate": _read(entry / "operstate"),
        })
    return found


def board(root: Path) -> dict[str, Any]:
    """DMI on PCs and servers; model, serial and revision on a Raspberry Pi."""
    dmi = {key: _read(root / "sys/class/dmi/id" / key) for key in DMI_KEYS}
    result: dict[str, Any] = {"dmi": {k: v for k, v in dmi.items() if v} or None}
    for base in ("proc/device-tree", "sys/firmware/devicetree/base"):
        model = _read(root / base / "model")
        if model:
            revision = re.search(r"^Revision\s*:\s*(\S+)", _read(root / "proc/cpuinfo"), re.M)
            raw_revision = (root / base / "system/linux,revision")
            if not revision and raw_revision.exists():
                value = f"{int.from_bytes(raw_revision.read_bytes()[:4], 'big'):x}"
            else:
                value = revision.group(1) if revision else ""
            result["devicetree"] = {"model": model,
                                    "serial": _read(root / base / "serial-number"),
                                    "revision": value}
            break
    return result


def collect(root: Path = Path("/")) -> dict[str, Any]:
    return {"cpu": cpu(root), "memory": memory(root), "disks": disks(root), "nics": nics(root),
            **board(root)}


class Hardware(ActionKind[dict[str, Any]]):
    default_timeout = 60.0

    def parse(self, fields: Fields) -> dict[str, Any] | None:
        return {}

    def describe(self, spec: dict[str, Any], ctx: Context) -> str:
        return "would report this machine's CPU, memory, disks, NICs and board as a " \
               "hardware event"

    def run(self, spec: dict[str, Any], ctx: Context) -> Result:
        from ramboot_agent.plan.target import sysroot  # noqa: PLC0415

        report = collect(sysroot(ctx))
        ctx.reporter.emit("hardware", **report)
        ctx.say(f"hardware: {report['cpu']['count']} x {report['cpu']['model'] or 'CPU'}, "
                f"{report['memory'] >> 20} MiB, {len(report['disks'])} disk(s), "
                f"{len(report['nics'])} NIC(s)")
        return {"disks": len(report["disks"]), "nics": len(report["nics"])}
