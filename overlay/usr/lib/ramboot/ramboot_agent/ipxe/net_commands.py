"""Network commands scripts use to check the way out: ping, nslookup, ntp,
iflinkwait, sync (iPXE's hci/commands/{ping,nslookup,ntp,ifmgmt,sync}_cmd.c).

They act on the agent's real network (its one interface is iPXE's net0).
Every wait is bounded, also where iPXE would wait forever (a ping without
--count, iflinkwait without --timeout): nobody can press Ctrl-C here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ramboot_agent.ipxe.commands import getopt, interfaces_exist, parse_integer
from ramboot_agent.ipxe.settings import SettingError, parse_setting_name
from ramboot_agent.ipxe.status import CommandFailed

if TYPE_CHECKING:
    from collections.abc import Callable

    from ramboot_agent.icmp import Reply
    from ramboot_agent.ipxe.interpreter import Interpreter

log = logging.getLogger("ramboot")

PING_MAX_COUNT = 100  # iPXE pings until a key is pressed when --count is not given
LINK_WAIT_SECONDS = 15.0  # iflinkwait without --timeout (iPXE: no limit)
SYS_CLASS_NET = Path("/sys/class/net")


def _milliseconds(text: str) -> float:
    """iPXE's parse_timeout: an integer number of milliseconds."""
    return parse_integer(text) / 1000.0


def cmd_ping(ip: Interpreter, argv: list[str]) -> None:
    from ramboot_agent import icmp  # noqa: PLC0415

    options, args = getopt(argv, {"size": ("s", True), "timeout": ("t", True),
                                  "count": ("c", True), "quiet": ("q", False)}, 1, 1,
                           "[-s|--size <size>] [-t|--timeout <timeout>] [-c|--count <count>] "
                           "[-q|--quiet] <host>")
    size = parse_integer(str(options["size"])) if "size" in options else 64
    interval = _milliseconds(str(options["timeout"])) if "timeout" in options else 1.0
    count = parse_integer(str(options["count"])) if "count" in options else 0
    if interval <= 0:
        raise CommandFailed("invalid timeout 0")
    if count == 0:
        log.info("ping %s without --count: stopping after %d packets", args[0], PING_MAX_COUNT)
        count = PING_MAX_COUNT
    if size > 65507:
        raise CommandFailed(f"payload of {size} bytes is too large")
    quiet = bool(options.get("quiet"))

    def show(reply: Reply) -> None:
        # iPXE's usr/pingmgmt.c ping_callback()
        if quiet:
            return
        line = f"{reply.size} bytes from {reply.source or '<none>'}: seq={reply.sequence}"
        ip.print(line + (f": {reply.error}" if reply.error else "") + "\n")

    try:
        family, address = icmp.resolve(args[0])
        answered = icmp.ping(address, family, count=count, size=size, interval=interval,
                             on_reply=show)
    except icmp.PingError as error:
        raise CommandFailed(str(error)) from None
    if not answered:
        raise CommandFailed(f"no answer from {args[0]}")


def cmd_nslookup(ip: Interpreter, argv: list[str]) -> None:
    from ramboot_agent import icmp  # noqa: PLC0415

    _, args = getopt(argv, {}, 2, 2, "<setting> <name>")
    setting, name = args
    try:
        parsed = parse_setting_name(setting)
    except SettingError as error:
        raise CommandFailed(str(error)) from None
    try:
        family, address = icmp.resolve(name)
    except icmp.PingError as error:
        raise CommandFailed(str(error)) from None
    # iPXE stores the address with its own type unless the name gives one.
    default_type = "ipv4" if family == icmp.IPV4 else "ipv6"
    ip.store_setting(setting if parsed.type else f"{setting}:{default_type}", address)


def cmd_iflinkwait(ip: Interpreter, argv: list[str], *,
                   sys_class_net: Path = SYS_CLASS_NET) -> None:
    options, args = getopt(argv, {"timeout": ("t", True)}, 0, None,
                           "[--timeout <timeout>] [<interface>...]")
    interfaces_exist(args)
    timeout = _milliseconds(str(options["timeout"])) if "timeout" in options else 0.0
    if timeout <= 0:
        timeout = LINK_WAIT_SECONDS
    interface = ip.interface
    if interface is None:  # run-script: no interface of its own to watch
        if ip.has_lease():
            return
        raise CommandFailed("no network interface (the agent has no lease)")
    carrier = sys_class_net / interface / "carrier"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if carrier.read_text().strip() == "1":
                return
        except OSError:
            pass  # down interfaces refuse to report a carrier
        if time.monotonic() >= deadline:
            raise CommandFailed(f"no link on {interface} within {timeout:g}s")
        ip.sleep(0.1)


def cmd_ntp(ip: Interpreter, argv: list[str]) -> None:
    _, args = getopt(argv, {}, 1, 1, "<server>")
    before = time.time()
    ip.set_clock(args[0])
    log.info("clock set from %s (it moved by %+.1f s)", args[0], time.time() - before)
    ip.reporter.emit("clock-set", server=args[0], source="ntp command",
                     offset=round(time.time() - before, 3))


def cmd_sync(ip: Interpreter, argv: list[str]) -> None:
    # iPXE waits for pending background operations; the agent's downloads and
    # commands all finish before the next line runs, so nothing is pending.
    getopt(argv, {"timeout": ("t", True)}, 0, 0, "[--timeout <timeout>]")


COMMANDS: dict[str, Callable[[Interpreter, list[str]], None]] = {
    "ping": cmd_ping,
    "nslookup": cmd_nslookup,
    "iflinkwait": cmd_iflinkwait,
    "ntp": cmd_ntp,
    "sync": cmd_sync,
}
