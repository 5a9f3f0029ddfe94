"""Reading config files: line numbers, values, and loud failures on bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramboot.check.defconfig import last_values, read_config
from ramboot.errors import RambootError


def test_reads_values_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "x_defconfig"
    path.write_text('# comment\n\nBR2_A=y\nBR2_S="a \\"q\\" b"\n# BR2_B is not set\nBR2_A=n\n')
    assignments = read_config(path)
    assert [(a.line, a.name, a.value) for a in assignments] == [
        (3, "BR2_A", "y"), (4, "BR2_S", 'a "q" b'), (5, "BR2_B", "n"), (6, "BR2_A", "n"),
    ]
    assert last_values(assignments)["BR2_A"].line == 6


@pytest.mark.parametrize("line", ["BR2_A y", 'BR2_S="unterminated', "garbage"])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "x_defconfig"
    path.write_text(f"BR2_OK=y\n{line}\n")
    with pytest.raises(RambootError, match=rf"^{path}:2: "):
        read_config(path)
