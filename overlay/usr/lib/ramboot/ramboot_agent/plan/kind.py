"""The interface every action kind implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ramboot_agent.plan.model import Fields, Handoff

if TYPE_CHECKING:
    from ramboot_agent.plan.context import Context

SpecT = TypeVar("SpecT")

# What `run` returns: details for the action-done event, or a handoff that
# ends the RAM system (kexec, switch_root) once the events are out.
Result = dict[str, Any] | Handoff


class ActionKind(Generic[SpecT]):
    """One kind of action: its keys, how to validate them, describe and run them.

    `parse` records problems on the nodes and returns None when there were any;
    `describe` (the dry run) may look at the machine and the network but
    changes nothing; `run` does the work, raising AgentError on failure.
    """

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    terminal = False  # ends the plan: only allowed as its last action
    default_timeout = 600.0

    def parse(self, fields: Fields) -> SpecT | None:
        raise NotImplementedError

    def describe(self, spec: SpecT, ctx: Context) -> str:
        raise NotImplementedError

    def run(self, spec: SpecT, ctx: Context) -> Result:
        raise NotImplementedError
