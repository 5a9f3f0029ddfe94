"""Render behaviour: determinism, atomic replacement, image limits, real config checkers."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ramboot.errors import RambootError
from ramboot.render.images import MIB
from tests.tools.render.helpers import FLEET, make_images, render_fleet, snapshot


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_images(tmp_path / "images")


def test_same_input_gives_same_bytes_and_modes(tmp_path: Path, images: Path) -> None:
    old_umask = os.umask(0o077)  # a strict umask must not leak into the tree
    try:
        render_fleet(images, tmp_path / "a")
    finally:
        os.umask(old_umask)
    render_fleet(images, tmp_path / "b")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_rerender_replaces_the_tree_whole(tmp_path: Path, images: Path) -> None:
    out = tmp_path / "out"
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(FLEET.read_text())
    render_fleet(images, out, inventory)
    assert (out / "tftp/0000cafe/config.txt").exists()
    # A host removed from the inventory: its files were render's, they go.
    text = FLEET.read_text()
    start = text.index('[[hosts]]\nname = "cm4-07"')
    inventory.write_text(text[:start] + text[text.index("[[hosts]]", start + 1):])
    render_fleet(images, out, inventory)
    assert not (out / "tftp/0000cafe").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []


def test_failed_render_leaves_the_old_tree_untouched(tmp_path: Path, images: Path) -> None:
    out = tmp_path / "out"
    render_fleet(images, out)
    before = snapshot(out)
    (images / "x86_64" / "bzImage").unlink()
    with pytest.raises(RambootError, match=r"missing build artifacts: x86_64/bzImage"):
        render_fleet(images, out)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_a_gzip_initramfs_of_an_old_build_is_named_when_the_zstd_one_is_missing(
        tmp_path: Path, images: Path) -> None:
    initramfs = images / "rpi4" / "rootfs.cpio.zst"
    initramfs.rename(initramfs.with_name("rootfs.cpio.gz"))
    with pytest.raises(RambootError, match=r"rpi4/rootfs.cpio.zst \(there is a rootfs.cpio.gz: "
                                           r"images built before the initramfs became zstd"):
        render_fleet(images, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_large_pi_initramfs_warns(tmp_path: Path, images: Path) -> None:
    with (images / "rpi4" / "rootfs.cpio.zst").open("r+b") as handle:
        handle.truncate(33 * MIB)
    result = render_fleet(images, tmp_path / "out")
    assert any("33.0 MiB is over 32 MiB" in warning for warning in result.warnings)


def test_oversized_pi_initramfs_is_refused(tmp_path: Path, images: Path) -> None:
    with (images / "rpi4" / "rootfs.cpio.zst").open("r+b") as handle:
        handle.truncate(65 * MIB)
    with pytest.raises(RambootError, match=r"65.0 MiB is over the 64 MiB"):
        render_fleet(images, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_kexec_path_missing_from_images_is_an_error(tmp_path: Path, images: Path) -> None:
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(FLEET.read_text().replace('"x86_64/bzImage"', '"x86_64/vmlinuz"'))
    with pytest.raises(RambootError, match=r"host 'srv-03': kexec target: 'x86_64/vmlinuz' is "
                       r"not under http/images/ \(available: rpi4/Image, "):
        render_fleet(images, tmp_path / "out", inventory)


def test_templates_can_be_overridden(tmp_path: Path, images: Path) -> None:
    from ramboot.inventory import load_inventory
    from ramboot.render.tree import render_tree

    override = tmp_path / "templates" / "rpi4"
    override.mkdir(parents=True)
    (override / "config.txt.j2").write_text("# site {{ host.name }}\nkernel={{ kernel }}\n")
    render_tree(load_inventory(FLEET), images, tmp_path / "out", tmp_path / "templates")
    assert (tmp_path / "out/tftp/1a2b3c4d/config.txt").read_text() == "# site pi-01\nkernel=Image\n"


def test_template_typo_is_an_error(tmp_path: Path, images: Path) -> None:
    from ramboot.inventory import load_inventory
    from ramboot.render.tree import render_tree

    override = tmp_path / "templates" / "rpi4"
    override.mkdir(parents=True)
    (override / "config.txt.j2").write_text("kernel={{ kernal }}\n")
    with pytest.raises(RambootError, match="'kernal' is undefined"):
        render_tree(load_inventory(FLEET), images, tmp_path / "out", tmp_path / "templates")


def test_real_kea_accepts_the_config(tmp_path: Path, images: Path) -> None:
    if shutil.which("kea-dhcp4") is None:
        pytest.skip("kea-dhcp4 not installed (run scripts/install-deps)")
    # `kea-dhcp4 -t` checks that the interface exists: use one every machine has.
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(FLEET.read_text().replace('dhcp_interface = "srv0"',
                                                   'dhcp_interface = "lo"'))
    render_fleet(images, tmp_path / "out", inventory)
    result = subprocess.run(["kea-dhcp4", "-t", tmp_path / "out/dhcp/kea-dhcp4.json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_real_dnsmasq_accepts_the_config(tmp_path: Path, images: Path) -> None:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed (run scripts/install-deps)")
    render_fleet(images, tmp_path / "out")
    result = subprocess.run(
        ["dnsmasq", "--test", f"--conf-file={tmp_path / 'out/dhcp/dnsmasq.conf'}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax check OK" in result.stderr


def test_writer_threads_report_failures_and_refuse_escapes(tmp_path: Path) -> None:
    from ramboot.render._writer import TreeWriter

    writer = TreeWriter(tmp_path)
    try:
        writer.populate("tftp/1a2b3c4d", {"cmdline.txt": "x\n"}, {"Image": "../Image"})
        writer.populate("tftp/1a2b3c4d", {"cmdline.txt": "y\n"}, {})  # the same directory again
        with pytest.raises(FileExistsError):
            writer.finish()
        with pytest.raises(RambootError, match="leaving the tree"):
            writer.populate("tftp/cafe0000", {}, {"Image": "../../../Image"})
        with pytest.raises(RambootError, match="outside the output tree"):
            writer.text("http/../../x", "")
    finally:
        writer.close()
    assert (tmp_path / "tftp/1a2b3c4d/cmdline.txt").read_text() == "x\n"
    assert str((tmp_path / "tftp/1a2b3c4d/Image").readlink()) == "../Image"
    assert not (tmp_path / "tftp/cafe0000").exists()


def test_the_makefiles_output_directory_works_as_images(tmp_path: Path, images: Path) -> None:
    """`--images output` after `make rpi4 x86_64`: Buildroot's images directories."""
    output = tmp_path / "output"
    shutil.copytree(images / "rpi4", output / "rpi4" / "images")
    shutil.copytree(images / "x86_64", output / "x86_64" / "images")
    shutil.copytree(images / "ipxe", output / "x86_64" / "images" / "ipxe")
    render_fleet(images, tmp_path / "flat")
    render_fleet(output, tmp_path / "built")
    assert snapshot(tmp_path / "built") == snapshot(tmp_path / "flat")
