"""The iPXE binaries the Buildroot build produced (package/ipxe, the ramboot script
embedded), chained the way a fleet's firmware chains them: a BIOS PXE ROM loads
undionly.kpxe by TFTP; OVMF's UEFI PXE loads ipxe.efi or snponly.efi by TFTP. Each
must run its embedded script, get option 224 and chain the boot script with the
machine's identity.

They run when RAMBOOT_IMAGES_X86_64 names a Buildroot images directory holding
ipxe/ (`make offline-build BOARD=x86_64`, or a user's `make x86_64`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ipxe.test_ramboot_script import (
    SMBIOS_SERIAL,
    SMBIOS_UUID,
    chained_script,
    identity_argv,
)
from tests.ipxe.test_uefi import serial_lines
from tests.lib.httpd import requests
from tests.lib.ipxe import GUEST_MAC, HTTP_BASE, console_lines, ipxe_network, sercon_argv
from tests.lib.qemu import Qemu, ovmf_x86_64_argv, require_ovmf, require_qemu, x86_64_argv

pytestmark = [pytest.mark.qemu, pytest.mark.netns]

IMAGES_ENV = "RAMBOOT_IMAGES_X86_64"
BOOT_URL = f"{HTTP_BASE}/boot.ipxe"


def built_ipxe(name: str) -> Path:
    images = os.environ.get(IMAGES_ENV)
    if not images:
        pytest.skip(f"{IMAGES_ENV} is not set: no Buildroot-built iPXE to test "
                    "(make offline-build BOARD=x86_64)")
    path = Path(images) / "ipxe" / name
    if not path.is_file():
        pytest.fail(f"{IMAGES_ENV}={images} has no ipxe/{name}: is BR2_PACKAGE_IPXE on?")
    return path


@dataclass
class Chained:
    vm: Qemu
    http_log: Path
    marker: str
    tftp_log: Path


ChainFn = Callable[..., Chained]


def pxe_dhcp_options(tftp_root: Path, uefi_name: str) -> list[str]:
    """dnsmasq as a fleet's PXE server: the firmware's boot file by client
    architecture (7: x86-64 UEFI), option 224 for the iPXE that starts."""
    return [
        "--enable-tftp", f"--tftp-root={tftp_root}",
        "--dhcp-match=set:efi64,option:client-arch,7",
        f"--dhcp-boot=tag:efi64,{uefi_name}", "--dhcp-boot=tag:!efi64,undionly.kpxe",
        f"--dhcp-option-force=224,{BOOT_URL}",
    ]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[ChainFn]:
    """chain(binary, uefi: bool) -> Chained: the guest's firmware PXE-loads `binary`."""
    with ExitStack() as stack:

        def boot(binary: Path, *, uefi: bool) -> Chained:
            tftp_root = tmp_path / "tftp"
            tftp_root.mkdir()
            shutil.copyfile(binary, tftp_root / binary.name)
            marker = f"CHAINED-{secrets.token_hex(4)}"
            net = stack.enter_context(ipxe_network(
                tmp_path, files={"boot.ipxe": chained_script(marker)},
                http_expand_query=["/boot.ipxe"],
                dhcp_options=pxe_dhcp_options(tftp_root, binary.name)))
            netdev = ["-netdev", f"tap,id=pxe,ifname={net.tap},script=no,downscript=no"]
            if uefi:
                # virtio-net without an option ROM: OVMF's own VirtioNetDxe gives the
                # PXE client and the SNP that snponly.efi drives; ipxe.efi brings
                # its own virtio driver.
                argv = ovmf_x86_64_argv(firmware=require_ovmf(), workdir=tmp_path, esp=None,
                                        extra=[*netdev, "-device",
                                               f"virtio-net-pci,netdev=pxe,mac={GUEST_MAC},"
                                               "romfile=,bootindex=0", *identity_argv()])
            else:
                require_qemu("qemu-system-x86_64")
                # QEMU's own e1000 option ROM is the BIOS PXE client.
                argv = x86_64_argv(extra=[*sercon_argv(tmp_path), *netdev, "-device",
                                          f"e1000,netdev=pxe,mac={GUEST_MAC},bootindex=0",
                                          *identity_argv()])
            vm = stack.enter_context(Qemu(argv, tmp_path / "console.log", net.lab.ns))
            return Chained(vm, net.http_log, marker, tmp_path / "dnsmasq.log")

        yield boot


def assert_chained(chained: Chained, lines: list[str], *, platform: str, binary: str) -> None:
    served = chained.tftp_log.read_text()
    assert re.search(rf"sent \S*/{re.escape(binary)} to 192\.0\.2\.\d+", served), served[-2000:]
    assert any(re.fullmatch(rf"ramboot: iPXE \S+ on x86_64/{platform}", line)
               or re.fullmatch(rf"ramboot: iPXE \S+ on i386/{platform}", line)
               for line in lines), lines
    sent = requests(chained.http_log)
    assert [r["path"] for r in sent] == ["/boot.ipxe"], sent
    query = {key: values[0] for key, values in sent[0]["query"].items()}
    assert query["platform"] == platform and query["mac"] == GUEST_MAC
    assert query["serial"] == SMBIOS_SERIAL and query["uuid"] == SMBIOS_UUID
    assert f"{chained.marker} query={sent[0]['raw_query']}" in lines


def test_built_undionly_kpxe_chained_from_the_bios_pxe_rom(chain: ChainFn) -> None:
    binary = built_ipxe("undionly.kpxe")
    chained = chain(binary, uefi=False)
    chained.vm.expect_exact(f"{chained.marker} done", timeout=180)
    print(f"BIOS PXE ROM -> built undionly.kpxe -> chained: {chained.vm.elapsed:.1f}s")
    assert_chained(chained, console_lines(chained.vm.console_text()),
                   platform="pcbios", binary=binary.name)


@pytest.mark.parametrize("name", ["ipxe.efi", "snponly.efi"])
def test_built_uefi_ipxe_chained_from_ovmf_pxe(chain: ChainFn, name: str) -> None:
    binary = built_ipxe(name)
    chained = chain(binary, uefi=True)
    chained.vm.expect_exact(f"{chained.marker} done", timeout=300)
    print(f"OVMF PXE -> built {name} -> chained: {chained.vm.elapsed:.1f}s")
    assert_chained(chained, serial_lines(chained.vm), platform="efi", binary=name)
