"""Leaving the RAM system for the root assembled at /newroot.

The agent is not PID 1, and switch_root must be: busybox init is. So the
agent writes what the new system needs into /run/ramboot (root.env,
network.env, /run/net-IFACE.conf, resolv.conf, the `booted` event and the
script that sends it), writes the request, and sends init SIGQUIT. Busybox
init then runs its ::shutdown: action (which, seeing the request, keeps
mounts and network), sends every other process SIGTERM and SIGKILL, and
execs its ::restart: action as PID 1: /usr/lib/ramboot/switch-root moves
/dev, /proc, /sys and /run into the new root and execs switch_root.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ramboot_agent.plan.context import ActionError
from ramboot_agent.roots.layout import Layout

log = logging.getLogger("ramboot.roots")

HANDOFF_WAIT = 60.0  # init ends the agent within seconds; longer means it will not
REQUEST_VERSION = 1
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_IFACE = re.compile(r"[A-Za-z0-9._-]{1,15}")
NO_ADDRESS = "0.0.0.0"  # noqa: S104 (klibc's spelling of "none", not a bind address)


@dataclass(frozen=True)
class Handover:
    """What the new root is told about itself (root.env) and how to start it."""

    action: str  # "netroot" or "ramroot"
    root: str  # the root's URL
    init: str
    init_args: tuple[str, ...]
    resolved_init: str  # init with symbolic links resolved inside the new root
    variables: dict[str, str] = field(default_factory=dict)  # RAMBOOT_* extras


def shell_quote(value: str) -> str:
    """`value` for a shell-sourceable file: printable, single-quoted."""
    text = _UNPRINTABLE.sub("?", value)
    return "'" + text.replace("'", "'\\''") + "'"


def env_file(variables: Mapping[str, str], header: str) -> str:
    lines = [f"# {header}"]
    lines += [f"{name}={shell_quote(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


# --- preconditions --------------------------------------------------------------------


def check_init_can_switch(layout: Layout, proc: Path = Path("/proc")) -> None:
    """Busybox init is PID 1 and will run /usr/lib/ramboot/switch-root on SIGQUIT."""
    wanted = f"::restart:{layout.switch_script}"
    try:
        lines = [line.strip() for line in layout.inittab.read_text().splitlines()]
    except OSError as error:
        raise ActionError(f"init cannot switch to another root here: {layout.inittab}: "
                          f"{error.strerror} (is this ramboot's RAM system?)") from None
    if wanted not in lines:
        raise ActionError(f"init cannot switch to another root here: {layout.inittab} has no "
                          f"'{wanted}' line (is this ramboot's RAM system?)")
    if not os.access(layout.switch_script, os.X_OK):
        raise ActionError(f"{layout.switch_script} is missing or not executable")
    try:
        comm = (proc / "1/comm").read_text().strip()
    except OSError:
        comm = "?"
    if comm != "init":
        raise ActionError(f"PID 1 is {comm!r}, not busybox init: it cannot switch roots")


# --- what the new root receives ---------------------------------------------------------


def network_variables(lease: Any) -> dict[str, str]:
    """The configuration the agent left on the interface, as RAMBOOT_* variables."""
    network = ipaddress.IPv4Network(f"{lease.ip}/{lease.prefix_len}", strict=False)
    netmask = str(network.netmask)
    dns = list(lease.dns)
    hostname = lease.hostname or ""
    kernel_ip = ":".join([lease.ip, lease.server_id or "", lease.router or "", netmask,
                          hostname, lease.interface, "off", *(dns[:2])])
    lease_time = lease.options.get(51)
    return {
        "RAMBOOT_INTERFACE": lease.interface,
        "RAMBOOT_MAC": lease.mac,
        "RAMBOOT_IP": lease.ip,
        "RAMBOOT_PREFIX_LEN": str(lease.prefix_len),
        "RAMBOOT_NETMASK": netmask,
        "RAMBOOT_BROADCAST": str(network.broadcast_address),
        "RAMBOOT_ROUTER": lease.router or "",
        "RAMBOOT_DNS": " ".join(dns),
        "RAMBOOT_HOSTNAME": hostname,
        "RAMBOOT_DOMAIN": lease.domain or "",
        "RAMBOOT_DHCP_SERVER": lease.server_id or "",
        "RAMBOOT_LEASE_SECONDS": str(int.from_bytes(lease_time, "big")) if lease_time and
        len(lease_time) == 4 else "",
        # The kernel's ip= syntax (Documentation/admin-guide/nfs/nfsroot.rst).
        "RAMBOOT_KERNEL_IP": kernel_ip,
    }


def klibc_net_conf(variables: Mapping[str, str], uptime: str) -> str:
    """/run/net-IFACE.conf as klibc's ipconfig writes it (initramfs-tools, cloud-init)."""
    dns = variables["RAMBOOT_DNS"].split()
    values = {
        "DEVICE": variables["RAMBOOT_INTERFACE"],
        "PROTO": "dhcp",
        "IPV4ADDR": variables["RAMBOOT_IP"],
        "IPV4BROADCAST": variables["RAMBOOT_BROADCAST"],
        "IPV4NETMASK": variables["RAMBOOT_NETMASK"],
        "IPV4GATEWAY": variables["RAMBOOT_ROUTER"] or NO_ADDRESS,
        "IPV4DNS0": dns[0] if dns else NO_ADDRESS,
        "IPV4DNS1": dns[1] if len(dns) > 1 else NO_ADDRESS,
        "HOSTNAME": variables["RAMBOOT_HOSTNAME"],
        "DNSDOMAIN": variables["RAMBOOT_DOMAIN"],
        "NISDOMAIN": "",
        "ROOTSERVER": variables["RAMBOOT_DHCP_SERVER"] or NO_ADDRESS,
        "ROOTPATH": "",
        "filename": "",
        "UPTIME": uptime,
        "DHCPLEASETIME": variables["RAMBOOT_LEASE_SECONDS"] or "0",
        "DOMAINSEARCH": variables["RAMBOOT_DOMAIN"],
    }
    return "".join(f"{name}={shell_quote(value)}\n" for name, value in values.items())


