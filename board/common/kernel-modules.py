#!/usr/bin/env python3
"""Keep only the kernel modules a board's allow-list names, then re-run depmod.

`kernel-modules.py TARGET_DIR LIST [--depmod PATH]`. LIST names one module a
line (`#` comments; `-` and `_` alike). Kept: those modules and what they
depend on (modules.dep). A name that is neither a module of this kernel nor
built into it (modules.builtin) is an error naming the list's line: the list
and the kernel configuration disagree. Buildroot installs every `=m` module
of the kernel configuration into the initramfs (a mainline arm64 defconfig
has about 1,300); the network boot needs the few its board lists.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


class ModulesError(Exception):
    pass


def normal(name: str) -> str:
    return name.replace("-", "_")


def read_list(path: Path) -> dict[str, int]:
    """Module name -> line number."""
    wanted: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if len(text.split()) != 1 or not all(c.isalnum() or c in "-_" for c in text):
            raise ModulesError(f"{path}:{number}: not a module name: {text!r}")
        wanted[normal(text)] = number
    return wanted


def module_name(relative: str) -> str:
    """kernel/net/foo-bar.ko.xz -> foo_bar."""
    return normal(relative.rsplit("/", 1)[-1].split(".ko", 1)[0])


def read_dep(version_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """Module name -> (its path, the paths it depends on), from modules.dep."""
    dep = version_dir / "modules.dep"
    if not dep.is_file():
        raise ModulesError(f"{dep} missing: run depmod first")
    table = {}
    for number, line in enumerate(dep.read_text().splitlines(), 1):
        if not line.strip():
            continue
        path, sep, needs = line.partition(":")
        if not sep:
            raise ModulesError(f"{dep}:{number}: no ':' in {line!r}")
        table[module_name(path)] = (path, needs.split())
    return table


def plan(version_dir: Path, wanted: dict[str, int], listing: Path) -> tuple[set[str], set[str]]:
    """(module paths kept, module paths removed), relative to version_dir."""
    table = read_dep(version_dir)
    builtin_file = version_dir / "modules.builtin"
    builtin = {module_name(line) for line in builtin_file.read_text().split()} \
        if builtin_file.is_file() else set()
    kept: set[str] = set()
    for name, number in sorted(wanted.items(), key=lambda item: item[1]):
        if name in table:
            path, needs = table[name]
            kept.update([path, *needs])  # modules.dep lists the whole closure
        elif name not in builtin:
            raise ModulesError(f"{listing}:{number}: {name} is neither a module of"
                               f" {version_dir.name} nor built into it")
    every = {path for path, _ in table.values()}
    return kept, every - kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("list", type=Path)
    parser.add_argument("--depmod", default="depmod", help="depmod to run (host kmod's)")
    args = parser.parse_args(argv)
    modules = args.target / "lib/modules"
    versions = sorted(p for p in modules.iterdir() if p.is_dir()) if modules.is_dir() else []
    try:
        wanted = read_list(args.list)
        if not versions:
            if wanted:
                raise ModulesError(f"{args.list}: lists modules, but {modules} has no kernel")
            return 0
        if len(versions) != 1:
            raise ModulesError(f"{modules}: one kernel expected, found "
                               + ", ".join(p.name for p in versions))
        version_dir = versions[0]
        kept, removed = plan(version_dir, wanted, args.list)
    except (ModulesError, OSError) as error:
        print(f"kernel-modules: {error}", file=sys.stderr)
        return 1
    for relative in sorted(removed):
        (version_dir / relative).unlink()
    for directory in sorted((p for p in version_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    subprocess.run([args.depmod, "-a", "-b", str(args.target), version_dir.name], check=True)
    print(f"kernel-modules: kept {len(kept)} of {len(kept) + len(removed)} modules"
          f" ({args.list})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
