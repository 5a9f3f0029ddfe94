"""The commands the roots run, and what they do when those fail.

The tools themselves run in QEMU (tests/qemu/test_roots.py); here a
recording Context answers for them, so each decision (NFS version
negotiation, nbd-client's arguments, undoing in reverse) is pinned down.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ramboot_agent.events import Reporter
from ramboot_agent.plan import load_plan
from ramboot_agent.plan.context import ActionError, ActionTimeout, Context
from ramboot_agent.plan.runner import run_plan
from ramboot_agent.roots import layers, nbd, nfs
from ramboot_agent.roots.keys import Overlay
from ramboot_agent.roots.layout import Layout
from ramboot_agent.roots.mounts import Mounts, mount_points

Answer = Callable[[list[str]], tuple[int, str]]


class Recorder(Context):
    """A Context whose tools are answered by `answer` and recorded."""

    def __init__(self, tmp_path: Path, answer: Answer | None = None) -> None:
        super().__init__(reporter=Reporter({}), fetcher=None, out=io.StringIO(),
                         runtime_dir=tmp_path, base_url="http://srv/plan.json")
        self.calls: list[list[str]] = []
        self.answer = answer or (lambda argv: (0, ""))

    def run_tool(self, argv: Sequence[str], *, timeout: float = 120.0,
                 input_text: str | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        status, text = self.answer(argv)
        if check and status != 0:
            raise ActionError(f"{' '.join(argv[:3])} failed with status {status}: {text}")
        return subprocess.CompletedProcess(argv, status, stdout=text, stderr=text)

    def mounts(self) -> list[list[str]]:
        return [call for call in self.calls if call[0] == "mount"]


def kernel_mounts(ctx: Context, tmp_path: Path) -> Mounts:
    """Mounts for a kernel that has NFS and overlayfs (this host may not)."""
    known = tmp_path / "filesystems"
    known.write_text("nodev\ttmpfs\nnodev\tnfs\nnodev\tnfs4\nnodev\toverlay\n")
    return Mounts(ctx, proc_filesystems=known)


def test_nfs_tries_versions_only_when_the_server_says_not_supported(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> tuple[int, str]:
        if argv[0] == "mount" and "vers=4.1" in argv[4]:
            return 255, "mount: mounting ... failed: Protocol not supported"
        return 0, ""

    ctx = Recorder(tmp_path, answer)
    url = nfs.parse_url("nfs://192.0.2.1:2050/srv/root/")
    version = nfs.mount(kernel_mounts(ctx, tmp_path), url, tmp_path / "lower", read_only=True)
    assert version == "4.0"
    assert [call[4] for call in ctx.mounts()] == [
        "ro,addr=192.0.2.1,port=2050,vers=4.1", "ro,addr=192.0.2.1,port=2050,vers=4.0"]
    assert ctx.mounts()[-1][5:] == ["192.0.2.1:/srv/root", str(tmp_path / "lower")]


def test_nfs_v3_gets_nolock_and_any_other_error_stops(tmp_path: Path) -> None:
    ctx = Recorder(tmp_path)
    nfs.mount(kernel_mounts(ctx, tmp_path), nfs.parse_url("nfs://[::1]/x"), tmp_path / "l",
              read_only=False, options="vers=3,noatime")
    assert ctx.mounts() == [["mount", "-t", "nfs", "-o", "addr=::1,nolock,vers=3,noatime",
                             "[::1]:/x", str(tmp_path / "l")]]
    refused = Recorder(tmp_path, lambda argv: (255, "Connection refused")
                       if argv[0] == "mount" else (0, ""))
    with pytest.raises(ActionError, match=r"cannot mount 192\.0\.2\.9:/x: .*Connection refused"):
        nfs.mount(kernel_mounts(refused, tmp_path), nfs.parse_url("nfs://192.0.2.9/x"),
                  tmp_path / "l", read_only=True)
    assert len(refused.mounts()) == 1


def fake_sys_block(root: Path, sizes: dict[str, int], busy: Sequence[str] = ()) -> Path:
    for name, size in sizes.items():
        (root / name).mkdir(parents=True)
        (root / name / "size").write_text(f"{size}\n")
        if name in busy:
            (root / name / "pid").write_text("42\n")
    return root


def test_nbd_picks_a_free_device_and_passes_the_export(tmp_path: Path) -> None:
    sys_block = fake_sys_block(tmp_path / "sys", {"nbd0": 2048, "nbd1": 0, "nbd10": 0,
                                                  "nbd2": 0}, busy=("nbd1",))
    assert nbd.free_device(sys_block) == "nbd2"

    def answer(argv: list[str]) -> tuple[int, str]:
        if argv[0] == "nbd-client" and "-d" not in argv:
            (sys_block / "nbd2/size").write_text("4096\n")
        return 0, ""

    ctx = Recorder(tmp_path, answer)
    device = nbd.attach(Mounts(ctx), nbd.parse_url("nbd://192.0.2.1/images/root"),
                        read_only=True, io_timeout=30, partition=None, sys_block=sys_block,
                        dev=tmp_path / "dev")
    assert device == tmp_path / "dev/nbd2"
    [connect] = [call for call in ctx.calls if call[0] == "nbd-client"]
    assert connect == ["nbd-client", "-N", "images/root", "-R", "-t", "30", "192.0.2.1",
                       "10809", str(tmp_path / "dev/nbd2")]


def test_an_nbd_client_that_stays_behind_is_refused(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77/comm").write_text("nbd-client\n")
    (proc / "77/cmdline").write_bytes(b"nbd-client\0h\0/dev/nbd0\0")
    assert nbd.clients_of("nbd0", proc) == [77]


def test_a_failed_step_undoes_everything_newest_first(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> tuple[int, str]:
        if argv[:3] == ["mount", "-t", "overlay"]:
            return 32, "mount: wrong fs type"
        return 0, ""

    ctx = Recorder(tmp_path, answer)
    mounts = kernel_mounts(ctx, tmp_path)
    where = Layout(newroot=tmp_path / "newroot", state=tmp_path / "run/ramboot")
    with pytest.raises(ActionError, match="wrong fs type"):
        try:
            mounts.mount("192.0.2.1:/srv", where.lower, fstype="nfs")
            upper = layers.writable_layer(mounts, where, Overlay("tmpfs", size="25%"), "r")
            layers.overlay(mounts, where.lower, upper, where.newroot)
        except ActionError:
            mounts.undo()
            raise
    umounts = [call[-1] for call in ctx.calls if call[0] == "umount"]
    assert umounts == [str(where.rw), str(where.lower)]
    tmpfs = next(call for call in ctx.mounts() if call[2] == "tmpfs")
    assert tmpfs[3:5] == ["-o", "size=25%,mode=0755"]


def test_mountinfo_names_are_unescaped(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text("22 1 0:21 / / rw - rootfs rootfs rw\n"
                    "30 22 0:40 / /run/ramboot/root/a\\040b rw - tmpfs tmpfs rw\n")
    assert mount_points(info) == ["/", "/run/ramboot/root/a b"]


def test_a_dry_run_describes_without_touching_anything(tmp_path: Path) -> None:
    plan = load_plan(b'{"ramboot-plan": 1, "actions": [{"action": "netroot", "root": '
                     b'"nfs://192.0.2.1/srv/root", "mounts": [{"type": "tmpfs", '
                     b'"target": "/var/tmp", "size": "1GiB"}]}]}', "plan.json")
    ctx = Recorder(tmp_path)
    ctx.dry_run = True
    run_plan(plan, ctx)
    said = ctx.out.getvalue()  # type: ignore[attr-defined]
    assert said.startswith("actions[0] (netroot): would mount nfs://192.0.2.1/srv/root "
                           "read-only on /run/ramboot/root/lower, with a tmpfs overlay "
                           "(size=50%) on /newroot, then tmpfs on /var/tmp "
                           f"(size={1 << 30}), check /sbin/init and switch_root into it")
    assert ctx.calls == []


def test_outside_the_ram_system_a_root_is_refused_before_anything(tmp_path: Path) -> None:
    """run-plan on a workstation: no busybox init to switch, nothing mounted."""
    from ramboot_agent.plan.runner import PlanFailed

    plan = load_plan(b'{"ramboot-plan": 1, "actions": [{"action": "netroot", "root": '
                     b'"nbd://192.0.2.1/root"}]}', "plan.json")
    ctx = Recorder(tmp_path)
    with pytest.raises(PlanFailed, match="cannot switch to another root here"):
        run_plan(plan, ctx)
    assert ctx.calls == []


def test_a_partition_is_found_by_label_once_it_appears(tmp_path: Path) -> None:
    from ramboot_agent.plan.model import DiskSelector, PartitionRef
    from ramboot_agent.plan.partitions import find_partition

    tries = []

    def answer(argv: list[str]) -> tuple[int, str]:
        tries.append(argv)
        return (0, "/dev/vdb2\n") if len(tries) >= 3 else (1, "")

    ctx = Recorder(tmp_path, answer)
    assert find_partition(ctx, PartitionRef(label="rb-persist"), 10) == "/dev/vdb2"
    assert tries == [["findfs", "LABEL=rb-persist"]] * 3
    never = Recorder(tmp_path, lambda argv: (1, ""))
    with pytest.raises(ActionError, match=r"no partition with PARTUUID=0fc6 appeared within 1s"):
        find_partition(never, PartitionRef(partuuid="0fc6"), 1)
    with pytest.raises(ActionError, match="only by label"):
        find_partition(never, PartitionRef(disk=DiskSelector(path="/dev/vda"), number=1), 1)


def test_an_unmount_that_hangs_is_detached_lazily(tmp_path: Path) -> None:
    """A hard NFS mount whose server is gone: umount blocks until its timeout."""
    class Hanging(Recorder):
        def run_tool(self, argv: Sequence[str], *, timeout: float = 120.0,
                     input_text: str | None = None,
                     check: bool = True) -> subprocess.CompletedProcess[str]:
            if list(argv)[:2] == ["umount", str(tmp_path / "lower")]:
                self.calls.append(list(argv))
                raise ActionTimeout("it did not stop by itself; the watchdog stopped it")
            return super().run_tool(argv, timeout=timeout, input_text=input_text, check=check)

    ctx = Hanging(tmp_path)
    mounts = kernel_mounts(ctx, tmp_path)
    mounts.unmount(tmp_path / "lower")
    assert [call for call in ctx.calls if call[0] == "umount"] == [
        ["umount", str(tmp_path / "lower")], ["umount", "-l", str(tmp_path / "lower")]]
