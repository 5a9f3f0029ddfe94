"""The kernel check before kexec, on real files: Debian's kernels and trixie's iPXE
binaries (what a boot server really hands out by mistake), plus the formats no
file here has (EFI zboot), from their documented headers."""

from __future__ import annotations

import gzip
import lzma
import re
from pathlib import Path

import pytest

from ramboot_agent.kernel_image import NotAKernel, require_kernel
from tests.lib import kernels
from tests.lib.images import offline_images
from tests.lib.ipxe import default_lkrn


def refusal(path: Path, buildarch: str, name: str | None = None) -> str:
    with pytest.raises(NotAKernel) as error:
        require_kernel(path, buildarch=buildarch, name=name)
    return str(error.value)


def _ipxe_binary(name: str) -> Path:
    path = default_lkrn().with_name(name)
    if not path.is_file():
        pytest.skip(f"{path} is not unpacked (scripts/install-deps)")
    return path

@pytest.fixture(scope="module")
def bzimage() -> Path:
    return offline_images("x86_64") / "bzImage"

@pytest.fixture(scope="module")
def arm64_image() -> Path:
    return offline_images("arm64") / "Image"

def test_debians_kernels_boot_only_on_their_architecture(bzimage: Path, arm64_image: Path) -> None:
    assert require_kernel(bzimage, buildarch="x86_64").arch == "x86_64"
    assert require_kernel(arm64_image, buildarch="arm64").name == "arm64 Image"
    assert re.fullmatch(r"vmlinuz: bzImage \(setup protocol 2\.\d+\), for x86_64: "
                        r"this machine is arm64", refusal(bzimage, "arm64", "vmlinuz"))
    assert refusal(arm64_image, "x86_64", "Image") == \
        "Image: arm64 Image, for arm64: this machine is x86_64"

@pytest.mark.parametrize(("compress", "kind"), [(gzip.compress, "gzip"), (lzma.compress, "xz")])
def test_a_compressed_kernel_is_looked_into(arm64_image: Path, tmp_path: Path,
                                            compress: object, kind: str) -> None:
    # Debian's arm64 vmlinuz is a gzip'd Image; the Pi's firmware wants it plain.
    packed = tmp_path / "vmlinuz"
    packed.write_bytes(compress(arm64_image.read_bytes()[:1 << 20]))  # type: ignore[operator]
    found = require_kernel(packed, buildarch="arm64")
    assert found.name == f"{kind}-compressed arm64 Image" and found.arch == "arm64"
    assert refusal(packed, "x86_64").endswith(
        f"{kind}-compressed arm64 Image, for arm64: this machine is x86_64")

@pytest.mark.parametrize("name", ["ipxe-amd64.efi", "snponly.efi", "ipxe-arm64.efi"])
def test_an_efi_ipxe_binary_is_named_and_refused(name: str) -> None:
    binary = _ipxe_binary(name)
    with pytest.raises(NotAKernel) as error:
        require_kernel(binary, buildarch="x86_64", name=name)
    assert str(error.value).startswith(f"{name}: not a kernel: an iPXE binary (an EFI application")

def test_ipxe_lkrn_is_refused_for_its_16_bit_entry() -> None:
    with pytest.raises(NotAKernel, match="no 64-bit entry point"):
        require_kernel(_ipxe_binary("ipxe.lkrn"), buildarch="x86_64", name="ipxe.lkrn")

def test_undionly_kpxe_is_refused() -> None:
    assert refusal(_ipxe_binary("undionly.kpxe"), "x86_64", "undionly.kpxe") == (
        "undionly.kpxe: not a kernel: a PXE boot program (iPXE's undionly.kpxe and "
        "ipxe.pxe start like this)")

def test_an_efi_zboot_kernel_is_accepted_by_its_pe_machine(tmp_path: Path) -> None:
    # linux/drivers/firmware/efi/libstub/zboot-header.S: "MZ", "zimg" at 4, the
    # compression name at 0x18, a PE header whose machine field names the arch.
    head = bytearray(kernels.arm64_image(size=4096))
    head[4:8] = b"zimg"
    head[0x18:0x20] = b"gzip\0\0\0\0"
    head[0x38:0x3C] = b"\0\0\0\0"  # zboot has no Image magic
    head[0x3C:0x40] = (0x40).to_bytes(4, "little")
    head[0x40:0x46] = b"PE\0\0" + (0xAA64).to_bytes(2, "little")
    image = tmp_path / "vmlinuz.efi"
    image.write_bytes(bytes(head))
    found = require_kernel(image, buildarch="arm64")
    assert found.name == "EFI zboot (gzip)" and found.arch == "arm64"
    with pytest.raises(NotAKernel, match="EFI zboot \\(gzip\\), for arm64: this machine is x86_64"):
        require_kernel(image, buildarch="x86_64")
