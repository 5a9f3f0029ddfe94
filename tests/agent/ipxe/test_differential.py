"""Differential test: the same script in real iPXE (QEMU) and in the agent.

One QEMU boot runs every sub-test (expansion, typed settings, flow control,
command status); the printed lines between the markers must be identical.
Needs tests/lib/ipxe.py (run_in_ipxe, from the ipxe-qemu branch).
"""

from __future__ import annotations

from typing import Any

import pytest

SCRIPT = """#!ipxe
echo BEGIN
set a b
set b nested
echo expand [${a}] [${${a}}] [${nope}] a#b # comment
set v   two   words
echo -n [${v}]
echo
set i:int32 -2
inc i 5
echo int ${i} ${i:uint8} ${i:hex} ${i:hexhyp}
set u:uint16 0x1f
echo uint ${u} ${u:int16} ${u:hexraw}
set ip:ipv4 192.0.2.7
echo ipv4 ${ip} ${ip:hex} ${ip:int32}
set s a b/c&d=e
echo uri ${s:uristring}
iseq a b && echo no1 || echo yes1
iseq a a && echo yes2 || echo no2
iseq a b && echo no3 ||
isset ${nope} || isset ${a} && echo yes4
set n:int32 0
:loop inc n
iseq ${n} 3 || goto loop
echo loop ${n}
goto done ; echo skipped
echo skipped
:done echo done-label
echo END
"""


def _between_markers(lines: list[str]) -> list[str]:
    stripped = [line.rstrip("\r") for line in lines]
    start = stripped.index("BEGIN")
    return stripped[start + 1 : stripped.index("END", start)]


@pytest.mark.qemu
@pytest.mark.slow
def test_agent_prints_what_ipxe_prints(make_harness: Any) -> None:
    ipxe = pytest.importorskip("tests.lib.ipxe", reason="needs tests/lib/ipxe.py (ipxe-qemu)")
    expected = _between_markers(ipxe.run_in_ipxe(SCRIPT))
    harness = make_harness()
    harness.run(SCRIPT)
    assert _between_markers(harness.lines) == expected
