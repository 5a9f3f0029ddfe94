"""tests/lib/programs.py reads the programs code runs, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.programs import ShellSyntaxError, python_programs, script_programs, shell_calls

from .conftest import REPO


def programs(source: str) -> list[str]:
    calls, functions = shell_calls(source, Path("t.sh"))
    return [c.program for c in calls if c.program not in functions]


def test_here_document_bodies_are_not_code() -> None:
    """report-booted's Python here-document: import, with, urllib... are not programs."""
    found = {c.program for c in script_programs(REPO / "overlay/usr/share/ramboot/report-booted")}
    assert found == {"/bin/sh", "[", "curl", "cut", "date", "echo", "head", "python3", "sed",
                     "sleep", "timeout", "wget"}
    assert programs("cat <<-EOF\n\trm -rf /\n\tEOF\nls\n") == ["cat", "ls"]
    assert programs("cat << 'X' > f; tr a b\n$(reboot)\nX\ndate\n") == ["cat", "tr", "date"]


def test_switch_root_calls() -> None:
    found = {c.program for c in script_programs(REPO / "overlay/usr/lib/ramboot/switch-root")}
    assert found == {"/bin/sh", "/sbin/init", "[", "awk", "echo", "grep", "kill", "mount",
                     "printf", "readlink", "rm", "sleep", "sort", "switch_root", "umount"}


def test_quoted_strings_and_comments_are_not_commands() -> None:
    assert programs("echo 'a | reboot' \"b; halt && $(date)\" # ; poweroff\n") == \
        ["echo", "date"]
    assert programs("printf '%s\\n' \"it's ok\" | grep -q x\n") == ["printf", "grep"]


def test_command_positions() -> None:
    source = """
f() { g; }
A=1 B="$(id -u)" env X=1 tool --flag && other || { third; }
if [ -x /x ]; then run1; elif test -e y; then run2; else run3; fi
while read -r line; do handle "$line"; done < input
for x in a b c; do loop "$x"; done
case "$1" in
start|restart) starter;;
(stop) stopper ;;
*) echo "$1" ;;
esac
2>/dev/null quiet arg
exec 3>&1
exec final arg
"""
    assert programs(source) == [
        "g", "env", "tool", "other", "third", "[", "run1", "test", "run2", "run3",
        "handle", "loop", "starter", "stopper", "echo", "quiet", "final", "id"]


def test_wrappers_and_substitutions() -> None:
    assert programs("command -v probe >/dev/null\n") == ["probe"]
    assert programs("x=$(a $(b) `c`) y=$((1 + 2))\n") == ["a", "b", "c"]
    assert programs("echo \"$(cat \"$f\")\"\n") == ["echo", "cat"]
    assert programs("find /sys -name m -exec cat {} + | xargs -r -n 1 modprobe -q\n") == \
        ["find", "cat", "xargs", "modprobe"]
    assert programs("timeout -s KILL 5 wget -q url; exec cttyhack sh -l\n") == \
        ["timeout", "wget", "cttyhack", "sh"]
    assert programs('"$run" arg; $limit wget\n') == []  # dynamic: nothing to read
    assert programs("case $a in\n*) one\nesac\n(sub) | two\n") == ["one", "sub", "two"]


def test_unreadable_shell_is_an_error_with_its_line() -> None:
    with pytest.raises(ShellSyntaxError, match=r"t.sh:2: unterminated single quote"):
        programs("ok\necho 'never closed\n")
    with pytest.raises(ShellSyntaxError, match="here-document 'EOF' never ends"):
        programs("cat <<EOF\nbody\n")


def test_python_argv(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('''
import shutil, subprocess, sys

def tool_argv(x):
    return ["mkfs.ext4", x]

def opaque_argv():
    return [sys.executable, "-c", "pass"]

def f(ctx, device, name):
    subprocess.run(["sfdisk", "--dump", device])
    ctx.run_tool(("wipefs", "-a"), timeout=3)
    argv = ["cttyhack", "sh"] if shutil.which("cttyhack") else ["sh"]
    subprocess.run(argv)
    helper = shutil.which("helper")
    subprocess.Popen([helper, "-x"])
    program = ["busybox", "udhcpc"]
    subprocess.run([*program, "-f"])
    subprocess.run(tool_argv(device))
    subprocess.run(opaque_argv())
    subprocess.run([name, "-v"])
    text = ["not", "argv"]
''')
    calls, sites = python_programs([module])
    assert sorted({c.program for c in calls}) == [
        "cttyhack", "helper", "mkfs.ext4", "sfdisk", "sh", "udhcpc", "wipefs"]
    assert [(s.function, s.text) for s in sites] == [
        ("f", "opaque_argv()"), ("f", "[name, '-v']")]
    calls, sites = python_programs([module], {"opaque_argv": frozenset({"python3"})})
    assert "python3" in {c.program for c in calls}
    assert [s.text for s in sites] == ["[name, '-v']"]


@pytest.mark.parametrize("script", sorted(REPO.glob("board/**/*.sh")), ids=lambda p: p.name)
def test_board_scripts_parse(script: Path) -> None:
    """They run on the build host, but the parser must read them as well as the overlay's."""
    programs = {c.program for c in script_programs(script)}
    assert "/bin/sh" in programs and len(programs) > 1, programs  # its #! and what it runs
