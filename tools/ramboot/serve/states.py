"""Per-machine state: what the boot answers depend on, and what the fleet page shows.

Two things are kept apart on purpose. `provisioned` is sticky: set when a
machine reached the target serve gave it, cleared only by `ramboot reinstall`;
the boot answers depend on it alone, so no event of a later boot (a Pi that
boots ramboot from TFTP on its way to its disk) can send a finished machine
back into provisioning. `state` is the phase of the latest boot, for people.

    discovered    asked for a target, is not in the inventory: waits for an operator
    booting       booting ramboot (stage 1 answered, or its first events)
    provisioning  running the target serve gave it (stage 2)
    provisioned   reached its target, or is on its way to its disk
    failed        reported a failure (the reason and log tail are kept)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class State(StrEnum):
    DISCOVERED = "discovered"
    BOOTING = "booting"
    PROVISIONING = "provisioning"
    PROVISIONED = "provisioned"
    FAILED = "failed"


class Answer(StrEnum):
    """What serve answered a stage request with (Document.kind)."""

    RAMBOOT = "ramboot"  # stage 1: boot the RAM system
    DISK = "disk"  # stage 1: exit to the next boot device
    TARGET = "target"  # stage 2: the host's target (a plan or a script)
    LOCALBOOT = "localboot"  # stage 2: a provisioned machine goes to its disk
    DISCOVERY = "discovery"  # either stage, a machine not in the inventory


# Events of a boot's start: the kernel is up, the agent runs.
STARTING = frozenset({"kernel-started", "agent-started", "network-up"})
# Events of work under way.
WORKING = frozenset({"script-fetched", "fetch", "plan-start", "action-start", "progress",
                     "action-done", "kexec-load"})
# Events that say the document the agent fetched has done its job.
FINISHED = frozenset({"plan-done", "boot"})


@dataclass(frozen=True)
class MachineState:
    state: State
    provisioned: bool = False
    last_answer: Answer | None = None  # the latest stage-2 answer
    failure: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {"state": self.state.value, "provisioned": self.provisioned,
                "last_answer": self.last_answer.value if self.last_answer else None,
                "failure": self.failure}


def from_row(row: Mapping[str, Any]) -> MachineState:
    answer = row.get("last_answer")
    return MachineState(state=State(row["state"]), provisioned=bool(row["provisioned"]),
                        last_answer=Answer(answer) if answer else None,
                        failure=row.get("failure"))


def initial(known: bool) -> MachineState:
    return MachineState(State.BOOTING if known else State.DISCOVERED)


def on_answer(current: MachineState, stage: int, kind: Answer) -> MachineState:
    if kind is Answer.DISCOVERY:
        return replace(current, state=State.DISCOVERED, failure=None,
                       last_answer=kind if stage == 2 else current.last_answer)
    if stage == 1:
        state = State.PROVISIONED if kind is Answer.DISK else State.BOOTING
        return replace(current, state=state, failure=None)
    state = State.PROVISIONED if kind is Answer.LOCALBOOT else State.PROVISIONING
    return replace(current, state=state, failure=None, last_answer=kind)


def _is_target_reached(event: str, details: Mapping[str, Any]) -> bool:
    if details.get("dry_run") is True:
        return False
    if event == "plan-done":
        return details.get("outcome") not in ("failed", "failure")
    return event == "boot"


def on_event(current: MachineState, event: str, details: Mapping[str, Any]) -> MachineState:
    """The state after one event of the machine's current boot."""
    if event == "failure":
        reason = details.get("reason")
        text = reason if isinstance(reason, str) and reason else "failure reported"
        return replace(current, state=State.FAILED, failure=text[:2000])
    if current.state is State.DISCOVERED:
        return current  # only an operator (the inventory) moves it on
    if event in STARTING:
        if event == "kernel-started":  # a new boot: last time's failure is history
            return replace(current, state=State.BOOTING, failure=None)
        return current
    answer = current.last_answer
    if event in WORKING and answer is Answer.TARGET and current.state is not State.FAILED:
        return replace(current, state=State.PROVISIONING)
    if event in FINISHED and _is_target_reached(event, details):
        if answer is Answer.TARGET:
            return replace(current, state=State.PROVISIONED, provisioned=True, failure=None)
        if answer is Answer.LOCALBOOT:
            return replace(current, state=State.PROVISIONED, failure=None)
    return current


def on_reinstall(current: MachineState) -> MachineState:
    """The operator's `ramboot reinstall`: the next boot provisions again."""
    return replace(current, provisioned=False)
