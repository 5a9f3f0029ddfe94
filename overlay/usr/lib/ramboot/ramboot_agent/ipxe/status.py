"""Statuses and results shared by the interpreter and its commands."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ramboot_agent.kexec import BootSpec


class Outcome(enum.Enum):
    BOOTED = "booted"  # a kernel was handed to the booter
    EXITED = "exited"  # the script ended (or exited 0) without booting
    SHELL = "shell"
    REBOOT = "reboot"
    POWEROFF = "poweroff"
    COMPLETED = "completed"  # a provisioning plan ran to its end without booting


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    boot: BootSpec | None = None


class CommandFailed(Exception):
    """A command's failure: a status the script may handle with ``||``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status



@dataclass
class Menu:
    title: str
    items: list[tuple[str, str, bool]] = field(default_factory=list)  # label, text, default


