"""Statuses and results shared by the interpreter and its commands."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ramboot_agent.kexec import BootSpec


class Outcome(enum.Enum):
    BOOTED = "booted"  # a kernel was handed to the booter
    EXITED = "exited"  # the script ended (or exited 0) without booting
    LOCALBOOT = "localboot"  # `exit N` (N != 0) or `sanboot` of a local drive: boot the disk
    SHELL = "shell"
    REBOOT = "reboot"
    POWEROFF = "poweroff"
    COMPLETED = "completed"  # a provisioning plan ran to its end without booting


@dataclass(frozen=True)
class LocalBoot:
    """What asked for the local disk: iPXE would hand back to the firmware
    (``exit N``: its next boot device) or boot a BIOS drive (``sanboot``)."""

    url: str
    line: int | None
    command: str  # the words as run, e.g. "exit 1", "sanboot --drive 0x80"
    drive: int | None = None  # the BIOS drive sanboot named (0x80: the first disk)
    status: int | None = None  # the exit status

    def describe(self) -> str:
        where = f"{self.url}:{self.line}" if self.line is not None else self.url
        if self.drive is not None:
            what = f"boot local drive {self.drive:#04x}"
        else:
            what = f"boot the next device (exit status {self.status})"
        return f"{where}: '{self.command}' asked to {what}"


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    boot: BootSpec | None = None
    localboot: LocalBoot | None = None


class CommandFailed(Exception):
    """A command's failure: a status the script may handle with ``||``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class CommandNotFound(CommandFailed):
    """A command this agent does not have: iPXE's "command not found" (ENOEXEC)."""


class ExitRequested(CommandFailed):
    """``exit N`` with N != 0: not a failure of the script, a request to the caller."""


@dataclass
class Menu:
    title: str
    items: list[tuple[str, str, bool]] = field(default_factory=list)  # label, text, default


