"""Every dynamic symbol the built image's programs and libraries need is defined in it.

post-build-slim.sh removes libraries, and a configuration change can rebuild a
library without rebuilding its users (OpenSSL without compression, Python's
_ssl still calling COMP_get_type): either leaves a file that fails to load at
run time, RTLD_NOW for Python's extension modules. Names only, versions
ignored, weak references skipped: a missing name is certain breakage.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.cpio import REGULAR, decompressed, read_newc
from tests.lib.elf_symbols import dynamic_symbols

from .test_budget import BOARDS, images


def elf_files(path: Path) -> dict[str, bytes]:
    files = {}
    for entry in read_newc(decompressed(path.read_bytes())):
        name = entry.name.removeprefix("./")
        if entry.kind == REGULAR and entry.data[:4] == b"\x7fELF" \
                and not name.startswith(("lib/modules/", "lib/firmware/")):
            files[name] = entry.data
    return files


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_every_needed_symbol_is_defined_in_the_image(board: str) -> None:
    symbols = {name: dynamic_symbols(data) for name, data in elf_files(images(board)).items()}
    provided = frozenset().union(*(s.provided for s in symbols.values()))
    missing = {name: sorted(s.needed - provided) for name, s in symbols.items()
               if s.needed - provided}
    assert not missing, f"{board}: undefined symbols: {missing}"
