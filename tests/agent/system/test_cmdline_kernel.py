"""The agent splits the kernel command line exactly as the kernel does.

Compared with the kernel's own next_arg()/parse_args(), compiled from
Debian's linux-source-6.12 (RAMBOOT_CACHE/linux-source-6.12, unpacked by
scripts/install-deps): hand-picked lines where a simpler splitter goes
wrong, then hypothesis on bytes built from quotes, `=`, every kernel
whitespace byte, NUL, UTF-8 and arbitrary bytes. Also: whatever the line,
parse_cmdline ends in Settings or a ConfigError, never another exception.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramboot_agent.cmdline import kernel_args, parse_cmdline, split_cmdline
from ramboot_agent.errors import ConfigError

from .kernel_cmdline import KernelSplitter, build

TRICKY = [
    b"",
    b"   \t\n",
    b"a=1 b",
    b'"a=b"',
    b'a="b c" d',
    b'"a="b""',  # a closing quote on the value and on the token: the kernel keeps one
    b'a="b"c"',
    b'a=b"c',
    b'"a b',  # an unclosed quote runs to the end of the line
    b'a="',
    b'"',
    b'""',
    b"=a",  # an `=` at the start does not separate: the parameter is "=a"
    b"=a=b",
    b"a==b",
    b"-- a=1",
    b'"--" a=1',
    b"--=x a",
    b"a -- b",
    b"ramboot.url=http://x/\xa0ramboot.debug=2",  # 0xa0 is kernel whitespace
    "ramboot.url=http://x/à".encode(),  # ...so is the second byte of "à" (c3 a0)
    b"ramboot.debug=1\x00ramboot.debug=2",  # the line ends at NUL
    b"x\x1cy",  # Python's isspace() says \x1c is space; the kernel does not
    b'BOOTIF=01-52-54-00-12-34-56 "ramboot.ssh_authorized_keys=ssh-ed25519 AAAA a@b"',
    b'ramboot.url="http://h/a b" quiet',
    b"  leading and trailing  ",
]


@pytest.fixture(scope="module")
def kernel(ramboot_cache: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[KernelSplitter]:
    linux = ramboot_cache / "linux-source-6.12"
    if not (linux / "lib/cmdline.c").is_file():
        pytest.skip(f"no kernel source in {linux} (scripts/install-deps unpacks linux-source-6.12)")
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the kernel's splitter")
    splitter = KernelSplitter(build(linux, tmp_path_factory.mktemp("kernel-cmdline")))
    yield splitter
    splitter.close()


@pytest.mark.parametrize("line", TRICKY)
def test_tricky_lines_split_as_the_kernel_splits_them(kernel: KernelSplitter,
                                                      line: bytes) -> None:
    assert list(kernel_args(line)) == kernel.split(line)


def test_the_old_splitter_differed_here(kernel: KernelSplitter) -> None:
    # What the kernel does with these, spelled out (each was split differently before).
    assert kernel.split(b'"a="b""') == [(b"a", b'b"')]
    assert kernel.split(b"=a=b") == [(b"=a", b"b")]
    assert kernel.split("u=à".encode()) == [(b"u", b"\xc3")]
    assert kernel.split(b"x\x1cy") == [(b"x\x1cy", None)]
    assert split_cmdline("u=à") == [("u", "\ufffd")]


KERNEL_BYTES = st.sampled_from([b" ", b"\t", b"\n", b"\v", b"\f", b"\r", b"\xa0", b'"', b"=",
                                b"-", b"--", b"_", b".", b"a", b"ramboot.url", b"\x00",
                                b"\xc3", "é".encode(), b"\x1c"])
LINES = st.lists(st.one_of(KERNEL_BYTES, st.binary(max_size=4)), max_size=40).map(b"".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES)
def test_any_line_splits_as_the_kernel_splits_it(kernel: KernelSplitter, line: bytes) -> None:
    assert list(kernel_args(line)) == kernel.split(line)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(LINES, st.text(max_size=200)))
def test_any_line_parses_to_settings_or_a_config_error(line: bytes | str) -> None:
    with contextlib.suppress(ConfigError):  # anything else fails the test
        parse_cmdline(line)
