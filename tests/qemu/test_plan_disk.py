"""Provisioning plans on a virtio disk under QEMU: install an image, boot it, report hardware.

Real Kea hands out option 224 pointing at a plan; an HTTP server in the
namespace serves the plan and an "installed system" disk image built here
with the real tools (sfdisk, mke2fs -d): a GPT disk whose ext4 partition
holds a Boot Loader Specification entry, the kernel and, as its initrd, the
busybox second stage. The agent in the image runs the plan: `hardware`,
`image` onto the guest's blank virtio disk, then `localboot` kexecs the
kernel it finds there, whose initrd prints the marker with the command line
the BLS entry gave it.

(a)+(c) zstd image, digest and image digest checked, read back, then
        localboot; the hardware event must name the virtio disk and NIC.
(b)     the raw image with its bmap (authenticated by bmap_digest, no digest of
        the whole file), fetched range by range, the connection cut mid-image:
        resumed with a Range request, only the mapped bytes downloaded and
        written, each range checked and read back.
And a disk that is already installed, booted because an iPXE script asks
for the next boot device (`exit 1`, `sanboot --drive 0x80`), as firmware
would after iPXE.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.lib.httpd import requests, start_httpd
from tests.lib.images import SECOND_STAGE_MARKER, ImageSet
from tests.lib.netlab import SERVER_IP, kea_config, require_netns, start_kea, tap_lab
from tests.lib.qemu import Qemu, require_qemu, tap_nic_argv, x86_64_argv
from tests.qemu.collector import events, start_collector
from tests.qemu.conftest import image_set_or_fail

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

GUEST_MAC = "52:54:00:00:0d:01"
DISK_SERIAL = "rb-disk-1"
HTTP_PORT = 8080
REPORT_PORT = 8081
PLAN_URL = f"http://{SERVER_IP}:{HTTP_PORT}/plan.json"
REPORT_URL = f"http://{SERVER_IP}:{REPORT_PORT}/events"
MiB = 1 << 20
IMAGE_SIZE = 64 * MiB
GUEST_DISK = 128 * MiB
BOOT_OPTIONS = "console=ttyS0 quiet rb.installed=bls"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_installed_disk(images: ImageSet, work: Path) -> Path:
    """A GPT disk image with one ext4 partition holding a BLS entry, kernel and initrd."""
    for tool in ("sfdisk", "mke2fs", "zstd", "bmaptool"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/install-deps)")
    files = work / "bootfs"
    (files / "loader/entries").mkdir(parents=True)
    shutil.copyfile(images.kernel, files / "vmlinuz-test")
    shutil.copyfile(images.second_stage, files / "initrd-test.img")
    (files / "loader/entries/ramboot-test.conf").write_text(
        "title ramboot test system\nversion 1.0\nlinux /vmlinuz-test\n"
        f"initrd /initrd-test.img\noptions {BOOT_OPTIONS}\n")
    disk = work / "installed.img"
    with disk.open("wb") as stream:
        stream.truncate(IMAGE_SIZE)
    subprocess.run(["sfdisk", "--quiet", str(disk)], check=True, text=True,
                   input="label: gpt\nstart=2048, size=122880, type=L, name=boot\n")
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "boot", "-d", str(files),
                    "-E", f"offset={2048 * 512}", str(disk), f"{122880 // 2}k"], check=True)
    return disk


def serve_tree(www: Path, disk: Path) -> dict[str, str]:
    www.mkdir()
    shutil.copyfile(disk, www / "installed.img")
    subprocess.run(["zstd", "-q", "-3", str(disk), "-o", str(www / "installed.img.zst")],
                   check=True)
    subprocess.run(["bmaptool", "create", "-o", str(www / "installed.img.bmap"), str(disk)],
                   check=True, capture_output=True)
    return {"zst": sha256(www / "installed.img.zst"), "raw": sha256(www / "installed.img"),
            "bmap": sha256(www / "installed.img.bmap")}


def plan(*actions: dict[str, Any]) -> str:
    return json.dumps({"ramboot-plan": 1, "description": "install and boot the test system",
                       "actions": list(actions)}, indent=2)


def boot_guest(tmp_path: Path, images: ImageSet, www: Path,
               drop_after: dict[str, int] | None = None, *, guest_disk: Path | None = None,
               option_224: str = PLAN_URL) -> tuple[str, list[dict[str, Any]]]:
    """Boot the agent with a virtio disk (blank unless given); the second stage's
    command line and the events."""
    if guest_disk is None:
        guest_disk = tmp_path / "guest-disk.raw"
        with guest_disk.open("wb") as stream:
            stream.truncate(GUEST_DISK)
    config = kea_config("br0", tmp_path, option_224=option_224)
    dhcp4 = config["Dhcp4"]
    dhcp4["option-def"].append(
        {"name": "ramboot-report", "code": 225, "type": "string", "space": "dhcp4"})
    dhcp4["subnet4"][0]["option-data"].append(
        {"name": "ramboot-report", "data": REPORT_URL, "always-send": True})
    with tap_lab() as lab:
        start_kea(lab.ns, config, tmp_path)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT, root=www,
                    log_path=tmp_path / "http.jsonl", drop_after=drop_after)
        events_log = tmp_path / "events.jsonl"
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        tap = lab.add_tap()
        argv = x86_64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=768,
                           append="console=ttyS0 quiet", extra=[
                               "-smp", "1",
                               *tap_nic_argv(tap, mac=GUEST_MAC, model="virtio-net-pci"),
                               "-drive", f"if=none,id=d0,format=raw,file={guest_disk}",
                               "-device", f"virtio-blk-pci,drive=d0,serial={DISK_SERIAL}"])
        with Qemu(argv, log_path=tmp_path / "console.log", namespace=lab.ns) as vm:
            vm.expect(rf"{SECOND_STAGE_MARKER} cmdline=\[([^\]\r\n]*)\]", timeout=600)
            assert vm.child is not None
            cmdline = str(vm.child.match.group(1))
            assert vm.wait_exit(timeout=60) == 0
    return cmdline, events(events_log)


def details(received: list[dict[str, Any]], name: str, action: str | None = None) -> Any:
    found = [e["details"] for e in received if e["event"] == name
             and (action is None or e["details"].get("action") == action)]
    assert len(found) == 1, [e["event"] for e in received]
    return found[0]


def test_install_a_zstd_image_report_hardware_and_kexec_into_it(tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    images = image_set_or_fail("x86_64")
    disk = build_installed_disk(images, tmp_path)
    www = tmp_path / "www"
    digests = serve_tree(www, disk)
    target = {"bus": "virtio", "min_size": "100MiB"}
    (www / "plan.json").write_text(plan(
        {"action": "hardware"},
        {"action": "image", "url": "installed.img.zst", "digest": f"sha256:{digests['zst']}",
         "image_digest": f"sha256:{digests['raw']}", "target": target, "verify": True},
        {"action": "localboot", "target": target, "method": "kexec"}))
    cmdline, received = boot_guest(tmp_path, images, www)

    assert cmdline == BOOT_OPTIONS
    hardware = details(received, "hardware")
    assert {"path": "/dev/vda", "size": GUEST_DISK, "bus": "virtio", "serial": DISK_SERIAL,
            "by_id": [f"virtio-{DISK_SERIAL}"]}.items() <= hardware["disks"][0].items()
    nic = next(n for n in hardware["nics"] if n["mac"] == GUEST_MAC)
    assert nic["driver"] == "virtio_net" and nic["link"] is True
    assert hardware["cpu"]["count"] == 1 and hardware["memory"] > 600 * MiB
    image = details(received, "action-done", "image")
    assert image["format"] == "zstd" and image["disk"] == "/dev/vda"
    assert image["image_bytes"] == IMAGE_SIZE
    assert image["verified"] == f"{IMAGE_SIZE} bytes read back, sha256 {digests['raw']}"
    booted = details(received, "localboot")
    assert (booted["kind"], booted["device"], booted["kernel"]) == ("bls", "/dev/vda1",
                                                                  "/vmlinuz-test")
    names = [e["event"] for e in received]
    assert names.index("action-done") < names.index("localboot") < names.index("plan-done")


def test_install_with_a_bmap_resumes_a_cut_connection(tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    images = image_set_or_fail("x86_64")
    disk = build_installed_disk(images, tmp_path)
    www = tmp_path / "www"
    digests = serve_tree(www, disk)
    target = {"by_id": f"virtio-{DISK_SERIAL}"}
    (www / "plan.json").write_text(plan(
        {"action": "image", "url": "installed.img", "bmap": "installed.img.bmap",
         "bmap_digest": f"sha256:{digests['bmap']}", "target": target, "verify": True},
        {"action": "localboot", "target": target, "method": "kexec"}))
    cut = 3 * MiB + 12345  # inside the filesystem's data: a mapped range
    cmdline, received = boot_guest(tmp_path, images, www, drop_after={"/installed.img": cut})

    assert cmdline == BOOT_OPTIONS
    served = [(r["status"], r["range"]) for r in requests(tmp_path / "http.jsonl")
              if r["path"] == "/installed.img"]
    # The first span from byte 0, cut; resumed at the cut; then the later spans by range.
    assert served[:2] == [("drop", ""), (206, f"bytes={cut}-")]
    assert all(status == 206 for status, _ in served[2:])
    image = details(received, "action-done", "image")
    assert image["written_bytes"] == image["mapped_bytes"] < IMAGE_SIZE
    assert image["served_bytes"] < IMAGE_SIZE  # the holes were not downloaded
    assert image["restarts"] == 0
    assert "bmap ranges" in image["verified"]
    assert "sha256" not in image  # proved by the authenticated bmap, no file digest claimed


@pytest.mark.parametrize("asking", ["exit 1", "sanboot --no-describe --drive 0x80 || exit 1"])
def test_a_script_asking_for_the_next_boot_device_boots_the_installed_disk(
        tmp_path: Path, asking: str) -> None:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    images = image_set_or_fail("x86_64")
    disk = build_installed_disk(images, tmp_path)
    www = tmp_path / "www"
    www.mkdir()
    (www / "local.ipxe").write_text(f"#!ipxe\necho boot from disk\n{asking}\n")
    cmdline, received = boot_guest(tmp_path, images, www, guest_disk=disk,
                                   option_224=f"http://{SERVER_IP}:{HTTP_PORT}/local.ipxe")
    assert cmdline == BOOT_OPTIONS
    asked = details(received, "localboot-requested")
    assert asked["url"].startswith(f"http://{SERVER_IP}:{HTTP_PORT}/local.ipxe")
    booted = details(received, "localboot")
    assert (booted["kind"], booted["device"], booted["kernel"]) == ("bls", "/dev/vda1",
                                                                  "/vmlinuz-test")
    assert "failure" not in [e["event"] for e in received]
