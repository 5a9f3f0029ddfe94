"""Validation of the disk actions: each class of bad plan, with the message it gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ramboot_agent.plan import PlanError, load_plan

DIGEST = "sha256:" + "ab" * 32


def problems(*actions: dict[str, Any], **top: Any) -> list[str]:
    document = {"ramboot-plan": 1, "actions": list(actions), **top}
    with pytest.raises(PlanError) as error:
        load_plan(json.dumps(document).encode(), "plan.json")
    return error.value.problems


def valid(*actions: dict[str, Any], **top: Any) -> Any:
    return load_plan(json.dumps({"ramboot-plan": 1, "actions": list(actions), **top}).encode(),
                     "plan.json")


def test_a_complete_install_plan_is_valid() -> None:
    plan = valid(
        {"action": "hardware"},
        {"action": "wipe", "target": "main"},
        {"action": "image", "url": "images/debian.img.zst", "digest": DIGEST,
         "image_digest": "sha512:" + "cd" * 64, "bmap": "images/debian.img.bmap",
         "target": "main", "verify": True},
        {"action": "grow", "target": "main"},
        {"action": "write-file", "partition": {"disk": "main", "number": 2},
         "path": "/etc/hostname", "content": "node-1\n", "mode": "0644", "owner": "root"},
        {"action": "localboot", "target": "main", "method": "kexec", "append": "quiet"},
        disks={"main": {"min_size": "8GiB", "removable": False}},
    )
    image = plan.actions[2].spec
    assert image.digest == ("sha256", "ab" * 32) and image.verify is True
    assert image.target.min_size == 8 << 30
    assert plan.actions[5].spec.method == "kexec"


def test_an_authenticated_bmap_makes_the_file_digest_optional() -> None:
    plan = valid({"action": "image", "url": "images/debian.img", "bmap": "images/debian.bmap",
                  "bmap_digest": DIGEST, "target": {"path": "/dev/sda"}})
    image = plan.actions[0].spec
    assert image.digest is None and image.bmap_digest == ("sha256", "ab" * 32)


def test_a_partitioning_plan_is_valid() -> None:
    plan = valid(
        {"action": "partition", "target": {"path": "/dev/vda"}, "label": "gpt", "partitions": [
            {"size": "512MiB", "type": "uefi", "name": "EFI"},
            {"size": "4GiB", "type": "swap"},
            {"type": "0fc63daf-8483-4772-8e79-3d69d8477de4", "name": "root"}]},
        {"action": "mkfs", "partition": {"partlabel": "EFI"}, "fs": "vfat", "label": "EFI"},
        {"action": "mkfs", "partition": {"disk": {"path": "/dev/vda"}, "number": 3},
         "fs": "ext4", "label": "root", "options": ["-E", "lazy_itable_init=1"]},
    )
    script = plan.actions[0].spec.script()
    assert script == ('label: gpt\nsize=1048576, type=U, name="EFI"\nsize=8388608, type=S\n'
                      'type=0fc63daf-8483-4772-8e79-3d69d8477de4, name="root"\n')
    assert plan.actions[2].spec.argv("/dev/vda3") == [
        "mke2fs", "-t", "ext4", "-F", "-q", "-L", "root", "-E", "lazy_itable_init=1", "/dev/vda3"]


@pytest.mark.parametrize(("action", "expected"), [
    ({"action": "image", "url": "x.img", "target": {"path": "/dev/sda"}},
     'plan.json: actions[0].digest: required, unless "bmap" and "bmap_digest" are given '
     "(an authenticated bmap)"),
    ({"action": "image", "url": "x.img", "bmap": "x.bmap", "target": {"path": "/dev/sda"}},
     'plan.json: actions[0].digest: required, unless "bmap" and "bmap_digest" are given '
     "(an authenticated bmap)"),
    ({"action": "image", "url": "x.img", "digest": DIGEST, "bmap_digest": DIGEST,
      "target": {"path": "/dev/sda"}},
     'plan.json: actions[0].bmap_digest: only with "bmap" (the digest of the bmap file)'),
    ({"action": "image", "url": "x.img", "bmap": "x.bmap", "bmap_digest": "sha1:00",
      "target": {"path": "/dev/sda"}},
     "plan.json: actions[0].bmap_digest: 'sha1:00' is not 'sha256:<64 hex digits>' or "
     "'sha512:<128 hex digits>'"),
    ({"action": "image", "url": "x.img", "digest": "md5:00", "target": {"path": "/dev/sda"}},
     "plan.json: actions[0].digest: 'md5:00' is not 'sha256:<64 hex digits>' or "
     "'sha512:<128 hex digits>'"),
    ({"action": "image", "url": "gopher://h/x", "digest": DIGEST, "target": {"path": "/dev/sda"}},
     "plan.json: actions[0].url: scheme 'gopher' is not one of: http, https, tftp"),
    ({"action": "image", "url": "x", "digest": DIGEST, "target": {"path": "/etc/passwd"}},
     "plan.json: actions[0].target.path: '/etc/passwd' is not a path under /dev/"),
    ({"action": "image", "url": "x", "digest": DIGEST, "target": "nope"},
     "plan.json: actions[0].target: 'nope' is not a disk named in the plan's disks "
     "(none defined)"),
    ({"action": "image", "url": "x", "digest": DIGEST, "target": {"min_size": "lots"}},
     "plan.json: actions[0].target.min_size: 'lots' is not a size such as 8GiB, 512MiB or "
     "1000000"),
    ({"action": "image", "url": "x", "digest": DIGEST, "target": {"path": "/dev/sda"},
      "verify": "yes"}, "plan.json: actions[0].verify: must be true or false, not a string"),
    ({"action": "image", "url": "x", "digest": DIGEST, "target": {"path": "/dev/sda"},
      "sparse": True}, "plan.json: actions[0].sparse: unknown key (allowed: action, bmap, "
     "bmap_digest, description, digest, image_digest, target, timeout, url, verify)"),
    ({"action": "wipe", "target": {"path": "/dev/sda"}, "discard": 1},
     "plan.json: actions[0].discard: must be true or false, not a number"),
    ({"action": "partition", "target": {"path": "/dev/sda"}, "label": "apm",
      "partitions": [{}]}, "plan.json: actions[0].label: 'apm' is not one of: gpt, dos"),
    ({"action": "partition", "target": {"path": "/dev/sda"}, "partitions": []},
     "plan.json: actions[0].partitions: must have 1 to 128 items, has 0"),
    ({"action": "partition", "target": {"path": "/dev/sda"},
      "partitions": [{"type": "linux"}, {"size": "1G"}]},
     "plan.json: actions[0].partitions[0]: only the last partition may leave out its size "
     "(it takes the rest)"),
    ({"action": "partition", "target": {"path": "/dev/sda"},
      "partitions": [{"size": 1000}]},
     "plan.json: actions[0].partitions[0].size: must be a multiple of 512 bytes, not 1000"),
    ({"action": "partition", "target": {"path": "/dev/sda"},
      "partitions": [{"type": "ntfs"}]},
     "plan.json: actions[0].partitions[0].type: 'ntfs' is not one of linux, swap, uefi, esp, "
     "extended, home, lvm, raid, xbootldr, a GPT type GUID"),
    ({"action": "partition", "target": {"path": "/dev/sda"}, "label": "dos",
      "partitions": [{"name": "root"}]},
     "plan.json: actions[0].partitions[0].name: DOS partition tables have no partition names"),
    ({"action": "partition", "target": {"path": "/dev/sda"},
      "partitions": [{"name": 'a"b'}]},
     "plan.json: actions[0].partitions[0].name: 'a\"b' is not a partition name (at most 36 "
     "characters, no quotes)"),
    ({"action": "partition", "target": {"path": "/dev/sda"},
      "partitions": [{"bootable": True}]},
     "plan.json: actions[0].partitions[0].bootable: GPT has no bootable flag (use type "
     "\"uefi\" for an ESP)"),
    ({"action": "mkfs", "partition": {"label": "root"}, "fs": "ntfs"},
     "plan.json: actions[0].fs: 'ntfs' is not one of: ext2, ext3, ext4, vfat, swap, xfs, btrfs"),
    ({"action": "mkfs", "partition": {"label": "root"}, "fs": "vfat", "label": "TOO LONG NAME"},
     "plan.json: actions[0].label: a vfat label has at most 11 characters"),
    ({"action": "mkfs", "partition": {"disk": {"path": "/dev/sda"}}, "fs": "ext4"},
     "plan.json: actions[0].partition: a partition by number needs both disk and number"),
    ({"action": "mkfs", "partition": {"label": "a", "uuid": "1234-5678"}, "fs": "ext4"},
     "plan.json: actions[0].partition: name the partition one way: disk + number, label, "
     "partlabel, uuid or partuuid"),
    ({"action": "mkfs", "partition": {"label": "a"}, "fs": "ext4", "options": ["-O\n^x"]},
     "plan.json: actions[0].options[0]: '-O\\n^x' is not a command-line argument"),
    ({"action": "write-file", "partition": {"label": "root"}, "path": "etc/hostname",
      "content": "x"}, "plan.json: actions[0].path: 'etc/hostname' is not an absolute path "
     "inside the filesystem"),
    ({"action": "write-file", "partition": {"label": "root"}, "path": "/etc/../../x",
      "content": "x"}, "plan.json: actions[0].path: '.' and '..' are not allowed: the path "
     "stays inside the filesystem"),
    ({"action": "write-file", "partition": {"label": "root"}, "path": "/x"},
     "plan.json: actions[0]: give exactly one of content and content_base64"),
    ({"action": "write-file", "partition": {"label": "root"}, "path": "/x",
      "content_base64": "not base64!"}, "plan.json: actions[0].content_base64: is not base64"),
    ({"action": "write-file", "partition": {"label": "root"}, "path": "/x", "content": "",
      "mode": "rwxr-xr-x"}, "plan.json: actions[0].mode: 'rwxr-xr-x' is not an octal mode "
     "such as '0644'"),
    ({"action": "write-file", "partition": {"label": "root"}, "path": "/x", "content": "",
      "owner": "root:root"}, "plan.json: actions[0].owner: 'root:root' is not a user name or "
     "number"),
    ({"action": "grow"}, "plan.json: actions[0].target: required"),
    ({"action": "localboot", "target": {"path": "/dev/sda"}},
     "plan.json: actions[0].method: required"),
    ({"action": "localboot", "target": {"path": "/dev/sda"}, "method": "chainload"},
     "plan.json: actions[0].method: 'chainload' is not one of: kexec, reboot"),
    ({"action": "hardware", "verbose": True},
     "plan.json: actions[0].verbose: unknown key (allowed: action, description, timeout)"),
])
def test_each_bad_action_is_named_with_its_field(action: dict[str, Any], expected: str) -> None:
    assert expected in problems(action)


def test_localboot_ends_the_plan() -> None:
    found = problems({"action": "localboot", "target": {"path": "/dev/sda"}, "method": "reboot"},
                     {"action": "hardware"})
    assert found == ["plan.json: actions[0].action: 'localboot' ends the plan, so it must be "
                     "the last action"]


def test_every_problem_of_a_plan_is_reported_at_once() -> None:
    found = problems(
        {"action": "image", "url": "x", "digest": "sha256:1", "target": {"bus": "floppy"}},
        {"action": "mkfs", "partition": {"number": 1}, "fs": "ext4"},
        {"action": "write-file", "partition": {"label": "r"}, "path": "/a/../b", "content": "x"},
    )
    assert len(found) == 4, found
    assert [p.split(":")[1].strip() for p in found] == [
        "actions[0].digest", "actions[0].target.bus", "actions[1].partition",
        "actions[2].path"]
