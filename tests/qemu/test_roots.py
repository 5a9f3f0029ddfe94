"""Network and RAM roots in QEMU: the agent switch_roots into NFS, NBD and HTTP roots.

Each test runs real servers in a private namespace (Kea for the lease,
nfs-ganesha, nbd-server, an HTTP server for the plan and the images, a
collector for the events), boots the image set, and lets the agent run a
`netroot` or `ramroot` plan. The new root's init (tests/lib/roots.py)
proves what it received; the servers' side proves that nothing was
written to the export.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lib.httpd import start_httpd
from tests.lib.images import ImageSet
from tests.lib.netlab import SERVER_IP, Namespace, kea_config, require_netns, start_kea, tap_lab
from tests.lib.qemu import (
    Qemu,
    aarch64_argv,
    poll_until,
    require_qemu,
    tap_nic_argv,
    x86_64_argv,
)
from tests.lib.roots import (
    ROOT_MARKER,
    busybox_root,
    cpio_image,
    debugfs_cat,
    empty_ext4,
    ext4_image,
    file_digest,
    partitioned_ext4,
    plan,
    squashfs_image,
    start_ganesha,
    start_nbd_server,
    tar_image,
    tree_digest,
)
from tests.qemu.collector import events, start_collector
from tests.qemu.conftest import image_set_or_fail

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

GUEST_MAC = "52:54:00:00:0c:01"
HTTP_PORT = 8080
REPORT_PORT = 8081
PLAN_URL = f"http://{SERVER_IP}:{HTTP_PORT}/plan.json"
REPORT_URL = f"http://{SERVER_IP}:{REPORT_PORT}/events"
INIT_ARGS = ["first", "two words"]


@dataclass
class Lab:
    ns: Namespace
    tmp: Path
    www: Path
    events_log: Path
    tap: str

    def events(self) -> list[dict[str, Any]]:
        return events(self.events_log)


@contextlib.contextmanager
def roots_lab(tmp_path: Path) -> Iterator[Lab]:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    www = tmp_path / "www"
    www.mkdir()
    with tap_lab() as lab:
        config = kea_config("br0", tmp_path)
        dhcp4 = config["Dhcp4"]
        dhcp4["option-def"].append(
            {"name": "ramboot-report", "code": 225, "type": "string", "space": "dhcp4"})
        dhcp4["subnet4"][0]["option-data"].append(
            {"name": "ramboot-report", "data": REPORT_URL, "always-send": True})
        start_kea(lab.ns, config, tmp_path)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT, root=www,
                    log_path=tmp_path / "http.jsonl")
        events_log = tmp_path / "events.jsonl"
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        yield Lab(lab.ns, tmp_path, www, events_log, lab.add_tap())


def guest(lab: Lab, images: ImageSet, document: bytes, *, disks: tuple[Path, ...] = (),
          log_name: str = "console.log", memory_mb: int = 512) -> Qemu:
    (lab.www / "plan.json").write_bytes(document)
    extra = ["-smp", "1", *tap_nic_argv(lab.tap, mac=GUEST_MAC, model="virtio-net-pci")]
    for index, disk in enumerate(disks):
        extra += ["-drive", f"if=none,id=disk{index},format=raw,file={disk}",
                  "-device", f"virtio-blk-pci,drive=disk{index}"]
    if images.target == "aarch64":
        argv = aarch64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=memory_mb,
                            append=f"console=ttyAMA0 quiet ramboot.url={PLAN_URL}",
                            extra=extra)
    else:
        argv = x86_64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=memory_mb,
                           append=f"console=ttyS0 quiet ramboot.url={PLAN_URL}", extra=extra)
    return Qemu(argv, log_path=lab.tmp / log_name, namespace=lab.ns)


def new_root_report(vm: Qemu, *, timeout: float = 300) -> dict[str, str]:
    """The markers the new root's init printed, by name, up to its `done`."""
    if vm.expect([f"{ROOT_MARKER} init pid=1", "ramboot-agent FAILED"], timeout=timeout):
        vm.expect_exact("rescue shell", timeout=60)
        pytest.fail(f"the agent failed instead of switching:\n{vm.tail(60)}")
    vm.expect_exact(f"{ROOT_MARKER} done", timeout=120)
    text = vm.console_text().replace("\r", "")
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.search(rf"{ROOT_MARKER} (\S+) ?(.*)$", line)
        if match:  # a name printed twice (mounted) keeps both values
            value = match.group(2).strip()
            name = match.group(1)
            found[name] = f"{found[name]} {value}" if name in found else value
    assert vm.wait_exit(timeout=60) == 0
    return found


