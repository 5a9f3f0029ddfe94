"""`ramboot deploy`, `ramboot rollback` and `ramboot releases`."""

from __future__ import annotations

from pathlib import Path

import click

from ramboot.deploy import diff
from ramboot.deploy.manifest import hash_tree, scan_tree
from ramboot.deploy.store import ReleaseStore
from ramboot.errors import RambootError

# Copies smaller than this finish before a progress bar would be readable.
_PROGRESS_THRESHOLD = 64 << 20

root_option = click.option(
    "--root", "root", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Release store; boot servers serve ROOT/current/tftp and ROOT/current/http.",
)


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@root_option
@click.option("--keep", default=5, show_default=True, type=click.IntRange(min=2),
              help="How many releases to keep (the live one included).")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
def deploy(source: Path, root: Path, keep: int, dry_run: bool) -> None:
    """Publish the tree SOURCE (e.g. the output of `ramboot render`) atomically.

    The new release is staged beside the live one, made durable, and switched
    in with a single rename; files identical to the live release are
    hardlinked rather than copied.
    """
    store = ReleaseStore(root)
    manifest = scan_tree(source)
    total = sum(entry.size for entry in manifest.values())
    with _progress(total, "hashing") as bar:
        manifest = hash_tree(source, manifest, bar.update)
    live = store.current() if store.releases_dir.is_dir() else None
    changes = diff.compare(store.manifest(live) if live else {}, manifest)
    if dry_run:
        for change in changes:
            click.echo(f"{change.kind} {change.path}")
        click.echo(f"dry run: {diff.summary(changes)} (live: {live or 'none'})")
        return
    if live and not changes:
        click.echo(f"nothing to deploy: {live} already holds this tree")
        return
    with store.locked():
        store.clean_staging()
        release = store.new_release_id(manifest)
        with _progress(total, "staging") as bar:
            store.stage(source, manifest, release, bar.update)
        store.switch(release)
        pruned = store.prune(keep)
    click.echo(f"deployed {release}: {diff.summary(changes)}")
    for old in pruned:
        click.echo(f"pruned {old}")


@click.command()
@root_option
@click.option("--to", "target",
              help="Release to go back to (default: the one before the live one).")
def rollback(root: Path, target: str | None) -> None:
    """Switch the live release back, atomically, to an earlier release."""
    store = ReleaseStore(root)
    with store.locked():
        store.clean_staging()
        live = store.current()
        releases = store.releases()
        if target is None:
            older = [r for r in releases if live is None or r < live]
            if not older:
                raise RambootError(f"{root}: no release older than {live or 'none'} to go back to")
            target = older[-1]
        elif target not in releases:
            have = ", ".join(releases) or "none"
            raise RambootError(f"{root}: no release {target!r} (have: {have})")
        store.switch(target)
    click.echo(f"rolled back: {live} -> {target}")


@click.command()
@root_option
def releases(root: Path) -> None:
    """List the releases in the store, marking the live one."""
    store = ReleaseStore(root)
    live = store.current()
    for release in store.releases():
        click.echo(f"{'*' if release == live else ' '} {release}")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int, label: str) -> click.progressbar[int] | _NoBar:  # type: ignore[type-arg]
    if total < _PROGRESS_THRESHOLD:
        return _NoBar()
    return click.progressbar(length=total, label=label, file=click.get_text_stream("stderr"))
