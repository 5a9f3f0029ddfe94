"""The whole boot flow, x86_64 and aarch64 (QEMU virt), in a private network namespace.

Real Kea hands out a lease with option 224 (the boot script's URL) and 225
(where to report); an HTTP server serves an iPXE script that boots the
second-stage kernel + initramfs. The agent in the offline (or Buildroot)
image DHCPs with udhcpc, fetches, interprets, and kexecs for real inside the
guest; the second stage prints its marker with the command line it received.
A collector in the namespace receives the agent's events.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lib.httpd import requests, start_httpd
from tests.lib.images import SECOND_STAGE_MARKER, ImageSet
from tests.lib.netlab import SERVER_IP, kea_config, require_netns, start_kea, tap_lab
from tests.lib.qemu import Qemu, aarch64_argv, require_qemu, tap_nic_argv, x86_64_argv
from tests.qemu.collector import events, start_collector
from tests.qemu.conftest import image_set_or_fail

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

GUEST_MAC = "52:54:00:00:0b:01"
HTTP_PORT = 8080
REPORT_PORT = 8081
BOOT_URL = f"http://{SERVER_IP}:{HTTP_PORT}/boot.ipxe"
REPORT_URL = f"http://{SERVER_IP}:{REPORT_PORT}/events"
# The events of a successful boot, in order (`fetch` once per download).
EXPECTED_EVENTS = ["kernel-started", "agent-started", "network-up", "script-fetched",
                   "fetch", "fetch", "kexec-load", "boot"]

BOOT_SCRIPT = """#!ipxe
echo ramboot full-flow test on ${{buildarch}} ${{net0/mac}}
set base http://{server}:{port}/second
kernel ${{base}}/kernel console={console} quiet rb.mac=${{net0/mac}} rb.arch=${{buildarch}}
initrd ${{base}}/second-stage.cpio.gz
boot
"""


@dataclass(frozen=True)
class Machine:
    target: str  # tests.lib.images target
    buildarch: str  # iPXE's ${buildarch}
    console: str
    system: str

    def argv(self, images: ImageSet, nic: list[str]) -> list[str]:
        if self.target == "x86_64":
            return x86_64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=512,
                               append=f"console={self.console} quiet",
                               extra=["-smp", "1", *nic])
        return aarch64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=512,
                            append=f"console={self.console} quiet", extra=["-smp", "1", *nic])


MACHINES = [
    Machine("x86_64", "x86_64", "ttyS0", "qemu-system-x86_64"),
    Machine("aarch64", "arm64", "ttyAMA0", "qemu-system-aarch64"),
]


def serve_tree(root: Path, images: ImageSet, console: str) -> None:
    (root / "second").mkdir(parents=True)
    shutil.copyfile(images.kernel, root / "second" / "kernel")
    shutil.copyfile(images.second_stage, root / "second" / "second-stage.cpio.gz")
    script = BOOT_SCRIPT.format(server=SERVER_IP, port=HTTP_PORT, console=console)
    (root / "boot.ipxe").write_text(script)


def kea_with_report_url(workdir: Path) -> dict[str, Any]:
    config = kea_config("br0", workdir, option_224=BOOT_URL)
    dhcp4 = config["Dhcp4"]
    dhcp4["option-def"].append(
        {"name": "ramboot-report", "code": 225, "type": "string", "space": "dhcp4"})
    dhcp4["subnet4"][0]["option-data"].append(
        {"name": "ramboot-report", "data": REPORT_URL, "always-send": True})
    return config


def timeline(received: list[dict[str, Any]], marker_after: float) -> dict[str, float]:
    """When each stage ended, in seconds of guest uptime (its monotonic clock).

    The first events wait for the lease (they carry its identity), so the
    agent's start is the uptime it measured first thing.
    """
    points = {"agent started": float(received[0]["details"]["uptime"])}
    for event in received:
        label = {"network-up": "lease", "script-fetched": "script fetched",
                 "kexec-load": "kexec loaded", "boot": "kexec executed"}.get(event["event"])
        if label:
            points[label] = float(event["monotonic"])
    fetches = [e for e in received if e["event"] == "fetch"]
    for name, event in zip(("kernel fetched", "initrd fetched"), fetches, strict=False):
        points[name] = float(event["monotonic"])
    points = {k: round(v, 2) for k, v in sorted(points.items(), key=lambda kv: kv[1])}
    points["second-stage marker (host clock, since QEMU started)"] = round(marker_after, 2)
    return points


# aarch64 is extended: its agent flow runs in the default suite through
# test_two_stages.py and test_serve_flow.py.
@pytest.mark.parametrize("machine", [
    pytest.param(MACHINES[0], id=MACHINES[0].target),
    pytest.param(MACHINES[1], id=MACHINES[1].target, marks=pytest.mark.extended),
])
def test_dhcp_fetch_interpret_kexec(machine: Machine, tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu(machine.system)
    images = image_set_or_fail(machine.target)
    www = tmp_path / "www"
    serve_tree(www, images, machine.console)
    with tap_lab() as lab:
        start_kea(lab.ns, kea_with_report_url(tmp_path), tmp_path)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT, root=www,
                    log_path=tmp_path / "http.jsonl")
        events_log = tmp_path / "events.jsonl"
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        tap = lab.add_tap()
        argv = machine.argv(images, tap_nic_argv(tap, mac=GUEST_MAC, model="virtio-net-pci"))
        with Qemu(argv, log_path=tmp_path / "console.log", namespace=lab.ns) as vm:
            vm.expect_exact(f"ramboot full-flow test on {machine.buildarch} {GUEST_MAC}",
                            timeout=240)
            vm.expect(rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]", timeout=240)
            marker_after = vm.elapsed
            assert vm.child is not None
            cmdline = vm.child.match.group(1)
            assert vm.wait_exit(timeout=60) == 0  # the second stage powered off

    assert cmdline.split() == [f"console={machine.console}", "quiet", f"rb.mac={GUEST_MAC}",
                               f"rb.arch={machine.buildarch}"]
    fetched = [r["path"] for r in requests(tmp_path / "http.jsonl") if r.get("status") == 200]
    assert fetched == ["/boot.ipxe", "/second/kernel", "/second/second-stage.cpio.gz"]

    received = events(events_log)
    names = [str(e["event"]) for e in received]
    assert [n for n in names if n in EXPECTED_EVENTS] == EXPECTED_EVENTS, names
    assert all(e["identity"]["mac"] == GUEST_MAC for e in received)
    seqs = [int(e["seq"]) for e in received]
    assert seqs == sorted(seqs)
    assert received[0]["event"] == "kernel-started"
    points = timeline(received, marker_after)
    (tmp_path / "timeline.json").write_text(json.dumps(points, indent=2))
    print("boot timeline (s):", json.dumps(points, indent=2))
    assert list(points)[:2] == ["agent started", "lease"]
