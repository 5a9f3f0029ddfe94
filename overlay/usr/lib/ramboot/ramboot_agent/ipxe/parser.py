"""Split an iPXE script into lines, labels and commands, as iPXE's script.c does.

Rules (iPXE src/image/script.c and src/core/exec.c):

* lines end at ``\\n``; one trailing ``\\r`` is dropped; a trailing backslash
  joins the next physical line (without the newline);
* a line whose first non-blank character is ``:`` starts with a label, the
  rest of the line (after the label) is still a command;
* words are separated by blanks; a word starting with ``#`` starts a comment
  (so ``#!ipxe`` is one), ``echo a#b`` prints ``a#b``;
* the words ``||``, ``&&`` and ``;`` separate commands.

Expansion of ``${...}`` happens later, per word, when the command runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe.expand import ExpansionError, check_syntax

_BLANKS = re.compile(r"[ \t\n\v\f\r]+")
CONNECTORS = ("||", "&&", ";")
MAX_SCRIPT_CHARS = 1 << 20


@dataclass(frozen=True)
class Command:
    """Unexpanded words, and the connector that follows (None: end of line)."""

    words: tuple[str, ...]
    connector: str | None


@dataclass(frozen=True)
class Line:
    number: int  # physical line where this logical line starts (1-based)
    label: str | None
    commands: tuple[Command, ...]
    text: str


@dataclass(frozen=True)
class Script:
    url: str
    lines: tuple[Line, ...]
    labels: dict[str, int] = field(default_factory=dict)  # label -> index in lines

    def find_label(self, label: str) -> int | None:
        return self.labels.get(label)


def is_script(data: bytes) -> bool:
    """iPXE's probe: ``#!ipxe`` (or ``#!gpxe``) followed by a blank."""
    return len(data) >= 7 and data[:6] in (b"#!ipxe", b"#!gpxe") and data[6:7] in b" \t\n\v\f\r"


def split_words(command: str) -> list[str]:
    return [word for word in _BLANKS.split(command) if word]


def split_commands(words: list[str]) -> tuple[Command, ...]:
    commands: list[Command] = []
    current: list[str] = []
    for word in words:
        if word.startswith("#"):
            break
        if word in CONNECTORS:
            commands.append(Command(tuple(current), word))
            current = []
        else:
            current.append(word)
    commands.append(Command(tuple(current), None))
    return tuple(commands)


def parse(text: str, url: str) -> Script:
    """Parse a whole script; raises ScriptError naming the URL and line."""
    if len(text) > MAX_SCRIPT_CHARS:
        raise ScriptError(url, None, f"script larger than {MAX_SCRIPT_CHARS} characters")
    if not is_script(text[:7].encode("utf-8", "surrogateescape")):
        raise ScriptError(url, 1, "not an iPXE script: it must start with '#!ipxe'")
    if "\0" in text:
        number = text[: text.index("\0")].count("\n") + 1
        raise ScriptError(url, number, "NUL byte in script")
    physical = text.split("\n")
    if physical and physical[-1] == "" and text.endswith("\n"):
        physical.pop()  # the newline ending the last line does not open another
    lines: list[Line] = []
    labels: dict[str, int] = {}
    pending = ""
    start = 1
    for number, raw in enumerate(physical, start=1):
        if not pending:
            start = number
        fragment = raw[:-1] if raw.endswith("\r") else raw
        if fragment.endswith("\\"):
            pending += fragment[:-1]
            continue
        logical = pending + fragment
        pending = ""
        line = _parse_line(logical, start, url)
        if line.label is not None:
            labels.setdefault(line.label, len(lines))
        lines.append(line)
    if pending or (physical and physical[-1].rstrip("\r").endswith("\\")):
        raise ScriptError(url, start, "backslash continuation at the end of the script")
    return Script(url, tuple(lines), labels)


def _parse_line(text: str, number: int, url: str) -> Line:
    command = text.lstrip(" \t\n\v\f\r")
    label: str | None = None
    if command.startswith(":"):
        match = re.match(r":([^ \t\n\v\f\r]*)[ \t\n\v\f\r]?", command)
        assert match is not None
        label = match.group(1)
        command = command[match.end() :]
    commands = split_commands(split_words(command))
    for cmd in commands:
        for word in cmd.words:
            try:
                check_syntax(word)
            except ExpansionError as error:
                raise ScriptError(url, number, f"{error} in {word!r}") from None
    return Line(number, label, commands, text)
