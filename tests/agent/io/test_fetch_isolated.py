"""Fetcher in isolated places: a real dnsmasq TFTP server in a private network
namespace, and a tiny tmpfs in a private mount namespace.

The fetching code runs in a child Python process placed in those namespaces
(`ip netns exec`, `unshare -m`), so nothing here touches the host's network
or mounts. Needs root; skips otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agent.io.servers import Site
from tests.lib.netlab import Namespace, namespace, start_dnsmasq

KERNEL = random.Random(7).randbytes(3 * 1024 * 1024 + 5)

PRELUDE = """
import json, sys
from ramboot_agent.errors import FetchError
from ramboot_agent.fetch import Fetcher
from ramboot_agent import tftp
sleeps = []
def fail(call):
    try:
        call()
    except FetchError as error:
        return error.reason
    return None
"""


def run_child(code: str, *, ns: Namespace | None = None, tmpfs: Path | None = None,
              tmpfs_size: str = "1m") -> dict[str, Any]:
    """Run `code` (which prints one JSON object) in the requested namespaces."""
    argv: list[str] = [sys.executable, "-c", PRELUDE + textwrap.dedent(code)]
    if tmpfs is not None:
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-eu", "-c",
                'mount -t tmpfs -o size="$1" ramboot-test "$2"; shift 2; exec "$@"',
                "sh", tmpfs_size, str(tmpfs), *argv]
    if ns is not None:
        argv = ns.argv(argv)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def require_root(*commands: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network or mount namespaces)")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"missing commands: {', '.join(missing)} (run scripts/install-deps)")


@pytest.fixture
def tftp_ns(tmp_path: Path) -> Iterator[tuple[Namespace, Path]]:
    """A namespace whose loopback runs dnsmasq's TFTP server (no DHCP, no DNS)."""
    require_root("ip", "dnsmasq")
    root = tmp_path / "tftp"
    (root / "boards" / "abcd1234").mkdir(parents=True)
    (root / "boards" / "abcd1234" / "kernel.img").write_bytes(KERNEL)
    with namespace("rb-tftp") as ns:
        start_dnsmasq(ns, "lo", tmp_path, ["--enable-tftp", f"--tftp-root={root}"])
        yield ns, root


@pytest.mark.netns
def test_tftp_download_with_options(tftp_ns: tuple[Namespace, Path], tmp_path: Path) -> None:
    ns, _ = tftp_ns
    dest = tmp_path / "dest"
    dest.mkdir()
    result = run_child(f"""
        got = Fetcher(sleep=sleeps.append).fetch_file(
            "tftp://127.0.0.1/boards/abcd1234/kernel.img", {str(dest)!r})
        blocks = []
        direct = tftp.fetch("127.0.0.1", "boards/abcd1234/kernel.img", blocks.append,
                            blksize=1024)
        missing = fail(lambda: Fetcher(sleep=sleeps.append).fetch_bytes(
            "tftp://127.0.0.1/boards/none", max_size=10))
        print(json.dumps({{"sha256": got.sha256, "size": got.size, "path": str(got.path),
                          "blksize": direct.blksize, "tsize": direct.tsize,
                          "largest": max(map(len, blocks)), "missing": missing,
                          "sleeps": sleeps}}))
    """, ns=ns)
    assert result["sha256"] == hashlib.sha256(KERNEL).hexdigest()
    assert result["size"] == len(KERNEL)
    assert Path(result["path"]).read_bytes() == KERNEL
    assert result["blksize"] == 1024 and result["largest"] == 1024
    assert result["tsize"] == len(KERNEL)
    assert result["missing"].startswith("server error 1: ")  # TFTP "file not found"
    assert result["sleeps"] == []  # a missing file is not retried


@pytest.mark.netns
@pytest.mark.slow
def test_tftp_block_numbers_roll_over(tftp_ns: tuple[Namespace, Path]) -> None:
    # 8-byte blocks: more than 65535 blocks in half a megabyte.
    ns, root = tftp_ns
    data = random.Random(9).randbytes(65536 * 8 + 100)
    (root / "big").write_bytes(data)
    result = run_child("""
        import hashlib
        digest = hashlib.sha256()
        done = tftp.fetch("127.0.0.1", "big", digest.update, blksize=8, deadline=120)
        print(json.dumps({"sha256": digest.hexdigest(), "size": done.size}))
    """, ns=ns)
    assert result == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.mark.netns
def test_tftp_tsize_larger_than_free_space(tftp_ns: tuple[Namespace, Path],
                                           tmp_path: Path) -> None:
    require_root("unshare", "mount")
    ns, _ = tftp_ns
    small = tmp_path / "small"
    small.mkdir()
    result = run_child(f"""
        import os
        reason = fail(lambda: Fetcher(sleep=sleeps.append).fetch_file(
            "tftp://127.0.0.1/boards/abcd1234/kernel.img", {str(small)!r}))
        print(json.dumps({{"reason": reason, "left": os.listdir({str(small)!r})}}))
    """, ns=ns, tmpfs=small)
    assert result["reason"].startswith(f"not enough space in {small}: {len(KERNEL)} more bytes")
    assert result["left"] == []


def test_http_free_space_checks_on_a_tiny_tmpfs(site: Site, tmp_path: Path) -> None:
    require_root("unshare", "mount")

    site.routes["/announced"] = lambda h: h.send_bytes(KERNEL)
    site.routes["/unannounced"] = lambda h: h.send_unannounced(KERNEL)
    site.routes["/fits"] = lambda h: h.send_bytes(KERNEL[:300_000])
    small = tmp_path / "small"
    small.mkdir()
    result = run_child(f"""
        import os
        fetcher = Fetcher(sleep=sleeps.append)
        announced = fail(lambda: fetcher.fetch_file({site.url("/announced")!r}, {str(small)!r}))
        unannounced = fail(lambda: fetcher.fetch_file({site.url("/unannounced")!r},
                                                      {str(small)!r}))
        left = os.listdir({str(small)!r})
        fits = fetcher.fetch_file({site.url("/fits")!r}, {str(small)!r})
        print(json.dumps({{"announced": announced, "unannounced": unannounced, "left": left,
                          "fits": fits.size, "sleeps": sleeps}}))
    """, tmpfs=small)
    assert result["announced"] == (
        f"not enough space in {small}: {len(KERNEL)} more bytes needed, 1048576 free")
    assert result["unannounced"].startswith(f"no space left in {small} after ")
    assert result["left"] == []  # the partial file is gone
    assert result["fits"] == 300_000 and result["sleeps"] == []
    assert site.hits["/unannounced"] == 1  # a full disk is not retried
