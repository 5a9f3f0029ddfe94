"""Find the build artifacts a render needs in --images, and check their limits.

Layout of --images (each part needed only when the fleet uses it):

    rpi4/     Image, rootfs.cpio.zst, bcm2711-*.dtb, and start4.elf, fixup4.dat,
              overlays/ either here or in rpi4/rpi-firmware/ (Buildroot's layout)
    x86_64/   bzImage, rootfs.cpio.zst
    ipxe/     undionly.kpxe, ipxe.efi, snponly.efi (whichever exist)

or the top-level Makefile's output directory as it is: `rpi4/images/` and
`x86_64/images/` (Buildroot's images directories, iPXE in
`x86_64/images/ipxe/`) stand for `rpi4/`, `x86_64/` and `ipxe/`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ramboot.errors import RambootError
from ramboot.inventory import RPI_MODEL_DTB, Inventory
from ramboot.targets import RAMBOOT_INITRAMFS

MIB = 1024 * 1024
# The Pi 4 bootloader fetches the initramfs over TFTP into a fixed buffer: large
# files are slow and fragile over its TFTP client, and past 64 MiB older
# bootloaders truncate silently, so the board boots a corrupt initramfs.
RPI_INITRAMFS_WARN = 32 * MIB
RPI_INITRAMFS_LIMIT = 64 * MIB
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


@dataclass(frozen=True)
class RpiImages:
    kernel: Path
    initramfs: Path
    boot_files: dict[str, Path]  # name in the TFTP root -> source (firmware, DTBs)
    overlays: Path | None


@dataclass(frozen=True)
class X86Images:
    kernel: Path
    initramfs: Path


@dataclass
class ImageSet:
    root: Path = Path()
    rpi4: RpiImages | None = None
    x86_64: X86Images | None = None
    ipxe: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def published(self) -> set[str]:
        """The paths render copies under http/images/: `<family>/<file name>`."""
        return {f"{family}/{path.name}" for family, images in (("rpi4", self.rpi4),
                                                              ("x86_64", self.x86_64))
                if images is not None for path in (images.kernel, images.initramfs)}

    def initramfs_digests(self) -> dict[str, str]:
        """family -> sha256 hex of ramboot's initramfs: a target loading it loops."""
        out = {}
        for family, images in (("rpi4", self.rpi4), ("x86_64", self.x86_64)):
            if images is not None and images.initramfs.is_file():
                with images.initramfs.open("rb") as stream:
                    out[family] = hashlib.file_digest(stream, "sha256").hexdigest()
        return out


def _first(*candidates: Path) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)


def _board_dir(images: Path, board: str) -> Path:
    """`images/<board>`, or Buildroot's `images/<board>/images` from `make <board>`."""
    built = images / board / "images"
    return built if built.is_dir() else images / board


def _initramfs_missing(board_dir: Path, family: str) -> str:
    """How a missing initramfs is reported: with a hint for a gzip one of old builds."""
    what = f"{family}/{RAMBOOT_INITRAMFS}"
    if (board_dir / "rootfs.cpio.gz").is_file():
        what += (" (there is a rootfs.cpio.gz: images built before the initramfs became"
                 " zstd; rebuild them with this tree's defconfig)")
    return what


def find_images(images: Path, inventory: Inventory) -> ImageSet:
    if not images.is_dir():
        raise RambootError(f"{images}: --images is not a directory")
    found = ImageSet(root=images)
    missing: list[str] = []
    top = images.resolve()

    def need(path: Path | None, what: str) -> Path:
        if path is None:
            missing.append(what)
            return Path("/nonexistent")
        return path

    if "rpi4" in inventory.families:
        rpi = _board_dir(images, "rpi4")
        firmware = rpi / "rpi-firmware"
        boot_files = {
            name: need(_first(firmware / name, rpi / name), f"rpi4/{name}")
            for name in ("start4.elf", "fixup4.dat")
        }
        models = sorted({host.model for host in inventory.hosts if host.model})
        for dtb in sorted(RPI_MODEL_DTB.values()):
            path = _first(rpi / dtb, firmware / dtb)
            if path is not None:
                boot_files[dtb] = path
        for model in models:
            if RPI_MODEL_DTB[model] not in boot_files:
                missing.append(f"rpi4/{RPI_MODEL_DTB[model]} (for model {model!r})")
        overlays = next((d for d in (firmware / "overlays", rpi / "overlays") if d.is_dir()), None)
        initramfs = need(_first(rpi / RAMBOOT_INITRAMFS), _initramfs_missing(rpi, "rpi4"))
        found.rpi4 = RpiImages(
            kernel=need(_first(rpi / "Image"), "rpi4/Image"), initramfs=initramfs,
            boot_files=boot_files, overlays=overlays,
        )
        if initramfs.is_file():
            size = initramfs.stat().st_size
            if size > RPI_INITRAMFS_LIMIT:
                raise RambootError(
                    f"{initramfs}: {size / MIB:.1f} MiB is over the {RPI_INITRAMFS_LIMIT // MIB} "
                    "MiB the Pi 4 bootloader loads reliably over TFTP (older bootloaders "
                    "truncate it silently); make the initramfs smaller"
                )
            if size > RPI_INITRAMFS_WARN:
                found.warnings.append(
                    f"{initramfs}: {size / MIB:.1f} MiB is over {RPI_INITRAMFS_WARN // MIB} MiB: "
                    "TFTP from the Pi 4 bootloader will be slow; raise [eeprom] "
                    "tftp_file_timeout if boards time out"
                )

    if "x86_64" in inventory.families:
        x86 = _board_dir(images, "x86_64")
        ipxe_dir = next((d for d in (images / "ipxe", x86 / "ipxe") if d.is_dir()),
                        images / "ipxe")
        found.x86_64 = X86Images(
            kernel=need(_first(x86 / "bzImage"), "x86_64/bzImage"),
            initramfs=need(_first(x86 / RAMBOOT_INITRAMFS), _initramfs_missing(x86, "x86_64")),
        )
        for name in IPXE_BINARIES:
            path = _first(ipxe_dir / name)
            if path is not None:
                found.ipxe[name] = path
        for name in ("undionly.kpxe", inventory.servers.uefi_binary):
            if name not in found.ipxe:
                found.warnings.append(
                    f"{ipxe_dir / name}: missing: x86_64 firmware that asks for it "
                    "will not boot"
                )

    if missing:
        raise RambootError(
            f"{images}: missing build artifacts: " + ", ".join(missing)
        )
    _check_inputs(found, top)
    return found


def _check_inputs(found: ImageSet, top: Path) -> None:
    """Every input is a non-empty regular file that, resolved, lies inside --images:
    the rendered tree is served, so it must never publish a file from elsewhere."""
    paths: list[Path] = list(found.ipxe.values())
    if found.rpi4 is not None:
        paths += [found.rpi4.kernel, found.rpi4.initramfs, *found.rpi4.boot_files.values()]
    if found.x86_64 is not None:
        paths += [found.x86_64.kernel, found.x86_64.initramfs]
    problems = []
    for path in paths:
        real = path.resolve()
        if not real.is_relative_to(top):
            problems.append(f"{path}: symlink leads outside --images (to {real})")
        elif path.stat().st_size == 0:
            problems.append(f"{path}: empty file (an interrupted build?)")
    if problems:
        raise RambootError("unusable build artifacts: " + "; ".join(problems))
