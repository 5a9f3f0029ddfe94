"""The parser: lines, continuations, labels, comments, connectors, syntax errors."""

from __future__ import annotations

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe.expand import ExpansionError, expand
from ramboot_agent.ipxe.parser import Command, is_script, parse

URL = "http://192.0.2.1/boot.ipxe"


def test_header_is_required() -> None:
    with pytest.raises(ScriptError) as error:
        parse("echo hi\n", URL)
    assert error.value.line == 1 and "#!ipxe" in str(error.value)
    assert is_script(b"#!ipxe\n") and is_script(b"#!gpxe echo") and not is_script(b"#!ipxex\n")


def test_lines_labels_and_comments() -> None:
    script = parse("#!ipxe\r\n  :start echo a#b # comment && x\n:end\n", URL)
    assert [line.number for line in script.lines] == [1, 2, 3]
    assert script.lines[0].commands == (Command((), None),)
    assert script.lines[1].label == "start"
    assert script.lines[1].commands == (Command(("echo", "a#b"), None),)
    assert script.labels == {"start": 1, "end": 2}


def test_connectors_are_whole_words() -> None:
    line = parse("#!ipxe\nisset ${x} && echo a;b || echo c ; echo d ||\n", URL).lines[1]
    assert line.commands == (
        Command(("isset", "${x}"), "&&"),
        Command(("echo", "a;b"), "||"),
        Command(("echo", "c"), ";"),
        Command(("echo", "d"), "||"),
        Command((), None),
    )


def test_continuation_keeps_first_line_number() -> None:
    script = parse("#!ipxe\nkernel a \\\n  b \\\r\n c\necho after\n", URL)
    assert script.lines[1].number == 2
    assert script.lines[1].commands[0].words == ("kernel", "a", "b", "c")
    assert script.lines[2].number == 5


@pytest.mark.parametrize(("text", "line"), [
    ("#!ipxe\necho ok\necho ${unterminated\n", 3),
    ("#!ipxe\n\nset x ${a${b}\n", 3),
    ("#!ipxe\necho \\\n${x\n", 2),
    ("#!ipxe\necho trailing \\\n", 2),
])
def test_syntax_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(ScriptError) as error:
        parse(text, URL)
    assert error.value.line == line
    assert str(error.value).startswith(f"{URL}:{line}: ")


def test_expansion_innermost_first_and_bounded() -> None:
    values = {"a": "b", "b": "deep", "loop": "${loop}"}
    assert expand("${${a}}-${a}-${none}-$x-{y}", values.get) == "deep-b--$x-{y}"
    assert expand("}${a}", values.get) == "}b"
    with pytest.raises(ExpansionError):
        expand("${loop}", values.get)
