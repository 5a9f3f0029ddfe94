"""Root images: told apart by their bytes, unpacked from inside the new root.

The unpack helper runs as the agent runs it (a child process that chroots),
on archives made by the real tools (GNU tar, GNU cpio, mksquashfs, zstd),
including hostile ones: whatever their names and links say, nothing lands
outside the new root.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from ramboot_agent.roots import archive
from ramboot_agent.roots.helpers import helper_argv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="unpacking a root needs root")


def unpack(image: Path, dest: Path, *, image_format: str | None = None) -> dict[str, int]:
    compression, found = archive.detect(image)
    dest.mkdir(exist_ok=True)
    done = subprocess.run(helper_argv("unpack", "--format", image_format or str(found),
                                      "--compression", compression, str(image), str(dest)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def sample_tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin/prog").write_bytes(b"\x7fELF" + b"x" * 100)
    (root / "bin/prog").chmod(0o4755)  # setuid, as /bin/su is
    os.link(root / "bin/prog", root / "bin/prog-link")
    (root / "bin/sh").symlink_to("/bin/prog")  # absolute: resolves in the new root
    (root / "etc/shadow").write_text("root::::::::\n")
    (root / "etc/shadow").chmod(0o600)
    os.chown(root / "etc/shadow", 0, 42)
    (root / "sticky").mkdir(mode=0o1777)
    (root / "sticky").chmod(0o1777)
    os.mkfifo(root / "fifo")
    return root


def check_tree(root: Path) -> None:
    prog = root / "bin/prog"
    assert prog.read_bytes().startswith(b"\x7fELF")
    assert stat.S_IMODE(prog.stat().st_mode) == 0o4755
    assert prog.stat().st_ino == (root / "bin/prog-link").stat().st_ino
    assert str((root / "bin/sh").readlink()) == "/bin/prog"
    shadow = (root / "etc/shadow").stat()
    assert (stat.S_IMODE(shadow.st_mode), shadow.st_uid, shadow.st_gid) == (0o600, 0, 42)
    assert stat.S_IMODE((root / "sticky").stat().st_mode) == 0o1777
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)


@pytest.mark.parametrize("compress", ["", "gzip", "xz", "zstd", "bzip2"])
def test_a_tar_made_by_gnu_tar(tmp_path: Path, compress: str) -> None:
    if compress and shutil.which(compress) is None:
        pytest.skip(f"{compress} is not installed")
    tree = sample_tree(tmp_path / "tree")
    image = tmp_path / "root.tar"
    subprocess.run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(image), "."],
                   check=True)
    if compress:
        subprocess.run([compress, "-q", str(image)], check=True)
        image = next(tmp_path.glob("root.tar.*"))
    assert archive.detect(image) == (compress or "none", "tar")
    counts = unpack(image, tmp_path / "new")
    check_tree(tmp_path / "new")
    assert counts["entries"] >= 8


def test_a_newc_cpio_made_by_gnu_cpio(tmp_path: Path) -> None:
    tree = sample_tree(tmp_path / "tree")
    names = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    data = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=names,
                          capture_output=True, check=True).stdout
    image = tmp_path / "root.cpio.xz"
    image.write_bytes(lzma.compress(data))
    assert archive.detect(image) == ("xz", "cpio")
    unpack(image, tmp_path / "new")
    check_tree(tmp_path / "new")


def test_a_squashfs_is_recognised_inside_its_compression(tmp_path: Path) -> None:
    if shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools is not installed")
    tree = sample_tree(tmp_path / "tree")
    image = tmp_path / "root.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend"], check=True)
    assert archive.detect(image) == ("none", "squashfs")
    wrapped = tmp_path / "root.squashfs.gz"
    wrapped.write_bytes(gzip.compress(image.read_bytes()))
    assert archive.detect(wrapped) == ("gzip", "squashfs")


def hostile_tar() -> bytes:
    """Names and links that would write outside the destination without the chroot."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(name: str, data: bytes = b"", **fields: object) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in fields.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data))

        add("../../escaped-by-dots", b"dots")
        add("/escaped-absolute", b"absolute")
        add("up", type=tarfile.SYMTYPE, linkname="../../..")
        add("up/escaped-through-link", b"link")
        add("srv", type=tarfile.DIRTYPE)
        add("etc", type=tarfile.SYMTYPE, linkname="/srv")
        add("etc/escaped-through-absolute-link", b"abs link")
        add("hard", type=tarfile.LNKTYPE, linkname="../../../../etc/hostname")
    return buffer.getvalue()


def test_a_hostile_tar_stays_inside_the_new_root(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    dest = outer / "a" / "new"
    dest.mkdir(parents=True)
    image = tmp_path / "hostile.tar"
    image.write_bytes(hostile_tar())
    before = sorted(p.name for p in Path("/").iterdir())
    done = subprocess.run(helper_argv("unpack", "--format", "tar", "--compression", "none",
                                      str(image), str(dest)),
                          capture_output=True, text=True, timeout=60, check=False)
    # Nothing outside: not next to the destination, not in the real / or /etc.
    assert sorted(p.name for p in outer.iterdir()) == ["a"]
    assert sorted(p.name for p in (outer / "a").iterdir()) == ["new"]
    assert sorted(p.name for p in Path("/").iterdir()) == before
    assert not Path("/etc/escaped-through-absolute-link").exists()
    # Inside, each name resolved against the new root's own /.
    assert (dest / "escaped-by-dots").read_bytes() == b"dots"
    assert (dest / "escaped-absolute").read_bytes() == b"absolute"
    assert (dest / "escaped-through-link").read_bytes() == b"link"
    assert (dest / "srv/escaped-through-absolute-link").read_bytes() == b"abs link"
    assert not Path("/srv/escaped-through-absolute-link").exists()
    # The hard link to a file the new root does not have fails, and says so.
    assert done.returncode == 1
    assert "hostname" in done.stderr


def test_garbage_is_neither_format(tmp_path: Path) -> None:
    image = tmp_path / "junk"
    image.write_bytes(gzip.compress(b"not an archive at all" * 100))
    assert archive.detect(image) == ("gzip", None)
    lz4 = tmp_path / "root.lz4"
    lz4.write_bytes(b"\x04\x22\x4d\x18rest")
    with pytest.raises(archive.ArchiveError, match="lz4"):
        archive.detect(lz4)
    old_cpio = tmp_path / "old.cpio"
    old_cpio.write_bytes(b"070707" + b"0" * 600)
    with pytest.raises(archive.ArchiveError, match="newc"):
        archive.detect(old_cpio)


def test_a_truncated_archive_fails_the_unpack(tmp_path: Path) -> None:
    tree = sample_tree(tmp_path / "tree")
    names = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    data = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=names,
                          capture_output=True, check=True).stdout
    image = tmp_path / "cut.cpio"
    image.write_bytes(data[: len(data) // 2])
    (tmp_path / "new").mkdir()
    done = subprocess.run(helper_argv("unpack", "--format", "cpio", "--compression", "none",
                                      str(image), str(tmp_path / "new")),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "ends" in done.stderr
