"""Render everything into a temporary directory beside --out, then swap it in.

The swap is one renameat2(RENAME_EXCHANGE) when --out already exists, a plain
rename otherwise: a reader of --out sees the old tree or the new one, never a
mixture and never a half-written file.

Render only replaces what it wrote: every tree it writes lists its entries in
`.ramboot-render`, and an existing --out is replaced only when it is empty or
holds exactly what such a list names (`--out .` in a directory holding the
inventory is refused, as is a rendered tree someone added a file to).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ramboot import targets
from ramboot.errors import RambootError
from ramboot.inventory import Inventory
from ramboot.render import bootconf, dnsmasq, http, kea, kea_ha, tftp
from ramboot.render._writer import DIR_MODE, TreeWriter
from ramboot.render.images import ImageSet, find_images
from ramboot.render.templates import Templates
from ramboot.tokens import Tokens

MARKER = ".ramboot-render"
_MARKER_HEADER = (
    "# Written by `ramboot render`, which replaces this directory whole next time;\n"
    "# it refuses to if the directory holds anything not listed here.\n"
)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

ScriptCheck = Callable[[str, str], list[str]]
PlanCheck = Callable[[str, bytes], list[str]]


@dataclass
class RenderResult:
    out: Path
    warnings: list[str] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)
    plans: dict[str, bytes] = field(default_factory=dict)


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)  # libc's symbols are already in the process
    result = libc.renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise RambootError(f"cannot swap {a} into {b}: {os.strerror(errno)}")


def render_tree(
    inventory: Inventory,
    images_dir: Path,
    out: Path,
    templates_dir: Path | None = None,
    check_script: ScriptCheck | None = None,
    *,
    check_plan: PlanCheck | None = None,
    machine_secret: bytes | None = None,
) -> RenderResult:
    """Render `inventory` into `out`; `check_script(path, text)` and `check_plan(path,
    data)` return lint problems. Nothing is written when a host's stage 2 would boot
    ramboot again.

    With `machine_secret`, each machine's token goes where it reads it (DHCP
    URLs, the Pi's cmdline.txt), never into the HTTP tree.
    """
    images = find_images(images_dir, inventory)
    problems = targets.fleet_problems(inventory, ramboot_digests=images.initramfs_digests(),
                                      published=images.published())
    if problems:
        raise targets.TargetError(problems)
    templates = Templates(templates_dir)
    tokens = Tokens(machine_secret) if machine_secret is not None else None
    out = out.absolute()
    check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    except OSError as error:
        raise RambootError(f"{out.parent}: cannot create the output: {error.strerror}") from None
    try:
        return _render_into(staging, inventory, images, templates, out=out,
                            check_script=check_script, check_plan=check_plan, tokens=tokens)
    except OSError as error:
        name = f" {error.filename}" if error.filename else ""
        raise RambootError(
            f"{out}: rendering failed, the old tree is untouched:{name}: {error.strerror}"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


def _render_into(
    staging: Path, inventory: Inventory, images: ImageSet, templates: Templates, *, out: Path,
    check_script: ScriptCheck | None, check_plan: PlanCheck | None, tokens: Tokens | None,
) -> RenderResult:
    """Render into `staging`, then swap it with `out` (staging then holds the old tree)."""
    staging.chmod(DIR_MODE)
    result = RenderResult(out=out, warnings=list(images.warnings))
    writer = TreeWriter(staging)
    try:
        tftp.render(inventory, images, writer, templates, tokens)
        documents = http.render(inventory, images, writer, templates)
        result.scripts, result.plans = documents.scripts, documents.plans
        if inventory.dhcp_ha is not None:
            kea_ha.render(inventory, writer, tokens)
        else:
            kea.render(inventory, writer, tokens)
        dnsmasq.render(inventory, writer, templates, tokens)
        if "rpi4" in inventory.families:
            result.warnings += bootconf.render(inventory, writer, templates)
        writer.finish()
        writer.text(MARKER, _MARKER_HEADER + "".join(f"{p}\n" for p in sorted(writer.created)))
        writer.finish()
    finally:
        writer.close()
    if check_script is not None:
        problems = [
            problem for path, text in sorted(result.scripts.items())
            for problem in check_script(path, text)
        ]
        if problems:
            raise RambootError("rendered iPXE scripts do not lint:\n  " + "\n  ".join(problems))
    if check_plan is not None:
        problems = [
            f"host {documents.hosts[path]!r}: {problem}"
            for path, data in sorted(result.plans.items())
            for problem in check_plan(path, data)
        ]
        if problems:
            raise RambootError(
                "rendered plans do not validate with this tree's agent (ramboot_agent.plan):"
                "\n  " + "\n  ".join(problems))
    if out.exists():
        check_replaceable(out)  # again: the render took a while
        _exchange(staging, out)  # staging now holds the previous tree
    else:
        staging.rename(out)
    return result


def check_replaceable(out: Path) -> None:
    """Refuse to replace `out` unless it is missing, empty, or exactly a tree render wrote."""
    if out.is_symlink():
        raise RambootError(f"{out}: --out is a symlink; give the directory it names instead")
    if not out.exists():
        return
    if not out.is_dir():
        raise RambootError(f"{out}: --out exists and is not a directory")
    entries: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(out):
        base = os.path.relpath(dirpath, out)
        prefix = "" if base == "." else f"{base}/"
        entries.update(prefix + name for name in (*dirnames, *filenames))
    if not entries:
        return
    marker = out / MARKER
    if marker.is_symlink() or not marker.is_file():
        raise RambootError(
            f"{out}: refusing to replace --out: ramboot render did not write it (no {MARKER}); "
            "give a new or empty directory"
        )
    listed = set(marker.read_text(encoding="utf-8", errors="replace").splitlines())
    extra = sorted(entries - listed - {MARKER})
    if extra:
        shown = ", ".join(repr(name) for name in extra[:3])
        raise RambootError(
            f"{out}: refusing to replace --out: {len(extra)} entries that ramboot render did "
            f"not write would be lost ({shown}); move them out first"
        )
