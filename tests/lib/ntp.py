"""A real NTP server for the clock tests: chronyd, serving this machine's time.

chronyd comes from the system when installed, else from Debian's package,
downloaded (`apt-get download`) and unpacked into the test cache, never
installed: the package would start a service that steers the host's clock.
It always runs with `-x` (never touch the system clock) and `local stratum`,
so it answers with the host's time whatever its own sources.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

CACHE = Path(os.environ.get("RAMBOOT_CACHE", Path.home() / ".cache/ramboot"))


def chronyd_binary() -> str:
    found = shutil.which("chronyd")
    if found:
        return found
    root = CACHE / "chrony"
    binary = root / "root/usr/sbin/chronyd"
    if not binary.exists():
        root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["apt-get", "download", "-qq", "chrony"], cwd=root,
                              capture_output=True, text=True, timeout=300, check=False)
        debs = sorted(root.glob("chrony_*.deb"))
        if done.returncode != 0 or not debs:
            pytest.skip(f"chronyd is not available: apt-get download chrony: {done.stderr}")
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root / "root")], check=True,
                       timeout=120)
    return str(binary)


def start_chronyd(workdir: Path, *, bind: str, port: int = 123,
                  ns: Any = None) -> subprocess.Popen[Any]:
    """chronyd answering NTP on bind:port (in netlab Namespace `ns` if given)."""
    config = workdir / "chrony.conf"
    config.write_text(f"local stratum 8\nallow all\nport {port}\nbindaddress {bind}\n"
                      f"cmdport 0\npidfile {workdir / 'chronyd.pid'}\n")
    argv = [chronyd_binary(), "-x", "-d", "-u", "root", "-f", str(config)]
    log = (workdir / "chronyd.log").open("w")
    process: subprocess.Popen[Any] = (ns.popen(argv, stdout=log, stderr=log) if ns is not None
                                      else subprocess.Popen(argv, stdout=log, stderr=log))
    time.sleep(0.5)
    if process.poll() is not None:
        raise RuntimeError(f"chronyd exited: {(workdir / 'chronyd.log').read_text()}")
    return process
