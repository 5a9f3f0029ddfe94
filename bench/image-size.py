#!/usr/bin/env python3
"""The size of each part of an initramfs: Python, libraries, busybox, modules, ...

    .venv/bin/python bench/image-size.py [LABEL=]PATH ...

PATH is a rootfs.cpio.zst or a directory holding one (a Buildroot
output/images). One Markdown table per image, as bench/image-size.md
records them: files, unpacked bytes and the gzip -9 size of each part
alone, whose share estimates the part's weight in the compressed image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.lib.image_parts import breakdown  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", metavar="[LABEL=]PATH")
    args = parser.parse_args()
    for item in args.images:
        label, _, given = item.rpartition("=")
        path = Path(given)
        if path.is_dir():
            path = path / "rootfs.cpio.zst"
        if not path.is_file():
            print(f"image-size: {path}: no such file", file=sys.stderr)
            return 1
        print(breakdown(path).table(label or str(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
