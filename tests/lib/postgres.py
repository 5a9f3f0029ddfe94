"""A throwaway PostgreSQL cluster from Debian's packages, for tests.

initdb into a temporary directory, listening only on a Unix socket in that
directory (no TCP port at all), run as the `postgres` user (initdb refuses
root); stopped and removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "postgres"


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    binaries = pg_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; "
                    "scripts/apt-packages.txt)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no {USER!r} user (Debian's postgresql package creates it)")
    if os.geteuid() != 0:
        pytest.skip("the throwaway cluster is run as the postgres user: needs root")
    return binaries


def _as_postgres() -> None:
    entry = pwd.getpwnam(USER)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


@contextlib.contextmanager
def cluster(port: int = 5432) -> Iterator[str]:
    """Start a cluster; yields a libpq URL for its database `ramboot`."""
    binaries = require_postgres()
    entry = pwd.getpwnam(USER)
    base = Path(tempfile.mkdtemp(prefix="rb-pg-"))
    os.chown(base, entry.pw_uid, entry.pw_gid)
    data, socket_dir = base / "data", base
    log = base / "postgres.log"

    def run(*argv: str | os.PathLike[str]) -> None:
        subprocess.run([os.fspath(a) for a in argv], check=True, capture_output=True,
                       preexec_fn=_as_postgres, timeout=120, cwd=base)

    try:
        run(binaries / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8",
            "--no-instructions")
        run(binaries / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "start", "-o",
            f"-c listen_addresses='' -c unix_socket_directories='{socket_dir}' -p {port} "
            "-c fsync=on -c max_connections=200")
        run(binaries / "createdb", "-h", socket_dir, "-p", str(port), "-U", USER, "ramboot")
        yield f"postgresql://{USER}@/ramboot?host={socket_dir}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def reset(url: str) -> None:
    """Drop every table of the ramboot database (between tests)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
