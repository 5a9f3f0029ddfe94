from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.netlab import require_netns, veth_lab

from .lab import BootLab


@pytest.fixture
def boot_lab(tmp_path: Path) -> Iterator[BootLab]:
    require_netns("kea-dhcp4", "udhcpc")
    with veth_lab() as lab:
        yield BootLab(lab, tmp_path)
