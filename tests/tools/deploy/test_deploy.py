"""`ramboot deploy` / `rollback`: content, sharing, pruning and atomicity."""

from __future__ import annotations

import filecmp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ramboot.cli import cli
from ramboot.deploy.manifest import file_sha256, load
from ramboot.deploy.store import ReleaseStore


def make_tree(base: Path, version: str, files: int = 6) -> Path:
    """A small boot tree whose content depends on `version` in one place only."""
    (base / "tftp" / "dc-a6-32-01").mkdir(parents=True)
    (base / "http" / "hosts").mkdir(parents=True)
    (base / "tftp" / "start4.elf").write_bytes(b"\x7fELF firmware" * 1000)
    (base / "tftp" / "dc-a6-32-01" / "config.txt").write_text(f"# {version}\narm_64bit=1\n")
    (base / "tftp" / "dc-a6-32-01" / "start4.elf").symlink_to("../start4.elf")
    for n in range(files):
        (base / "http" / "hosts" / f"host{n:03}.ipxe").write_text(f"#!ipxe\necho {n}\n")
    kernel = base / "http" / "Image"
    kernel.write_bytes(os.urandom(1 << 16))
    kernel.chmod(0o755)
    return base


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def trees_equal(a: Path, b: Path) -> bool:
    """Same names, same bytes, same symlink targets, recursively."""
    comparison = filecmp.dircmp(a, b, ignore=["MANIFEST.json"])
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    for name in comparison.common_files:
        left, right = a / name, b / name
        if left.is_symlink() != right.is_symlink():
            return False
        if left.is_symlink():
            if left.readlink() != right.readlink():
                return False
        elif left.read_bytes() != right.read_bytes():
            return False
    return all(trees_equal(a / d, b / d) for d in comparison.common_dirs)


def live(root: Path) -> Path:
    return root / "current"


