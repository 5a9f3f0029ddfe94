"""Loop devices for the disk tests: a sparse backing file attached with partition scanning.

Needs root (losetup); `require_loop()` skips the calling test otherwise.
Every device is detached and its backing file removed when the context ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


def require_loop() -> None:
    import pytest

    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed (util-linux)")


@contextlib.contextmanager
def loop_device(backing: Path, size: int) -> Iterator[str]:
    """`/dev/loopN` over a new sparse file `backing` of `size` bytes."""
    with backing.open("wb") as stream:
        stream.truncate(size)
    device = subprocess.run(["losetup", "--find", "--show", "--partscan", str(backing)],
                            check=True, capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["udevadm", "settle"], check=False, capture_output=True, timeout=30) \
            if shutil.which("udevadm") else None
        subprocess.run(["losetup", "--detach", device], check=False, capture_output=True,
                       timeout=30)
        backing.unlink(missing_ok=True)
