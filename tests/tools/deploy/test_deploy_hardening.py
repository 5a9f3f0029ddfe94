"""deploy against a careless operator and a damaged store: nothing lost, nothing
escapes, nothing damaged carried forward, one clear line for each mistake."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ramboot.cli import cli
from ramboot.deploy.manifest import file_sha256, load
from ramboot.deploy.store import ReleaseStore
from tests.tools.deploy.test_deploy import invoke, live, make_tree, run_cli, trees_equal


def fails(*args: str) -> str:
    """Run the real entry point; it must fail with one `ramboot: error:` line, no traceback."""
    result = run_cli(*args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ramboot: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def snapshot(root: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out.append((str(path.relative_to(root)), f"-> {path.readlink()}"))
        elif path.is_file():
            out.append((str(path.relative_to(root)), file_sha256(path)))
        else:
            out.append((str(path.relative_to(root)), "dir"))
    return out


# --- class 2: links decided on the resolved path ------------------------------

@pytest.mark.parametrize("links", [
    {"a": ".", "b": "a/.."},  # the example: in-tree links to '.' leading out
    {"tftp/a": ".", "tftp/b": "a/../../.."},
    {"x": ".", "tftp/y": "../x/x/x/.."},  # through the same link several times
    {"tftp/dot": "..", "tftp/b": "dot/http/Image"},  # inside the tree, not inside tftp/
    {"tftp/evil": "../src/tftp/start4.elf"},  # back in through the source's own name
    {"tftp/loop1": "loop2", "tftp/loop2": "loop1"},
])
def test_a_link_chain_leaving_its_directory_is_refused(
    tmp_path: Path, links: dict[str, str]
) -> None:
    source = make_tree(tmp_path / "src", "v1")
    for link, target in links.items():
        (source / link).symlink_to(target)
    message = fails("deploy", str(source), "--root", str(tmp_path / "srv"))
    assert "symlink" in message and ("leads outside" in message), message
    assert not (tmp_path / "srv").exists()


def test_in_tree_link_chains_are_kept(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    (source / "tftp" / "fw").symlink_to(".")
    (source / "tftp" / "dc-a6-32-01" / "deep").symlink_to("../fw/fw/start4.elf")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    assert (live(root) / "tftp/dc-a6-32-01/deep").read_bytes() == \
        (source / "tftp/start4.elf").read_bytes()


# --- class 7: a damaged live file is not carried forward ----------------------

@pytest.mark.parametrize("damage", ["content", "truncate", "replace-with-symlink", "chmod"])
def test_a_damaged_live_file_is_not_hardlinked_into_the_next_release(
    tmp_path: Path, damage: str
) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    damaged = live(root) / "http" / "Image"
    good = damaged.read_bytes()
    if damage == "content":
        damaged.chmod(0o644)
        with damaged.open("r+b") as stream:
            stream.write(b"\0rot")
        damaged.chmod(0o555)
    elif damage == "truncate":
        damaged.chmod(0o644)
        damaged.write_bytes(good[:100])
        damaged.chmod(0o555)
    elif damage == "replace-with-symlink":
        damaged.unlink()
        damaged.symlink_to("/etc/hostname")
    else:
        damaged.chmod(0o644)
    (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text("# v2\n")
    result = CliRunner().invoke(cli, ["deploy", str(source), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "live file http/Image does not match its manifest" in result.output
    new = live(root) / "http" / "Image"
    assert not new.is_symlink()
    assert new.read_bytes() == good
    assert file_sha256(new) == load(live(root) / "MANIFEST.json")["http/Image"].sha256


def test_intact_live_files_are_still_shared(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    first = live(root).resolve()
    (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text("# v2\n")
    output = invoke("deploy", str(source), "--root", str(root))
    assert "does not match" not in output
    assert (first / "http/Image").stat().st_ino == (live(root) / "http/Image").stat().st_ino


# --- class 10 and class 1: operator errors, and nothing else is touched -------

def test_a_typo_in_root_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    typo = tmp_path / "srv-typo" / "ramboot"
    assert "its parent" in fails("deploy", str(source), "--root", str(typo))
    for command in ("rollback", "releases"):
        assert "no such directory (a typo in --root?)" in fails(command, "--root", str(typo))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0\n")
    for command in ("rollback", "releases"):
        assert "not a ramboot release store" in fails(command, "--root", str(tmp_path / "etc"))
    assert "not a ramboot release store and not empty" in fails(
        "deploy", str(source), "--root", str(tmp_path / "etc"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc", "src"]
    assert [p.name for p in (tmp_path / "etc").iterdir()] == ["passwd"]


def test_deploying_into_an_empty_or_new_directory_works(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    (tmp_path / "empty").mkdir()
    invoke("deploy", str(source), "--root", str(tmp_path / "empty"))
    invoke("deploy", str(source), "--root", str(tmp_path / "new"))
    assert trees_equal(source, live(tmp_path / "new"))


@pytest.mark.parametrize("overlap", ["root-is-source", "root-inside-source", "source-a-release"])
def test_source_and_root_must_not_overlap(tmp_path: Path, overlap: str) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    if overlap == "root-is-source":
        root = source
    elif overlap == "root-inside-source":
        root = source / "store"
    else:
        invoke("deploy", str(source), "--root", str(root))
        source = live(root)
    assert "overlap" in fails("deploy", str(source), "--root", str(root))


@pytest.mark.parametrize("corruption", [
    "not json", "[]", '{"version": 1}', '{"version": 2, "files": {}}',
    '{"version": 1, "files": {"../../etc/passwd": {"size": 1, "mode": 420, "sha256": "%s"}}}',
    '{"version": 1, "files": {"a": {"size": -1, "mode": 420, "sha256": "%s"}}}',
    '{"version": 1, "files": {"a": {"size": 1, "mode": 4095, "sha256": "%s"}}}',
    '{"version": 1, "files": {"a": {"size": 1, "mode": 420, "sha256": "xyz"}}}',
    '{"version": 1, "files": {"a": {"size": true, "mode": 420, "sha256": "%s"}}}',
    '{"version": 1, "files": {"a": {"size": 1, "colour": "red"}}}',
    "\xff\xfe",
])
def test_a_corrupt_manifest_is_named_and_costs_only_the_sharing(
    tmp_path: Path, corruption: str
) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    release = ReleaseStore(root).current()
    manifest = root / "releases" / str(release) / "MANIFEST.json"
    manifest.chmod(0o644)
    text = corruption.replace("%s", "0" * 64) if "%s" in corruption else corruption
    manifest.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    result = run_cli("deploy", str(source), "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{manifest}: corrupt manifest" in result.stderr
    assert "corrupt manifest" in result.stderr and "no file of the live release is reused" \
        in result.stderr
    assert trees_equal(source, live(root))
    # Going back to the release whose manifest is corrupt is refused, in one line.
    assert "corrupt manifest" in fails("rollback", "--root", str(root), "--to", str(release))


def test_manifest_paths_cannot_hardlink_from_outside_the_release(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    secret = tmp_path / "secret"
    secret.write_bytes((source / "http/Image").read_bytes())
    manifest = live(root) / "MANIFEST.json"
    document = json.loads(manifest.read_text())
    document["files"]["../../../secret"] = document["files"].pop("http/Image")
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(document))
    (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text("# v2\n")
    run_cli("deploy", str(source), "--root", str(root))
    assert secret.stat().st_nlink == 1


def test_release_order_is_numeric_and_foreign_entries_are_never_pruned(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v0")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    store = ReleaseStore(root)
    (first,) = store.releases()
    # A store that has made 9,999 releases: the next is 10000, which sorts
    # before 9999 as text; pruning by text would delete the newest.
    late = first.replace(first.split("-")[0], "9999", 1)
    (root / "releases" / first).rename(root / "releases" / late)
    (root / "current").unlink()
    (root / "current").symlink_to(f"releases/{late}")
    foreign = root / "releases" / "backup-do-not-delete"
    foreign.mkdir()
    (foreign / "MANIFEST.json").write_text("{}")
    (root / "releases" / "notes.txt").write_text("ops notes\n")
    for n in range(3):
        (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text(f"# v{n + 1}\n")
        invoke("deploy", str(source), "--root", str(root), "--keep", "2")
    releases = store.releases()
    assert [r.split("-")[0] for r in releases] == ["10001", "10002"]
    assert store.current() == releases[-1]
    assert foreign.is_dir() and (root / "releases" / "notes.txt").is_file()
    assert "rolled back" in invoke("rollback", "--root", str(root))
    assert store.current() == releases[0]


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


def test_a_full_disk_is_refused_up_front(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    with small_tmpfs(tmp_path / "small", "512k") as small:
        root = small / "srv"
        invoke("deploy", str(source), "--root", str(root))
        before = snapshot(small)
        (source / "http" / "big").write_bytes(os.urandom(600 << 10))
        message = fails("deploy", str(source), "--root", str(root))
        assert "not enough space for the new release" in message, message
        assert snapshot(small) == before


def test_a_disk_filling_up_while_staging_leaves_nothing_half_written(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    with small_tmpfs(tmp_path / "small", "512k") as small:
        root = small / "srv"
        invoke("deploy", str(source), "--root", str(root))
        before = snapshot(small)
        (source / "http" / "big").write_bytes(os.urandom(300 << 10))
        # Someone else takes the space between the check and the copy.
        (small / "hog").write_bytes(b"\0" * (250 << 10))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ReleaseStore, "check_space", lambda *args: None)
            result = CliRunner().invoke(cli, ["deploy", str(source), "--root", str(root)])
        assert result.exit_code == 1
        assert "No space left on device" in str(result.exception)
        assert "nothing was published and the live release is unchanged" in str(result.exception)
        (small / "hog").unlink()
        assert snapshot(small) == before
