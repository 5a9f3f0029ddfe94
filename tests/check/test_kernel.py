"""Kernel fragments against a real kernel tree (Debian's linux-source-6.12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramboot.check import kernel
from ramboot.check.kernel import KernelKconfigs
from ramboot.check.report import Severity
from tests.check.conftest import REPO

pytestmark = pytest.mark.slow

X86_KERNEL = """\
BR2_x86_64=y
BR2_LINUX_KERNEL=y
BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG=y
BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES="{fragments}"
"""


def x86_defconfig(root: Path, *fragments: str) -> Path:
    names = []
    for index, text in enumerate(fragments):
        (root / f"f{index}.fragment").write_text(text)
        names.append(f"$(BR2_EXTERNAL_RAMBOOT_PATH)/f{index}.fragment")
    path = root / "k_defconfig"
    path.write_text(X86_KERNEL.format(fragments=" ".join(names)))
    return path


def messages(kernels: KernelKconfigs, root: Path, defconfig: Path) -> list[str]:
    kernel_plan = kernel.plan(defconfig, kernels.source, root, None)
    assert kernel_plan is not None
    return [p.format(relative_to=root) for p in kernel.check(kernels, kernel_plan)]


def test_valid_fragments_pass(kernels: KernelKconfigs, tmp_path: Path) -> None:
    path = x86_defconfig(tmp_path, "CONFIG_KEXEC=y\nCONFIG_VIRTIO_NET=y\n", "CONFIG_NFS_FS=y\n")
    assert messages(kernels, tmp_path, path) == []


def test_nonexistent_option(kernels: KernelKconfigs, tmp_path: Path) -> None:
    path = x86_defconfig(tmp_path, "CONFIG_KEXEC=y\nCONFIG_KEXEC_TURBO=y\n")
    assert messages(kernels, tmp_path, path) == [
        f"f0.fragment:2: CONFIG_KEXEC_TURBO: unknown option in Linux {kernels.version} x86_64"
    ]


def test_value_that_cannot_stick(kernels: KernelKconfigs, tmp_path: Path) -> None:
    # A later fragment needs what an earlier one switched off.
    path = x86_defconfig(tmp_path, "# CONFIG_PCI is not set\n", "CONFIG_VIRTIO_PCI=y\n")
    assert messages(kernels, tmp_path, path) == [
        "f1.fragment:1: CONFIG_VIRTIO_PCI: requested y, actual n (unmet dependency: PCI)"
    ]


def test_value_forced_by_a_select(kernels: KernelKconfigs, tmp_path: Path) -> None:
    path = x86_defconfig(tmp_path, "CONFIG_KEXEC=y\n# CONFIG_KEXEC_CORE is not set\n")
    [message] = messages(kernels, tmp_path, path)
    assert message.startswith("f0.fragment:2: CONFIG_KEXEC_CORE: requested n, actual y (")
    assert "selected by" in message and "KEXEC" in message


def test_forked_base_is_an_approximation(kernels: KernelKconfigs, tmp_path: Path) -> None:
    (tmp_path / "pi.fragment").write_text("CONFIG_NOT_IN_MAINLINE=y\n")
    path = tmp_path / "pi_defconfig"
    path.write_text(
        "BR2_aarch64=y\nBR2_LINUX_KERNEL=y\nBR2_LINUX_KERNEL_CUSTOM_TARBALL=y\n"
        "BR2_LINUX_KERNEL_DEFCONFIG=\"bcm2711\"\n"
        'BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES="$(BR2_EXTERNAL_RAMBOOT_PATH)/pi.fragment"\n'
    )
    kernel_plan = kernel.plan(path, kernels.source, tmp_path, None)
    assert kernel_plan is not None and kernel_plan.approximate
    assert kernel_plan.base == kernels.source / "arch/arm64/configs/defconfig"
    [problem] = kernel.check(kernels, kernel_plan)
    assert problem.severity is Severity.WARNING
    assert problem.format(tmp_path) == (
        "pi.fragment:1: warning: CONFIG_NOT_IN_MAINLINE: "
        f"unknown option in Linux {kernels.version} arm64"
    )


def test_a_missing_defconfig_of_a_kernel_org_kernel_is_an_error(
    kernels: KernelKconfigs, tmp_path: Path
) -> None:
    # Buildroot appends _defconfig: "defconfig" asks make for defconfig_defconfig.
    (tmp_path / "pi.fragment").write_text("CONFIG_KEXEC=y\n")
    path = tmp_path / "pi_defconfig"
    path.write_text(
        "BR2_aarch64=y\nBR2_LINUX_KERNEL=y\nBR2_LINUX_KERNEL_CUSTOM_VERSION=y\n"
        'BR2_LINUX_KERNEL_DEFCONFIG="defconfig"\n'
        'BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES="$(BR2_EXTERNAL_RAMBOOT_PATH)/pi.fragment"\n'
    )
    kernel_plan = kernel.plan(path, kernels.source, tmp_path, None)
    assert kernel_plan is not None and not kernel_plan.approximate
    [problem] = kernel.check(kernels, kernel_plan)
    assert problem.severity is Severity.ERROR
    assert problem.format(tmp_path) == (
        "pi_defconfig:4: BR2_LINUX_KERNEL_DEFCONFIG: Buildroot configures defconfig_defconfig, "
        "which mainline arm64 does not have; BR2_LINUX_KERNEL_USE_ARCH_DEFAULT_CONFIG=y "
        "selects defconfig"
    )


def _repo_kernel_defconfigs() -> list[Path]:
    return sorted(
        path for path in (REPO / "configs").glob("*_defconfig")
        if "BR2_LINUX_KERNEL=y" in path.read_text().splitlines()
    )


@pytest.mark.parametrize("defconfig", _repo_kernel_defconfigs(), ids=lambda p: p.name)
def test_repo_fragments_pass(kernels: KernelKconfigs, defconfig: Path) -> None:
    kernel_plan = kernel.plan(defconfig, kernels.source, REPO, None)
    assert kernel_plan is not None and kernel_plan.fragments
    assert [p.format(REPO) for p in kernel.check(kernels, kernel_plan)] == []
