"""board/common/ipxe/ramboot.ipxe in real iPXE (Debian trixie's ipxe.lkrn) under QEMU TCG.

The script is given to ipxe.lkrn as its initrd, which makes iPXE run it
instead of its default autoboot, exactly as it runs when embedded (EMBED=).
Each test builds a private lab (tap + DHCP + HTTP in a network namespace),
boots one BIOS guest with known SMBIOS identity, and checks the console and
the HTTP request log.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lib.httpd import requests
from tests.lib.ipxe import (
    GUEST_MAC,
    HTTP_BASE,
    NIC_MODEL,
    console_lines,
    ipxe_argv,
    ipxe_network,
    require_ipxe_lkrn,
)
from tests.lib.qemu import Qemu, tap_nic_argv

pytestmark = [pytest.mark.qemu, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
RAMBOOT_IPXE = REPO / "board" / "common" / "ipxe" / "ramboot.ipxe"
BOOT_URL = f"{HTTP_BASE}/boot.ipxe"

# Identity the guest presents; the serial has characters that must be URI-escaped.
SMBIOS_SERIAL = "SN 42/a&b"
SMBIOS_UUID = "5a1e4b1c-0d2e-4f30-8a41-52b6c7d8e9f0"
SMBIOS_MANUFACTURER = "Acme Servers"
SMBIOS_PRODUCT = "RB-1000"
SMBIOS_ASSET = "ASSET-7"


def identity_argv() -> list[str]:
    return [
        "-uuid", SMBIOS_UUID,
        "-smbios", f"type=1,manufacturer={SMBIOS_MANUFACTURER},product={SMBIOS_PRODUCT},"
                   f"serial={SMBIOS_SERIAL.replace(',', ',,')}",
        "-smbios", f"type=3,asset={SMBIOS_ASSET}",
    ]


@dataclass
class Boot:
    vm: Qemu
    http_log: Path
    marker: str

    def lines(self) -> list[str]:
        return console_lines(self.vm.console_text())


def chained_script(marker: str) -> bytes:
    # Prints the marker and the query it was fetched with, then waits for the harness.
    return f"#!ipxe\necho {marker} query=@QUERY@\necho {marker} done\nsleep 60\n".encode()


BootFn = Callable[..., Boot]


@pytest.fixture
def boot_ramboot(tmp_path: Path) -> Iterator[BootFn]:
    """boot(lkrn=None, initrd=True, **ipxe_network kwargs) -> Boot, torn down after the test."""
    default_lkrn = require_ipxe_lkrn()
    with ExitStack() as stack:

        def boot(*, lkrn: Path | None = None, initrd: bool = True, **network: Any) -> Boot:
            marker = f"CHAINED-{secrets.token_hex(4)}"
            network.setdefault("files", {"boot.ipxe": chained_script(marker)})
            network.setdefault("http_expand_query", ["/boot.ipxe"])
            net = stack.enter_context(ipxe_network(tmp_path, **network))
            argv = ipxe_argv(lkrn or default_lkrn, tmp_path,
                             initrd=RAMBOOT_IPXE if initrd else None,
                             extra=[*tap_nic_argv(net.tap, mac=GUEST_MAC, model=NIC_MODEL),
                                    *identity_argv()])
            vm = stack.enter_context(Qemu(argv, tmp_path / "console.log", net.lab.ns))
            return Boot(vm, net.http_log, marker)

        yield boot


def assert_chained_with_identity(boot: Boot, *, timeout: float = 60) -> float:
    """Wait for the chained script's marker; check the query it got; return boot-to-chain s."""
    boot.vm.expect_exact(f"{boot.marker} done", timeout=timeout)
    seconds = boot.vm.elapsed
    sent = requests(boot.http_log)
    assert [r["path"] for r in sent] == ["/boot.ipxe"], sent
    query = {key: values[0] for key, values in sent[0]["query"].items()}
    assert query["mac"] == GUEST_MAC
    assert query["serial"] == SMBIOS_SERIAL  # parse_qs decoded what ramboot escaped
    assert query["uuid"] == SMBIOS_UUID
    assert query["manufacturer"] == SMBIOS_MANUFACTURER
    assert query["product"] == SMBIOS_PRODUCT
    assert query["asset"] == SMBIOS_ASSET
    assert query["platform"] == "pcbios"
    assert query["buildarch"] in ("i386", "x86_64")
    assert re.fullmatch(r"192\.0\.2\.\d+", query["ip"]), query
    assert query["ip"] == sent[0]["client"]  # the address it got is the one it used
    # The echoed query is the one logged: the chained script really ran.
    echoed = next(line for line in boot.lines() if line.startswith(boot.marker))
    assert echoed == f"{boot.marker} query={sent[0]['raw_query']}"
    return seconds


