"""The action kinds a plan may use, imported only when a plan needs them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ramboot_agent.plan.kind import ActionKind

# action name -> "module:class"; each class is an ActionKind.
KINDS = {
    "grow": "ramboot_agent.plan.actions.grow:Grow",
    "hardware": "ramboot_agent.plan.actions.hardware:Hardware",
    "image": "ramboot_agent.plan.actions.image:Image",
    "kexec": "ramboot_agent.plan.actions.kexec:KexecUrls",
    "localboot": "ramboot_agent.plan.actions.localboot:Localboot",
    "mkfs": "ramboot_agent.plan.actions.mkfs:Mkfs",
    "netroot": "ramboot_agent.plan.actions.netroot:Netroot",
    "partition": "ramboot_agent.plan.actions.partition:Partition",
    "poweroff": "ramboot_agent.plan.actions.power:Poweroff",
    "ramroot": "ramboot_agent.plan.actions.ramroot:Ramroot",
    "reboot": "ramboot_agent.plan.actions.power:Reboot",
    "shell": "ramboot_agent.plan.actions.power:Shell",
    "wipe": "ramboot_agent.plan.actions.wipe:Wipe",
    "write-file": "ramboot_agent.plan.actions.writefile:WriteFile",
}

_loaded: dict[str, ActionKind[Any]] = {}


def kind(name: str) -> ActionKind[Any]:
    """The action kind called `name` (KeyError if the agent has none)."""
    if name not in _loaded:
        module_name, class_name = KINDS[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module_name), class_name)()
    return _loaded[name]
