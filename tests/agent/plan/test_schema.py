"""docs/plan.schema.json and the agent's validator describe the same format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramboot_agent.plan import PlanError, load_plan, registry
from ramboot_agent.plan.load import COMMON_ACTION_KEYS

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "docs" / "plan.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
EXAMPLES = sorted((REPO / "examples" / "plans").glob("*.json"))


def agent_accepts(document: Any) -> bool:
    try:
        load_plan(json.dumps(document).encode(), "plan.json")
    except PlanError:
        return False
    return True


def schema_accepts(document: Any) -> bool:
    return VALIDATOR.is_valid(document)


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_knows_every_action_and_every_key() -> None:
    enum = SCHEMA["$defs"]["action"]["properties"]["action"]["enum"]
    assert sorted(enum) == sorted(registry.KINDS)
    for name in registry.KINDS:
        kind = registry.kind(name)
        definition = next(
            rule["then"]["$ref"].rsplit("/", 1)[-1]
            for rule in SCHEMA["$defs"]["action"]["allOf"]
            if name in rule["if"]["properties"]["action"].get("enum", [])
            or rule["if"]["properties"]["action"].get("const") == name)
        described = SCHEMA["$defs"][definition]
        assert set(described["properties"]) == {*COMMON_ACTION_KEYS, *kind.required,
                                                 *kind.optional}, name
        assert set(described.get("required", [])) == set(kind.required), name
        assert described["additionalProperties"] is False, name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_for_both(path: Path) -> None:
    document = json.loads(path.read_text())
    load_plan(path.read_bytes(), str(path))
    VALIDATOR.validate(document)


def test_there_are_examples() -> None:
    assert EXAMPLES


SIZES = st.one_of(st.integers(-5, 1 << 41), st.sampled_from(
    ["8GiB", "512M", "4 GB", "1.5T", "0", "lots", "8 parsecs", "", " 2g "]))
SELECTORS = st.one_of(
    st.sampled_from(["main", "other"]),
    st.fixed_dictionaries({}, optional={
        "path": st.sampled_from(["/dev/vda", "/etc/passwd", "/dev/sda\n"]),
        "by_id": st.sampled_from(["nvme-eui.1", "/dev/disk/by-id/usb-x", "a b"]),
        "min_size": SIZES, "max_size": SIZES,
        "bus": st.sampled_from(["usb", "nvme", "floppy"]),
        "removable": st.one_of(st.booleans(), st.just("no")),
        "prefer": st.sampled_from(["smallest", "largest", "random"]),
    }),
)
ARTIFACTS = st.one_of(
    st.sampled_from(["vmlinuz", "http://h/k", "gopher://h/k", "a b", ""]),
    st.fixed_dictionaries({"url": st.sampled_from(["k", "https://h/k"])}, optional={
        "digest": st.sampled_from([f"sha256:{'a' * 64}", "sha256:zz", f"sha512:{'b' * 128}",
                                   f"SHA256:{'C' * 64}"]),
    }),
)
ACTIONS = st.one_of(
    st.fixed_dictionaries({"action": st.sampled_from(["reboot", "poweroff", "shell"])},
                          optional={"timeout": st.one_of(st.integers(-1, 10), st.just(0.5)),
                                    "description": st.sampled_from(["x", ""])}),
    st.fixed_dictionaries({"action": st.just("kexec"), "kernel": ARTIFACTS},
                          optional={"initrds": st.lists(ARTIFACTS, max_size=3),
                                    "cmdline": st.sampled_from(["", "console=ttyS0", 5]),
                                    "extra": st.just(1)}),
)
DIGESTS = st.sampled_from([f"sha256:{'a' * 64}", "sha256:zz", f"sha512:{'b' * 128}", "md5:0"])
TARGETS = st.one_of(st.sampled_from(["main", "nope"]), st.fixed_dictionaries({}, optional={
    "path": st.sampled_from(["/dev/vda", "/etc/passwd"]), "min_size": SIZES}))
PARTITIONS = st.one_of(
    st.fixed_dictionaries({"disk": TARGETS, "number": st.integers(0, 3)}),
    st.fixed_dictionaries({}, optional={"label": st.sampled_from(["root", "a/b"]),
                                        "uuid": st.sampled_from(["1234-ABCD", "zz"])}))
DISK_ACTIONS = st.one_of(
    st.fixed_dictionaries({"action": st.just("image"), "url": st.sampled_from(["d.img", ""]),
                           "digest": DIGESTS, "target": TARGETS},
                          optional={"bmap": st.sampled_from(["d.bmap", "gopher://x"]),
                                    "image_digest": DIGESTS,
                                    "verify": st.one_of(st.booleans(), st.just(1))}),
    st.fixed_dictionaries({"action": st.sampled_from(["wipe", "grow"]), "target": TARGETS}),
    st.fixed_dictionaries({"action": st.just("localboot"), "target": TARGETS,
                           "method": st.sampled_from(["kexec", "reboot", "bios"])},
                          optional={"append": st.sampled_from(["quiet", 3])}),
    st.fixed_dictionaries({"action": st.just("mkfs"), "partition": PARTITIONS,
                           "fs": st.sampled_from(["ext4", "vfat", "xfs", "ntfs"])},
                          optional={"label": st.sampled_from(["root", "BOOT", "a-long-label-17c",
                                                              "twelve_chars", "bad/label"]),
                                    "uuid": st.sampled_from(["1234-ABCD",
                                                             "2f4d1b6e-55aa-4c1e-9d2a-0123456789ab"])}),
    st.fixed_dictionaries({"action": st.just("write-file"), "partition": PARTITIONS,
                           "path": st.sampled_from(["/etc/hostname", "etc/x", "/a/../b", "/a/./b",
                                                    "/..", "/a..b"])},
                          optional={"content": st.sampled_from(["x", ""]),
                                    "content_base64": st.sampled_from(["eA==", "eA", "not b64!",
                                                                       ""]),
                                    "mode": st.sampled_from(["0644", "755", "rw", "08"]),
                                    "owner": st.sampled_from(["root", "1000", "a:b"])}),
)
PLANS = st.fixed_dictionaries(
    {"ramboot-plan": st.sampled_from([1, 1, 1, 2, True]),
     "actions": st.lists(st.one_of(ACTIONS, DISK_ACTIONS), min_size=0, max_size=3)},
    optional={"disks": st.dictionaries(st.sampled_from(["main", "bad name"]),
                                       SELECTORS.filter(lambda s: isinstance(s, dict)),
                                       max_size=2),
              "timeout": st.sampled_from([1, 0, "1h"]),
              "report": st.sampled_from(["http://c/e", "ftp://c/e"])},
)


def ends_early(document: dict[str, Any]) -> bool:
    """A terminal action before the last: the one rule JSON Schema cannot express."""
    actions = document.get("actions", [])
    return any(isinstance(a, dict) and a.get("action") in registry.KINDS
               and registry.kind(a["action"]).terminal for a in actions[:-1])


def dangling_disk_name(document: dict[str, Any]) -> bool:
    """A disk named by an action but not defined in `disks`: a reference JSON Schema cannot
    check (the second rule the agent alone enforces)."""
    defined = set(document.get("disks") or {})

    def names(value: Any) -> list[str]:
        if isinstance(value, dict):
            found = [v for k, v in value.items() if k in ("target", "disk")
                     and isinstance(v, str)]
            return found + [n for v in value.values() for n in names(v)]
        return []

    return any(name not in defined for action in document.get("actions", [])
               for name in names(action))


@settings(max_examples=500, deadline=None)
@given(PLANS)
def test_agent_and_schema_agree_on_generated_plans(document: dict[str, Any]) -> None:
    if ends_early(document) or dangling_disk_name(document):
        assert not agent_accepts(document)
    else:
        assert agent_accepts(document) == schema_accepts(document), json.dumps(document)