def test_option_224_from_dnsmasq_chains_with_identity(boot_ramboot: BootFn) -> None:
    boot = boot_ramboot(dhcp_options=[f"--dhcp-option-force=224,{BOOT_URL}"])
    seconds = assert_chained_with_identity(boot)
    print(f"boot-to-chain (dnsmasq): {seconds:.1f}s")


def test_option_224_from_kea_chains_with_identity(boot_ramboot: BootFn) -> None:
    boot = boot_ramboot(dhcp_server="kea", kea_option_224=BOOT_URL)
    seconds = assert_chained_with_identity(boot)
    print(f"boot-to-chain (kea): {seconds:.1f}s")


def fallback_boxes(lines: list[str]) -> list[tuple[str, str]]:
    """(round, reason) of every failure box on the console."""
    boxes = []
    for i, line in enumerate(lines):
        found = re.fullmatch(r"\* ramboot: NETWORK BOOT FAILED \(round (\d+)/(\d+)\)", line)
        if found:
            reason = lines[i + 1].removeprefix("* reason: ")
            boxes.append((f"{found[1]}/{found[2]}", reason))
    return boxes


def test_without_option_224_retries_then_returns_to_the_firmware(boot_ramboot: BootFn) -> None:
    boot = boot_ramboot()
    # exit 1 hands back to SeaBIOS, which moves on to its next boot device.
    boot.vm.expect(r"Booting from Hard Disk", timeout=120)
    lines = boot.lines()
    reason = "DHCP option 224 (boot script URL) is not set"
    assert fallback_boxes(lines) == [("1/3", reason), ("2/3", reason), ("3/3", reason)]
    assert any(line.startswith("ramboot: giving up") for line in lines)
    assert requests(boot.http_log) == []


@pytest.mark.parametrize("failure", ["404", "server-down"])
def test_failing_chain_is_retried_then_explained(boot_ramboot: BootFn, failure: str) -> None:
    if failure == "404":
        boot = boot_ramboot(dhcp_options=[f"--dhcp-option-force=224,{HTTP_BASE}/missing.ipxe"])
    else:
        boot = boot_ramboot(dhcp_options=[f"--dhcp-option-force=224,{BOOT_URL}"], http=False)
    boot.vm.expect(r"\* reason: could not chain", timeout=90)
    boot.vm.expect(r"ramboot: retrying from DHCP", timeout=10)
    lines = boot.lines()
    attempts = [line for line in lines if line.startswith("ramboot: chain attempt")]
    assert [a.split(":")[1].strip() for a in attempts] == [
        "chain attempt 1/3", "chain attempt 2/3", "chain attempt 3/3"]
    [(round_, reason)] = fallback_boxes(lines)
    assert round_ == "1/3"
    url = f"{HTTP_BASE}/missing.ipxe" if failure == "404" else BOOT_URL
    explained = rf"could not chain to {re.escape(url)} \(error ([0-9a-f]{{8}}), https://ipxe.org/\1\)"
    assert re.fullmatch(explained, reason), reason
    sent = requests(boot.http_log)
    if failure == "404":
        assert [(r["path"], r["status"]) for r in sent] == [("/missing.ipxe", 404)] * 3
        assert all(r["query"]["mac"] == [GUEST_MAC] for r in sent)
    else:
        assert sent == []


