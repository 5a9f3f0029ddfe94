#!/usr/bin/env python3
"""Drop the docstrings from the image's .pyc files, as `python -OO` compiles them.

`python-docstrings.py DIR...`: every .pyc under the directories is rewritten
in place with the docstrings of its modules, classes and functions replaced
by None (their __doc__ is then None, as under -OO; the image has no help()
or pydoc to read them). Documentation is a sixth of a .pyc's compressed
size. Asserts stay: unlike -OO, this changes no behaviour but __doc__.
Buildroot compiles the standard library in target-finalize, when the .py
files are there, and removes them (BR2_PACKAGE_PYTHON3_PYC_ONLY); this runs
from post-build.sh on what is left. Run it with Buildroot's host python3,
the target's version: a .pyc of another version is an error, not skipped.
The 16-byte header is kept as it is.
"""

from __future__ import annotations

import argparse
import dis
import importlib.util
import inspect
import itertools
import marshal
import sys
from pathlib import Path
from types import CodeType

HEADER = 16
# Python 3.14 marks a function whose co_consts[0] is its docstring.
CO_HAS_DOCSTRING = getattr(inspect, "CO_HAS_DOCSTRING", 0)
LOAD_CONST = dis.opmap["LOAD_CONST"]
STORE_NAME = dis.opmap["STORE_NAME"]


class DocstringError(Exception):
    pass


def doc_indexes(code: CodeType) -> set[int]:
    """The co_consts indexes that are this code object's docstring and nothing else."""
    instructions = list(dis.get_instructions(code))
    uses: dict[int, int] = {}  # co_consts index -> how many instructions load it
    for instruction in instructions:
        if instruction.opcode in dis.hasconst and instruction.arg is not None:
            uses[instruction.arg] = uses.get(instruction.arg, 0) + 1
    found: set[int] = set()
    if code.co_flags & CO_HAS_DOCSTRING and uses.get(0, 0) == 0:
        found.add(0)  # a function's: no instruction loads it
    # A module's or class body's: LOAD_CONST doc; STORE_NAME __doc__.
    for previous, instruction in itertools.pairwise(instructions):
        if (previous.opcode == LOAD_CONST and previous.arg is not None
                and instruction.opcode == STORE_NAME and instruction.argval == "__doc__"
                and uses.get(previous.arg) == 1):
            found.add(previous.arg)
    return {i for i in found if isinstance(code.co_consts[i], str)}


def stripped(code: CodeType) -> CodeType:
    consts = list(code.co_consts)
    for index, value in enumerate(consts):
        if isinstance(value, CodeType):
            consts[index] = stripped(value)
    docs = doc_indexes(code)
    for index in docs:
        consts[index] = None
    flags = code.co_flags & ~CO_HAS_DOCSTRING if 0 in docs else code.co_flags
    return code.replace(co_consts=tuple(consts), co_flags=flags)


def strip_file(path: Path) -> int:
    """Rewrite one .pyc; the bytes saved."""
    data = path.read_bytes()
    if data[:4] != importlib.util.MAGIC_NUMBER:
        raise DocstringError(f"{path}: not a .pyc of Python {sys.version.split()[0]}")
    try:
        code = marshal.loads(data[HEADER:])  # noqa: S302 - the image's own files
    except (EOFError, ValueError, TypeError) as error:
        raise DocstringError(f"{path}: unreadable code object ({error})") from error
    if not isinstance(code, CodeType):
        raise DocstringError(f"{path}: no code object")
    new = data[:HEADER] + marshal.dumps(stripped(code))
    if len(new) >= len(data):
        return 0
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(new)
    partial.chmod(path.stat().st_mode & 0o7777)
    partial.replace(path)
    return len(data) - len(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directories", nargs="+", type=Path)
    args = parser.parse_args(argv)
    saved = files = 0
    try:
        for directory in args.directories:
            for path in sorted(directory.rglob("*.pyc")):
                saved += strip_file(path)
                files += 1
    except (DocstringError, OSError) as error:
        print(f"python-docstrings: {error}", file=sys.stderr)
        return 1
    print(f"python-docstrings: {files} .pyc files, {saved} bytes of docstrings dropped",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
