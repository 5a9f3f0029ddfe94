"""`ramboot-agent run-script URL --dry-run` in a lab namespace, its output parsed.

The differential tests run the agent's own command line next to real iPXE,
against the same servers: it fetches with the agent's real fetcher and
resolves names with the namespace's resolv.conf (netlab use_nameserver).
`start` returns at once (the agent can run while a QEMU guest does);
`finish` waits and parses the dry-run plan: the kernel's and each initrd's
sha256, and the command line, as Kexec.describe prints them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.lib.netlab import Namespace

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120
_PLAN = re.compile(r"^(kernel|initrd)   \S+  \d+ bytes  sha256 ([0-9a-f]{64})$")
# The lines the dry-run plan ends with (after the script's own output).
_PLAN_LINE = re.compile(r"^(kernel   |initrd   |combined |cmdline  |load     |fallback |execute  )")


@dataclass
class AgentRun:
    status: int
    stdout: str
    stderr: str
    kernel_sha256: str | None = None
    initrd_sha256: list[str] = field(default_factory=list)
    cmdline: str | None = None

    @property
    def printed(self) -> list[str]:
        """What the script printed: stdout without the dry-run plan."""
        return [line for line in self.stdout.splitlines() if not _PLAN_LINE.match(line)]


def start(ns: Namespace, url: str, settings: Mapping[str, str],
          extra: Sequence[str] = ()) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "ramboot_agent", "run-script", url, "--dry-run", "--no-sleep",
            *extra]
    for name, value in settings.items():
        argv += ["--set", f"{name}={value}"]
    return ns.popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> AgentRun:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    run = AgentRun(process.returncode, stdout, stderr)
    for line in stdout.splitlines():
        if match := _PLAN.match(line):
            if match.group(1) == "kernel":
                run.kernel_sha256 = match.group(2)
            else:
                run.initrd_sha256.append(match.group(2))
        elif line.startswith("cmdline  "):
            run.cmdline = line[len("cmdline  "):]
    return run


def run(ns: Namespace, url: str, settings: Mapping[str, str],
        extra: Sequence[str] = ()) -> AgentRun:
    return finish(start(ns, url, settings, extra))


def combined_initrd(parts: Sequence[bytes], workdir: Path) -> bytes:
    """What the agent's kexec hands the kernel for initrds `parts`, in that order (its
    own concatenate_initrds on files holding them)."""
    from ramboot_agent.kexec import concatenate_initrds

    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(parts):
        path = workdir / f"initrd-{index}"
        path.write_bytes(data)
        paths.append(path)
    if len(paths) == 1:
        return parts[0]
    concatenate_initrds(paths, workdir / "combined")
    return (workdir / "combined").read_bytes()
