"""The superblock probe agrees with blkid on filesystems made by the real tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ramboot_agent.plan.probe import probe

MAKERS = {
    "ext2": ["mke2fs", "-q", "-t", "ext2", "-L", "lab-ext2"],
    "ext3": ["mke2fs", "-q", "-t", "ext3", "-L", "lab-ext3"],
    "ext4": ["mke2fs", "-q", "-t", "ext4", "-L", "lab-ext4"],
    "vfat": ["mkfs.fat", "-n", "LABVFAT"],
    "swap": ["mkswap", "-L", "lab-swap"],
}


@pytest.mark.parametrize("fstype", sorted(MAKERS))
def test_probe_matches_blkid(fstype: str, tmp_path: Path) -> None:
    argv = MAKERS[fstype]
    if shutil.which(argv[0]) is None or shutil.which("blkid") is None:
        pytest.skip(f"{argv[0]} or blkid is not installed")
    image = tmp_path / "fs.img"
    with image.open("wb") as stream:
        stream.truncate(64 << 20)
    subprocess.run([*argv, str(image)], check=True, capture_output=True)
    out = subprocess.run(["blkid", "-c", "/dev/null", "-p", "-o", "export", str(image)],
                         check=True, capture_output=True, text=True).stdout
    expected = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    found = probe(str(image))
    assert (found.fstype, found.uuid, found.label) == (
        expected["TYPE"], expected["UUID"], expected["LABEL"])


def test_nothing_known_is_an_empty_type(tmp_path: Path) -> None:
    image = tmp_path / "zeros.img"
    image.write_bytes(bytes(1 << 20))
    assert probe(str(image)).fstype == ""
    assert probe(str(tmp_path / "missing")).fstype == ""
