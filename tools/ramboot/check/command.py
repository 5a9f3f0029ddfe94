"""The `ramboot check` command: wiring of the Buildroot and kernel checks."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ramboot.check import kernel
from ramboot.check.buildroot import BuildrootKconfig
from ramboot.check.report import Problem, Severity, summary
from ramboot.errors import RambootError

_REPO = Path(__file__).resolve().parents[3]


def _default_external() -> Path:
    for candidate in (Path.cwd(), _REPO):
        if (candidate / "external.desc").is_file():
            return candidate
    raise RambootError("no external.desc here or in the ramboot checkout: give --external")


def _defconfigs(external: Path, names: tuple[str, ...]) -> list[Path]:
    if not names:
        found = sorted((external / "configs").glob("*_defconfig"))
        if not found:
            raise RambootError(f"{external}/configs: no *_defconfig files")
        return found
    paths = []
    for name in names:
        path = Path(name)
        if not path.is_file():
            path = external / "configs" / name
        if not path.is_file():
            raise RambootError(f"{name}: no such defconfig (nor {path})")
        paths.append(path)
    return paths


@click.command("check")
@click.option(
    "--buildroot", "buildroot", envvar="BUILDROOT_DIR",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Buildroot tree to check against (default: $BUILDROOT_DIR).",
)
@click.option(
    "--kernel-source", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Kernel source tree to check the kernel fragments against.",
)
@click.option(
    "--external", type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The ramboot BR2_EXTERNAL tree (default: this checkout).",
)
@click.argument("defconfig", nargs=-1)
def check(
    buildroot: Path | None,
    kernel_source: Path | None,
    external: Path | None,
    defconfig: tuple[str, ...],
) -> None:
    """Check DEFCONFIGs (default: all configs/*_defconfig) against Buildroot and the kernel."""
    if buildroot is None and kernel_source is None:
        raise RambootError("nothing to check against: give --buildroot (or BUILDROOT_DIR) "
                           "and/or --kernel-source")
    external = (external or _default_external()).resolve()
    paths = _defconfigs(external, defconfig)
    problems: list[Problem] = []
    if buildroot is None:
        click.echo("note: no Buildroot tree (--buildroot or BUILDROOT_DIR): defconfigs not checked")
    else:
        tree = BuildrootKconfig(buildroot, external)
        problems += tree.kconfig_problems()
        for path in paths:
            problems += tree.check(path).problems
    if kernel_source is not None:
        kernels = kernel.KernelKconfigs(kernel_source)
        for path in paths:
            kernel_plan = kernel.plan(path, kernels.source, external, buildroot)
            if kernel_plan is None:
                click.echo(f"note: {path.name}: no BR2_LINUX_KERNEL: no fragments to check")
                continue
            problems += kernel.check(kernels, kernel_plan)
            for note in kernel_plan.notes:
                click.echo(f"note: {path.name}: {note}")
        for note in kernels.notes:
            click.echo(f"note: {note}")
    for problem in problems:
        click.echo(problem.format())
    click.echo(summary(problems, len(paths), "defconfig(s)"))
    if any(p.severity is Severity.ERROR for p in problems):
        sys.exit(1)
