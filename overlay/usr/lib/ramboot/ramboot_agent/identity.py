"""The machine's identity, with iPXE's variable names, read from sysfs/procfs.

Everything is read below `root` so tests can point it at a fixture tree.
Unknown values are empty strings: one server endpoint sees the same keys from
every machine, iPXE or agent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from ramboot_agent import arch
from ramboot_agent.log import sanitise
from ramboot_agent.net import RUNTIME_DIR, Lease, load_lease

KEYS = (
    "mac", "ip", "serial", "uuid", "manufacturer", "product", "hostname", "buildarch",
    "platform", "asset",
)
_DMI = "sys/class/dmi/id"
_DEVICE_TREES = ("proc/device-tree", "sys/firmware/devicetree/base")


def _read(root: Path, relative: str) -> str:
    try:
        text = (root / relative).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return text.replace("\0", " ").strip()


def _device_tree(root: Path, name: str) -> str:
    for base in _DEVICE_TREES:
        value = _read(root, f"{base}/{name}")
        if value:
            return value
    return ""


def _cpuinfo_serial(root: Path) -> str:
    match = re.search(r"^Serial\s*:\s*([0-9A-Fa-f]+)\s*$", _read(root, "proc/cpuinfo"), re.M)
    return match.group(1) if match else ""


def _kernel_hostname(root: Path) -> str:
    name = _read(root, "proc/sys/kernel/hostname")
    return "" if name == "(none)" else name  # the kernel's placeholder is no name


def printable(value: str) -> str:
    """`value` on one line: control characters (from DHCP, untrusted) as \\xNN."""
    return sanitise(value)


def board_serial(raw: str) -> str:
    """The Pi's serial as its EEPROM uses it (TFTP directory): last 8 hex digits, lowercase."""
    digits = raw.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,16}", digits):
        return ""
    return digits[-8:]


def collect_identity(
    lease: Lease | None, *, root: Path = Path("/"), machine: str | None = None
) -> dict[str, str]:
    """mac ip serial uuid manufacturer product hostname buildarch platform asset."""
    machine = machine if machine is not None else os.uname().machine
    model = _device_tree(root, "model")
    is_pi = model.startswith("Raspberry Pi")
    efi = (root / "sys/firmware/efi").is_dir()
    if is_pi:
        serial = board_serial(_device_tree(root, "serial-number") or _cpuinfo_serial(root))
        manufacturer, product = "Raspberry Pi", model
    else:
        serial = _read(root, f"{_DMI}/product_serial") or _device_tree(root, "serial-number")
        manufacturer = _read(root, f"{_DMI}/sys_vendor")
        product = _read(root, f"{_DMI}/product_name") or model
    buildarch = arch.buildarch(machine)
    if efi:
        platform = "efi"
    elif buildarch in ("x86_64", "i386"):
        platform = "pcbios"
    elif is_pi:
        platform = "rpi"  # the Pi firmware boots Linux directly: neither EFI nor BIOS
    else:
        platform = "linux"
    return {
        "mac": lease.mac if lease else "",
        "ip": lease.ip if lease else "",
        "serial": serial,
        "uuid": _read(root, f"{_DMI}/product_uuid").lower(),
        "manufacturer": manufacturer,
        "product": product,
        "hostname": (lease.hostname if lease else None) or _kernel_hostname(root),
        "buildarch": buildarch,
        "platform": platform,
        "asset": _read(root, f"{_DMI}/chassis_asset_tag"),
    }


def dhcp_option_settings(lease: Lease | None) -> dict[str, str]:
    """DHCP options by number as text, the way iPXE shows `${224}`."""
    if lease is None:
        return {}
    return {str(code): lease.option_text(code) or "" for code in sorted(lease.options)}


def saved_lease(runtime_dir: Path = RUNTIME_DIR) -> Lease | None:
    """The lease the running agent recorded, if any (the newest one)."""
    records = sorted(runtime_dir.glob("lease.*"), key=lambda path: path.stat().st_mtime)
    records = [path for path in records if ".tmp." not in path.name]
    if not records:
        return None
    interface = records[-1].name.removeprefix("lease.")
    mac = _read(Path("/"), f"sys/class/net/{interface}/address").lower()
    return load_lease(records[-1], mac=mac)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--lease-dir", type=Path, default=RUNTIME_DIR,
        help=f"where the agent records leases (default: {RUNTIME_DIR})",
    )


def main(args: argparse.Namespace) -> int:
    lease = saved_lease(args.lease_dir) if args.lease_dir.is_dir() else None
    values = collect_identity(lease, root=args.root)
    values.update(dhcp_option_settings(lease))
    if args.json:
        print(json.dumps(values, indent=2, sort_keys=False))
    else:
        for key, value in values.items():
            print(f"{key}={printable(value)}")
    return 0
