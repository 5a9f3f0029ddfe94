#!/usr/bin/env python3
"""`ramboot render` and `ramboot deploy` side by side with `cp -a` and a bare loop.

Usage: .venv/bin/python bench/deploy_bench.py [--hosts 10000] [--dir /dev/shm]

One run, in one directory (tmpfs by default, where the tools' own work shows):
renders a generated fleet (bench/render_bench.py's), then times on the same tree

- `cp -a SRC DST`: what an operator would use instead of deploy;
- a bare loop: the same directories, files and symlinks created by the
  plainest Python (mkdir / open+write / symlink, no fsync, no hashing): the
  floor for any tool writing this tree from Python;
- `ramboot deploy` into a new store, and again after one file changed (the
  common case: hardlinks for everything else);
- `ramboot render` itself;
- the cost of checking live files before hardlinking them (the same deploy
  with that check reduced to size + mode, which ramboot does not ship).

Prints one table row per tool and the ratios; results go into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from render_bench import fleet, make_images

from ramboot.cli import cli
from ramboot.deploy import store as store_module
from ramboot.inventory import parse_inventory
from ramboot.render.tree import render_tree


def timed(label: str, run: object, results: dict[str, float]) -> None:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    results[label] = time.perf_counter() - start


def bare_loop(source: Path, target: Path) -> None:
    """Recreate `source` at `target` as plainly as Python can (contents read first)."""
    plan: list[tuple[str, Path, bytes | str]] = []
    for dirpath, dirnames, filenames in os.walk(source):
        base = Path(dirpath)
        relative = base.relative_to(source)
        for name in sorted(dirnames + filenames):
            path = base / name
            if path.is_symlink():
                plan.append(("link", relative / name, os.readlink(path)))  # noqa: PTH115
            elif path.is_dir():
                plan.append(("dir", relative / name, b""))
            else:
                plan.append(("file", relative / name, path.read_bytes()))
    start = time.perf_counter()
    target.mkdir()
    for kind, relative, data in plan:
        path = target / relative
        if kind == "dir":
            path.mkdir()
        elif kind == "link":
            os.symlink(data, path)  # noqa: PTH211 - the plainest call is the point
        else:
            with open(path, "wb") as stream:  # noqa: PTH123
                stream.write(data)  # type: ignore[arg-type]
    bare_loop.seconds = time.perf_counter() - start  # type: ignore[attr-defined]


def _stat_only(self: object, path: str, recorded: object) -> bool:
    info = os.lstat(path)
    return info.st_size == recorded.size  # type: ignore[attr-defined, no-any-return]


def deploy(source: Path, root: Path) -> None:
    result = CliRunner().invoke(cli, ["deploy", str(source), "--root", str(root)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ramboot-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        make_images(work / "images")
        inventory = parse_inventory(fleet(args.hosts), Path("bench.toml"))
        timed("ramboot render", lambda: render_tree(inventory, work / "images", work / "src"),
              results)
        entries = sum(1 for _ in (work / "src").rglob("*"))
        timed("cp -a", lambda: subprocess.run(
            ["cp", "-a", str(work / "src"), str(work / "cp")], check=True, timeout=600), results)
        bare_loop(work / "src", work / "bare")
        results["bare loop (create only)"] = bare_loop.seconds  # type: ignore[attr-defined]
        timed("ramboot deploy (new store)", lambda: deploy(work / "src", work / "store"),
              results)
        (work / "src/dhcp/dnsmasq.conf").write_text("# changed\n")
        timed("ramboot deploy (1 file changed)", lambda: deploy(work / "src", work / "store"),
              results)
        # The cost of checking live files before sharing them: the same deploy
        # with the content check replaced by size + mode only (not shipped).
        (work / "src/dhcp/dnsmasq.conf").write_text("# changed again\n")
        original = store_module._LiveFiles._is_intact
        store_module._LiveFiles._is_intact = _stat_only  # type: ignore[method-assign]
        try:
            timed("  same, live files trusted on size+mode", lambda: deploy(
                work / "src", work / "store"), results)
        finally:
            store_module._LiveFiles._is_intact = original  # type: ignore[method-assign]
        shutil.rmtree(work / "store", ignore_errors=True)
    print(f"{args.hosts} hosts, {entries} entries, in {args.dir or tempfile.gettempdir()}")
    print(f"{'what':36} {'seconds':>8} {'vs cp -a':>9} {'vs bare':>8}")
    for label, seconds in results.items():
        print(f"{label:36} {seconds:8.2f} {seconds / results['cp -a']:8.1f}x "
              f"{seconds / results['bare loop (create only)']:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
