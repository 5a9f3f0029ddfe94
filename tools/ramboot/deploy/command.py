"""`ramboot deploy`, `ramboot rollback` and `ramboot releases`."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import click

from ramboot.deploy import diff
from ramboot.deploy.manifest import Manifest, dumps, hash_tree, scan_tree
from ramboot.deploy.store import RELEASES, ReleaseStore, release_sequence
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
    hardlinked rather than copied, once each is checked against its manifest.
    """
    store = ReleaseStore(root)
    _check_apart(source, root)
    store.prepare()
    manifest = scan_tree(source)
    total = sum(entry.size for entry in manifest.values())
    with _progress(total, "hashing") as bar:
        manifest = hash_tree(source, manifest, bar.update)
    live = store.current()
    live_manifest: Manifest = {}
    if live:
        try:
            live_manifest = store.manifest(live)
        except RambootError as error:
            # Nothing is lost: the new release copies every file instead of sharing.
            _warn(f"{error}; no file of the live release is reused")
            live = None
    changes = diff.compare(live_manifest, manifest)
    if dry_run:
        for change in changes:
            click.echo(f"{change.kind} {change.path}")
        click.echo(f"dry run: {diff.summary(changes)} (live: {live or 'none'})")
        return
    if live and not changes:
        click.echo(f"nothing to deploy: {live} already holds this tree")
        return
    text = dumps(manifest)
    with store.locked():
        store.clean_staging()
        store.check_space(manifest, live_manifest, text)
        release = store.new_release_id(text)
        with _progress(total, "staging") as bar:
            _, report = store.stage(source, manifest, release, live=live_manifest,
                                    manifest_text=text, on_bytes=bar.update)
        store.switch(release, verify=False)
        pruned = store.prune(keep)
    for path in report.damaged:
        _warn(f"{root}: live file {path} does not match its manifest (edited or damaged): "
              "not reused, copied afresh from the source")
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
    store.require_store()
    with store.locked():
        store.clean_staging()
        live = store.current()
        releases = store.releases()
        if target is None:
            if live is None:
                older = releases
            else:
                older = [r for r in releases if release_sequence(r) < release_sequence(live)]
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
    store.require_store()
    live = store.current()
    for release in store.releases():
        click.echo(f"{'*' if release == live else ' '} {release}")


def _check_apart(source: Path, root: Path) -> None:
    """A tree published into itself (or a store published into a release) is a mistake."""
    real_source, real_root = source.resolve(), root.resolve()
    if real_source == real_root or real_root.is_relative_to(real_source) \
            or real_source.is_relative_to(real_root / RELEASES):
        raise RambootError(f"{source}: the source and --root {root} overlap; publish a "
                           "rendered tree from outside the store")


def _warn(message: str) -> None:
    click.echo(f"ramboot: warning: {message}", err=True)


def _progress(total: int, label: str) -> AbstractContextManager[Any]:
    """A progress bar on stderr for large trees; a silent stand-in otherwise."""
    if total < _PROGRESS_THRESHOLD:
        return nullcontext(_Silent())
    return click.progressbar(length=total, label=label, file=sys.stderr)


class _Silent:
    def update(self, n: int) -> None:
        pass
