#!/usr/bin/env python3
"""What telling the two stages apart costs Kea: per-host classes vs. none.

Usage (root, network namespaces): PYTHONPATH=. .venv/bin/python bench/kea_stage_classes.py
    [--hosts 10000] [--exchanges 20]

Renders a generated fleet (bench/render_bench.py's) with `ramboot render`'s Kea
module, runs the real kea-dhcp4 in a namespace and times whole DHCP exchanges
(DISCOVER..ACK, busybox udhcpc) of one reserved host, as the agent (its vendor
class: stage 2) and as iPXE (user class iPXE: stage 1), against the same
configuration without the per-host stage classes (what Kea costs when it does
not tell the stages apart: the peer a user would otherwise pick). Prints the
median and the maximum per configuration, and Kea's start-up time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.render_bench import fleet
from ramboot.inventory import parse_inventory
from ramboot.render.kea import kea_config
from tests.lib import netlab

IPXE = "0x4d:" + b"iPXE".hex()
AGENT = "ramboot-agent:0.1.0:x86_64"


def _config(hosts: int, workdir: Path, *, stage_classes: bool) -> tuple[dict[str, Any], str]:
    text = fleet(hosts).replace("10.0.", "192.0.")  # the lab's server is 192.0.2.1
    inventory = parse_inventory(text, Path("bench.toml"))
    config = kea_config(inventory)
    dhcp4 = config["Dhcp4"]
    if not stage_classes:
        dhcp4["client-classes"] = [c for c in dhcp4["client-classes"]
                                   if not c["name"].startswith("host-")]
    dhcp4["interfaces-config"] = {"interfaces": ["srv0"]}
    dhcp4["lease-database"] = {"type": "memfile", "persist": False}
    dhcp4["loggers"] = [{"name": "kea-dhcp4", "severity": "INFO",
                         "output_options": [{"output": str(workdir / "kea.log")}]}]
    host = inventory.hosts[-1]
    return config, host.macs[0]


def _exchange(lab: netlab.VethLab, hook: Path, *extra: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = lab.client.run(["udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i",
                             lab.client_if, "-s", hook, *extra], timeout=30, check=False)
    seconds = time.perf_counter() - start
    env = dict(line.split("=", 1) for line in result.stdout.splitlines()
               if re.match(r"^\w+=", line))
    url = bytes.fromhex(env.get("opt224", "")).decode()
    return seconds, url


def run(hosts: int, exchanges: int, *, stage_classes: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ramboot-kea-bench-") as tmp:
        workdir = Path(tmp)
        config, mac = _config(hosts, workdir, stage_classes=stage_classes)
        hook = workdir / "hook.sh"
        hook.write_text('#!/bin/sh\n[ "$1" = bound ] && env\nexit 0\n')
        hook.chmod(0o755)
        with netlab.veth_lab(client_mac=mac) as lab:
            start = time.perf_counter()
            netlab.start_kea(lab.server, config, workdir)
            started = time.perf_counter() - start
            times: dict[str, list[float]] = {"agent": [], "ipxe": []}
            urls: dict[str, set[str]] = {"agent": set(), "ipxe": set()}
            for _ in range(exchanges):
                for who, extra in (("agent", ("-V", AGENT)), ("ipxe", ("-x", IPXE))):
                    seconds, url = _exchange(lab, hook, *extra)
                    times[who].append(seconds)
                    urls[who].add(url)
    return {
        "hosts": hosts, "stage_classes": stage_classes, "kea_start_s": round(started, 2),
        **{f"{who}_median_ms": round(statistics.median(t) * 1000, 1) for who, t in times.items()},
        **{f"{who}_max_ms": round(max(t) * 1000, 1) for who, t in times.items()},
        "urls": {who: sorted(u) for who, u in urls.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--exchanges", type=int, default=20)
    args = parser.parse_args()
    for stage_classes in (False, True):
        print(json.dumps(run(args.hosts, args.exchanges, stage_classes=stage_classes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
