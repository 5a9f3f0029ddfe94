#!/usr/bin/env python3
"""ramroot's unpacker against the tools a user would pick: GNU tar, busybox tar, GNU cpio.

The tree is a real root filesystem: the offline test image's (the RAM
system itself, ~55 MB, ~1,000 files), unpacked once from its
rootfs.cpio.zst, or any directory given with --tree. Each archive is made
once; then every unpacker extracts it into a fresh directory on tmpfs
(/dev/shm, where ramroot unpacks), --runs times, and the median wall time
is printed side by side. ramboot's helper runs as the agent runs it: a
child Python that opens the archive, chroots into the target and extracts.

    sudo .venv/bin/python bench/unpack_bench.py [--runs 5] [--tree DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "overlay/usr/lib/ramboot")]

from ramboot_agent.roots.helpers import helper_argv  # noqa: E402
from tests.lib.cpio import decompressed  # noqa: E402

SCRATCH = Path("/dev/shm")


def offline_tree(dest: Path) -> Path:
    cache = Path(os.environ.get("RAMBOOT_CACHE", Path.home() / ".cache/ramboot"))
    image = cache / "offline/x86_64/images/rootfs.cpio.zst"
    if not image.is_file():
        sys.exit(f"{image} is missing: build it (scripts/build-offline-image) or give --tree")
    dest.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], cwd=dest,
                   input=decompressed(image.read_bytes()), check=True)
    return dest


def make_archives(tree: Path, out: Path) -> dict[str, Path]:
    tar = out / "root.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(tar), "."],
                   check=True)
    archives = {"tar": tar}
    for name, argv in (("tar.gz", ["gzip", "-6"]), ("tar.xz", ["xz", "-T1", "-6"]),
                       ("tar.zst", ["zstd", "-q", "-19"])):
        target = out / f"root.{name}"
        with tar.open("rb") as source, target.open("wb") as sink:
            subprocess.run([*argv, "-c"], stdin=source, stdout=sink, check=True)
        archives[name] = target
    names = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=names,
                          capture_output=True, check=True).stdout
    archives["cpio.gz"] = out / "root.cpio.gz"
    archives["cpio.gz"].write_bytes(gzip.compress(cpio, 6))
    return archives


def ramboot(archive: Path, kind: str, dest: Path) -> list[str]:
    fmt, _, compression = kind.partition(".")
    compression = {"": "none", "gz": "gzip", "xz": "xz", "zst": "zstd"}[compression]
    return helper_argv("unpack", "--format", fmt, "--compression", compression,
                       str(archive), str(dest))


def gnu_tar(archive: Path, kind: str, dest: Path) -> list[str]:
    flag = {"tar": [], "tar.gz": ["-z"], "tar.xz": ["-J"], "tar.zst": ["--zstd"]}[kind]
    return ["tar", "--numeric-owner", "-xp", *flag, "-f", str(archive), "-C", str(dest)]


def busybox_tar(archive: Path, kind: str, dest: Path) -> list[str]:
    flag = {"tar": [], "tar.gz": ["-z"], "tar.xz": ["-J"]}[kind]
    return ["busybox", "tar", "-x", *flag, "-f", str(archive), "-C", str(dest)]


def gnu_cpio(archive: Path, kind: str, dest: Path) -> list[str]:
    return ["sh", "-c", f'gzip -dc "{archive}" | (cd "{dest}" && cpio -idm --quiet)']


def measure(argv_of: object, archive: Path, kind: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        dest = Path(tempfile.mkdtemp(dir=SCRATCH, prefix="unpack-"))
        try:
            assert callable(argv_of)
            argv = argv_of(archive, kind, dest)
            started = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        finally:
            shutil.rmtree(dest)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tree", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the unpacker chroots, as it does in the RAM system")
    with tempfile.TemporaryDirectory(dir=SCRATCH, prefix="unpack-bench-") as work:
        tree = args.tree or offline_tree(Path(work) / "tree")
        files = sum(1 for _ in tree.rglob("*"))
        size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and
                   not p.is_symlink())
        archives = make_archives(tree, Path(work))
        print(f"tree: {files} entries, {size / 1e6:.1f} MB; load {os.getloadavg()[0]:.1f}; "
              f"median of {args.runs} runs, into tmpfs")
        print(f"{'archive':10} {'bytes':>10} {'ramboot':>9} {'GNU tar':>9} {'busybox':>9} "
              f"{'ratio':>6}")
        for kind, archive in archives.items():
            ours = measure(ramboot, archive, kind, args.runs)
            if kind.startswith("cpio"):
                theirs, busy = measure(gnu_cpio, archive, kind, args.runs), None
                label = "(GNU cpio)"
            else:
                theirs = measure(gnu_tar, archive, kind, args.runs)
                busy = measure(busybox_tar, archive, kind, args.runs) \
                    if kind != "tar.zst" else None
                label = ""
            busy_text = f"{busy:8.2f}s" if busy is not None else "        -"
            print(f"{kind:10} {archive.stat().st_size:>10} {ours:8.2f}s {theirs:8.2f}s "
                  f"{busy_text} {ours / theirs:5.1f}x {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
