"""The built rootfs.cpio.zst of each board fits its budget, with everything the agent needs.

The image is Buildroot's (RAMBOOT_IMAGES_X86_64 / RAMBOOT_IMAGES_RPI4 name an
output/images directory); the Debian stand-in image the QEMU tests use
otherwise is not what ships, so the test skips without them. The per-part
table (tests/lib/image_parts.py; bench/image-size.py prints the same) is
printed, and is the failure message when the image is over budget.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

from tests.lib.image_parts import BUDGET, breakdown

BOARDS = {"x86_64": "RAMBOOT_IMAGES_X86_64", "rpi4": "RAMBOOT_IMAGES_RPI4"}

# A small image that lost what the agent runs on is no success: each pattern
# must match a path of the image.
RUNTIME = (
    "usr/bin/ramboot-agent", "usr/lib/ramboot/ramboot_agent/cli.py*",
    "usr/bin/python3", "*lib/libpython3.*.so*",
    "usr/lib/python3.*/ssl.py*", "usr/lib/python3.*/http/client.py*",
    "usr/lib/python3.*/tarfile.py*", "usr/lib/python3.*/lzma.py*",
    "usr/lib/python3.*/encodings/idna.py*", "usr/lib/python3.*/xml/etree/ElementTree.py*",
    "usr/lib/python3.*/lib-dynload/_ssl.*so", "usr/lib/python3.*/lib-dynload/_lzma.*so",
    "usr/lib/python3.*/lib-dynload/zlib.*so", "usr/lib/python3.*/lib-dynload/_zstd.*so",
    "usr/lib/python3.*/lib-dynload/pyexpat.*so",
    "*lib/libssl.so*", "*lib/libcrypto.so*", "*lib/libnl-genl-3.so*",
    "etc/ssl/certs/ca-certificates.crt",
    "*bin/kexec", "*bin/nbd-client", "*bin/mkfs.ext4", "*bin/resize2fs", "*bin/sfdisk",
    "*bin/wipefs", "*bin/mkfs.fat", "*bin/xz", "*bin/zstd", "bin/busybox",
)


def images(board: str) -> Path:
    variable = BOARDS[board]
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: it names the Buildroot output/images of the"
                    f" {board} defconfig, whose rootfs.cpio.zst the budget is for")
    path = Path(value) / "rootfs.cpio.zst"
    if not path.is_file():
        pytest.fail(f"{variable}={value}: no rootfs.cpio.zst there")
    return path


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_rootfs_fits_the_budget_and_keeps_the_agents_runtime(board: str) -> None:
    parts = breakdown(images(board))
    table = parts.table(board)
    print(table)
    missing = [p for p in RUNTIME if not any(fnmatch.fnmatchcase(n, p) for n in parts.paths)]
    assert not missing, f"{board}: the image lacks {missing}"
    assert parts.compressed <= BUDGET, f"{board} over budget:\n{table}"
