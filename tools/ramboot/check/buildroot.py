"""Load Buildroot's Kconfig with this BR2_EXTERNAL and check defconfigs against it."""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ramboot.check import kconfig
from ramboot.check.defconfig import Assignment, last_values, read_config
from ramboot.check.report import Problem
from ramboot.errors import RambootError

EXTERNAL_NAME = "RAMBOOT"
OVERLAY = "$(BR2_EXTERNAL_RAMBOOT_PATH)/overlay"
# What every ramboot image relies on: the initramfs the boot servers hand
# out, and the agent inside it.
REQUIRED_Y = (
    "BR2_TARGET_ROOTFS_CPIO",
    "BR2_TARGET_ROOTFS_CPIO_ZSTD",
    "BR2_PACKAGE_RAMBOOT_AGENT",
)
_LEGACY_FILE = "Config.in.legacy"
_EXPORT = re.compile(r"^export (?P<name>[A-Za-z0-9_]+) = (?P<value>.*)$")
_ERROR = re.compile(r"^BR2_EXTERNAL_ERROR = (?P<message>.*)$", re.MULTILINE)
_VERSION = re.compile(r"^export BR2_VERSION := (?P<version>\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class DefconfigResult:
    path: Path
    problems: list[Problem]
    values: dict[str, str]  # every defined symbol's value after loading


def _buildroot_version(buildroot: Path) -> str:
    match = _VERSION.search((buildroot / "Makefile").read_text(encoding="utf-8"))
    if not match:
        raise RambootError(f"{buildroot}/Makefile: no 'export BR2_VERSION :=' line")
    return match["version"]


def _host_gcc_version() -> str:
    # As Buildroot's Makefile does: the major version (cap included there is
    # higher than any gcc this runs with).
    try:
        out = subprocess.run(
            ["gcc", "-dumpversion"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise RambootError(f"cannot run the host gcc: {error}") from error
    return out.strip().split(".")[0]


def _generate_external_files(buildroot: Path, external: Path, base_dir: Path) -> dict[str, str]:
    """Run Buildroot's own br2-external script; return the variables it exports."""
    script = buildroot / "support" / "scripts" / "br2-external"
    result = subprocess.run(
        [str(script), "-d", str(base_dir), str(external)],
        cwd=buildroot, capture_output=True, text=True, check=False,
    )
    mk = base_dir / ".br2-external.mk"
    text = mk.read_text(encoding="utf-8") if mk.exists() else ""
    if result.returncode != 0 or _ERROR.search(text):
        match = _ERROR.search(text)
        detail = match["message"] if match else (result.stderr.strip() or "failed")
        raise RambootError(f"{external}: not a valid BR2_EXTERNAL tree: {detail}")
    exports = {}
    for line in text.splitlines():
        if match := _EXPORT.match(line):
            exports[match["name"]] = match["value"]
    if f"BR2_EXTERNAL_{EXTERNAL_NAME}_PATH" not in exports:
        raise RambootError(f"{external}/external.desc: the external's name must be {EXTERNAL_NAME}")
    return exports


class BuildrootKconfig:
    """Buildroot's Config.in parsed once with the external loaded; check many defconfigs."""

    def __init__(self, buildroot: Path, external: Path) -> None:
        self.buildroot = buildroot.resolve()
        self.external = external.resolve()
        if not (self.buildroot / "Config.in").is_file():
            raise RambootError(f"{buildroot}: not a Buildroot tree (no Config.in)")
        if not (self.external / "external.desc").is_file():
            raise RambootError(f"{external}: not a BR2_EXTERNAL tree (no external.desc)")
        self.version = _buildroot_version(self.buildroot)
        with tempfile.TemporaryDirectory(prefix="ramboot-check-") as base:
            exports = _generate_external_files(self.buildroot, self.external, Path(base))
            env = {
                **exports,
                "srctree": str(self.buildroot),
                # Buildroot's kconfig is built without a symbol prefix.
                "CONFIG_": "",
                "BASE_DIR": base,
                "BR2_BASE_DIR": base,  # Config.in sources "$BR2_BASE_DIR/..."
                "BR2_VERSION_FULL": self.version,
                "HOSTARCH": "x86_64",
                "HOST_GCC_VERSION": _host_gcc_version(),
                "BR2_DEFCONFIG": "",
                "SKIP_LEGACY": "",
            }
            self.kconf: Any = kconfig.parse("Buildroot Kconfig", "Config.in", env)

    def kconfig_problems(self) -> list[Problem]:
        """Symbols the external's own Config.in files use but nothing defines."""
        problems = []
        seen = set()
        for node in self.kconf.node_iter():
            path = Path(node.filename)
            if not path.is_absolute() or not path.is_relative_to(self.external):
                continue
            for sym in node.referenced:
                key = (sym.name, node.filename, node.linenr)
                if sym.nodes or getattr(sym, "is_constant", True) or key in seen:
                    continue
                seen.add(key)
                problems.append(Problem(
                    path, node.linenr, sym.name, "referenced, but no Kconfig defines it"
                ))
        return sorted(problems, key=lambda p: (str(p.path), p.line or 0, p.symbol))

    @staticmethod
    def version_of(buildroot: Path) -> str:
        return _buildroot_version(buildroot)

    def check(self, defconfig: Path) -> DefconfigResult:
        assignments = read_config(defconfig)
        problems = _duplicates(assignments)
        self.kconf.load_config(str(defconfig), replace=True)
        flagged: set[str] = set()
        for assignment in last_values(assignments).values():
            problem = self._check_assignment(assignment)
            if problem:
                problems.append(problem)
                flagged.add(assignment.name)
        problems += self._check_required(defconfig, assignments, flagged)
        problems += self._check_round_trip(defconfig, assignments, flagged)
        values = {sym.name: sym.str_value for sym in self.kconf.unique_defined_syms}
        problems.sort(key=lambda p: (p.line or 0, p.symbol))
        return DefconfigResult(defconfig, problems, values)

    def _check_assignment(self, assignment: Assignment) -> Problem | None:
        sym = kconfig.lookup(self.kconf, assignment.name, "")
        where = (assignment.path, assignment.line, assignment.name)
        if sym is None:
            return Problem(*where, f"unknown symbol (not in Buildroot {self.version})")
        if any(Path(node.filename).name == _LEGACY_FILE for node in sym.nodes):
            prompt = next((n.prompt[0] for n in sym.nodes if n.prompt), "")
            return Problem(*where, f"legacy symbol, removed from Buildroot: {prompt}".rstrip(": "))
        mismatch = kconfig.explain_mismatch(sym, assignment)
        return Problem(*where, mismatch) if mismatch else None

    def _check_required(
        self, defconfig: Path, assignments: list[Assignment], flagged: set[str]
    ) -> list[Problem]:
        lines = {a.name: a.line for a in assignments}
        problems = []
        for name in (*REQUIRED_Y, "BR2_ROOTFS_OVERLAY"):
            if name in flagged:
                continue  # already reported why its value did not stick
            sym = kconfig.lookup(self.kconf, name, "")
            where = (defconfig, lines.get(name), name)
            if sym is None:
                problems.append(Problem(*where, "required by ramboot, but not defined"))
            elif name == "BR2_ROOTFS_OVERLAY":
                overlays = sym.str_value.split()
                if OVERLAY not in overlays and f"{OVERLAY}/" not in overlays:
                    problems.append(Problem(*where, f'required by ramboot: must list "{OVERLAY}"'))
            elif sym.str_value != "y":
                problems.append(
                    Problem(*where, f"required by ramboot: must be y, is {sym.str_value}")
                )
        return problems

    def _check_round_trip(
        self, defconfig: Path, assignments: list[Assignment], flagged: set[str]
    ) -> list[Problem]:
        """Compare the defconfig with what `make savedefconfig` would write."""
        with tempfile.TemporaryDirectory(prefix="ramboot-check-") as tmp:
            minimal = Path(tmp) / "defconfig"
            self.kconf.write_min_config(str(minimal))
            saved = {a.name: a.value for a in read_config(minimal)}
        problems = []
        wanted = last_values(assignments)
        for name, assignment in wanted.items():
            if name in flagged or kconfig.lookup(self.kconf, name, "") is None:
                continue
            if saved.get(name) != assignment.value:
                problems.append(Problem(
                    assignment.path, assignment.line, name,
                    "redundant: savedefconfig drops this line (the value is the default)",
                ))
        for name, value in saved.items():
            if name not in wanted:
                problems.append(Problem(
                    defconfig, None, name,
                    f"savedefconfig adds {name}={value}: the defconfig does not say it",
                ))
        return problems


def _duplicates(assignments: list[Assignment]) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for a in assignments:
        if a.name in first:
            problems.append(Problem(
                a.path, a.line, a.name,
                f"assigned again (first at line {first[a.name]}); the last value wins",
            ))
        else:
            first[a.name] = a.line
    return problems
