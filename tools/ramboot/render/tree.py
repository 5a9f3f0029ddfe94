"""Render everything into a temporary directory beside --out, then swap it in.

The swap is one renameat2(RENAME_EXCHANGE) when --out already exists, a plain
rename otherwise: a reader of --out sees the old tree or the new one, never a
mixture and never a half-written file.
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

from ramboot.errors import RambootError
from ramboot.inventory import Inventory
from ramboot.render import bootconf, dnsmasq, http, kea, kea_ha, tftp
from ramboot.render._writer import DIR_MODE, TreeWriter
from ramboot.render.images import find_images
from ramboot.render.templates import Templates
from ramboot.tokens import Tokens

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2

ScriptCheck = Callable[[str, str], list[str]]


@dataclass
class RenderResult:
    out: Path
    warnings: list[str] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)


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
    machine_secret: bytes | None = None,
) -> RenderResult:
    """Render `inventory` into `out`; `check_script(path, text)` returns lint problems.

    With `machine_secret`, each machine's token goes where it reads it (DHCP
    URLs, the Pi's cmdline.txt), never into the HTTP tree.
    """
    images = find_images(images_dir, inventory)
    templates = Templates(templates_dir)
    tokens = Tokens(machine_secret) if machine_secret is not None else None
    out = out.absolute()
    if out.exists() and not out.is_dir():
        raise RambootError(f"{out}: --out exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        staging.chmod(DIR_MODE)
        result = RenderResult(out=out, warnings=list(images.warnings))
        writer = TreeWriter(staging)
        try:
            tftp.render(inventory, images, writer, templates, tokens)
            result.scripts = http.render(inventory, images, writer, templates)
            if inventory.dhcp_ha is not None:
                kea_ha.render(inventory, writer, tokens)
            else:
                kea.render(inventory, writer, tokens)
            dnsmasq.render(inventory, writer, templates, tokens)
            if "rpi4" in inventory.families:
                result.warnings += bootconf.render(inventory, writer, templates)
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
        if out.exists():
            _exchange(staging, out)  # staging now holds the previous tree
        else:
            staging.rename(out)
            staging = None  # type: ignore[assignment]
        return result
    finally:
        if staging is not None:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(staging)
