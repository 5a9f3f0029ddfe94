"""Check this tree's kernel config fragments against a kernel source tree.

Like Buildroot's linux package does, the base defconfig is loaded and the
fragments merged on top (later lines win); then every fragment line must
name an existing option whose requested value sticks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ramboot.check import kconfig
from ramboot.check.defconfig import Assignment, last_values, read_config
from ramboot.check.report import Problem, Severity
from ramboot.errors import RambootError

# Buildroot architecture symbol -> (kernel ARCH, SRCARCH, arch default defconfig)
_ARCHES = {
    "BR2_x86_64": ("x86_64", "x86", "x86_64_defconfig"),
    "BR2_aarch64": ("arm64", "arm64", "defconfig"),
}
# Where the kernel comes from when it is not a kernel.org release (Buildroot's
# default is the latest one): only then can a base defconfig be missing here.
_NOT_KERNEL_ORG = (
    "BR2_LINUX_KERNEL_CUSTOM_TARBALL", "BR2_LINUX_KERNEL_CUSTOM_GIT",
    "BR2_LINUX_KERNEL_CUSTOM_HG", "BR2_LINUX_KERNEL_CUSTOM_SVN",
    "BR2_LINUX_KERNEL_LATEST_CIP_VERSION", "BR2_LINUX_KERNEL_LATEST_CIP_RT_VERSION",
)
_CROSS_GCC = {"arm64": "aarch64-linux-gnu-gcc", "x86_64": "x86_64-linux-gnu-gcc"}
_VARIABLE = re.compile(r"\$[({](?P<name>[A-Za-z0-9_]+)[)}]")


@dataclass
class KernelPlan:
    """What a Buildroot defconfig asks of the kernel configuration."""

    defconfig: Path
    arch: str
    srcarch: str
    base: Path  # the base configuration, before fragments
    fragments: list[Path]
    notes: list[str] = field(default_factory=list)
    approximate: bool = False  # the kernel is not the one the defconfig builds
    problems: list[Problem] = field(default_factory=list)  # found in the defconfig itself


def _expand(value: str, external: Path, buildroot: Path | None, where: str) -> Path:
    def substitute(match: re.Match[str]) -> str:
        if match["name"] == "BR2_EXTERNAL_RAMBOOT_PATH":
            return str(external)
        if match["name"] == "TOPDIR" and buildroot is not None:
            return str(buildroot)
        raise RambootError(f"{where}: cannot expand {match[0]} in {value}")

    path = Path(_VARIABLE.sub(substitute, value))
    if not path.is_absolute():
        if buildroot is None:
            raise RambootError(
                f"{where}: {value} is relative to the Buildroot tree: give --buildroot"
            )
        path = buildroot / path
    return path


def plan(
    defconfig: Path, source: Path, external: Path, buildroot: Path | None
) -> KernelPlan | None:
    """Read the kernel settings straight from the defconfig (no Buildroot needed)."""
    values = last_values(read_config(defconfig))

    def value(name: str) -> str:
        return values[name].value if name in values else ""

    if value("BR2_LINUX_KERNEL") != "y":
        return None
    arch_symbol = next((s for s in _ARCHES if value(s) == "y"), None)
    if arch_symbol is None:
        raise RambootError(f"{defconfig}: kernel check supports only {', '.join(_ARCHES)}")
    arch, srcarch, arch_default = _ARCHES[arch_symbol]
    configs = source / "arch" / srcarch / "configs"
    notes = []
    approximate = False
    problems = []

    def where(name: str) -> str:
        return f"{defconfig}:{values[name].line}" if name in values else str(defconfig)

    if value("BR2_LINUX_KERNEL_USE_CUSTOM_CONFIG") == "y":
        name = "BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE"
        base = _expand(value(name), external, buildroot, where(name))
    elif value("BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG") == "y":
        base = configs / arch_default
    else:  # BR2_LINUX_KERNEL_USE_DEFCONFIG, Buildroot's default
        wanted = value("BR2_LINUX_KERNEL_DEFCONFIG")
        base = configs / f"{wanted}_defconfig"
        kernel_org = not any(value(s) == "y" for s in _NOT_KERNEL_ORG)
        if not base.is_file() and kernel_org:
            # Buildroot asks make for "<name>_defconfig": a mainline build fails.
            name = "BR2_LINUX_KERNEL_DEFCONFIG"
            problems.append(Problem(
                defconfig, values[name].line if name in values else None, name,
                f"Buildroot configures {wanted}_defconfig, which mainline {srcarch} does "
                f"not have; BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG=y selects {arch_default}",
            ))
            base = configs / arch_default
        elif not base.is_file():
            # e.g. bcm2711_defconfig lives only in the raspberrypi/linux fork.
            approximate = True
            base = configs / arch_default
            notes.append(
                f"{wanted}_defconfig is not in {source}: approximating with {srcarch} "
                f"{arch_default} (problems are warnings)"
            )
    fragments = [
        _expand(item, external, buildroot, where("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES"))
        for item in value("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES").split()
    ]
    for path in (base, *fragments):
        if not path.is_file():
            raise RambootError(f"{defconfig}: kernel configuration {path} does not exist")
    return KernelPlan(defconfig, arch, srcarch, base, fragments, notes, approximate, problems)


def kernel_version(source: Path) -> str:
    fields = {}
    makefile = source / "Makefile"
    try:
        lines = makefile.read_text(encoding="utf-8").splitlines()[:10]
    except OSError as error:
        raise RambootError(f"{source}: not a kernel tree (no Makefile)") from error
    for line in lines:
        key, _, val = line.partition("=")
        fields[key.strip()] = val.strip()
    try:
        return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"
    except KeyError as error:
        raise RambootError(f"{makefile}: no kernel VERSION/PATCHLEVEL/SUBLEVEL") from error


class KernelKconfigs:
    """Kernel Kconfig trees parsed on demand, once per architecture."""

    def __init__(self, source: Path) -> None:
        self.source = source.resolve()
        if not (self.source / "Kconfig").is_file():
            raise RambootError(f"{source}: not a kernel source tree (no Kconfig)")
        self.version = kernel_version(self.source)
        self._trees: dict[str, Any] = {}
        self.notes: list[str] = []

    def tree(self, arch: str, srcarch: str) -> Any:
        if arch not in self._trees:
            self._trees[arch] = self._parse(arch, srcarch)
        return self._trees[arch]

    def _parse(self, arch: str, srcarch: str) -> Any:
        cc = shutil.which(_CROSS_GCC[arch]) or shutil.which("gcc")
        if cc is None:
            raise RambootError("no gcc: the kernel's Kconfig probes the compiler")
        if Path(cc).name == "gcc" and arch != "x86_64":
            self.notes.append(
                f"no {_CROSS_GCC[arch]}: {arch} options that probe the compiler "
                "are judged with the host gcc"
            )
        prefix = cc[: -len("gcc")]
        version_text = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, check=False
        ).stdout.partition("\n")[0]
        env = {
            "srctree": str(self.source), "ARCH": arch, "SRCARCH": srcarch,
            "KERNELVERSION": self.version, "CONFIG_": "CONFIG_",
            "CC": cc, "LD": f"{prefix}ld", "NM": f"{prefix}nm", "OBJCOPY": f"{prefix}objcopy",
            "AR": f"{prefix}ar", "HOSTCC": "gcc", "HOSTCXX": "g++",
            "CC_VERSION_TEXT": version_text, "CLANG_FLAGS": "",
            # No Rust or pahole here: the options needing them stay off, as in
            # a build without them.
            "RUSTC": "false", "BINDGEN": "false", "PAHOLE": "false", "RUSTC_VERSION_TEXT": "",
        }
        # $(cc-option) makes scratch directories in the current directory.
        with tempfile.TemporaryDirectory(prefix="ramboot-kconfig-") as scratch:
            return kconfig.parse(f"kernel Kconfig ({arch})", "Kconfig", env, cwd=Path(scratch))


def check(kernels: KernelKconfigs, kernel_plan: KernelPlan) -> list[Problem]:
    kconf = kernels.tree(kernel_plan.arch, kernel_plan.srcarch)
    kconf.load_config(str(kernel_plan.base), replace=True)
    problems: list[Problem] = list(kernel_plan.problems)
    winners: dict[str, Assignment] = {}
    for fragment in kernel_plan.fragments:
        assignments = read_config(fragment)
        seen: dict[str, int] = {}
        for a in assignments:
            if a.name in seen:
                problems.append(Problem(
                    a.path, a.line, a.name,
                    f"assigned again (first at line {seen[a.name]}); the last value wins",
                ))
            seen[a.name] = a.line
        winners.update(last_values(assignments))  # a later fragment overrides
        kconf.load_config(str(fragment), replace=False)
    severity = Severity.WARNING if kernel_plan.approximate else Severity.ERROR
    label = f"Linux {kernels.version} {kernel_plan.arch}"
    for a in winners.values():
        sym = kconfig.lookup(kconf, a.name, "CONFIG_")
        if sym is None:
            problems.append(Problem(a.path, a.line, a.name, f"unknown option in {label}", severity))
        elif mismatch := kconfig.explain_mismatch(sym, a):
            problems.append(Problem(a.path, a.line, a.name, mismatch, severity))
    return sorted(problems, key=lambda p: (str(p.path), p.line or 0))
