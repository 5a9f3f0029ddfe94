"""Real-world script styles (Tinkerbell, matchbox, netboot.xyz, the seed's
rpi.ipxe) run against a real HTTP server on 127.0.0.1 to the expected boot."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe import Outcome

from .conftest import CORPUS

MAC = "52:54:00:12:34:56"
UUID = "8a5c4a8e-0bd6-4e8b-9f55-4a1f3b5d2c10"


def _publish(root: Path, *names: str) -> None:
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / name, target)


def _blob(root: Path, name: str) -> bytes:
    data = f"blob {name}\n".encode()
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
    return data


def test_seed_rpi_ipxe_chains_option_224(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    (root / "next.ipxe").write_text("#!ipxe\necho uefi is ${uefi}\nkernel Image quiet\nboot\n")
    kernel = _blob(root, "Image")
    harness = make_harness({"platform": "efi", "mac": MAC},
                           {224: f"{base}/next.ipxe?serial=1234".encode()})
    result = harness.run((CORPUS / "rpi.ipxe").read_text())
    assert harness.fetcher.urls[0] == f"{base}/next.ipxe?serial=1234&uefi=true"
    assert harness.lines == ["uefi is true"]
    assert result.outcome is Outcome.BOOTED
    assert harness.recorder.boots[0].kernel.read_bytes() == kernel
    # --autofree: the chained script is gone from the registry afterwards
    assert "next.ipxe" not in [image.name for image in harness.interpreter.images]


def test_seed_rpi_ipxe_without_option_224(make_harness: Any) -> None:
    # The seed tests `isset 224` (the word, always set), not `isset ${224}`:
    # as in iPXE, it goes on to chain "&uefi=false", which fails.
    harness = make_harness({"platform": "pcbios"}, overrides={"12": "node"})
    result = harness.run((CORPUS / "rpi.ipxe").read_text())
    assert result.outcome is Outcome.EXITED
    assert harness.fetcher.urls == ["file:///srv/&uefi=false"]
    assert harness.lines[1] == "* Error chaining to "
    assert harness.recorder.sleeps == [10]


def test_seed_rpi_ipxe_chain_error(make_harness: Any, http_root: Any) -> None:
    _, base = http_root
    harness = make_harness({"platform": "pcbios"}, {224: f"{base}/absent.ipxe".encode()})
    harness.run((CORPUS / "rpi.ipxe").read_text())
    assert harness.lines[1] == f"* Error chaining to {base}/absent.ipxe"


def test_tinkerbell_auto_ipxe(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _publish(root, "tinkerbell-auto.ipxe")
    kernel = _blob(root, "assets/vmlinuz-x86_64")
    initrd = _blob(root, "assets/initramfs-x86_64")
    harness = make_harness({"mac": MAC}, {224: b"x"})
    result = harness.interpreter.run_url(f"{base}/tinkerbell-auto.ipxe")
    spec = result.boot
    assert spec.kernel.read_bytes() == kernel
    assert [p.read_bytes() for p in spec.initrds] == [initrd]
    assert f"worker_id={MAC} hw_addr={MAC}" in spec.cmdline
    assert spec.cmdline.startswith("tink_worker_image=quay.io/tinkerbell/tink-worker:latest ")
    assert spec.cmdline.endswith("initrd=initramfs-x86_64 console=tty0 console=ttyS0,115200")


def test_matchbox_two_stage(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _publish(root, "matchbox-boot.ipxe")
    # matchbox answers /ipxe?uuid=..&mac=.. with the machine's script
    (root / "ipxe").write_text((CORPUS / "matchbox-ipxe").read_text())
    kernel = _blob(root, "assets/vmlinuz")
    initrd = _blob(root, "assets/initramfs.img")
    harness = make_harness({"mac": MAC, "uuid": UUID, "serial": "S1", "hostname": "n1"},
                           {15: b"example.test"})
    result = harness.interpreter.run_url(f"{base}/matchbox-boot.ipxe")
    assert harness.fetcher.urls[1] == (f"{base}/ipxe?uuid={UUID}&mac=52-54-00-12-34-56"
                                       "&domain=example.test&hostname=n1&serial=S1")
    assert result.boot.kernel.read_bytes() == kernel
    assert [p.read_bytes() for p in result.boot.initrds] == [initrd]
    assert "mac=52-54-00-12-34-56 coreos.first_boot=yes" in result.boot.cmdline


def test_netbootxyz_menu(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _publish(root, "netbootxyz-menu.ipxe", "linux/debian.ipxe")
    kernel = _blob(root, "debian/linux-x86_64")
    initrd = _blob(root, "debian/initrd-x86_64.gz")
    harness = make_harness({"mac": MAC, "platform": "efi", "buildarch": "x86_64"})
    result = harness.interpreter.run_url(f"{base}/netbootxyz-menu.ipxe")
    assert harness.lines == ["chosen linux", "Debian installer for x86_64 from ../debian"]
    assert result.boot.kernel.read_bytes() == kernel
    assert [p.read_bytes() for p in result.boot.initrds] == [initrd]
    assert result.boot.cmdline == ("priority=critical auto=true "
                                   "url=http://preseed.example/52-54-00-12-34-56.cfg")


def test_netbootxyz_menu_retries_then_fails(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _publish(root, "netbootxyz-menu.ipxe")  # linux/debian.ipxe missing: chain fails
    harness = make_harness({"platform": "pcbios"})
    with pytest.raises(ScriptError) as error:
        harness.interpreter.run_url(f"{base}/netbootxyz-menu.ipxe")
    assert harness.lines == ["chosen linux", "retry 1", "retry 2", "giving up"]
    assert error.value.url.endswith("netbootxyz-menu.ipxe") and error.value.line == 41
