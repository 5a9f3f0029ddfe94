"""tests/lib/images.py: a Buildroot images directory wins over the offline set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.images import ImageError, image_set, offline_images

pytestmark = pytest.mark.slow


def fake_buildroot_output(directory: Path, arch: str, names: list[str]) -> Path:
    """An output/images/ look-alike holding the offline set's files under Buildroot's names."""
    directory.mkdir()
    for name in names:
        (directory / name).symlink_to(offline_images(arch) / name)
    return directory


def test_offline_set_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAMBOOT_IMAGES_X86_64", raising=False)
    images = image_set("x86_64")
    assert images.offline
    assert images.kernel == offline_images("x86_64") / "bzImage"
    assert images.manifest["kernel"] == "bzImage"


def test_buildroot_directory_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    output = fake_buildroot_output(tmp_path / "images", "arm64",
                                   ["Image", "rootfs.cpio.zst", "bcm2711-rpi-4-b.dtb"])
    monkeypatch.setenv("RAMBOOT_IMAGES_RPI4", str(output))
    images = image_set("rpi4")
    assert not images.offline
    assert (images.kernel, images.initramfs, images.dtb) == (
        output / "Image", output / "rootfs.cpio.zst", output / "bcm2711-rpi-4-b.dtb")
    # The kexec target always comes from the offline build.
    assert images.second_stage == offline_images("arm64") / "second-stage.cpio.gz"


def test_missing_file_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    output = fake_buildroot_output(tmp_path / "images", "arm64", ["Image", "rootfs.cpio.zst"])
    monkeypatch.setenv("RAMBOOT_IMAGES_RPI4", str(output))
    with pytest.raises(ImageError, match=r"bcm2711-rpi-4-b\.dtb is missing .*RAMBOOT_IMAGES_RPI4"):
        image_set("rpi4")
