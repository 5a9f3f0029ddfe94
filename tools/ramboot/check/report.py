"""Problems found by the checks, printed the way a compiler prints diagnostics."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path


class Severity(enum.Enum):
    ERROR = "error"
    # Only for checks that are approximations (e.g. a forked kernel checked
    # against mainline): shown, but not a reason to fail.
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    symbol: str
    message: str
    severity: Severity = Severity.ERROR

    def format(self, relative_to: Path | None = None) -> str:
        location = display_path(self.path, relative_to)
        if self.line is not None:
            location += f":{self.line}"
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{location}: {prefix}{self.symbol}: {self.message}"


def display_path(path: Path, relative_to: Path | None = None) -> str:
    base = (relative_to or Path.cwd()).resolve()
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


def summary(problems: list[Problem], checked: int, what: str) -> str:
    errors = sum(1 for p in problems if p.severity is Severity.ERROR)
    warnings = len(problems) - errors
    verdict = "FAILED" if errors else "ok"
    return (
        f"ramboot check: {checked} {what} checked, {errors} error(s), "
        f"{warnings} warning(s): {verdict}"
    )
