"""SAN boot and the login form (iPXE's sanboot_cmd.c and login_cmd.c).

The agent has no SAN initiator (iSCSI, AoE, FCoE, HTTP block devices), so a
SAN URL fails as an unreachable target does in iPXE, and `|| exit` or
`|| goto` are taken. `sanboot` without a URL boots a BIOS drive that is
already there (drive 0x80 unless --drive says otherwise): the local disk.
That is what Ironic's whole-disk boot and MAAS's local boot ask for; the run
ends with Outcome.LOCALBOOT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ramboot_agent.ipxe.commands import getopt, parse_integer
from ramboot_agent.ipxe.status import CommandFailed

if TYPE_CHECKING:
    from ramboot_agent.ipxe.interpreter import Interpreter

DEFAULT_DRIVE = 0x80  # iPXE's san_default_drive() on BIOS: the first hard disk

SANBOOT_OPTIONS = {
    "drive": ("d", True), "no-describe": ("n", False), "keep": ("k", False),
    "filename": ("f", True), "extra": ("e", True), "label": ("l", True), "uuid": ("u", True),
}
_USAGE = "[--drive <drive>] [--no-describe] [--keep] [<root-path>]"


def _no_san(root_paths: list[str]) -> CommandFailed:
    return CommandFailed(f"cannot attach {' '.join(root_paths)}: the agent has no SAN "
                         "initiator (iSCSI, AoE, FCoE, HTTP disks)")


def cmd_sanboot(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, SANBOOT_OPTIONS, 0, None, _USAGE)
    drive = parse_integer(str(options["drive"])) if "drive" in options else DEFAULT_DRIVE
    if "uuid" in options:
        import uuid  # noqa: PLC0415

        try:
            uuid.UUID(str(options["uuid"]))
        except ValueError:
            raise CommandFailed(f'"{options["uuid"]}": invalid UUID') from None
    if args:
        raise _no_san(args)
    if drive < 0x80 or drive > 0xFF:
        raise CommandFailed(f"drive {drive:#x} is not a hard disk (0x80 is the first)")
    ip.boot_local_drive(argv, drive)


def cmd_sanhook(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {"drive": ("d", True), "no-describe": ("n", False)}, 1, None,
                     "[--drive <drive>] [--no-describe] <root-path>")
    raise _no_san(args)


def cmd_sanunhook(ip: Interpreter, argv: list[str]) -> None:
    options, _ = getopt(argv, {"drive": ("d", True)}, 0, 0, "[--drive <drive>]")
    drive = parse_integer(str(options["drive"])) if "drive" in options else DEFAULT_DRIVE
    raise CommandFailed(f"no SAN device is hooked as drive {drive:#x}")


def cmd_login(ip: Interpreter, argv: list[str]) -> None:
    # iPXE shows a username/password form and waits for a person at the console.
    getopt(argv, {}, 0, 0, "")
    raise CommandFailed("no console to ask for a username and password (non-interactive); "
                        "set username and password in the script instead")


COMMANDS: dict[str, Callable[[Interpreter, list[str]], None]] = {
    "sanboot": cmd_sanboot,
    "sanhook": cmd_sanhook,
    "sanunhook": cmd_sanunhook,
    "login": cmd_login,
}
