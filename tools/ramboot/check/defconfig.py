"""Read Kconfig configuration files (defconfigs, fragments) keeping line numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ramboot.errors import RambootError

# The two line shapes Kconfig writes and reads; anything else but comments
# and blank lines is an error rather than something silently ignored.
_SET = re.compile(r"^(?P<name>[A-Za-z0-9_]+)=(?P<value>.*)$")
_UNSET = re.compile(r"^# (?P<name>[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Assignment:
    path: Path
    line: int
    name: str  # as written, e.g. BR2_FOO or CONFIG_FOO
    value: str  # unquoted and unescaped for strings; "n" for "is not set"

    def as_line(self) -> str:
        return f"{self.name}={self.value}"


def _unquote(raw: str, path: Path, lineno: int) -> str:
    if not raw.startswith('"'):
        return raw
    if len(raw) < 2 or not raw.endswith('"'):
        raise RambootError(f"{path}:{lineno}: unterminated string: {raw}")
    body = raw[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def read_config(path: Path) -> list[Assignment]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RambootError(f"{path}: cannot read: {error.strerror}") from error
    assignments = []
    for lineno, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if match := _SET.match(line):
            value = _unquote(match["value"], path, lineno)
            assignments.append(Assignment(path, lineno, match["name"], value))
        elif match := _UNSET.match(line):
            assignments.append(Assignment(path, lineno, match["name"], "n"))
        elif line and not line.startswith("#"):
            raise RambootError(f"{path}:{lineno}: not a Kconfig assignment: {line}")
    return assignments


def last_values(assignments: list[Assignment]) -> dict[str, Assignment]:
    """The assignment that wins for each symbol (the last one, as Kconfig does)."""
    return {a.name: a for a in assignments}