def check_new_root(report: dict[str, str], *, action: str, root: str,
                   root_fs: str) -> None:
    assert report["init"] == f"pid=1 args=[{' '.join(INIT_ARGS)}]", report
    assert report["root"] == root_fs
    assert sorted(report["mounted"].split()) == ["/dev", "/proc", "/run", "/sys"], report
    assert report["other-processes"] == "0", "a RAM-system process survived the switch"
    assert report["root.env"] == f"action={action} root={root}"
    assert report["network.env"].startswith("ip=192.0.2.") and "iface=eth0" in report["network.env"]
    assert "klibc" in report
    assert report["ip"] == report["network.env"].split()[0].removeprefix("ip=") + "/24"
    assert report["written"] == "written by the new root"
    assert "booted-reported" in report


def check_events(lab: Lab, *, action: str) -> list[dict[str, Any]]:
    received = lab.events()
    names = [str(e["event"]) for e in received if e["event"] not in ("progress", "fetch")]
    assert names[-5:] == ["action-start", "root-ready", "action-done", "plan-done", "booted"], \
        names
    done, plan_done, booted = received[-3:]
    assert done["details"]["handoff"] == "switch_root"
    assert plan_done["details"]["outcome"] == "switch_root"
    # The new system's event continues the agent's sequence, with its identity.
    assert booted["seq"] == plan_done["seq"] + 1
    assert booted["identity"] == plan_done["identity"]
    assert booted["identity"]["mac"] == GUEST_MAC
    assert booted["details"]["action"] == action
    assert booted["monotonic"] > plan_done["monotonic"]
    return received


# --- (a) NFS ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["x86_64", "aarch64"])
def test_nfs_root_with_a_tmpfs_overlay(tmp_path: Path, target: str) -> None:
    """On both architectures: the aarch64 root is the arm64 image set's busybox."""
    require_qemu(f"qemu-system-{target}")
    images = image_set_or_fail(target)
    with roots_lab(tmp_path) as lab:
        export = busybox_root(images, tmp_path / "export")
        before = tree_digest(export)
        start_ganesha(lab.ns, export, tmp_path)
        root = f"nfs://{SERVER_IP}/srv/root"
        document = plan({"action": "netroot", "root": root,
                         "overlay": {"type": "tmpfs", "size": "64MiB"},
                         "init": "/sbin/init", "init_args": INIT_ARGS})
        with guest(lab, images, document) as vm:
            report = new_root_report(vm)
        check_new_root(report, action="netroot", root=root, root_fs="overlay")
        check_events(lab, action="netroot")
    # The export is untouched: the write went to the tmpfs layer.
    assert tree_digest(export) == before
    assert not (export / "written-by-new-root").exists()


# --- (b) NBD ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["filesystem", "partitioned"])
def test_nbd_root_with_a_tmpfs_overlay(x86_64_images: ImageSet, tmp_path: Path,
                                       layout: str) -> None:
    with roots_lab(tmp_path) as lab:
        tree = busybox_root(x86_64_images, tmp_path / "tree")
        action: dict[str, Any] = {"overlay": "tmpfs", "init_args": INIT_ARGS}
        if layout == "partitioned":  # a whole disk image: the root is its partition 1
            image = partitioned_ext4(tree, tmp_path / "disk.img")
            action["partition"] = 1
        else:
            image = ext4_image(tree, tmp_path / "root.ext4")
        before = file_digest(image)
        start_nbd_server(lab.ns, image, tmp_path, address=SERVER_IP, name="root")
        root = f"nbd://{SERVER_IP}/root"
        document = plan({"action": "netroot", "root": root, **action})
        with guest(lab, x86_64_images, document) as vm:
            report = new_root_report(vm)
        check_new_root(report, action="netroot", root=root, root_fs="overlay")
        check_events(lab, action="netroot")
    assert file_digest(image) == before
    if layout == "filesystem":
        assert debugfs_cat(image, "/written-by-new-root") is None


# --- (c) RAM roots over HTTP ------------------------------------------------------------------


RAM_IMAGES = {
    "squashfs-xz": lambda tree, dest: squashfs_image(tree, dest / "root.squashfs"),
    "tar-gz": lambda tree, dest: tar_image(tree, dest / "root.tar.gz"),
    "cpio-gz": lambda tree, dest: cpio_image(tree, dest / "root.cpio.gz"),
}


