"""Property tests: whatever the text, only ScriptError escapes."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe.parser import parse
from ramboot_agent.ipxe.settings import build_settings

from .conftest import Harness

WORDS = st.sampled_from([
    "echo", "set", "clear", "isset", "iseq", "inc", "goto", "exit", "sleep", "chain", "kernel",
    "initrd", "imgfetch", "imgargs", "imgfree", "imgstat", "boot", "menu", "item", "choose",
    "dhcp", "cpuid", "prompt", "show", "params", "param", "||", "&&", ";", "#c", ":l", "l",
    "x", "${x}", "${x:int32}", "${net0/mac:hexhyp}", "${${x}}", "-n", "--ext", "29", "-1",
    "x:int8", "x:hex", "0x10", "${", "}", "\\", "file:///nonexistent/a", "--default", "l",
])
LINES = st.lists(st.lists(WORDS, max_size=6).map(" ".join), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parse_arbitrary_text(text: str) -> None:
    with contextlib.suppress(ScriptError):
        parse("#!ipxe\n" + text, "file:///x.ipxe")


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(LINES)
def test_run_grammar_built_scripts(tmp_path: Path, lines: list[str]) -> None:
    harness = Harness(tmp_path, build_settings({"mac": "52:54:00:00:00:01"}, {224: b"x"}))
    with contextlib.suppress(ScriptError):
        harness.run("#!ipxe\n" + "\n".join(lines) + "\n")