def test_deploy_publishes_the_tree_with_a_true_manifest(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    output = invoke("deploy", str(source), "--root", str(root))
    assert "deployed" in output and "10 added, 0 removed, 0 changed" in output
    assert trees_equal(source, live(root))
    manifest = load(live(root) / "MANIFEST.json")
    for path, entry in manifest.items():
        if not entry.is_link:
            assert file_sha256(live(root) / path) == entry.sha256
    assert manifest["http/Image"].mode == 0o755
    assert manifest["tftp/dc-a6-32-01/start4.elf"].target == "../start4.elf"


def test_unchanged_files_are_hardlinked_not_copied(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    first = live(root).resolve()
    (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text("# v2\n")
    invoke("deploy", str(source), "--root", str(root))
    second = live(root).resolve()
    assert first != second
    assert (first / "http/Image").stat().st_ino == (second / "http/Image").stat().st_ino
    assert (first / "tftp/start4.elf").stat().st_ino == (second / "tftp/start4.elf").stat().st_ino
    config = "tftp/dc-a6-32-01/config.txt"
    assert (first / config).stat().st_ino != (second / config).stat().st_ino
    assert (second / config).read_text() == "# v2\n"


def test_identical_files_within_a_release_share_one_inode(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    (source / "tftp" / "Image").write_bytes((source / "http" / "Image").read_bytes())
    (source / "tftp" / "Image").chmod(0o755)
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    assert (live(root) / "tftp/Image").stat().st_ino == (live(root) / "http/Image").stat().st_ino


def test_dry_run_prints_the_difference_and_writes_nothing(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    output = invoke("deploy", str(source), "--root", str(root), "--dry-run")
    assert "+ tftp/dc-a6-32-01/config.txt" in output
    assert not root.exists()
    invoke("deploy", str(source), "--root", str(root))
    (source / "http" / "hosts" / "host000.ipxe").unlink()
    (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text("# v2\n")
    (source / "http" / "new.ipxe").write_text("#!ipxe\n")
    before = sorted(p.name for p in (root / "releases").iterdir())
    output = invoke("deploy", str(source), "--root", str(root), "--dry-run")
    assert output.splitlines() == [
        "- http/hosts/host000.ipxe",
        "+ http/new.ipxe",
        "~ tftp/dc-a6-32-01/config.txt",
        f"dry run: 1 added, 1 removed, 1 changed (live: {before[0]})",
    ]
    assert sorted(p.name for p in (root / "releases").iterdir()) == before


def test_an_unchanged_tree_makes_no_new_release(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v1")
    root = tmp_path / "srv"
    invoke("deploy", str(source), "--root", str(root))
    assert "nothing to deploy" in invoke("deploy", str(source), "--root", str(root))
    assert len(ReleaseStore(root).releases()) == 1


def test_keep_prunes_the_oldest_releases_but_never_the_live_one(tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", "v0")
    root = tmp_path / "srv"
    for n in range(5):
        (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text(f"# v{n}\n")
        invoke("deploy", str(source), "--root", str(root), "--keep", "3")
    store = ReleaseStore(root)
    assert len(store.releases()) == 3
    assert store.current() == store.releases()[-1]
    invoke("rollback", "--root", str(root), "--to", store.releases()[0])
    (source / "tftp" / "dc-a6-32-01" / "config.txt").write_text("# v9\n")
    invoke("deploy", str(source), "--root", str(root), "--keep", "2")
    # Oldest-first pruning would take the release we had rolled back to only
    # if it is not live; the new release is live now, so two remain.
    assert len(store.releases()) == 2


def test_rollback_restores_byte_identical_files(tmp_path: Path) -> None:
    v1 = make_tree(tmp_path / "v1", "v1")
    v2 = make_tree(tmp_path / "v2", "v2")
    root = tmp_path / "srv"
    invoke("deploy", str(v1), "--root", str(root))
    invoke("deploy", str(v2), "--root", str(root))
    assert trees_equal(v2, live(root))
    output = invoke("rollback", "--root", str(root))
    assert "rolled back" in output
    assert trees_equal(v1, live(root))


def test_rollback_errors_name_the_store_and_release(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    invoke("deploy", str(make_tree(tmp_path / "v1", "v1")), "--root", str(root))
    result = CliRunner().invoke(cli, ["rollback", "--root", str(root), "--to", "nope"])
    assert result.exit_code != 0
    assert f"{root}: no release 'nope'" in str(result.exception)
    result = CliRunner().invoke(cli, ["rollback", "--root", str(root)])
    assert "no release older than" in str(result.exception)


@pytest.mark.parametrize(
    ("target", "message"),
    [("/etc/passwd", "symlink to absolute path '/etc/passwd'"),
     ("../../../etc/passwd", "leads outside")],
)
def test_symlinks_leaving_the_tree_are_refused(tmp_path: Path, target: str, message: str) -> None:
    source = make_tree(tmp_path / "src", "v1")
    (source / "tftp" / "evil").symlink_to(target)
    result = CliRunner().invoke(cli, ["deploy", str(source), "--root", str(tmp_path / "srv")])
    assert result.exit_code != 0
    assert message in str(result.exception)
    assert "tftp/evil" in str(result.exception)
    assert not (tmp_path / "srv").exists()


def test_a_live_directory_in_the_way_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    (root / "current").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["deploy", str(make_tree(tmp_path / "v1", "v1")),
                                      "--root", str(root)])
    assert "exists but is not a symlink" in str(result.exception)


def test_a_second_deploy_waits_for_nobody_and_fails_clearly(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    store = ReleaseStore(root)
    with store.locked():
        result = CliRunner().invoke(cli, ["deploy", str(make_tree(tmp_path / "v1", "v1")),
                                          "--root", str(root)])
    assert "another deploy or rollback is running" in str(result.exception)


# --- atomicity ---------------------------------------------------------------

def run_cli(*args: str, crash_at: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAMBOOT_DEPLOY_CRASH_AT"}
    if crash_at is not None:
        env["RAMBOOT_DEPLOY_CRASH_AT"] = str(crash_at)
    return subprocess.run(
        [sys.executable, "-c", "from ramboot.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )


def assert_live_is_one_of(root: Path, *trees: Path) -> Path:
    """The live tree equals exactly one of `trees`, and its manifest is true."""
    matches = [t for t in trees if live(root).exists() and trees_equal(t, live(root))]
    assert len(matches) == 1, f"live tree is none of {trees}"
    manifest = load(live(root) / "MANIFEST.json")
    for path, entry in manifest.items():
        if not entry.is_link:
            assert file_sha256(live(root) / path) == entry.sha256, path
    return matches[0]


def test_deploy_killed_at_every_checkpoint_leaves_old_or_new(tmp_path: Path) -> None:
    v1 = make_tree(tmp_path / "v1", "v1")
    v2 = make_tree(tmp_path / "v2", "v2", files=8)
    root = tmp_path / "srv"
    assert run_cli("deploy", str(v1), "--root", str(root)).returncode == 0
    seen = set()
    for crash_at in range(1, 60):
        result = run_cli("deploy", str(v2), "--root", str(root), crash_at=crash_at)
        if result.returncode == 0:
            break  # passed every checkpoint: the deploy completed
        assert result.returncode == 86, result.stderr
        assert "fault injected" in result.stderr
        seen.add(assert_live_is_one_of(root, v1, v2))
        # Roll the store back to v1 so the next run deploys v2 afresh.
        if trees_equal(v2, live(root)):
            assert run_cli("rollback", "--root", str(root)).returncode == 0
    else:
        pytest.fail("deploy never completed within 60 checkpoints")
    assert seen == {v1, v2}, "the crash points covered both sides of the switch"
    assert_live_is_one_of(root, v2)
    leftovers = [p.name for p in (root / "releases").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_rollback_killed_at_every_checkpoint_leaves_old_or_new(tmp_path: Path) -> None:
    v1 = make_tree(tmp_path / "v1", "v1")
    v2 = make_tree(tmp_path / "v2", "v2")
    root = tmp_path / "srv"
    for tree in (v1, v2):
        assert run_cli("deploy", str(tree), "--root", str(root)).returncode == 0
    # Checkpoint 1 comes before the rename, checkpoint 2 right after it.
    for crash_at, expected in ((1, v2), (2, v1)):
        result = run_cli("rollback", "--root", str(root), crash_at=crash_at)
        assert result.returncode == 86
        assert assert_live_is_one_of(root, v1, v2) == expected
    assert not (root / ".current.new").exists() or run_cli(
        "deploy", str(v2), "--root", str(root), "--dry-run").returncode == 0


@pytest.mark.slow
def test_deploy_sigkilled_at_random_moments_leaves_old_or_new(tmp_path: Path) -> None:
    v1 = make_tree(tmp_path / "v1", "v1", files=300)
    v2 = make_tree(tmp_path / "v2", "v2", files=300)
    root = tmp_path / "srv"
    keep = ("--keep", "100")  # every release stays, so v1 is always there to go back to
    assert run_cli("deploy", str(v1), "--root", str(root), *keep).returncode == 0
    v1_release = ReleaseStore(root).current()
    assert v1_release is not None
    back_to_v1 = ("rollback", "--root", str(root), "--to", v1_release)
    started = time.monotonic()
    assert run_cli("deploy", str(v2), "--root", str(root), *keep).returncode == 0
    duration = time.monotonic() - started
    assert run_cli(*back_to_v1).returncode == 0
    rng = random.Random(20261122)
    for _ in range(15):
        process = subprocess.Popen(
            [sys.executable, "-c", "from ramboot.cli import main; main()",
             "deploy", str(v2), "--root", str(root), *keep],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, duration * 1.2))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if assert_live_is_one_of(root, v1, v2) == v2:
            assert run_cli(*back_to_v1).returncode == 0
    assert run_cli("deploy", str(v2), "--root", str(root), *keep).returncode == 0
    assert_live_is_one_of(root, v2)
