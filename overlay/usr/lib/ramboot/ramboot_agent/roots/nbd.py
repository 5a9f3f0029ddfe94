"""NBD roots: `nbd://SERVER[:PORT][/EXPORT]` attached with nbd-client.

nbd-client must configure the device over netlink and exit: busybox init
ends every RAM-system process before the switch, and a client that stays
behind to serve the device (the old ioctl mode) would take the root with
it. An attached device whose client is still running is therefore refused.
The kernel's request timeout (`io_timeout`) makes a server that goes away
fail the I/O instead of hanging it for ever.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.roots.mounts import Mounts

log = logging.getLogger("ramboot.roots")

DEFAULT_PORT = 10809
CONNECT_TIMEOUT = 60.0
DEVICE_WAIT = 10.0


@dataclass(frozen=True)
class NbdUrl:
    host: str  # without IPv6 brackets
    port: int
    export: str  # "" for the server's default export

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"export {self.export or '(default)'!r} of {host}:{self.port}"


def parse_url(url: str) -> NbdUrl:
    """An `nbd://` URL the plan's validator accepted (keys.NBD_URL)."""
    parts = urlsplit(url)
    return NbdUrl(parts.hostname or "", parts.port or DEFAULT_PORT,
                  parts.path.removeprefix("/"))


def _index(name: str) -> int:
    return int(name.removeprefix("nbd")) if name.removeprefix("nbd").isdigit() else 1 << 30


def free_device(sys_block: Path = Path("/sys/block")) -> str:
    """The first /dev/nbdN with nothing attached."""
    names = sorted((p.name for p in sys_block.glob("nbd*") if _index(p.name) < 1 << 30),
                   key=_index)
    if not names:
        raise ActionError("no /dev/nbd* devices: the kernel has no NBD support "
                          "(CONFIG_BLK_DEV_NBD, or the nbd module)")
    for name in names:
        try:
            size = int((sys_block / name / "size").read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if size == 0 and not (sys_block / name / "pid").exists():
            return name
    raise ActionError(f"all {len(names)} NBD devices are in use")


def clients_of(device: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of nbd-client processes still running for /dev/`device`."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "nbd-client":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"/dev/{device}".encode() in argv or device.encode() in argv:
            pids.append(int(entry.name))
    return pids


def _wait_for(path: Path, ctx: Context, seconds: float, what: str) -> None:
    deadline = ctx.clock() + ctx.bound(seconds)
    while not path.exists():
        if ctx.clock() >= deadline:
            raise ActionError(f"{what} did not appear within {seconds:g}s")
        time.sleep(0.1)


def attach(mounts: Mounts, url: NbdUrl, *, read_only: bool, io_timeout: float,
           partition: int | None, sys_block: Path = Path("/sys/block"),
           dev: Path = Path("/dev")) -> Path:
    """Connect `url` to a free NBD device; the block device that holds the root."""
    ctx = mounts.ctx
    mounts.modprobe("nbd")
    device = free_device(sys_block)
    argv = ["nbd-client"]
    if url.export:
        argv += ["-N", url.export]
    if read_only:
        argv.append("-R")
    if io_timeout > 0:
        argv += ["-t", str(max(1, round(io_timeout)))]
    argv += [url.host, str(url.port), str(dev / device)]
    ctx.run_tool(argv, timeout=CONNECT_TIMEOUT)
    mounts.on_undo(f"detach /dev/{device}", lambda: _detach(ctx, dev / device))
    log.info("attached %s to /dev/%s", url.describe(), device)
    staying = clients_of(device)
    if staying:
        raise ActionError(
            f"nbd-client is still running for /dev/{device} (pid {staying[0]}): it was built "
            "without netlink support, and init would end it at the switch, taking the root "
            "with it")
    size = sys_block / device / "size"
    deadline = ctx.clock() + ctx.bound(DEVICE_WAIT)
    while _sectors(size) == 0:
        if ctx.clock() >= deadline:
            raise ActionError(f"/dev/{device} has no size after attaching {url.describe()}")
        time.sleep(0.1)
    if partition is None:
        return dev / device
    # The kernel reads the partition table when the device is first opened:
    # open it, in a child that the device's timeout (or ours) can end.
    ctx.run_tool(["dd", f"if={dev / device}", "of=/dev/null", "bs=512", "count=1"],
                 timeout=DEVICE_WAIT + io_timeout, check=False)
    node = dev / f"{device}p{partition}"
    _wait_for(node, ctx, DEVICE_WAIT, f"partition {partition} of {url.describe()} ({node})")
    return node


def _sectors(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _detach(ctx: Context, device: Path) -> None:
    ctx.run_tool(["nbd-client", "-d", str(device)], timeout=20, check=False)
