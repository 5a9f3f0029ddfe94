"""Plan validation: the whole plan before anything runs, every problem named by its path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ramboot_agent.plan import PlanError, load_plan, registry
from ramboot_agent.plan.actions.kexec import KexecSpec
from ramboot_agent.plan.model import DiskSelector, PartitionRef
from ramboot_agent.plan.refs import disk_selector, partition_ref
from ramboot_agent.plan.schema import Errors, Node

SHA = "ab" * 32


def plan(*actions: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"ramboot-plan": 1, "actions": list(actions), **top}).encode()


def problems(data: bytes, source: str = "plan.json") -> list[str]:
    with pytest.raises(PlanError) as caught:
        load_plan(data, source)
    return caught.value.problems


def test_a_valid_plan_is_typed_and_keeps_its_source_and_digest() -> None:
    data = plan({"action": "kexec", "kernel": {"url": "vmlinuz", "digest": f"sha256:{SHA}"},
                 "initrds": ["initrd.img"], "cmdline": "console=ttyS0", "timeout": 60},
                report="https://ctl.example/events", timeout=3600, description="boot it")
    loaded = load_plan(data, "http://srv/plan.json")
    assert loaded.source == "http://srv/plan.json"
    assert loaded.report == "https://ctl.example/events"
    assert loaded.timeout == 3600
    [action] = loaded.actions
    assert (action.index, action.name, action.timeout) == (0, "kexec", 60)
    assert isinstance(action.spec, KexecSpec)
    assert action.spec.kernel.digest == ("sha256", SHA)
    assert len(loaded.sha256) == 64


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    found = problems(plan(
        {"action": "reboot", "timeout": 0},
        {"action": "kexec", "kernel": 7, "initrds": "x", "bogus": True},
        {"action": "format-everything"},
        {"action": "shell"},
    ))
    assert found == [
        "plan.json: actions[0].timeout: must be at least 0.001, not 0.0",
        "plan.json: actions[0].action: 'reboot' ends the plan, so it must be the last action",
        "plan.json: actions[1].bogus: unknown key (allowed: action, cmdline, description, "
        "initrds, kernel, timeout)",
        "plan.json: actions[1].kernel: must be an object, not a number",
        "plan.json: actions[1].initrds: must be a list, not a string",
        "plan.json: actions[1].action: 'kexec' ends the plan, so it must be the last action",
        "plan.json: actions[2].action: 'format-everything' is not one of: "
        + ", ".join(sorted(registry.KINDS)),
    ]


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "plan.json:1:1: not JSON: Expecting value"),
    (b'{"ramboot-plan": 1, "actions": [],}', "plan.json:1:35: not JSON"),
    (b"\xff\xfe{}", "plan.json: not UTF-8 (byte 0)"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "shell", "timeout": NaN}]}',
     "plan.json: not JSON: NaN is not JSON"),
    (b"[1, 2]", 'plan.json: not a plan: expected a JSON object with "ramboot-plan": 1'),
    (b'{"version": 1, "actions": []}', 'not a plan: expected a JSON object with "ramboot-plan"'),
    (b'{"ramboot-plan": 2, "actions": []}',
     "plan.json: ramboot-plan: version 2 is not supported by this ramboot-agent (it runs "
     "version 1)"),
    (b'{"ramboot-plan": true, "actions": []}', "ramboot-plan: version True is not supported"),
    (b'{"ramboot-plan": 1}', "plan.json: actions: required"),
    (b'{"ramboot-plan": 1, "actions": []}', "plan.json: actions: must have 1 to 256 items, has 0"),
    (b'{"ramboot-plan": 1, "actions": [{}]}', "plan.json: actions[0].action: required"),
    (b'{"ramboot-plan": 1, "actions": ["reboot"]}',
     'plan.json: actions[0]: must be an object with an "action" key, not str'),
    (b'{"ramboot-plan": 1, "actions": [{"action": "reboot"}], "extra": 1}',
     "plan.json: extra: unknown key"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "reboot"}], "report": "ftp://x/"}',
     "plan.json: report: scheme 'ftp' is not one of: http, https"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "reboot"}], "timeout": "1h"}',
     "plan.json: timeout: must be a number, not a string"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "reboot", "timeout": true}]}',
     "plan.json: actions[0].timeout: must be a number, not a boolean"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "kexec", "kernel": "http://a b/"}]}',
     "plan.json: actions[0].kernel: contains spaces or control characters"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "kexec", "kernel": "gopher://x/k"}]}',
     "actions[0].kernel: scheme 'gopher' is not one of: http, https, tftp"),
    (b'{"ramboot-plan": 1, "actions": [{"action": "kexec", "kernel": "k", "cmdline": "a\\u0000"}]}',
     "plan.json: actions[0].cmdline: contains a NUL character"),
])
def test_bad_plans_are_refused_with_a_message_naming_the_place(data: bytes,
                                                                 expected: str) -> None:
    found = problems(data)
    assert any(expected in problem for problem in found), found


def test_oversized_and_deeply_nested_documents_are_refused_cleanly() -> None:
    assert problems(b" " * (1024 * 1024 + 1)) == ["plan.json: larger than 1048576 bytes"]
    deep = b'{"ramboot-plan": 1, "actions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert problems(deep)[0].startswith("plan.json")


def test_too_many_actions_are_refused() -> None:
    found = problems(plan(*[{"action": "reboot"}] * 257))
    assert "plan.json: actions: must have 1 to 256 items, has 257" in found


def _selector(value: Any, disks: dict[str, DiskSelector] | None = None
              ) -> tuple[DiskSelector | None, list[str]]:
    errors = Errors("plan.json")
    selector = disk_selector(Node(value, "actions[2].target", errors), disks or {})
    return selector, errors.messages


def test_disk_selectors_read_sizes_and_criteria() -> None:
    selector, errors = _selector({"min_size": "8GiB", "max_size": "2TB", "bus": "nvme",
                                  "removable": False, "model": "Samsung"})
    assert errors == []
    assert selector == DiskSelector(min_size=8 << 30, max_size=2 * 10**12, bus="nvme",
                                    removable=False, model="Samsung")
    assert _selector({"by_id": "/dev/disk/by-id/nvme-eui.0025"})[0] == \
        DiskSelector(by_id="nvme-eui.0025")
    named = DiskSelector(path="/dev/vda")
    assert _selector("main", {"main": named})[0] is named


@pytest.mark.parametrize(("value", "expected"), [
    ({"min_size": "lots"}, "actions[2].target.min_size: 'lots' is not a size such as 8GiB"),
    ({"min_size": 0}, "actions[2].target.min_size: must be at least 1, not 0"),
    ({"min_size": "8 parsecs"}, "actions[2].target.min_size: '8 parsecs' is not a size"),
    ({"path": "/etc/passwd"}, "actions[2].target.path: '/etc/passwd' is not a path under /dev/"),
    ({"path": "/dev/sda\n"}, "actions[2].target.path: '/dev/sda\\n' is not a path under /dev/"),
    ({"path": "/dev/sda", "by_id": "x"}, "actions[2].target: give path or by_id, not both"),
    ({"min_size": "2GiB", "max_size": "1GiB"},
     "actions[2].target: min_size is larger than max_size"),
    ({"bus": "floppy"}, "actions[2].target.bus: 'floppy' is not one of: mmc, nvme"),
    ({"removable": "no"}, "actions[2].target.removable: must be true or false, not a string"),
    ({"size": 5}, "actions[2].target.size: unknown key"),
    ("spare", "actions[2].target: 'spare' is not a disk named in the plan's disks "
              "(none defined)"),
    (["/dev/sda"], "actions[2].target: must be an object, not a list"),
])
def test_bad_disk_selectors_name_the_field(value: Any, expected: str) -> None:
    selector, errors = _selector(value)
    assert selector is None
    assert any(f"plan.json: {expected}" in error for error in errors), errors


def _partition(value: Any) -> tuple[PartitionRef | None, list[str]]:
    errors = Errors("plan.json")
    ref = partition_ref(Node(value, "actions[3].partition", errors),
                        {"main": DiskSelector(path="/dev/vda")})
    return ref, errors.messages


def test_partitions_are_named_exactly_one_way() -> None:
    assert _partition({"disk": "main", "number": 2})[0] == \
        PartitionRef(disk=DiskSelector(path="/dev/vda"), number=2)
    assert _partition({"label": "rootfs"})[0] == PartitionRef(label="rootfs")
    for bad, message in [
        ({"number": 2}, "a partition by number needs both disk and number"),
        ({"label": "a", "uuid": "1234-ABCD"}, "name the partition one way"),
        ({}, "name the partition one way"),
        ({"label": "a/b"}, "'a/b' is not a label"),
        ({"disk": "main", "number": 0}, "number: must be at least 1"),
    ]:
        ref, errors = _partition(bad)
        assert ref is None
        assert any(message in error for error in errors), (bad, errors)


def test_named_disks_are_checked_and_used_by_reference() -> None:
    data = json.dumps({"ramboot-plan": 1, "disks": {"main": {"min_size": "nope"},
                                                    "bad name": {}},
                       "actions": [{"action": "reboot"}]}).encode()
    found = problems(data)
    assert "plan.json: disks.main.min_size: 'nope' is not a size such as 8GiB, 512MiB or " \
           "1000000" in found
    assert any("disks.'bad name': a disk name is letters" in p for p in found), found
