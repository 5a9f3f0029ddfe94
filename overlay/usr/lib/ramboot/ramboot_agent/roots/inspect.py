"""Check that the new root can be started, from inside it.

Run as a helper process (helpers.helper_argv("inspect", ...)), because a
network root whose server went away can block any access to it; the agent
bounds this process in time and kills it:

    inspect NEWROOT INIT [--mkdir DIR]...

It chroots into NEWROOT, so that absolute symbolic links (/sbin/init ->
/lib/systemd/systemd) resolve as the new system will see them, and checks
that INIT can be executed there: a regular executable file, an ELF program
for this machine whose program interpreter (the dynamic loader) exists, or
a `#!` script whose interpreter can be executed in turn. It creates the
directories the switch mounts onto (/dev, /proc, /sys, /run and the plan's
extra mounts) and reports their modes. Prints one JSON object: `init`,
`resolved`, `kind`, `modes`, `problems` (empty when the root can start).
"""
# ruff: noqa: PTH103, PTH113, PTH116
# (inside the chroot, plain os calls on str paths say what they do)

from __future__ import annotations

import argparse
import json
import os
import stat
import struct
import sys
from collections.abc import Callable

MAX_SCRIPT_DEPTH = 4
NOBODY = (65534, 4294967294)  # what an unmappable NFSv4 owner becomes
HEAD = 4096
PT_INTERP = 3
# os.uname().machine -> the ELF e_machine values it runs (its own, and the
# 32-bit ABI the kernel may also run).
MACHINES = {
    "x86_64": {62: "x86_64", 3: "i386"},
    "aarch64": {183: "aarch64", 40: "arm"},
    "armv7l": {40: "arm"},
    "riscv64": {243: "riscv"},
    "i686": {3: "i386"},
}
ELF_NAMES = {62: "x86_64", 3: "i386", 183: "aarch64", 40: "arm", 243: "riscv", 8: "mips",
             20: "powerpc", 21: "ppc64", 22: "s390"}


def elf_info(head: bytes, read_at: Callable[[int, int], bytes]) -> tuple[int, str | None]:
    """(e_machine, program interpreter or None) of an ELF file's header."""
    bits64, little = head[4] == 2, head[5] == 1
    order = "<" if little else ">"
    machine = struct.unpack_from(order + "H", head, 18)[0]
    if bits64:
        phoff = struct.unpack_from(order + "Q", head, 32)[0]
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
    else:
        phoff = struct.unpack_from(order + "I", head, 28)[0]
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
    for index in range(min(phnum, 256)):
        entry = read_at(phoff + index * phentsize, phentsize)
        if len(entry) < (56 if bits64 else 32):
            break
        if struct.unpack_from(order + "I", entry, 0)[0] != PT_INTERP:
            continue
        if bits64:
            offset, size = struct.unpack_from(order + "Q", entry, 8)[0], \
                struct.unpack_from(order + "Q", entry, 32)[0]
        else:
            offset, size = struct.unpack_from(order + "I", entry, 4)[0], \
                struct.unpack_from(order + "I", entry, 16)[0]
        raw = read_at(offset, min(size, 4096))
        return machine, raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return machine, None


def check_program(path: str, problems: list[str], *, depth: int = 0,
                  role: str = "init") -> tuple[str, str]:
    """(resolved path, kind) of `path`; problems appended when it cannot run."""
    resolved = os.path.realpath(path)
    shown = path if resolved == path else f"{path} (-> {resolved})"
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        problems.append(f"{role} {shown} does not exist in the new root")
        return resolved, "missing"
    except OSError as error:
        problems.append(f"{role} {shown}: {error.strerror}")
        return resolved, "unreadable"
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{role} {shown} is not a regular file")
        return resolved, "not-a-file"
    if not info.st_mode & 0o111:
        problems.append(f"{role} {shown} is not executable")
        return resolved, "not-executable"
    try:
        with open(resolved, "rb") as program:  # noqa: PTH123
            head = program.read(HEAD)

            def read_at(offset: int, size: int) -> bytes:
                program.seek(offset)
                return program.read(size)

            if head[:4] == b"\x7fELF" and len(head) >= 64:
                machine, interpreter = elf_info(head, read_at)
            else:
                machine, interpreter = -1, None
    except OSError as error:
        problems.append(f"{role} {shown}: {error.strerror}")
        return resolved, "unreadable"
    if machine >= 0:
        runs = MACHINES.get(os.uname().machine)
        if runs is not None and machine not in runs:
            problems.append(f"{role} {shown} is a program for "
                            f"{ELF_NAMES.get(machine, f'machine {machine}')}, this machine "
                            f"is {os.uname().machine}")
        if interpreter is not None:
            loader = os.path.realpath(interpreter)
            if not os.path.isfile(loader):
                problems.append(f"{role} {shown} needs the program interpreter {interpreter}, "
                                "which the new root does not have")
        return resolved, "elf"
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        if not words:
            problems.append(f"{role} {shown} is a script without an interpreter")
            return resolved, "script"
        interpreter = words[0].decode("utf-8", errors="replace")
        if depth >= MAX_SCRIPT_DEPTH:
            problems.append(f"{role} {shown}: too many nested script interpreters")
        else:
            check_program(interpreter, problems, depth=depth + 1,
                          role=f"the interpreter of {path},")
        return resolved, "script"
    problems.append(f"{role} {shown} is neither an ELF program nor a #! script")
    return resolved, "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inspect")
    parser.add_argument("root")
    parser.add_argument("init")
    parser.add_argument("--mkdir", action="append", default=[])
    args = parser.parse_args(argv)
    problems: list[str] = []
    modes: dict[str, int] = {}
    try:
        os.chroot(args.root)
        os.chdir("/")
    except OSError as error:
        print(json.dumps({"problems": [f"cannot enter {args.root}: {error.strerror}"]}))
        return 2
    for directory in args.mkdir:
        path = "/" + directory.lstrip("/")
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
            modes[path] = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as error:
            problems.append(f"cannot create {path} in the new root: {error.strerror}")
    owner = os.stat("/").st_uid
    if owner in NOBODY:
        problems.append(f"the new root's / is owned by uid {owner} (nobody): an NFSv4 server "
                        "that sends owner names, which the RAM system cannot map; make it "
                        "send numbers (nfs-ganesha: Only_Numeric_Owners = true)")
    resolved, kind = check_program(args.init, problems)
    print(json.dumps({"init": args.init, "resolved": resolved, "kind": kind, "modes": modes,
                      "problems": problems}))
    return 2 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
