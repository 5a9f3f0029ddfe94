"""Validating a plan document whole, before any action runs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ramboot_agent.errors import ConfigError
from ramboot_agent.plan import registry
from ramboot_agent.plan.model import Action, DiskSelector, Fields, Plan
from ramboot_agent.plan.refs import disk_selector
from ramboot_agent.plan.schema import Errors, Node

PLAN_VERSION = 1
MAX_PLAN_SIZE = 1024 * 1024
MAX_ACTIONS = 256
PLAN_KEYS = ("ramboot-plan", "actions", "description", "disks", "report", "timeout")
COMMON_ACTION_KEYS = ("action", "description", "timeout")


class PlanError(ConfigError):
    """A plan that cannot run; `problems` lists every `source: path: message`."""

    def __init__(self, problems: list[str]) -> None:
        count = len(problems)
        head = problems[0] if count == 1 else f"{count} problems:\n  " + "\n  ".join(problems)
        super().__init__(head)
        self.problems = problems


def is_plan(data: bytes) -> bool:
    """A JSON object (after whitespace and a byte order mark): what plans look like."""
    return data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def load_plan(data: bytes, source: str) -> Plan:
    """The validated plan in `data`; PlanError naming every problem otherwise."""
    if len(data) > MAX_PLAN_SIZE:
        raise PlanError([f"{source}: larger than {MAX_PLAN_SIZE} bytes"])
    try:
        document = json.loads(data.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError as error:
        raise PlanError([f"{source}: not UTF-8 (byte {error.start})"]) from None
    except json.JSONDecodeError as error:
        raise PlanError([f"{source}:{error.lineno}:{error.colno}: not JSON: {error.msg}"]) \
            from None
    except (ValueError, RecursionError) as error:
        raise PlanError([f"{source}: not JSON: {error}"]) from None
    errors = Errors(source)
    plan = _plan(Node(document, "", errors), source, hashlib.sha256(data).hexdigest())
    if errors or plan is None:
        raise PlanError(errors.messages or [f"{source}: not a valid plan"])
    return plan


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plan(root: Node, source: str, sha256: str) -> Plan | None:
    if not isinstance(root.value, dict) or "ramboot-plan" not in root.value:
        root.error('not a plan: expected a JSON object with "ramboot-plan": 1')
        return None
    version = root.value["ramboot-plan"]
    if type(version) is not int or version != PLAN_VERSION:
        root.errors.add("ramboot-plan", f"version {version!r} is not supported by this "
                        f"ramboot-agent (it runs version {PLAN_VERSION})")
        return None
    fields = root.object(required=("ramboot-plan", "actions"), optional=PLAN_KEYS)
    if fields is None:
        return None
    disks = _disks(fields["disks"]) if "disks" in fields else {}
    report = fields["report"].url(("http", "https")) if "report" in fields else None
    timeout = fields["timeout"].seconds() if "timeout" in fields else None
    description = fields["description"].string(max_length=1024) \
        if "description" in fields else None
    actions: list[Action[Any]] = []
    nodes = list(fields["actions"].items(min_items=1, max_items=MAX_ACTIONS)) \
        if "actions" in fields else []
    for index, node in enumerate(nodes):
        action = _action(node, index, disks)
        if action is not None:
            actions.append(action)
        name = node.value.get("action") if isinstance(node.value, dict) else None
        if index < len(nodes) - 1 and name in registry.KINDS and registry.kind(name).terminal:
            node.errors.add(node.child_path("action"),
                            f"{name!r} ends the plan, so it must be the last action")
    if root.errors:
        return None
    return Plan(source, actions, report=report, timeout=timeout,
                description=description, sha256=sha256, disks=disks)


def _disks(node: Node) -> dict[str, DiskSelector]:
    value = node.object(optional=tuple(node.value) if isinstance(node.value, dict) else ())
    disks: dict[str, DiskSelector] = {}
    for name, child in (value or {}).items():
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            child.error("a disk name is letters, digits, '-' and '_' (at most 64)")
            continue
        if isinstance(child.value, str):
            child.error("must be a disk selector object")
            continue
        selector = disk_selector(child, {})
        if selector is not None:
            disks[name] = selector
    return disks


def _action(node: Node, index: int, disks: dict[str, DiskSelector]) -> Action[Any] | None:
    if not isinstance(node.value, dict):
        node.error(f"must be an object with an \"action\" key, not {type(node.value).__name__}")
        return None
    name_node = Node(node.value.get("action"), node.child_path("action"), node.errors)
    if "action" not in node.value:
        name_node.error("required")
        return None
    name = name_node.choice(tuple(sorted(registry.KINDS)))
    if name is None:
        return None
    kind = registry.kind(name)
    fields = node.object(required=("action", *kind.required),
                         optional=(*COMMON_ACTION_KEYS, *kind.optional))
    if fields is None:
        return None
    before = len(node.errors.messages)
    timeout = fields["timeout"].seconds() if "timeout" in fields else kind.default_timeout
    description = fields["description"].string(max_length=1024) \
        if "description" in fields else None
    own = {key: child for key, child in fields.items() if key not in COMMON_ACTION_KEYS}
    spec = kind.parse(Fields(own, node, disks))
    if spec is None or timeout is None or len(node.errors.messages) > before:
        if len(node.errors.messages) == before:
            node.error("invalid")
        return None
    return Action(index, name, spec, timeout, description)