def embedded_lkrn(source: Path, script: Path, cache: Path) -> Path:
    """bin/ipxe.lkrn built from `source` with EMBED=`script`, cached by both hashes."""
    import fcntl
    import hashlib
    import shutil
    import subprocess

    commit = (source / "COMMIT").read_text().strip() if (source / "COMMIT").exists() else ""
    key = hashlib.sha256(script.read_bytes() + str(source.resolve()).encode() + commit.encode())
    target = cache / "ipxe-embed" / key.hexdigest()[:16] / "ipxe.lkrn"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (cache / "ipxe-embed" / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time in the shared source tree
        if not target.is_file():
            log = target.parent / "build.log"
            with log.open("w") as out:
                result = subprocess.run(
                    ["make", "-C", str(source / "src"), f"-j{min(2, os.cpu_count() or 1)}",
                     "bin/ipxe.lkrn", f"EMBED={script.resolve()}"],
                    stdout=out, stderr=subprocess.STDOUT, timeout=3600, check=False)
            if result.returncode != 0:
                raise AssertionError(f"iPXE build failed, see {log}:\n{log.read_text()[-3000:]}")
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source / "src" / "bin" / "ipxe.lkrn", tmp)
            tmp.rename(target)
    return target


@pytest.mark.slow
@pytest.mark.timeout(3900)
def test_embedded_build_chains_without_an_initrd(
    boot_ramboot: BootFn, ramboot_cache: Path
) -> None:
    source = os.environ.get("RAMBOOT_IPXE_SRC")
    if not source:
        pytest.skip("RAMBOOT_IPXE_SRC (an iPXE source tree) is not set")
    if not (Path(source) / "src" / "Makefile").is_file():
        pytest.fail(f"RAMBOOT_IPXE_SRC={source} is not an iPXE source tree (no src/Makefile)")
    lkrn = embedded_lkrn(Path(source), RAMBOOT_IPXE, ramboot_cache)
    boot = boot_ramboot(lkrn=lkrn, initrd=False,
                        dhcp_options=[f"--dhcp-option-force=224,{BOOT_URL}"])
    seconds = assert_chained_with_identity(boot)
    print(f"boot-to-chain (embedded build): {seconds:.1f}s")


def test_boot_script_that_returns_is_explained(boot_ramboot: BootFn) -> None:
    boot = boot_ramboot(files={"boot.ipxe": b"#!ipxe\necho boot script gives up\nexit 0\n"},
                        dhcp_options=[f"--dhcp-option-force=224,{BOOT_URL}"])
    boot.vm.expect(r"ramboot: retrying from DHCP", timeout=60)
    lines = boot.lines()
    assert "boot script gives up" in lines
    assert fallback_boxes(lines) == [
        ("1/3", f"the boot script {BOOT_URL} returned without booting")]
    assert len(requests(boot.http_log)) == 1  # a script that ran is not re-fetched


def test_stage1_disk_script_returns_to_the_firmware_at_once(boot_ramboot: BootFn) -> None:
    """A rendered stage 1 for a machine whose target is its disk: no retries, no
    failure box, straight to the firmware's next boot device."""
    from pathlib import Path as _Path

    from ramboot import targets
    from ramboot.inventory import parse_inventory

    inventory = parse_inventory(
        '[servers]\ntftp = "192.0.2.1"\nhttp_base = "http://192.0.2.1:8080"\n'
        '[network]\nsubnet = "192.0.2.0/24"\npool = ["192.0.2.100", "192.0.2.199"]\n'
        f'[[hosts]]\nname = "srv-disk"\nfamily = "x86_64"\nmacs = ["{GUEST_MAC}"]\n'
        'target = { kind = "disk", disk = { path = "/dev/sda" } }\n', _Path("fleet.toml"))
    (host,) = inventory.hosts
    stage1 = targets.stage1(inventory, host, provisioned=False)
    boot = boot_ramboot(files={"boot.ipxe": stage1.data},
                        dhcp_options=[f"--dhcp-option-force=224,{BOOT_URL}"])
    boot.vm.expect(r"Booting from Hard Disk", timeout=90)
    lines = boot.lines()
    assert "ramboot: srv-disk boots from its local disk (its target is its disk)" in lines
    assert "ramboot: the boot server sends this machine to its local disk" in lines
    assert fallback_boxes(lines) == []
    assert not any(line.startswith("ramboot: chain attempt 2") for line in lines)
    assert [r["path"] for r in requests(boot.http_log)] == ["/boot.ipxe"]
