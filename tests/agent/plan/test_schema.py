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
PLANS = st.fixed_dictionaries(
    {"ramboot-plan": st.sampled_from([1, 1, 1, 2, True]),
     "actions": st.lists(ACTIONS, min_size=0, max_size=3)},
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


@settings(max_examples=500, deadline=None)
@given(PLANS)
def test_agent_and_schema_agree_on_generated_plans(document: dict[str, Any]) -> None:
    if ends_early(document):
        assert not agent_accepts(document)
    else:
        assert agent_accepts(document) == schema_accepts(document), json.dumps(document)
