"""netroot and ramroot plans: what validates, into what, and every problem with its path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ramboot_agent.plan import PlanError, load_plan
from ramboot_agent.plan.actions.netroot import NetrootSpec
from ramboot_agent.plan.actions.ramroot import RamrootSpec
from ramboot_agent.roots.keys import ExtraMount, Overlay, has_option

SHA = "cd" * 32


def plan(*actions: dict[str, Any]) -> bytes:
    return json.dumps({"ramboot-plan": 1, "actions": list(actions)}).encode()


def spec(action: dict[str, Any]) -> Any:
    return load_plan(plan(action), "plan.json").actions[0].spec


def problems(action: dict[str, Any]) -> list[str]:
    with pytest.raises(PlanError) as caught:
        load_plan(plan(action), "plan.json")
    return caught.value.problems


def test_a_netroot_takes_its_defaults() -> None:
    loaded = spec({"action": "netroot", "root": "nfs://192.0.2.1/srv/root"})
    assert isinstance(loaded, NetrootSpec)
    assert loaded.protocol == "nfs"
    assert loaded.overlay == Overlay("tmpfs", size="50%")
    assert (loaded.init, loaded.init_args, loaded.mounts) == ("/sbin/init", (), ())
    assert loaded.read_only
    assert load_plan(plan({"action": "netroot", "root": "nbd://h/x"}), "p").actions[0].timeout \
        == 300


def test_a_full_netroot() -> None:
    loaded = spec({
        "action": "netroot", "root": "nbd://[fd00::1]:10810/images/root",
        "overlay": {"type": "partition", "partition": {"label": "rb-persist"},
                    "directory": "layers/a", "wait": 3},
        "init": "/usr/sbin/nginx", "init_args": ["-g", "daemon off;"], "partition": 2,
        "io_timeout": 0, "mount_options": "noatime",
        "mounts": [{"type": "tmpfs", "target": "/var/tmp", "size": "10%"},
                   {"type": "nfs", "target": "/home", "source": "nfs://h/home",
                    "options": "vers=3"}]})
    assert loaded.protocol == "nbd"
    assert loaded.overlay.kind == "partition"
    assert loaded.overlay.partition.label == "rb-persist"
    assert (loaded.overlay.directory, loaded.overlay.wait) == ("layers/a", 3)
    assert (loaded.init, loaded.init_args) == ("/usr/sbin/nginx", ("-g", "daemon off;"))
    assert (loaded.partition, loaded.io_timeout) == (2, 0)
    assert loaded.mounts == (ExtraMount("tmpfs", "/var/tmp", size="10%"),
                             ExtraMount("nfs", "/home", source="nfs://h/home",
                                        options="vers=3"))


def test_a_writable_root_needs_no_overlay() -> None:
    loaded = spec({"action": "netroot", "root": "nfs://h/r", "overlay": "none",
                   "mount_options": "rw,vers=3"})
    assert not loaded.read_only
    assert problems({"action": "netroot", "root": "nfs://h/r", "mount_options": "rw"}) == [
        "plan.json: actions[0].mount_options: rw: the root under an overlay is read-only "
        "(use \"overlay\": \"none\" for a writable root)"]


@pytest.mark.parametrize(("root", "fragment"), [
    ("http://h/root", "is not nfs://SERVER[:PORT]/EXPORT/PATH or nbd://"),
    ("nfs://h/a/../b", "is not nfs://"),
    ("nfs://h/a b", "is not nfs://"),
    ("nbd://h:65536/x", "is not nfs://"),
    ("nbds://h/x", "is not nfs://"),
    ("nfs://-h/x", "is not nfs://"),
])
def test_roots_that_are_refused(root: str, fragment: str) -> None:
    [found] = problems({"action": "netroot", "root": root})
    assert found.startswith("plan.json: actions[0].root: ") and fragment in found


def test_every_problem_at_once() -> None:
    found = problems({
        "action": "netroot", "root": "nfs://h/r", "partition": 1, "io_timeout": 5,
        "init": "sbin/init", "init_args": ["a\nb"], "mount_options": "a b",
        "overlay": {"type": "partition", "partition": {"disk": {"path": "/dev/vda"},
                                                         "number": 1}, "size": "1G"},
        "mounts": [{"type": "tmpfs", "target": "/run/x"},
                   {"type": "nfs", "target": "/home"}, {"type": "bind", "target": "/x"}]})
    assert found == [
        "plan.json: actions[0].overlay.size: not a key of a partition overlay (allowed: type, "
        "partition, directory, wait)",
        "plan.json: actions[0].overlay.partition: a persistent overlay's partition is found by "
        "label, partlabel, uuid or partuuid",
        "plan.json: actions[0].init: 'sbin/init' is not an absolute path (such as /sbin/init)",
        "plan.json: actions[0].init_args[0]: 'a\\nb' is not an argument without control "
        "characters",
        "plan.json: actions[0].mount_options: 'a b' is not comma-separated mount options",
        "plan.json: actions[0].mounts[0].target: '/run/x' is not an absolute, normalised path "
        "other than /, /dev, /proc, /sys, /run and below",
        "plan.json: actions[0].mounts[1].source: required",
        "plan.json: actions[0].mounts[2].type: 'bind' is not one of: tmpfs, nfs",
        "plan.json: actions[0].partition: only for an nbd:// root",
        "plan.json: actions[0].io_timeout: only for an nbd:// root",
    ]


def test_a_ramroot() -> None:
    loaded = spec({"action": "ramroot", "url": "images/root.squashfs",
                   "digest": f"sha256:{SHA}", "size": "2GiB", "format": "squashfs"})
    assert isinstance(loaded, RamrootSpec)
    assert loaded.digest == ("sha256", SHA)
    assert (loaded.size, loaded.format, loaded.init) == (str(2 << 30), "squashfs", "/sbin/init")
    default = spec({"action": "ramroot", "url": "r.tar", "digest": f"sha256:{SHA}"})
    assert (default.size, default.format) == ("50%", None)


def test_a_ramroot_needs_a_digest_and_an_http_url() -> None:
    assert problems({"action": "ramroot", "url": "tftp://h/root.tar", "size": "0%",
                     "format": "zip"}) == [
        "plan.json: actions[0].digest: required",
        "plan.json: actions[0].url: scheme 'tftp' is not one of: http, https",
        "plan.json: actions[0].size: '0%' is not a share of RAM from 1% to 100%",
        "plan.json: actions[0].format: 'zip' is not one of: squashfs, tar, cpio",
    ]


def test_has_option_matches_names_not_substrings() -> None:
    assert has_option("ro,vers=4.1", "vers")
    assert has_option("rw", "rw")
    assert not has_option("rwsize=1", "rw")
    assert not has_option(None, "rw")
