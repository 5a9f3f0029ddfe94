"""Image sets for the QEMU tests: a Buildroot output, or the offline image.

A target's image set comes from a Buildroot `output/images/` directory when
its environment variable names one, and otherwise from the offline image
that scripts/build-offline-image assembles from Debian packages plus this
tree's overlay (built on first use, cached in ~/.cache/ramboot/offline/):

    target    variable                 kernel    DTB
    x86_64    RAMBOOT_IMAGES_X86_64    bzImage   -
    rpi4      RAMBOOT_IMAGES_RPI4      Image     bcm2711-rpi-4-b.dtb
    aarch64   RAMBOOT_IMAGES_AARCH64   Image     - (QEMU virt makes its own)

Every set also carries the offline build's busybox-only second-stage
initramfs, the kexec target that prints SECOND_STAGE_MARKER.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "scripts" / "build-offline-image"
SECOND_STAGE_MARKER = "RAMBOOT-SECOND-STAGE-OK"
BUILD_TIMEOUT = 900  # a cold cache downloads ~120 MB and unpacks a kernel package


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # the offline builder's --arch
    env: str
    kernel: str
    dtb: str | None


TARGETS = {
    "x86_64": Target("x86_64", "x86_64", "RAMBOOT_IMAGES_X86_64", "bzImage", None),
    "rpi4": Target("rpi4", "arm64", "RAMBOOT_IMAGES_RPI4", "Image", "bcm2711-rpi-4-b.dtb"),
    "aarch64": Target("aarch64", "arm64", "RAMBOOT_IMAGES_AARCH64", "Image", None),
}


@dataclass(frozen=True)
class ImageSet:
    target: str
    kernel: Path
    initramfs: Path
    dtb: Path | None
    second_stage: Path  # busybox-only initramfs for kexec tests
    source: str  # "offline" or the Buildroot images directory
    manifest: dict[str, object]  # the offline build's manifest.json

    @property
    def offline(self) -> bool:
        return self.source == "offline"


class ImageError(RuntimeError):
    pass


def image_set(target: str) -> ImageSet:
    """The image set for `target`; skips the test when it cannot be had here."""
    spec = TARGETS[target]
    offline_dir = offline_images(spec.arch)
    manifest = json.loads((offline_dir / "manifest.json").read_text())
    given = os.environ.get(spec.env, "")
    directory, source = (Path(given), given) if given else (offline_dir, "offline")
    kernel = _require(directory / spec.kernel, spec.env if given else None)
    initramfs = _require(directory / "rootfs.cpio.zst", spec.env if given else None)
    dtb = _require(directory / spec.dtb, spec.env if given else None) if spec.dtb else None
    return ImageSet(target, kernel, initramfs, dtb, offline_dir / "second-stage.cpio.gz",
                    source, manifest)


def _require(path: Path, env: str | None) -> Path:
    if not path.is_file():
        where = f"the Buildroot images directory in {env}" if env else "the offline image set"
        raise ImageError(f"{path.name} is missing from {where} ({path.parent})")
    return path


@functools.cache
def offline_images(arch: str) -> Path:
    """Build (or reuse) the offline image set for `arch`; its directory."""
    missing = [c for c in ("apt-get", "dpkg-deb", "readelf", "busybox") if not shutil.which(c)]
    if missing:
        pytest.skip(f"the offline image needs {', '.join(missing)} (run scripts/install-deps)")
    result = subprocess.run([str(BUILDER), "--arch", arch], capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0:
        raise ImageError(f"{BUILDER.name} --arch {arch} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])
