"""board/common/ipxe/ramboot.ipxe in real UEFI iPXE: trixie's ipxe.efi under OVMF, QEMU TCG.

The guest is a q35 machine with OVMF firmware whose first boot device is a
read-only FAT disk (QEMU vvfat) holding EFI/BOOT/BOOTX64.EFI = trixie's
ipxe.efi and, beside it, autoexec.ipxe = the ramboot script: iPXE's EFI build
runs an autoexec.ipxe found on the volume it was loaded from, which stands in
for the embedded script. The NIC is an e1000 without option ROM: OVMF has no
driver for it, so the network is driven by the ipxe.efi under test (its
native intel driver), not by QEMU's bundled iPXE ROM or OVMF's network stack.
OVMF mirrors its console, and so iPXE's output, to the serial port.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ipxe.test_ramboot_script import (
    RAMBOOT_IPXE,
    SMBIOS_SERIAL,
    SMBIOS_UUID,
    chained_script,
    fallback_boxes,
    identity_argv,
)
from tests.lib.httpd import requests
from tests.lib.ipxe import (
    GUEST_MAC,
    HTTP_BASE,
    NIC_MODEL,
    efi_system_partition,
    ipxe_network,
    require_ipxe_efi,
)
from tests.lib.qemu import (
    Qemu,
    ovmf_x86_64_argv,
    require_ovmf,
    strip_ansi,
    tap_nic_argv,
)

pytestmark = [pytest.mark.qemu, pytest.mark.netns]

BOOT_URL = f"{HTTP_BASE}/boot.ipxe"


def serial_lines(vm: Qemu) -> list[str]:
    # OVMF's terminal adds its own mode escapes (ESC [=3h) that strip_ansi does not know.
    text = strip_ansi(vm.console_text()).replace("\x1b[=3h", "").replace("\r", "")
    return text.split("\n")


@dataclass
class UefiBoot:
    vm: Qemu
    http_log: Path
    marker: str


BootFn = Callable[..., UefiBoot]


@pytest.fixture
def boot_uefi(tmp_path: Path) -> Iterator[BootFn]:
    """boot(**ipxe_network kwargs) -> UefiBoot, torn down after the test."""
    firmware = require_ovmf()
    loader = require_ipxe_efi()
    with ExitStack() as stack:

        def boot(**network: Any) -> UefiBoot:
            marker = f"CHAINED-{secrets.token_hex(4)}"
            network.setdefault("files", {"boot.ipxe": chained_script(marker)})
            network.setdefault("http_expand_query", ["/boot.ipxe"])
            net = stack.enter_context(ipxe_network(tmp_path, **network))
            esp = efi_system_partition(tmp_path / "esp", loader, RAMBOOT_IPXE)
            argv = ovmf_x86_64_argv(
                firmware=firmware, workdir=tmp_path, esp=esp,
                extra=[*tap_nic_argv(net.tap, mac=GUEST_MAC, model=NIC_MODEL),
                       *identity_argv()])
            vm = stack.enter_context(Qemu(argv, tmp_path / "console.log", net.lab.ns))
            return UefiBoot(vm, net.http_log, marker)

        yield boot


def test_uefi_ipxe_runs_autoexec_script_and_chains_with_identity(boot_uefi: BootFn) -> None:
    boot = boot_uefi(dhcp_options=[f"--dhcp-option-force=224,{BOOT_URL}"])
    boot.vm.expect_exact(f"{boot.marker} done", timeout=120)
    seconds = boot.vm.elapsed
    lines = serial_lines(boot.vm)
    # The script came from the ESP, and ran as the EFI build.
    assert any(re.fullmatch(r"file:/?autoexec\.ipxe\.\.\. ok", line) for line in lines), lines
    assert any(re.fullmatch(r"ramboot: iPXE \S+ on x86_64/efi", line) for line in lines), lines
    sent = requests(boot.http_log)
    assert [r["path"] for r in sent] == ["/boot.ipxe"], sent
    query = {key: values[0] for key, values in sent[0]["query"].items()}
    assert query["platform"] == "efi"
    assert query["buildarch"] == "x86_64"
    assert query["mac"] == GUEST_MAC
    # OVMF passes QEMU's SMBIOS tables through: the identity survives the firmware.
    assert query["serial"] == SMBIOS_SERIAL
    assert query["uuid"] == SMBIOS_UUID
    assert re.fullmatch(r"192\.0\.2\.\d+", query["ip"]), query
    assert query["ip"] == sent[0]["client"]
    # The chained script ran: it echoed the very query the server logged.
    assert f"{boot.marker} query={sent[0]['raw_query']}" in lines
    print(f"UEFI boot-to-chain: {seconds:.1f}s")


def test_uefi_without_option_224_retries_then_returns_to_the_firmware(boot_uefi: BootFn) -> None:
    boot = boot_uefi()
    # exit 1 returns an error to OVMF's boot manager, which moves on to its next option.
    boot.vm.expect(r'BdsDxe: failed to start Boot\d+ "UEFI Misc Device"', timeout=120)
    seconds = boot.vm.elapsed
    lines = serial_lines(boot.vm)
    reason = "DHCP option 224 (boot script URL) is not set"
    assert fallback_boxes(lines) == [("1/3", reason), ("2/3", reason), ("3/3", reason)]
    assert any(line.startswith("ramboot: giving up") for line in lines)
    assert requests(boot.http_log) == []
    print(f"UEFI no-224 to firmware fall-through: {seconds:.1f}s")