@pytest.mark.parametrize("kind", sorted(RAM_IMAGES))
def test_ramroot_from_http(x86_64_images: ImageSet, tmp_path: Path, kind: str) -> None:
    with roots_lab(tmp_path) as lab:
        tree = busybox_root(x86_64_images, tmp_path / "tree")
        image = RAM_IMAGES[kind](tree, lab.www)
        digest = f"sha256:{file_digest(image)}"
        document = plan({"action": "ramroot", "url": image.name, "digest": digest,
                         "size": "128MiB", "init_args": INIT_ARGS})
        with guest(lab, x86_64_images, document) as vm:
            report = new_root_report(vm)
        check_new_root(report, action="ramroot", root=f"http://{SERVER_IP}:{HTTP_PORT}/"
                       f"{image.name}", root_fs="overlay" if kind.startswith("squashfs")
                       else "tmpfs")
        received = check_events(lab, action="ramroot")
        ready = next(e for e in received if e["event"] == "root-ready")
        assert ready["details"]["image_format"] == kind.split("-", maxsplit=1)[0]
        fetched = next(e for e in received if e["event"] == "fetch")
        assert fetched["details"]["bytes"] == image.stat().st_size


# --- (d) a persistent overlay on a local partition ---------------------------------------------


def test_a_persistent_overlay_survives_a_second_boot(
        x86_64_images: ImageSet, tmp_path: Path) -> None:
    with roots_lab(tmp_path) as lab:
        export = busybox_root(x86_64_images, tmp_path / "export")
        before = tree_digest(export)
        start_ganesha(lab.ns, export, tmp_path)
        disk = empty_ext4(tmp_path / "persist.ext4", size_mb=32, label="rb-persist")
        document = plan({"action": "netroot", "root": f"nfs://{SERVER_IP}/srv/root",
                         "overlay": {"type": "partition", "partition": {"label": "rb-persist"},
                                     "directory": "layers/nfs"},
                         "init_args": INIT_ARGS})
        counts = []
        for boot in (1, 2):
            with guest(lab, x86_64_images, document, disks=(disk,),
                       log_name=f"console-{boot}.log") as vm:
                counts.append(new_root_report(vm)["persist-count"])
        assert counts == ["1", "2"]
    assert debugfs_cat(disk, "/layers/nfs/upper/persist-count") == "2\n"
    assert debugfs_cat(disk, "/layers/nfs/root") == f"nfs://{SERVER_IP}/srv/root\n"
    assert tree_digest(export) == before


# --- (e) failures: documented, bounded, a rescue shell ----------------------------------------


def expect_failure(vm: Qemu, *, timeout: float = 300) -> str:
    vm.expect_exact("ramboot-agent FAILED", timeout=timeout)
    vm.expect_exact("ramboot rescue shell (", timeout=60)
    return vm.console_text().replace("\r", "")


def test_the_nbd_server_going_away_mid_boot_fails_into_the_rescue_shell(
        x86_64_images: ImageSet, tmp_path: Path) -> None:
    with roots_lab(tmp_path) as lab:
        tree = busybox_root(x86_64_images, tmp_path / "tree")
        image = ext4_image(tree, tmp_path / "root.ext4")
        start_nbd_server(lab.ns, image, tmp_path, address=SERVER_IP, name="root")
        document = plan({"action": "netroot", "root": f"nbd://{SERVER_IP}/root",
                         "io_timeout": 10, "timeout": 120})
        with guest(lab, x86_64_images, document) as vm:
            vm.expect(r"attached export 'root' of 192\.0\.2\.1:10809 to /dev/nbd\d", timeout=300)
            # The server's link goes silent: no reset, the requests just get no answer.
            lab.ns.ip("link", "set", lab.tap, "down")
            text = expect_failure(vm, timeout=180)
            assert "plan actions[0] (netroot)" in text
            shell = vm.shell(timeout=60)
            # Everything the action did was undone: nothing mounted, the device detached.
            assert shell.run_check("grep -c ' /newroot\\| /run/ramboot/root' /proc/mounts "
                                   "|| true") == ["0"]
            assert shell.run_check("cat /sys/block/nbd0/size") == ["0"]


