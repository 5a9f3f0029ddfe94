"""The pure parts of scripts/offline-build: the substitution table, the
defconfig copy, the .mk and .hash edits, the repacking. No network, no build."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import BOARDS, REPO

sys.path.insert(0, str(REPO / "scripts"))

from offline_build import fetch, sources, table, times, toolchain, tree

TABLE = REPO / "scripts" / "offline-build.toml"
# What the defconfig copy may change: the toolchain, the kernel's source and
# configuration, and the Pi firmware's overlays (Debian's package has none).
COPY_MAY_CHANGE = (
    "BR2_TOOLCHAIN_EXTERNAL",
    "BR2_LINUX_KERNEL_CUSTOM_",
    "BR2_LINUX_KERNEL_DEFCONFIG",
    "BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG",
    "BR2_LINUX_KERNEL_INTREE_DTS_NAME",
    "BR2_PACKAGE_RPI_FIRMWARE_INSTALL_DTB_OVERLAYS",
)
VALUES = {
    "toolchain": "/cache/toolchain",
    "triplet": "x-linux-gnu",
    "linux_tarball": "file:///usr/src/linux-source-6.12.tar.xz",
}


@pytest.fixture(scope="module")
def subs() -> table.Table:
    return table.load(TABLE)


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "package": "foo",
        "file": "foo-1.0.tar.gz",
        "identical": True,
        "sha256": "a" * 64,
        "debian": "foo=1.0-1",
        "debian_file": "foo_1.0.orig.tar.gz",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def key(line: str) -> str:
    return line.removeprefix("# ").split("=", 1)[0].split(" ", 1)[0]


def test_table_parses_with_every_board(subs: table.Table) -> None:
    assert sorted(subs.boards) == sorted(BOARDS)
    assert subs.sources
    for board in subs.boards.values():
        assert (REPO / "configs" / board.defconfig).is_file()


def test_every_difference_says_why(subs: table.Table) -> None:
    for source in subs.sources:
        assert source.identical or len(source.why) > 20, source.name


def test_every_origin_is_named_fully(subs: table.Table) -> None:
    for source in subs.sources:
        if source.origin == "debian":
            assert "=" in source.spec and source.debian_file, source.name
        if source.origin == "pypi":
            assert "==" in source.spec, source.name
        if source.origin == "pool":
            assert source.spec.startswith(("main/", "non-free-firmware/")), source.name


def test_the_kernel_is_debians_source(subs: table.Table) -> None:
    assert tree.linux_tarball(subs) == "file:///usr/src/linux-source-6.12.tar.xz"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"debian": None}, "needs exactly one of"),
        ({"pool": "main/f/foo/foo.tar.gz"}, "needs exactly one of"),
        ({"sha256": "abc"}, "not 64 hex digits"),
        ({"identical": "yes"}, "identical must be true or false"),
        ({"identical": False}, "why must be"),
        ({"set": {"FOO_VERSION": "2"}}, "an identical file needs no repack or edits"),
        ({"file": "foo-2.0.zip"}, "file must be a plain name"),
        ({"colour": "blue"}, "unknown field(s) colour"),
        ({"identical": False, "why": "x", "repack": {"format": "zip", "top": "t"}},
         "repack format"),
    ],
)
def test_bad_entries_are_named(fields: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {"buildroot": {"tarball": "b.tar.gz"}, "source": [entry(), entry()]}
    data["source"][1] = entry(**{"file": "foo-2.0.tar.gz", **fields})
    with pytest.raises(table.SubstitutionError) as error:
        table.parse(data)
    assert message in str(error.value)
    assert "[[source]] #2 (foo/foo-2.0." in str(error.value)


def test_a_file_listed_twice_is_an_error() -> None:
    data = {"buildroot": {"tarball": "b.tar.gz"}, "source": [entry(), entry()]}
    with pytest.raises(table.SubstitutionError, match="listed twice"):
        table.parse(data)


def test_an_unknown_board_lists_the_known_ones(subs: table.Table) -> None:
    with pytest.raises(table.SubstitutionError, match="known: rpi4, x86_64"):
        subs.board("pc")


@pytest.mark.parametrize("board", BOARDS)
def test_defconfig_copy_changes_only_toolchain_and_kernel(subs: table.Table, board: str) -> None:
    spec = subs.board(board)
    original = (REPO / "configs" / spec.defconfig).read_text().splitlines()
    copy = tree.defconfig_lines("\n".join(original), spec, VALUES)
    dropped = [line for line in original if key(line).startswith(spec.drop)]
    kept = [line for line in original if line not in dropped]
    # Every other line is kept, in order, and the new lines come after.
    assert copy[: len(kept)] == kept
    added = copy[len(kept):]
    assert dropped and added, "the copy must change the toolchain"
    for line in dropped + added:
        assert key(line).startswith(COPY_MAY_CHANGE), line
    assert 'BR2_TOOLCHAIN_EXTERNAL_PATH="/cache/toolchain"' in copy
    location = VALUES["linux_tarball"]
    assert f'BR2_LINUX_KERNEL_CUSTOM_TARBALL_LOCATION="{location}"' in copy
    assert not any("BOOTLIN" in line for line in copy)
    assert not any("{" in line for line in added)


def test_defconfig_copy_is_written_under_its_own_name(subs: table.Table, tmp_path: Path) -> None:
    spec = subs.board("rpi4")
    copy = tree.write_defconfig(REPO / "configs" / spec.defconfig, tmp_path, spec, VALUES,
                                tmp_path / "dl")
    assert copy.name == "rpi4_pxe_defconfig"
    assert copy.read_text().endswith(f'BR2_DL_DIR="{tmp_path / "dl"}"\n')


def test_set_variable_replaces_the_assignment_or_adds_it() -> None:
    text = "FOO_VERSION = 1.0\nFOO_SITE = x\n"
    replaced = tree.set_variable(text, "FOO_VERSION", "2.0", "foo")
    assert replaced == "FOO_VERSION = 2.0\nFOO_SITE = x\n"
    assert tree.set_variable(text, "FOO_SOURCE", "f.tar.xz", "foo").startswith(
        "FOO_SOURCE = f.tar.xz\nFOO_VERSION = 1.0\n"
    )
    with pytest.raises(table.SubstitutionError, match="assigned 2 times"):
        tree.set_variable(text + "FOO_VERSION := 3\n", "FOO_VERSION", "2.0", "foo")


def test_hash_line_replaces_the_one_for_the_same_file() -> None:
    source = table.parse_source(entry(identical=False, why="Debian's own packing"), 0)
    old = (
        "# From upstream\n"
        "sha256  " + "b" * 64 + "  foo-1.0.tar.gz\n"
        "sha256  " + "c" * 64 + "  COPYING\n"
    )
    new = tree.with_hash_line(old, source)
    assert "b" * 64 not in new
    assert "sha256  " + "c" * 64 + "  COPYING" in new
    assert new.endswith("sha256  " + "a" * 64 + "  foo-1.0.tar.gz\n")
    assert tree.known_digests(new, "foo-1.0.tar.gz") == {"sha256": "a" * 64}


def make_tarball(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))


def test_repack_moves_a_subdirectory_to_the_top_reproducibly(tmp_path: Path) -> None:
    origin = tmp_path / "libexpat-R_2_8_2.tar.xz"
    make_tarball(origin, {
        "libexpat-R_2_8_2/README.md": b"top\n",
        "libexpat-R_2_8_2/expat/configure.ac": b"AC_INIT\n",
        "libexpat-R_2_8_2/expat/lib/xmlparse.c": b"int x;\n",
    })
    source = table.parse_source(entry(
        file="expat-2.8.2.tar.bz2", identical=False, why="a git archive, repacked",
        repack={"subdir": "libexpat-R_2_8_2/expat", "top": "expat-2.8.2"},
    ), 0)
    first, second = tmp_path / "1.tar.bz2", tmp_path / "2.tar.bz2"
    sources.repack_tar(origin, first, source)
    sources.repack_tar(origin, second, source)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        assert tar.getnames() == ["expat-2.8.2/configure.ac", "expat-2.8.2/lib/xmlparse.c"]
        member = tar.extractfile("expat-2.8.2/lib/xmlparse.c")
        assert member is not None and member.read() == b"int x;\n"


def test_sysroot_links_become_relative(tmp_path: Path) -> None:
    (tmp_path / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "lib" / "x86_64-linux-gnu" / "ld-linux-x86-64.so.2").write_text("ld")
    (tmp_path / "lib64").mkdir()
    link = tmp_path / "lib64" / "ld-linux-x86-64.so.2"
    link.symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    toolchain.make_symlinks_relative(tmp_path)
    assert str(link.readlink()) == "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert link.read_text() == "ld"


def test_build_times_sum_each_packages_steps() -> None:
    log = "\n".join([
        "100.0:start:download            : host-tar",
        "101.0:end  :download            : host-tar",
        "101.0:start:build               : host-tar",
        "161.0:end  :build               : host-tar",
        "170.0:start:build               : linux",  # a run that failed here
        "300.0:start:build               : linux",  # and resumed
        "400.0:end  :build               : linux",
    ])
    parsed = times.parse(log)
    assert parsed.per_package == {"host-tar": 61.0, "linux": 100.0}
    assert parsed.total == 161.0
    assert parsed.wall == 300.0
    table_text = times.markdown(parsed)
    assert table_text.index("| linux | 1.7 |") < table_text.index("| host-tar | 1.0 |")
    assert "**2.7**" in table_text


def test_a_garbled_build_time_line_is_named() -> None:
    with pytest.raises(table.SubstitutionError, match="line 2"):
        times.parse("1.0:start:build : x\nnonsense")


def test_apt_sources_are_sources_only_with_sid_pinned_low() -> None:
    text = fetch.APT_SOURCES_TEXT
    stanzas = [s for s in text.split("\n\n") if "Types:" in s]
    src = next(s for s in stanzas if "Types: deb-src" in s)
    assert "Suites: bookworm bookworm-backports trixie sid" in src
    binary = [s for s in stanzas if "Types: deb\n" in s]
    assert all("Components: non-free-firmware" in s and "sid" not in s for s in binary)
    assert "Pin: release n=sid\nPin-Priority: 1\n" in fetch.APT_PIN_TEXT


def test_every_entry_fits_the_buildroot_release(
    subs: table.Table, buildroot_dir: Path
) -> None:
    """Against the real Buildroot tree: each package exists, each `set`
    variable is one its .mk assigns or Buildroot defaults, each dropped patch
    exists, and each identical file is one Buildroot's hash file lists."""
    for source in subs.sources:
        external = REPO / "package" / source.package
        directory = buildroot_dir / (
            "linux" if source.package == "linux" else f"package/{source.package}"
        )
        assert directory.is_dir() or external.is_dir(), source.name
        mk_package = source.mk_package or source.package
        for variable in source.set:
            mk = tree.mk_file(buildroot_dir, mk_package).read_text()
            defaulted = variable.endswith("_SOURCE")
            assert defaulted or f"\n{variable} =" in mk, (source.name, variable)
        for patch in source.drop_patches:
            assert (directory / patch).is_file(), (source.name, patch)
        if source.identical:
            hash_path = (directory if directory.is_dir() else external) / (
                f"{source.package}.hash"
            )
            digests = tree.known_digests(hash_path.read_text(), source.file)
            assert digests, source.name
            assert digests.get("sha256", source.sha256) == source.sha256, source.name
