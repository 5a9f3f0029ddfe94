"""Mounting, with everything this action did undone in reverse when it fails.

All of it runs `mount`, `umount`, `modprobe` from argv lists bounded by the
action's time (Context.run_tool): a mount of a server that went away is
killed at its deadline instead of hanging the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from ramboot_agent.plan.context import ActionError, ActionTimeout, Context

log = logging.getLogger("ramboot.roots")

MOUNT_TIMEOUT = 120.0
UNDO_TIMEOUT = 20.0
MODPROBE_TIMEOUT = 20.0
UNDO_GRACE = 60.0


def _unescape(field: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1:index + 4].isdigit():
            out.append(chr(int(field[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def mount_points(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Every mount point, in mount order."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    return [_unescape(line.split()[4]) for line in lines if len(line.split()) > 4]


def is_mount_point(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    return str(path) in mount_points(mountinfo)


def mounted_below(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or below `path`."""
    prefix = str(path).rstrip("/") + "/"
    return [m for m in mount_points(mountinfo) if m == str(path) or m.startswith(prefix)]


def filesystems(proc: Path = Path("/proc/filesystems")) -> set[str]:
    try:
        return {line.split()[-1] for line in proc.read_text().splitlines() if line.split()}
    except OSError:
        return set()


class Mounts:
    """The mounts and devices one action made; `undo()` takes them down, newest first."""

    def __init__(self, ctx: Context, *,
                 proc_filesystems: Path = Path("/proc/filesystems")) -> None:
        self.ctx = ctx
        self.proc_filesystems = proc_filesystems
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def on_undo(self, what: str, step: Callable[[], None]) -> None:
        self._undo.append((what, step))

    def modprobe(self, *modules: str) -> None:
        """Load modules for what this kernel may have as modules (built in: no-op).

        Missing ones are not errors here: `require_filesystem` says what lacks.
        """
        for module in modules:
            try:
                self.ctx.run_tool(["modprobe", "-q", module], timeout=MODPROBE_TIMEOUT,
                                  check=False)
            except ActionError as error:  # no modprobe at all: a kernel without modules
                log.debug("modprobe %s: %s", module, error)
                return

    def require_filesystem(self, name: str, config: str) -> None:
        known = filesystems(self.proc_filesystems)
        if known and name not in known:
            raise ActionError(f"this kernel cannot mount {name} filesystems "
                              f"({config} is not set and there is no {name} module)")

    def mount(self, source: str, target: Path, *, fstype: str | None = None,
              options: Sequence[str] = (), timeout: float = MOUNT_TIMEOUT) -> None:
        """`mount [-t TYPE] [-o OPTS] SOURCE TARGET`, undone by unmounting TARGET."""
        target.mkdir(parents=True, exist_ok=True)
        argv = ["mount"]
        if fstype:
            argv += ["-t", fstype]
        if options:
            argv += ["-o", ",".join(options)]
        argv += [source, str(target)]
        try:
            self.ctx.run_tool(argv, timeout=timeout)
        except ActionTimeout as error:
            raise ActionTimeout(f"mounting {source} on {target}: {error} (is its server "
                                "answering?)") from None
        log.info("mounted %s on %s", source, target)
        self.on_undo(f"unmount {target}", lambda: self.unmount(target))

    def bind(self, source: Path, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.ctx.run_tool(["mount", "-o", "bind", str(source), str(target)])
        self.on_undo(f"unmount {target}", lambda: self.unmount(target))

    def unmount(self, target: Path) -> None:
        """Unmount; detach lazily when busy or stuck (the undo path must not stall)."""
        try:
            done = self.ctx.run_tool(["umount", str(target)], timeout=UNDO_TIMEOUT, check=False)
            if done.returncode == 0 or not is_mount_point(target):
                return
        except ActionTimeout:  # a hard NFS mount whose server is gone blocks umount
            log.warning("umount %s did not return: detaching it", target)
        self.ctx.run_tool(["umount", "-l", str(target)], timeout=UNDO_TIMEOUT, check=False)

    def undo(self) -> None:
        """Take down everything, newest first; failures are logged, never raised."""
        # The action's time may be spent: undoing gets a little time of its own.
        if self.ctx.deadline is not None:
            self.ctx.deadline = max(self.ctx.deadline, self.ctx.clock() + UNDO_GRACE)
        while self._undo:
            what, step = self._undo.pop()
            try:
                step()
                log.info("undone: %s", what)
            except Exception as error:  # the failure being handled matters more
                log.warning("could not %s: %s", what, error)

    def keep(self) -> None:
        """The switch is under way: what was mounted now belongs to the new root."""
        self._undo.clear()
