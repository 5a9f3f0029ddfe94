"""Every rendered text output matches its golden file; the tree matches its manifest.

Regenerate after an intended change with:
    RAMBOOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/tools/render/test_golden.py
and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tools.render.helpers import GOLDEN, make_images, render_fleet, snapshot

UPDATE = os.environ.get("RAMBOOT_UPDATE_GOLDEN") == "1"

TEXT_OUTPUTS = (
    "dhcp/dnsmasq.conf",
    "dhcp/kea-dhcp4.json",
    "eeprom/boot.conf",
    "http/mac/52-54-00-12-34-57.ipxe",
    "http/stage1/srv-01.ipxe",  # into ramboot
    "http/stage1/srv-02.ipxe",  # provisioned: its disk
    "http/stage1/srv-04.ipxe",  # its target is its disk
    "http/stage2/cm4-07.json",  # netroot
    "http/stage2/pi-01.json",  # install, then localboot by reboot
    "http/stage2/pi-400.ipxe",  # a custom plan URL
    "http/stage2/srv-01.json",  # install, then localboot by kexec
    "http/stage2/srv-02.json",  # provisioned: localboot
    "http/stage2/srv-03.json",  # kexec
    "http/stage2/srv-04.json",  # localboot
    "http/stage2/srv-05.json",  # ramroot
    "http/stage2/srv-06.json",  # rescue
    "tftp/1a2b3c4d/cmdline.txt",
    "tftp/1a2b3c4d/config.txt",
    "tftp/deadbeef/cmdline.txt",
    "tftp/deadbeef/config.txt",
    "tftp/0000cafe/config.txt",
)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("golden")
    out = base / "out"
    render_fleet(make_images(base / "images"), out)
    return out


def _check(golden: Path, actual: str) -> None:
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    assert golden.exists(), f"no golden file {golden}: run with RAMBOOT_UPDATE_GOLDEN=1"
    assert actual == golden.read_text(), f"{golden.name} differs from its golden file"


@pytest.mark.parametrize("relative", TEXT_OUTPUTS)
def test_output_matches_golden(rendered: Path, relative: str) -> None:
    _check(GOLDEN / relative, (rendered / relative).read_text())


def test_tree_matches_manifest(rendered: Path) -> None:
    _check(GOLDEN / "TREE", "\n".join(snapshot(rendered)) + "\n")
