"""wipe, partition, mkfs, write-file, grow and localboot's search on real loop devices,
each result checked with the real tools (sfdisk --json, blkid, debugfs, e2fsck)."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.events import Reporter
from ramboot_agent.fetch import Fetcher
from ramboot_agent.plan.actions.localboot import find_entry
from ramboot_agent.plan.context import Context
from ramboot_agent.plan.runner import PlanFailed, run_document
from tests.lib.loopdev import loop_device, require_loop

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    require_loop()
    with loop_device(tmp_path / "disk.raw", 256 * MiB) as device:
        yield device


def context(tmp_path: Path) -> tuple[Context, Reporter]:
    reporter = Reporter({"mac": "52:54:00:00:00:01"})
    work = tmp_path / "run"
    work.mkdir(exist_ok=True)
    return Context(reporter=reporter, fetcher=Fetcher(retries=0), out=io.StringIO(),
                   runtime_dir=work, base_url="file:///plan.json"), reporter


def run(tmp_path: Path, device: str, *actions: dict[str, Any]) -> list[dict[str, Any]]:
    ctx, reporter = context(tmp_path)
    document = {"ramboot-plan": 1, "disks": {"d": {"path": device}}, "actions": list(actions)}
    run_document(json.dumps(document).encode(), "file:///plan.json", ctx)
    return [e["details"] for e in reporter.recent(500) if e["event"] == "action-done"]


def tool(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True).stdout


def blkid(device: str) -> dict[str, str]:
    out = tool("blkid", "-c", "/dev/null", "-p", "-o", "export", device)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


LAYOUT = {"action": "partition", "target": "d", "partitions": [
    {"size": "32MiB", "type": "uefi", "name": "EFI"},
    {"size": "16MiB", "type": "swap", "name": "swap"},
    {"size": "64MiB", "type": "linux", "name": "root"}]}


def test_partition_mkfs_write_file_grow(tmp_path: Path, disk: str) -> None:
    done = run(
        tmp_path, disk,
        {"action": "wipe", "target": "d"},
        LAYOUT,
        {"action": "mkfs", "partition": {"partlabel": "EFI"}, "fs": "vfat", "label": "efi"},
        {"action": "mkfs", "partition": {"disk": "d", "number": 2}, "fs": "swap"},
        {"action": "mkfs", "partition": {"disk": "d", "number": 3}, "fs": "ext4",
         "label": "root", "uuid": "2f4d1b6e-55aa-4c1e-9d2a-0123456789ab"},
        {"action": "write-file", "partition": {"label": "root"}, "path": "/etc/passwd",
         "content": "root:x:0:0::/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n"},
        {"action": "write-file", "partition": {"label": "root"}, "path": "/etc/group",
         "content": "root:x:0:\nnode:x:1000:\n"},
        {"action": "write-file", "partition": {"uuid": "2f4d1b6e-55aa-4c1e-9d2a-0123456789ab"},
         "path": "/home/node/.ssh/authorized_keys", "content": "ssh-ed25519 AAAA test\n",
         "mode": "0600", "owner": "node", "group": "node"},
        {"action": "grow", "target": "d"},
    )
    table = json.loads(tool("sfdisk", "--json", disk))["partitiontable"]
    assert table["label"] == "gpt"
    assert [p.get("name") for p in table["partitions"]] == ["EFI", "swap", "root"]
    assert table["partitions"][0]["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    assert table["partitions"][0]["size"] == 32 * MiB // 512
    assert blkid(f"{disk}p1")["TYPE"] == "vfat" and blkid(f"{disk}p1")["LABEL"] == "EFI"
    assert blkid(f"{disk}p2")["TYPE"] == "swap"
    root = blkid(f"{disk}p3")
    assert (root["TYPE"], root["LABEL"], root["UUID"]) == (
        "ext4", "root", "2f4d1b6e-55aa-4c1e-9d2a-0123456789ab")
    keys = tool("debugfs", "-R", "stat /home/node/.ssh/authorized_keys", f"{disk}p3")
    assert "Mode:  0600" in keys and "User:  1000   Group:  1000" in keys
    assert tool("debugfs", "-R", "cat /home/node/.ssh/authorized_keys",
                f"{disk}p3") == "ssh-ed25519 AAAA test\n"
    # grow: the last partition reaches the end of the disk (GPT keeps 33 sectors), and ext4
    # fills it, clean.
    last = table["partitions"][2]
    assert last["start"] + last["size"] == 256 * MiB // 512 - 33
    grown = done[-1]
    assert grown["new_size"] > grown["old_size"] == 64 * MiB and grown["fs"] == "ext4"
    info = tool("dumpe2fs", "-h", f"{disk}p3")
    block_count = int(info.split("Block count:")[1].split()[0])
    block_size = int(info.split("Block size:")[1].split()[0])
    # resize2fs leaves out at most a few blocks that cannot form a usable group tail.
    assert 0 <= grown["new_size"] - block_count * block_size < 64 * block_size
    subprocess.run(["e2fsck", "-f", "-n", f"{disk}p3"], check=True, capture_output=True)


def test_write_file_never_follows_a_symlink_out_of_the_filesystem(
        tmp_path: Path, disk: str) -> None:
    run(tmp_path, disk, {"action": "partition", "target": "d", "partitions": [{"name": "r"}]},
        {"action": "mkfs", "partition": {"partlabel": "r"}, "fs": "ext4"})
    outside = tmp_path / "outside"
    outside.mkdir()
    point = tmp_path / "m"
    point.mkdir()
    subprocess.run(["mount", f"{disk}p1", str(point)], check=True)
    try:
        (point / "etc").symlink_to(str(outside))  # absolute: points out of the filesystem
    finally:
        subprocess.run(["umount", str(point)], check=True)
    with pytest.raises(PlanFailed, match="'etc' in the path is a symlink or not a directory: "
                                         "refusing to leave the filesystem"):
        run(tmp_path, disk, {"action": "write-file", "partition": {"partlabel": "r"},
                             "path": "/etc/hostname", "content": "x"})
    assert list(outside.iterdir()) == []
    assert str(tmp_path / "run") not in Path("/proc/self/mounts").read_text()  # unmounted


def test_an_unknown_owner_is_a_failure_and_the_partition_is_unmounted(
        tmp_path: Path, disk: str) -> None:
    run(tmp_path, disk, {"action": "partition", "target": "d", "partitions": [{"name": "r"}]},
        {"action": "mkfs", "partition": {"partlabel": "r"}, "fs": "ext4"})
    with pytest.raises(PlanFailed, match="no user 'nobody' in the filesystem's /etc/passwd"):
        run(tmp_path, disk, {"action": "write-file", "partition": {"partlabel": "r"},
                             "path": "/x", "content": "x", "owner": "nobody"})
    assert f"{disk}p1 " not in Path("/proc/self/mounts").read_text()


def test_localboot_finds_the_bls_entry_on_the_esp(tmp_path: Path, disk: str) -> None:
    run(tmp_path, disk, {"action": "partition", "target": "d", "partitions": [
        {"size": "64MiB", "type": "linux", "name": "boot"}, {"name": "root"}]},
        {"action": "mkfs", "partition": {"partlabel": "boot"}, "fs": "ext4"},
        {"action": "write-file", "partition": {"partlabel": "boot"},
         "path": "/loader/entries/test.conf",
         "content": "title Test\nversion 1\nlinux /vmlinuz-1\ninitrd /initrd-1\n"
                    "options console=ttyS0 root=PARTLABEL=root\n"},
        {"action": "write-file", "partition": {"partlabel": "boot"}, "path": "/vmlinuz-1",
         "content": "kernel"},
        {"action": "write-file", "partition": {"partlabel": "boot"}, "path": "/initrd-1",
         "content": "initrd"})
    ctx, _ = context(tmp_path)
    found = find_entry(ctx, disk)
    assert (found.device, found.kind) == (f"{disk}p1", "bls")
    assert found.entry.kernel == "/vmlinuz-1"  # type: ignore[attr-defined]
    assert found.entry.cmdline == "console=ttyS0 root=PARTLABEL=root"  # type: ignore[attr-defined]


def test_localboot_on_a_disk_without_entries_says_what_it_looked_for(
        tmp_path: Path, disk: str) -> None:
    run(tmp_path, disk, {"action": "partition", "target": "d", "partitions": [{"name": "r"}]},
        {"action": "mkfs", "partition": {"partlabel": "r"}, "fs": "ext4"})
    ctx, _ = context(tmp_path)
    with pytest.raises(Exception, match=r"no boot entry found: no /loader/entries/\*.conf, no "
                                        r"grub.cfg with a menuentry, no config.txt"):
        find_entry(ctx, disk)


def test_wipe_removes_every_signature(tmp_path: Path, disk: str) -> None:
    run(tmp_path, disk, LAYOUT,
        {"action": "mkfs", "partition": {"disk": "d", "number": 3}, "fs": "ext4"})
    done = run(tmp_path, disk, {"action": "wipe", "target": "d"})
    assert done[0]["partitions_wiped"] == 3
    assert tool("wipefs", "--no-act", disk) == ""
    assert not any(entry.name.startswith(Path(disk).name + "p")
                   for entry in Path(f"/sys/block/{Path(disk).name}").iterdir())
