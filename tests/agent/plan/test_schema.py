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
                           "target": TARGETS},
                          optional={"digest": DIGESTS,
                                    "bmap": st.sampled_from(["d.bmap", "gopher://x"]),
                                    "bmap_digest": DIGESTS, "image_digest": DIGESTS,
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
ROOT_DIGESTS = st.sampled_from([f"sha256:{'a' * 64}", f"sha512:{'b' * 128}", "sha256:zz", 5])
TMPFS_SIZES = st.one_of(SIZES, st.sampled_from(["25%", "100%", "0%", "101%", " 5%", "5 %"]))
INITS = st.sampled_from(["/sbin/init", "/usr/sbin/nginx", "sbin/init", "/bin/sh\n", "", 7])
INIT_ARGS = st.lists(st.sampled_from(["-g", "daemon off;", "", "a\nb", 3]), max_size=3)
OPTIONS = st.sampled_from(["vers=3", "ro,noatime", "rw", "rw,vers=4.1", "a b", "x;y", "", "rw=1"])
LABEL_REFS = st.one_of(
    st.fixed_dictionaries({}, optional={
        "label": st.sampled_from(["rb-persist", "a/b", "", "rb-persist\n"]),
        "partuuid": st.sampled_from(["0fc63daf-8483", "xyz"]),
        "number": st.just(2), "disk": st.just("main")}),
    st.just("rb-persist"))
OVERLAYS = st.one_of(
    st.sampled_from(["tmpfs", "none", "ramfs", None]),
    st.fixed_dictionaries({"type": st.just("tmpfs")}, optional={"size": TMPFS_SIZES,
                                                                "wait": st.just(1)}),
    st.fixed_dictionaries({"type": st.just("partition")}, optional={
        "partition": LABEL_REFS, "directory": st.sampled_from(["overlay", "a/b", "../x", "/x"]),
        "wait": st.sampled_from([0, 10, 601, "soon"]), "size": st.just("1G")}),
)
MOUNTS = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("tmpfs"), "target": st.sampled_from(
        ["/var/tmp", "/", "/run/x", "/var/../etc", "/home/", "var"])},
        optional={"size": TMPFS_SIZES, "source": st.just("nfs://s/x")}),
    st.fixed_dictionaries({"type": st.just("nfs"), "target": st.just("/home")},
                          optional={"source": st.sampled_from(["nfs://s/home", "nbd://s/x"]),
                                    "options": OPTIONS}),
    st.fixed_dictionaries({"type": st.sampled_from(["bind", 1])}),
), max_size=3)
NETROOTS = st.fixed_dictionaries({"action": st.just("netroot"), "root": st.sampled_from([
    "nfs://192.0.2.1/srv/root", "nfs://srv:2049/", "nfs://[fd00::1]/x", "nfs://srv/a/../b",
    "nbd://192.0.2.1/root", "nbd://srv:10809", "nbd://srv:99999/x", "nbds://srv/x",
    "http://srv/x", "nfs://srv/a b", "nfs://-srv/x", "nfs://srv/x\n"])}, optional={
    "overlay": OVERLAYS, "init": INITS, "init_args": INIT_ARGS, "mount_options": OPTIONS,
    "partition": st.sampled_from([1, 16, 17, "1"]), "io_timeout": st.sampled_from([0, 30.5, -1]),
    "mounts": MOUNTS})
RAMROOTS = st.fixed_dictionaries({"action": st.just("ramroot"), "url": st.sampled_from(
    ["root.squashfs", "https://h/r.tar.zst", "http://h/r.cpio", "tftp://h/r", "gopher://h",
     "http://h/r\n"]),
    "digest": ROOT_DIGESTS}, optional={"size": TMPFS_SIZES,
    "format": st.sampled_from(["squashfs", "tar", "cpio", "zip"]), "init": INITS,
    "init_args": INIT_ARGS, "mounts": MOUNTS, "overlay": st.just("tmpfs")})
ACTIONS = st.one_of(ACTIONS, NETROOTS, RAMROOTS)

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


def anchored(pattern: str) -> str:
    """The schema's form of an agent pattern: `(?!\\n)$` ends the string both in
    ECMA-262 and in Python's re, where a bare `$` also matches before a final newline."""
    return f"^{pattern}(?!\\n)$"


def test_the_schema_patterns_are_the_agents_own() -> None:
    """Copied character for character from roots/keys.py (the schema was generated from it)."""
    from ramboot_agent.roots import keys

    defs = SCHEMA["$defs"]
    root = defs["action-netroot"]["properties"]["root"]["pattern"]
    assert root == anchored(f"(({keys.NFS_URL})|({keys.NBD_URL}))")
    assert defs["initPath"]["pattern"] == anchored(keys.INIT_PATH)
    assert defs["initArgs"]["items"]["pattern"] == anchored(keys.INIT_ARG)
    assert defs["mountOptions"]["pattern"] == anchored(keys.MOUNT_OPTIONS)
    assert defs["mountTarget"]["pattern"] == anchored(keys.MOUNT_TARGET)
    assert defs["tmpfsSize"]["oneOf"][1]["pattern"] == anchored(keys.RAM_SHARE)
    partition = defs["overlay"]["oneOf"][2]["properties"]
    assert partition["directory"]["pattern"] == anchored(keys.RELATIVE_DIR)
    assert defs["extraMounts"]["items"]["oneOf"][1]["properties"]["source"]["pattern"] == \
        anchored(keys.NFS_URL)


@settings(max_examples=400, deadline=None)
@given(st.one_of(NETROOTS, RAMROOTS))
def test_agent_and_schema_agree_on_root_actions(action: dict[str, Any]) -> None:
    document = {"ramboot-plan": 1, "actions": [action]}
    assert agent_accepts(document) == schema_accepts(document), json.dumps(document)
