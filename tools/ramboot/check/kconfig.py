"""What kconfiglib made of a requested value, and why it differs.

Shared by the Buildroot and the kernel checks: both request values in a
config file and need to know whether each one stuck and, if not, which
dependency or select is responsible.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import kconfiglib  # type: ignore[import-untyped]

from ramboot.check.defconfig import Assignment
from ramboot.errors import RambootError

_TRISTATE_VALUE = {"n": 0, "m": 1, "y": 2}

# Linux 5.13 turned `option modules` into a bare `modules` line; kconfiglib
# 14.1 (its last release) predates that and only knows the old spelling.
_BARE_MODULES = re.compile(r"^(\s*)modules\s*$", re.MULTILINE)


class CompatKconfig(kconfiglib.Kconfig):  # type: ignore[misc]
    """kconfiglib.Kconfig reading the kernel's newer `modules` keyword."""

    def _open(self, filename: str, mode: str) -> IO[str]:
        stream: IO[str] = super()._open(filename, mode)
        if mode != "r":
            return stream
        with stream:
            text = stream.read()
        return io.StringIO(_BARE_MODULES.sub(r"\1option modules", text))


@contextlib.contextmanager
def environment(values: Mapping[str, str], cwd: Path | None = None) -> Iterator[None]:
    """Set environment variables (and the directory) only while Kconfig is parsed.

    kconfiglib reads os.environ and runs $(shell,...) in the current
    directory at parse time; nothing else in the process should see either.
    """
    saved = {name: os.environ.get(name) for name in values}
    old_cwd = Path.cwd()
    os.environ.update(values)
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(old_cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def parse(what: str, kconfig_file: str, env: Mapping[str, str], cwd: Path | None = None) -> Any:
    """Parse a Kconfig tree; `what` names it in errors."""
    with environment(env, cwd):
        try:
            return CompatKconfig(kconfig_file, warn_to_stderr=False)
        except (kconfiglib.KconfigError, OSError) as error:
            raise RambootError(f"{what}: {error}") from error


def lookup(kconf: Any, name: str, prefix: str) -> Any | None:
    """The defined symbol that a config line names, or None if there is none."""
    if not name.startswith(prefix):
        return None
    sym = kconf.syms.get(name[len(prefix):])
    if sym is None or not sym.nodes:
        return None  # unknown, or only referenced and never defined
    return sym


def _unmet(expr: Any, wanted: int) -> list[str]:
    """The operands of an && chain whose value is below `wanted`."""
    return [
        kconfiglib.expr_str(operand)
        for operand in kconfiglib.split_expr(expr, kconfiglib.AND)
        if kconfiglib.expr_value(operand) < wanted
    ]


def _visibility_reason(sym: Any, wanted: int) -> str:
    if not any(node.prompt for node in sym.nodes):
        return "it has no prompt: only a select can set it"
    missing = _unmet(sym.direct_dep, wanted)
    if missing:
        return "unmet dependency: " + " && ".join(missing)
    for node in sym.nodes:
        if node.prompt:
            missing = _unmet(node.prompt[1], wanted)
            if missing:
                return "prompt hidden: unmet condition " + " && ".join(missing)
    return "not visible"


def _selected_by(sym: Any, below: int) -> str:
    selectors = [
        kconfiglib.expr_str(operand)
        for operand in kconfiglib.split_expr(sym.rev_dep, kconfiglib.OR)
        if kconfiglib.expr_value(operand) > below
    ]
    return "selected by " + " || ".join(selectors) if selectors else "forced by its defaults"


def _requested_text(sym: Any, value: str) -> str:
    return value if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE) else f'"{value}"'


def explain_mismatch(sym: Any, assignment: Assignment) -> str | None:
    """None if the requested value stuck, else "requested X, actual Y (why)"."""
    requested, actual = assignment.value, sym.str_value
    if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
        if requested not in _TRISTATE_VALUE:
            return f"invalid value {requested!r} for a {kconfiglib.TYPE_TO_STR[sym.orig_type]}"
        if requested == actual:
            return None
        wanted, got = _TRISTATE_VALUE[requested], sym.tri_value
        if wanted > got:
            if sym.choice is not None and sym.visibility >= wanted:
                other = sym.choice.selection
                why = f"choice selects {other.name} instead" if other else "choice not selected"
            else:
                why = _visibility_reason(sym, wanted)
        elif sym.choice is not None:
            why = "a choice always has one member set: set another member to y instead"
        else:
            why = _selected_by(sym, wanted)
        return f"requested {requested}, actual {actual} ({why})"
    if requested == actual or _same_number(sym, requested, actual):
        return None
    if sym.visibility == 0:
        why = _visibility_reason(sym, 1)
    elif sym.orig_type in (kconfiglib.INT, kconfiglib.HEX):
        why = "invalid or out of range"
    else:
        why = "value rejected"
    shown_actual = _requested_text(sym, actual)
    return f"requested {_requested_text(sym, requested)}, actual {shown_actual} ({why})"


def _same_number(sym: Any, requested: str, actual: str) -> bool:
    if sym.orig_type not in (kconfiglib.INT, kconfiglib.HEX):
        return False
    base = 16 if sym.orig_type == kconfiglib.HEX else 10
    try:
        return int(requested, base) == int(actual, base)
    except ValueError:
        return False
