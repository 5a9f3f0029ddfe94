#!/usr/bin/env python3
"""The image action against the tools a user would pick instead, same data, same target.

1. A 1 GiB image, zstd-compressed, from a local HTTP server to a loop device:
   `ramboot-agent run-plan` (image action: sha256 checked, resumable) against
   `curl -s URL | zstd -dc | dd of=DEV bs=4M iflag=fullblock conv=fsync`.
2. A 4 GiB sparse raw image with 1 GiB mapped and its bmap: the image action
   with the bmap (authenticated by `bmap_digest`, no whole-file digest: what
   bmaptool checks too) against `bmaptool copy --bmap`, and against the image
   action writing the same image densely (no bmap); also the bmap with the
   whole-file `digest` as well (its 3 GiB of holes hashed as zeros).
3. Read-back verification of the 1 GiB written: `blockdev.read_back` (what
   `verify` runs: O_DIRECT, page cache dropped first) against
   `openssl dgst -sha256 DEV` (page cache dropped first too).

The server is tests/lib/imageserver.py (sendfile) in its own process; each
pair runs alternately, `--runs` times, and the medians are compared. Needs
root (loop devices). Targets: 1 >= 0.95x the pipeline; 2 >= 1.0x bmaptool
and several times the dense write; 3 >= 0.9x openssl.

    sudo .venv/bin/python bench/disk_bench.py [--runs 3] [--work /dev/shm/rb-bench]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "overlay/usr/lib/ramboot"))

from ramboot_agent.plan import blockdev  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
AGENT = [sys.executable, "-I", "-c",
         f"import sys; sys.path.insert(0, {str(REPO / 'overlay/usr/lib/ramboot')!r}); "
         "from ramboot_agent.cli import main; sys.exit(main())"]


def os_like_image(path: Path, size: int) -> None:
    """Compressible like a system image: per 4 MiB, random data, text-like data, zeros."""
    rng = random.Random(42)  # noqa: S311 (test data)
    words = [rng.randbytes(rng.randrange(3, 12)) for _ in range(2000)]
    with path.open("wb") as out:
        for _ in range(size // (4 * MiB)):
            out.write(rng.randbytes(3 * MiB // 2))
            text = b" ".join(rng.choice(words) for _ in range(200_000))
            out.write((text * 2)[:MiB])
            out.write(bytes(3 * MiB // 2))


def sparse_image(path: Path, size: int, mapped: int) -> None:
    """`mapped` bytes of data in 64 extents spread over a sparse file of `size` bytes."""
    rng = random.Random(7)  # noqa: S311 (test data)
    extent = mapped // 64
    with path.open("wb") as out:
        out.truncate(size)
        for index in range(64):
            out.seek(index * (size // 64))
            out.write(rng.randbytes(extent))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


class Loop:
    def __init__(self, backing: Path, size: int) -> None:
        with backing.open("wb") as stream:
            stream.truncate(size)
        self.backing = backing
        self.device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                                     capture_output=True, text=True).stdout.strip()

    def reset(self) -> None:
        """Empty again (discard frees the backing file's blocks), caches dropped."""
        subprocess.run(["blkdiscard", "-f", self.device], check=False, capture_output=True)
        drop(self.device)

    def close(self) -> None:
        subprocess.run(["losetup", "--detach", self.device], check=False)
        self.backing.unlink(missing_ok=True)


def drop(device: str) -> None:
    fd = os.open(device, os.O_RDONLY)
    try:
        os.fsync(fd)
        blockdev.drop_cache(fd)
    finally:
        os.close(fd)


def timed(run: Callable[[], object]) -> float:
    started = time.monotonic()
    run()
    return time.monotonic() - started


def sh(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def run_plan(work: Path, action: Mapping[str, object]) -> dict[str, object]:
    plan = work / "plan.json"
    plan.write_text(json.dumps({"ramboot-plan": 1, "actions": [action]}))
    report = work / "plan.out"
    with report.open("w") as out:
        sh([*AGENT, "run-plan", "--force", str(plan)], stdout=out, stderr=subprocess.STDOUT)
    return {}


LOADS: list[float] = []  # the 1-minute load average before each timed run


def timed_at_load(run: Callable[[], object]) -> float:
    LOADS.append(os.getloadavg()[0])
    return timed(run)


def compare(name: str, ours: list[float], theirs: list[float], size: int,
            target: str) -> dict[str, object]:
    a, b = statistics.median(ours), statistics.median(theirs)
    line = {"benchmark": name, "ours_s": round(a, 2), "peer_s": round(b, 2),
            "ours_range": [round(min(ours), 2), round(max(ours), 2)],
            "peer_range": [round(min(theirs), 2), round(max(theirs), 2)],
            "ours_MBps": round(size / a / 1e6), "peer_MBps": round(size / b / 1e6),
            "ratio": round(b / a, 3), "target": target,
            "load": [round(min(LOADS), 1), round(max(LOADS), 1)] if LOADS else None,
            "runs": [[round(x, 2) for x in ours], [round(x, 2) for x in theirs]]}
    LOADS.clear()
    print(json.dumps(line), flush=True)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/dev/shm/rb-disk-bench"))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="shrink every size (a quick check of the script: 0.05)")
    parser.add_argument("--only", choices=("zstd", "sparse"), default=None,
                        help="run one part: zstd (1 and 3) or sparse (2)")
    parser.add_argument("--sparse-work", type=Path, default=None,
                        help="where the 4 GiB images go (default: a directory on /var/tmp)")
    args = parser.parse_args()
    global GiB  # noqa: PLW0603 (one knob for every size)
    GiB = int(GiB * args.scale) // (4 * MiB) * (4 * MiB)
    if os.geteuid() != 0:
        sys.exit("disk_bench.py needs root (loop devices)")
    args.work.mkdir(parents=True, exist_ok=True)
    sparse_work = args.sparse_work or Path(
        tempfile.mkdtemp(prefix="rb-disk-bench-", dir="/var/tmp"))
    www = args.work / "www"
    www.mkdir(exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    results = []
    server = subprocess.Popen([sys.executable, "-m", "tests.lib.imageserver", str(www), "0"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    loops: list[Loop] = []
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        # --- 1: zstd image -------------------------------------------------------------
        if args.only != "sparse":
            results += zstd_and_read_back(args, www, base, loops)
        if args.only != "zstd":
            results += sparse_with_bmap(args, sparse_work, loops)
    finally:
        for loop in loops:
            loop.close()
        for process in (server,):
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(args.work, ignore_errors=True)
        shutil.rmtree(sparse_work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    return 0


def zstd_and_read_back(args: argparse.Namespace, www: Path, base: str,
                       loops: list[Loop]) -> list[dict[str, object]]:
    results = []
    raw = args.work / "os.img"
    os_like_image(raw, GiB)
    sh(["zstd", "-q", "-f", "-3", "-T0", str(raw), "-o", str(www / "os.img.zst")])
    raw_digest = sha256(raw)
    raw.unlink()
    zst_digest = sha256(www / "os.img.zst")
    url = f"{base}/os.img.zst"
    print(f"zstd image: {(www / 'os.img.zst').stat().st_size} bytes for {GiB}", flush=True)
    target = Loop(args.work / "target.raw", GiB + 64 * MiB)
    loops.append(target)
    action = {"action": "image", "url": url, "digest": f"sha256:{zst_digest}",
              "target": {"path": target.device}}
    ours, theirs = [], []
    for _ in range(args.runs):
        target.reset()
        ours.append(timed_at_load(lambda: run_plan(args.work, action)))
        target.reset()
        theirs.append(timed_at_load(lambda: sh(
            ["sh", "-c", f"curl -sf {url} | zstd -dc | dd of={target.device} bs=4M "
                         "iflag=fullblock conv=fsync status=none"])))
    results.append(compare("1 GiB zstd image, HTTP -> loop device", ours, theirs, GiB,
                           ">= 0.95x curl | zstd -dc | dd"))
    # --- 3: read-back ---------------------------------------------------------------
    # The same written GiB as a device of exactly that size, for openssl to read whole.
    exact = subprocess.run(["losetup", "--find", "--show", "--sizelimit", str(GiB),
                            str(target.backing)], check=True, capture_output=True,
                           text=True).stdout.strip()
    ours, theirs = [], []
    try:
        for _ in range(args.runs):
            drop(exact)
            ours.append(timed_at_load(lambda: blockdev.read_back(exact, [(0, GiB)], "sha256")))
            drop(exact)
            theirs.append(timed_at_load(
                lambda: sh(["openssl", "dgst", "-sha256", exact], stdout=subprocess.DEVNULL)))
        (digest,) = blockdev.read_back(exact, [(0, GiB)], "sha256")
    finally:
        subprocess.run(["losetup", "--detach", exact], check=False)
    assert digest == raw_digest, "the written image does not read back as written"
    results.append(compare("read-back sha256 of 1 GiB", ours, theirs, GiB,
                           ">= 0.9x openssl dgst -sha256"))
    target.reset()
    return results


def sparse_with_bmap(args: argparse.Namespace, sparse_work: Path,
                     loops: list[Loop]) -> list[dict[str, object]]:
    results = []
    sparse_server = None
    try:
        # --- 2: sparse image with a bmap ----------------------------------------------
        swww = sparse_work / "www"
        swww.mkdir(exist_ok=True)
        sparse = swww / "sparse.img"
        sparse_image(sparse, 4 * GiB, GiB)
        sh(["bmaptool", "create", "-o", str(swww / "sparse.img.bmap"), str(sparse)],
           capture_output=True)
        sparse_digest = sha256(sparse)
        sparse_server = subprocess.Popen(
            [sys.executable, "-m", "tests.lib.imageserver", str(swww), "0"], cwd=REPO,
            stdout=subprocess.PIPE, text=True)
        assert sparse_server.stdout is not None
        sbase = sparse_server.stdout.readline().strip()
        starget = Loop(sparse_work / "target.raw", 4 * GiB + 64 * MiB)
        loops.append(starget)
        with_bmap = {"action": "image", "url": f"{sbase}/sparse.img",
                     "bmap": f"{sbase}/sparse.img.bmap",
                     "bmap_digest": f"sha256:{sha256(swww / 'sparse.img.bmap')}",
                     "target": {"path": starget.device}}
        both = {**with_bmap, "digest": f"sha256:{sparse_digest}"}
        dense = {"action": "image", "url": f"{sbase}/sparse.img",
                 "digest": f"sha256:{sparse_digest}", "target": {"path": starget.device}}
        ours, peer, ours_both, dense_runs = [], [], [], []
        loads: list[float] = []
        for index in range(args.runs):  # interleaved: every variant sees the same load
            starget.reset()
            ours.append(timed_at_load(lambda: run_plan(sparse_work, with_bmap)))
            starget.reset()
            peer.append(timed_at_load(lambda: sh(
                ["bmaptool", "-q", "copy", "--bmap", str(swww / "sparse.img.bmap"),
                 f"{sbase}/sparse.img", starget.device])))
            starget.reset()
            ours_both.append(timed_at_load(lambda: run_plan(sparse_work, both)))
            if index < max(1, args.runs - 1):
                starget.reset()
                dense_runs.append(timed_at_load(lambda: run_plan(sparse_work, dense)))
        loads = list(LOADS)
        results.append(compare("4 GiB sparse (1 GiB mapped) + bmap vs bmaptool copy", ours, peer,
                               4 * GiB, ">= 1.0x bmaptool copy"))
        LOADS.extend(loads)
        results.append(compare("4 GiB sparse: bmap and whole-file digest vs bmaptool copy",
                               ours_both, peer, 4 * GiB, "(holes hashed as zeros)"))
        LOADS.extend(loads)
        results.append(compare("4 GiB sparse: with bmap vs the dense write", ours, dense_runs,
                               4 * GiB, "several times faster"))
    finally:
        if sparse_server is not None:
            sparse_server.terminate()
            sparse_server.wait(timeout=10)
    return results


if __name__ == "__main__":
    sys.exit(main())
