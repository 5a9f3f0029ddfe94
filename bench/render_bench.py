#!/usr/bin/env python3
"""Render a generated fleet of N hosts and print how long each stage takes.

Usage: .venv/bin/python bench/render_bench.py [--hosts 10000]
Half the hosts are Pi 4 boards, half x86_64 servers; images are tiny stand-ins,
so the numbers measure ramboot, not copying kernels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ramboot.inventory import parse_inventory
from ramboot.render.tree import render_tree

HEADER = """
[defaults]
report_url = "http://10.0.0.1:8080/events"
[servers]
tftp = "10.0.0.1"
http_base = "http://10.0.0.1/ramboot"
[network]
subnet = "10.0.0.0/16"
pool = ["10.0.200.0", "10.0.255.254"]
router = "10.0.0.1"
[profiles.rescue]
kind = "rescue"
"""


def fleet(hosts: int) -> str:
    parts = [HEADER]
    for index in range(hosts):
        ip = f"10.0.{1 + index // 250}.{1 + index % 250}"
        mac = f"dc:a6:32:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"
        if index % 2:
            parts.append(f'[[hosts]]\nname = "srv-{index}"\nfamily = "x86_64"\n'
                         f'macs = ["{mac.replace("dc:a6:32", "52:54:00")}"]\nip = "{ip}"\n'
                         'profile = "rescue"\n')
        else:
            parts.append(f'[[hosts]]\nname = "pi-{index}"\nfamily = "rpi4"\n'
                         f'serial = "{index:08x}"\nmacs = ["{mac}"]\nip = "{ip}"\n'
                         'profile = "rescue"\n')
    return "\n".join(parts)


def make_images(root: Path) -> None:
    for name in ("rpi4/Image", "rpi4/rootfs.cpio.zst", "rpi4/bcm2711-rpi-4-b.dtb",
                 "rpi4/start4.elf", "rpi4/fixup4.dat", "x86_64/bzImage",
                 "x86_64/rootfs.cpio.zst", "ipxe/undionly.kpxe", "ipxe/ipxe.efi"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * 4096)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ramboot-bench-") as tmp:
        work = Path(tmp)
        make_images(work / "images")
        text = fleet(args.hosts)
        start = time.perf_counter()
        inventory = parse_inventory(text, Path("bench.toml"))
        parsed = time.perf_counter()
        render_tree(inventory, work / "images", work / "out")
        rendered = time.perf_counter()
        files = sum(1 for _ in (work / "out").rglob("*"))
    print(f"hosts: {args.hosts}")
    print(f"parse + validate: {parsed - start:.2f} s")
    print(f"render + swap:    {rendered - parsed:.2f} s ({files} entries)")
    print(f"total:            {rendered - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
