"""Render replaces only what it wrote, publishes only what lies inside --images,
and reports a full disk or a bad input in one line, leaving the old tree intact."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ramboot.cli import cli
from ramboot.errors import RambootError
from ramboot.render._writer import TreeWriter
from ramboot.render.tree import MARKER
from tests.tools.render.helpers import FLEET, LANDED, make_images, render_fleet, snapshot


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return make_images(tmp_path / "images")


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output + str(result.exception or "")


def test_out_dot_beside_the_inventory_is_refused_and_nothing_is_lost(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "fleet.toml").write_text(FLEET.read_text())
    (work / "notes").mkdir()
    (work / "notes/todo.txt").write_text("keep me\n")
    before = snapshot(work)
    monkeypatch.chdir(work)
    code, output = _cli("render", "fleet.toml", "--images", str(images), "--out", ".")
    assert code == 1
    assert "refusing to replace --out: ramboot render did not write it" in output
    assert snapshot(work) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_rendered_tree_with_a_foreign_file_is_not_replaced(tmp_path: Path, images: Path) -> None:
    out = tmp_path / "out"
    render_fleet(images, out)
    (out / "http" / "site.iso").write_bytes(b"an operator's file")
    before = snapshot(out)
    with pytest.raises(RambootError, match=r"1 entries that ramboot render did not write would "
                                           r"be lost \('http/site.iso'\)"):
        render_fleet(images, out)
    assert snapshot(out) == before
    (out / "http" / "site.iso").unlink()
    render_fleet(images, out)


def test_the_marker_lists_exactly_the_tree(tmp_path: Path, images: Path) -> None:
    out = tmp_path / "out"
    render_fleet(images, out)
    listed = {line for line in (out / MARKER).read_text().splitlines()
              if not line.startswith("#")}
    present = {p.relative_to(out).as_posix() for p in out.rglob("*")} - {MARKER}
    assert listed == present


@pytest.mark.parametrize("kind", ["empty", "images", "symlink", "file"])
def test_out_kinds(tmp_path: Path, images: Path, kind: str) -> None:
    out = tmp_path / "out"
    if kind == "empty":
        out.mkdir()
        render_fleet(images, out)
        assert (out / MARKER).is_file()
        return
    if kind == "images":
        out = images
        message = "ramboot render did not write it"
    elif kind == "symlink":
        render_fleet(images, tmp_path / "real")
        out.symlink_to(tmp_path / "real")
        message = "--out is a symlink"
    else:
        out.write_text("x")
        message = "not a directory"
    before = snapshot(tmp_path)
    with pytest.raises(RambootError, match=message):
        render_fleet(images, out)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["x86_64/bzImage", "x86_64/rootfs.cpio.zst", "rpi4/Image",
                                  "rpi4/rootfs.cpio.zst", "rpi4/rpi-firmware/start4.elf"])
def test_an_empty_build_artifact_is_refused(tmp_path: Path, images: Path, name: str) -> None:
    (images / name).write_bytes(b"")
    code, output = _cli("render", str(FLEET), "--images", str(images),
                        "--out", str(tmp_path / "out"))
    assert code == 1 and f"{images / name}: empty file" in output, output
    assert "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_an_image_symlink_leading_outside_images_is_refused(tmp_path: Path, images: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("server-private")
    (images / "x86_64/bzImage").unlink()
    (images / "x86_64/bzImage").symlink_to(secret)
    with pytest.raises(RambootError, match="bzImage: symlink leads outside --images"):
        render_fleet(images, tmp_path / "out")


def test_an_in_tree_image_symlink_is_followed(tmp_path: Path, images: Path) -> None:
    kernel = images / "x86_64/bzImage"
    kernel.rename(images / "x86_64/bzImage-6.12")
    kernel.symlink_to("bzImage-6.12")
    render_fleet(images, tmp_path / "out")
    published = tmp_path / "out/http/images/x86_64/bzImage"
    assert not published.is_symlink()
    assert published.read_bytes() == (images / "x86_64/bzImage-6.12").read_bytes()


@pytest.mark.parametrize("entry", ["link-out", "newline"])
def test_overlays_entries_are_checked(tmp_path: Path, images: Path, entry: str) -> None:
    overlays = images / "rpi4/rpi-firmware/overlays"
    if entry == "link-out":
        (tmp_path / "passwd").write_text("root:x:0:0\n")
        (overlays / "evil.dtbo").symlink_to(tmp_path / "passwd")
        message = "evil.dtbo: symlink leads outside"
    else:
        (overlays / "a\nb.dtbo").write_bytes(b"x")
        message = "refusing a file name with control"
    with pytest.raises(RambootError, match=message):
        render_fleet(images, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("links", "refused"), [
    ({"tftp/a": ".", "tftp/b": "a/.."}, "tftp/b"),  # a chain of in-tree links to '.'
    ({"a": ".", "tftp/b": "../a/http"}, "tftp/b"),  # inside the tree, not inside tftp/
    ({"tftp/b": "../http/x"}, "tftp/b"),
    ({"tftp/a": "b", "tftp/b": "a"}, "tftp/b"),  # a loop
    ({"tftp/a": "/etc/passwd"}, "tftp/a"),
])
def test_the_writer_decides_links_on_the_resolved_path(
    tmp_path: Path, links: dict[str, str], refused: str
) -> None:
    writer = TreeWriter(tmp_path)
    try:
        writer.ensure_dir("tftp")
        for link, target in links.items():
            if link == refused:
                with pytest.raises(RambootError, match="refusing a symlink leaving the tree"):
                    writer.symlink(link, target)
            else:
                writer.symlink(link, target)
    finally:
        writer.close()
    assert not os.path.lexists(tmp_path / refused)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True, timeout=30)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True, timeout=30)


def test_a_full_disk_is_one_line_and_the_old_tree_stays(tmp_path: Path, images: Path) -> None:
    with small_tmpfs(tmp_path / "small", "400k") as small:
        out = small / "out"
        code, output = _cli("render", str(LANDED), "--images", str(images), "--out", str(out))
        assert code == 0, output
        before = snapshot(out)
        with (images / "x86_64/bzImage").open("ab") as grow:
            grow.write(os.urandom(600 << 10))
        code, output = _cli("render", str(LANDED), "--images", str(images), "--out", str(out))
        assert code == 1
        assert "rendering failed, the old tree is untouched" in output, output
        assert "No space left on device" in output
        assert "Traceback" not in output
        assert snapshot(out) == before
        assert sorted(p.name for p in small.iterdir()) == ["out"]