# Extended: each waits out a timeout; the NBD case above is the default suite's.
@pytest.mark.extended
def test_the_nfs_server_going_away_mid_boot_fails_into_the_rescue_shell(
        x86_64_images: ImageSet, tmp_path: Path) -> None:
    with roots_lab(tmp_path) as lab:
        export = busybox_root(x86_64_images, tmp_path / "export")
        start_ganesha(lab.ns, export, tmp_path)
        document = plan({"action": "netroot", "root": f"nfs://{SERVER_IP}/srv/root",
                         "timeout": 90})
        with guest(lab, x86_64_images, document) as vm:
            vm.expect_exact("mounted 192.0.2.1:/srv/root on /run/ramboot/root/lower",
                            timeout=300)
            # A hard NFS mount whose server is silent blocks every access: the agent's
            # own steps run in killable children bounded by the action's time.
            lab.ns.ip("link", "set", lab.tap, "down")
            text = expect_failure(vm, timeout=240)
            assert "plan actions[0] (netroot)" in text
            shell = vm.shell(timeout=60)
            assert shell.run_check("grep -c ' /newroot\\| /run/ramboot/root' /proc/mounts "
                                   "|| true") == ["0"]


@pytest.mark.extended
def test_the_http_server_going_away_mid_download_fails_into_the_rescue_shell(
        x86_64_images: ImageSet, tmp_path: Path) -> None:
    with roots_lab(tmp_path) as lab:
        tree = busybox_root(x86_64_images, tmp_path / "tree")
        # Incompressible, so the download lasts long enough to be cut.
        (tree / "payload").write_bytes(os.urandom(32 << 20))
        images = tmp_path / "images"
        images.mkdir()
        image = squashfs_image(tree, images / "root.squashfs")
        http_log = tmp_path / "images-http.jsonl"
        server = start_httpd(lab.ns, bind=SERVER_IP, port=HTTP_PORT + 2, root=images,
                             log_path=http_log, drop_after={"/root.squashfs": 65536})
        document = plan({"action": "ramroot",
                         "url": f"http://{SERVER_IP}:{HTTP_PORT + 2}/root.squashfs",
                         "digest": f"sha256:{file_digest(image)}", "size": "128MiB"})
        with guest(lab, x86_64_images, document) as vm:
            poll_until(lambda: http_log.exists() and '"drop"' in http_log.read_text(),
                       timeout=300, what="the image download to start")
            server.terminate()  # gone mid-download: the resumes find nobody
            text = expect_failure(vm, timeout=240)
            assert "root.squashfs" in text and "gave up after" in text
            shell = vm.shell(timeout=60)
            assert shell.run_check("grep -c ' /run/ramboot/root' /proc/mounts || true") == ["0"]
        failure = [e for e in lab.events() if e["event"] == "failure"]
        assert failure and failure[-1]["details"]["action"] == "ramroot"


def test_a_root_without_its_init_fails_with_the_reason(
        x86_64_images: ImageSet, tmp_path: Path) -> None:
    with roots_lab(tmp_path) as lab:
        tree = busybox_root(x86_64_images, tmp_path / "tree", make_init=False)
        image = tar_image(tree, lab.www / "root.tar.gz")
        document = plan({"action": "ramroot", "url": image.name,
                         "digest": f"sha256:{file_digest(image)}", "size": "64MiB",
                         "init": "/sbin/init"})
        with guest(lab, x86_64_images, document) as vm:
            text = expect_failure(vm)
            assert "/sbin/init does not exist in the new root" in text
            shell = vm.shell(timeout=60)
            assert shell.run_check("grep -c ' /newroot\\| /run/ramboot/root' /proc/mounts "
                                   "|| true") == ["0"]
            # PID 1's own check: a request naming a missing init leaves init running
            # the RAM system again (a rescue shell), not a kernel panic.
            shell.run_check("mkdir -p /newroot && mount -t tmpfs tmpfs /newroot && "
                            "mkdir /newroot/dev /newroot/proc /newroot/sys /newroot/run && "
                            "printf 'newroot=/newroot\\ninit=/sbin/init\\n' "
                            "> /run/ramboot/switch-root.request")
            vm.sendline("kill -QUIT 1")
            vm.expect_exact("cannot switch to the new root: /sbin/init is missing", timeout=120)
            vm.expect_exact("ramboot: the switch to the new root failed", timeout=120)
            vm.expect_exact("ramboot rescue shell (", timeout=60)
        failure = [e for e in lab.events() if e["event"] == "failure"]
        assert failure and failure[-1]["details"]["action"] == "ramroot"
        assert "/sbin/init does not exist" in failure[-1]["details"]["reason"]