def write_handover(layout: Layout, handover: Handover, *, lease: Any | None) -> list[str]:
    """The files the new system reads, under /run/ramboot (and /run/net-IFACE.conf)."""
    layout.state.mkdir(parents=True, exist_ok=True)
    written = []
    root_vars = {
        "RAMBOOT_ROOT_ACTION": handover.action,
        "RAMBOOT_ROOT": handover.root,
        "RAMBOOT_INIT": handover.init,
        **handover.variables,
    }
    _write(layout.state / "root.env", env_file(
        root_vars, "Written by ramboot-agent: the root this system was switched to."))
    written.append(str(layout.state / "root.env"))
    if lease is not None:
        variables = network_variables(lease)
        _write(layout.state / "network.env", env_file(
            variables, "Written by ramboot-agent: the network it left configured "
            "(the address has no lifetime; renew the lease with your own DHCP client)."))
        written.append(str(layout.state / "network.env"))
        if _IFACE.fullmatch(lease.interface):
            conf = layout.run_dir / f"net-{lease.interface}.conf"
            _write(conf, klibc_net_conf(variables, _uptime()))
            written.append(str(conf))
    else:
        log.warning("no DHCP lease recorded: the new root gets no network.env")
    with contextlib.suppress(OSError):
        text = layout.resolv_conf.read_text()
        _write(layout.state / "resolv.conf", text)
        written.append(str(layout.state / "resolv.conf"))
    if layout.booted_script.is_file():
        target = layout.state / "report-booted"
        shutil.copyfile(layout.booted_script, target)
        target.chmod(0o755)
        written.append(str(target))
    return written


def _uptime() -> str:
    try:
        return Path("/proc/uptime").read_text().split()[0].split(".")[0]
    except (OSError, IndexError):
        return "0"


def booted_event(reporter: Any, handover: Handover) -> dict[str, Any] | None:
    """The event the new system sends once it is up: the agent's next `seq`.

    `monotonic` -1 and `time` "@TIME@" are filled in by report-booted.
    """
    url = getattr(reporter, "url", None)
    recent = reporter.recent(1) if hasattr(reporter, "recent") else []
    if not url or not recent:
        return None
    last = recent[-1]
    event = {key: value for key, value in last.items()
             if key not in ("event", "seq", "monotonic", "time", "details")}
    event.update({
        "event": "booted",
        "seq": int(last["seq"]) + 1,
        "monotonic": -1,
        "time": "@TIME@",
        "details": {"root": handover.root, "init": handover.init, "action": handover.action,
                    "sent_by": "report-booted"},
    })
    return event


# --- the switch ---------------------------------------------------------------------------


def request_text(layout: Layout, handover: Handover) -> str:
    lines = [f"# ramboot switch-root request {REQUEST_VERSION}, read by {layout.switch_script}",
             f"newroot={layout.newroot}", f"init={handover.init}",
             f"check={handover.resolved_init}", f"root={handover.root}"]
    lines += [f"arg={arg}" for arg in handover.init_args]
    return "\n".join(lines) + "\n"


def switch(layout: Layout, handover: Handover, *, reporter: Any, out: TextIO,
           signal_init: Callable[[], None] | None = None,
           wait: float = HANDOFF_WAIT) -> None:
    """Ask init to switch; returns only if init did not (an error)."""
    event = booted_event(reporter, handover)
    booted = layout.state / "booted.json"
    if event is not None:
        _write(booted, json.dumps(event, sort_keys=True) + "\n")
        _write(layout.state / "report-url", str(reporter.url) + "\n")
    _write(layout.request, request_text(layout, handover))
    os.sync()
    print(f"ramboot-agent: switching to {handover.init} on {handover.root}; init ends "
          "every RAM-system process first", file=out, flush=True)
    (signal_init or (lambda: os.kill(1, signal.SIGQUIT)))()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(0.5)
    for path in (layout.request, booted, layout.state / "report-url"):
        path.unlink(missing_ok=True)
    raise ActionError(f"init did not switch to the new root within {wait:g}s of SIGQUIT")
