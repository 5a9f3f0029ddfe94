"""What a validated plan is made of: the plan, its actions, disk and partition references."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ramboot_agent.plan.schema import Node

SpecT = TypeVar("SpecT")


@dataclass(frozen=True)
class DiskSelector:
    """Which whole disk an action works on.

    `path` or `by_id` name it; the other fields are criteria it must meet (and,
    without a name, choose among the machine's disks: the smallest that meets
    them, or the largest with `prefer: "largest"`).
    """

    path: str | None = None
    by_id: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    model: str | None = None
    serial: str | None = None
    bus: str | None = None
    removable: bool | None = None
    rotational: bool | None = None
    prefer: str = "smallest"

    @property
    def key(self) -> tuple[Any, ...]:
        """Equal for selectors that must name the same disk within one run."""
        return (self.path, self.by_id, self.min_size, self.max_size, self.model, self.serial,
                self.bus, self.removable, self.rotational, self.prefer)

    def describe(self) -> str:
        if self.path or self.by_id:
            return str(self.path or self.by_id)
        criteria = [f"{name}={value}" for name, value in (
            ("min_size", self.min_size), ("max_size", self.max_size), ("model", self.model),
            ("serial", self.serial), ("bus", self.bus), ("removable", self.removable),
            ("rotational", self.rotational)) if value is not None]
        return f"the {self.prefer} disk with " + (", ".join(criteria) or "no criteria")


@dataclass(frozen=True)
class PartitionRef:
    """A partition: by number on a disk, or by filesystem/partition label or UUID."""

    disk: DiskSelector | None = None
    number: int | None = None
    label: str | None = None
    partlabel: str | None = None
    uuid: str | None = None
    partuuid: str | None = None

    def describe(self) -> str:
        if self.disk is not None and self.number is not None:
            return f"partition {self.number} of {self.disk.describe()}"
        for name in ("label", "partlabel", "uuid", "partuuid"):
            value = getattr(self, name)
            if value is not None:
                return f"the partition with {name.upper()}={value}"
        return "an unnamed partition"


@dataclass(frozen=True)
class Action(Generic[SpecT]):
    """One validated action: its position, its kind's name, bounds and spec."""

    index: int
    name: str
    spec: SpecT
    timeout: float
    description: str | None = None

    @property
    def where(self) -> str:
        return f"actions[{self.index}] ({self.name})"


@dataclass(frozen=True)
class Plan:
    source: str  # the URL or file it came from; relative URLs resolve against it
    actions: list[Action[Any]]
    report: str | None = None
    timeout: float | None = None
    description: str | None = None
    sha256: str = ""
    disks: dict[str, DiskSelector] = field(default_factory=dict)


@dataclass(frozen=True)
class Handoff:
    """What a terminal action leaves to do once its events are out: it does not return."""

    what: str  # "kexec", "switch_root", "reboot" ...: for the log and the plan-done event
    perform: Callable[[], None]


@dataclass
class Fields:
    """An action's members as nodes, with the plan-level helpers parsers need."""

    nodes: dict[str, Node]
    node: Node
    disks: dict[str, DiskSelector]

    def get(self, key: str) -> Node | None:
        return self.nodes.get(key)
