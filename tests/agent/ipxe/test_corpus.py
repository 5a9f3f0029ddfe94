"""Real-world boot scripts (tests/agent/ipxe/corpus/<system>/, each rendered from
its upstream template: see its header) served over real HTTP with stand-in
images, run by the agent to the outcome real iPXE reaches with them.

Every URL a script names, whatever its host, is served by one loopback
server (HostFetcher): the stand-in behind each URL carries that URL, so a
test can tell exactly which kernel and initrds were booted. The same tree
(tests.lib.httpd's vhost layout) and stand-ins serve real iPXE in
test_corpus_ipxe.py.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe import Outcome
from ramboot_agent.ipxe.interpreter import Interpreter
from ramboot_agent.ipxe.settings import build_settings
from tests.lib import kernels, x86_stubs
from tests.lib.httpd import vhost_path

from .conftest import CORPUS, Fetched, LoopbackFetcher, Recorder

MAC = "52:54:00:a1:b2:c3"
UUID = "8a5c4a8e-0bd6-4e8b-9f55-4a1f3b5d2c10"
# A PC BIOS machine on the lab network; gateway and DNS on loopback so that
# Foreman's `ping ${netX/gateway}` really pings something.
PC = {"mac": MAC, "ip": "192.0.2.50", "uuid": UUID, "serial": "S1", "manufacturer": "QEMU",
      "product": "Standard PC", "hostname": "n1", "buildarch": "x86_64", "platform": "pcbios"}
LEASE = {1: bytes([255, 255, 255, 0]), 3: bytes([127, 0, 0, 1]), 6: bytes([127, 0, 0, 1]),
         15: b"example.test", 54: bytes([192, 0, 2, 1])}


def local_path(url: str) -> str:
    """Where the loopback server keeps `url`: host_port/path, @query-hash for a query."""
    parts = urlsplit(url)
    return vhost_path(parts.hostname or "", parts.port or 80, parts.path, parts.query)


class HostFetcher(LoopbackFetcher):
    """Fetches http URLs of any host from the loopback server (see local_path)."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.asked: list[str] = []

    def fetch_file(self, url: str, dest_dir: Path, **kwargs: Any) -> Fetched:
        self.asked.append(url)
        if url.startswith("http://"):
            fetched = super().fetch_file(f"{self.base}/{local_path(url)}", dest_dir, **kwargs)
            return Fetched(url, fetched.data, fetched.path, fetched.size, fetched.sha256,
                           fetched.seconds)
        return super().fetch_file(url, dest_dir, **kwargs)


def stand_in_kernel(url: str) -> bytes:
    # A bzImage that real iPXE boots too: it halts and leaves what it got in memory.
    return x86_stubs.kernel(url.encode(), size=8192)


def stand_in_initrd(url: str) -> bytes:
    return b"070701" + url.encode() + b"\0" * 64


@dataclass
class Case:
    script: str  # corpus path
    url: str  # where it is served
    expect: Outcome
    identity: dict[str, str] = field(default_factory=lambda: dict(PC))
    lease: dict[int, bytes] = field(default_factory=lambda: dict(LEASE))
    overrides: dict[str, str] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)  # url -> corpus path
    kernel: str | None = None  # url of the stand-in kernel booted
    initrds: list[str] = field(default_factory=list)  # urls of the stand-in initrds, in order
    cmdline: str | None = None
    drive: int | None = None  # LOCALBOOT by sanboot
    status: int | None = None  # LOCALBOOT by exit
    lines: list[str] | None = None  # printed, in a row ([]: nothing; None: not checked)
    extra: Callable[[Path, str], None] | None = None  # publishes more files


N = "http://192.0.2.1:8080"
DEB = ("http://deb.debian.org/debian/dists/trixie/main/installer-amd64/current/images/netboot/"
       "debian-installer/amd64")
CENTOS = "http://mirror.centos.org/centos/7/os/x86_64/images/pxeboot"
BUSTER = ("http://ftp.debian.org/debian/dists/buster/main/installer-amd64/current/images/netboot/"
          "debian-installer/amd64")
MAAS = "http://192.0.2.1:5248/images/ubuntu/amd64/ga-24.04/noble/stable"
FCOS = "http://192.0.2.1:8080/assets/fedora-coreos/fedora-coreos-36.20220906.3.2-live"
TINK = "http://location:8080/to/kernel/and/initrd"
WW = "http://192.0.2.1:9873"
WW_Q = f"{MAC}?assetkey=&uuid={UUID}"
PIXIE = f"{N}/_/file?name=file%3A%2F%2F%2Fsrv%2F{{}}&type={{}}&mac=52%3A54%3A00%3Aa1%3Ab2%3Ac3"


def _deb_md5(name: str) -> str:
    data = stand_in_kernel(f"{DEB}/linux") if name == "linux" else stand_in_initrd(
        f"{DEB}/initrd.gz")
    return hashlib.md5(data).hexdigest()


def _warewulf_gz(root: Path, base: str) -> None:
    # Warewulf's EFI path: imgextract of gzip-compressed overlays.
    for name in ("image", "system", "runtime"):
        url = f"{WW}/{name}/{WW_Q}&compress=gz"
        target = root / local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(stand_in_initrd(url)))


CASES = {
    # netboot.xyz: with ${menu} unset `--default ${menu}` is an empty default;
    # nobody chooses, so its highlighted first item wins: local, "exit 1".
    "netbootxyz-menu": Case(
        "netbootxyz/menu.ipxe", f"{N}/menu.ipxe", Outcome.LOCALBOOT, status=1,
        scripts={f"{N}/boot.cfg": "netbootxyz/boot.cfg"}),
    # ... and with ${menu} preset to an entry the menu lacks, choose takes its
    # first item (local): "exit 1" again.
    "netbootxyz-menu-preset": Case(
        "netbootxyz/menu.ipxe", f"{N}/menu.ipxe", Outcome.LOCALBOOT, status=1,
        overrides={"menu": "debian"}, scripts={f"{N}/boot.cfg": "netbootxyz/boot.cfg"}),
    # Its Debian installer entry: initrd=initrd.magic names nothing, md5sum prints.
    "netbootxyz-debian": Case(
        "netbootxyz/debian.ipxe", f"{N}/debian.ipxe", Outcome.BOOTED,
        overrides={"menu": "debian", "type": "text", "arch": "x86_64", "space": " ",
                   "debian_mirror": "http://deb.debian.org", "debian_base_dir": "debian",
                   "cmdline": "console=ttyS0"},
        kernel=f"{DEB}/linux", initrds=[f"{DEB}/initrd.gz"],
        cmdline="  mirror/suite=trixie initrd=initrd.magic console=ttyS0",
        lines=["", "MD5sums:", f"{_deb_md5('linux')}  linux",
               f"{_deb_md5('initrd.gz')}  initrd.gz"]),
    "ironic-deploy": Case(
        "ironic/boot.ipxe", f"{N}/boot.ipxe", Outcome.BOOTED,
        scripts={f"{N}/pxelinux.cfg/52-54-00-a1-b2-c3": "ironic/ipxe_config-deploy.ipxe"},
        kernel=f"{N}/1be26c0b/deploy_kernel", initrds=[f"{N}/1be26c0b/deploy_ramdisk"],
        cmdline=("selinux=0 troubleshoot=0 text nofb nomodeset "
                 "systemd.journald.forward_to_console=yes ipa-insecure=1 BOOTIF=52:54:00:a1:b2:c3 "
                 "initrd=deploy_ramdisk"),
        lines=["Attempting to boot from MAC 52-54-00-a1-b2-c3"]),
    "ironic-whole-disk": Case(
        "ironic/boot.ipxe", f"{N}/boot.ipxe", Outcome.LOCALBOOT, drive=0x80,
        scripts={f"{N}/pxelinux.cfg/52-54-00-a1-b2-c3": "ironic/ipxe_config-whole-disk.ipxe"}),
    "foreman-local-boot": Case("foreman/local-boot.ipxe", f"{N}/iPXE", Outcome.LOCALBOOT,
                               status=1, lines=[]),
    "foreman-global-default": Case(
        "foreman/global-default.ipxe", f"{N}/iPXE", Outcome.LOCALBOOT, status=1,
        lines=["Opening global default menu in 15 seconds..."]),
    "foreman-kickstart": Case(
        "foreman/kickstart.ipxe", f"{N}/iPXE", Outcome.BOOTED,
        kernel=f"{CENTOS}/vmlinuz", initrds=[f"{CENTOS}/initrd.img"],
        cmdline=("initrd=initrd.img network ksdevice=bootif ks.device=bootif "
                 "BOOTIF=01-00-f0-54-1a-7e-e0 ks=http://foreman.example.com/unattended/provision "
                 "kssendmac ks.sendmac ip=dhcp fips=1"),
        lines=["Trying to ping Gateway: 127.0.0.1", "64 bytes from 127.0.0.1: seq=1",
               "Trying to ping DNS: 127.0.0.1", "64 bytes from 127.0.0.1: seq=1",
               "vmlinuz : 8192 bytes [bzImage] [SELECTED] \"initrd=initrd.img network "
               "ksdevice=bootif ks.device=bootif BOOTIF=01-00-f0-54-1a-7e-e0 "
               "ks=http://foreman.example.com/unattended/provision kssendmac ks.sendmac ip=dhcp "
               "fips=1\"", f"initrd.img : {len(stand_in_initrd(f'{CENTOS}/initrd.img'))} bytes"]),
    # initrd=initrd.img while the initrd is initrd.gz: every loaded initrd, as BIOS iPXE.
    "foreman-preseed": Case(
        "foreman/preseed-debian.ipxe", f"{N}/iPXE", Outcome.BOOTED,
        kernel=f"{BUSTER}/linux", initrds=[f"{BUSTER}/initrd.gz"]),
    "foreman-intermediate": Case(
        "foreman/intermediate.ipxe", f"{N}/iPXE", Outcome.BOOTED,
        scripts={f"http://foreman.example.com/unattended/iPXE?mac={MAC}":
                 "foreman/kickstart.ipxe"},
        kernel=f"{CENTOS}/vmlinuz", initrds=[f"{CENTOS}/initrd.img"]),
    "maas-local": Case(
        "maas/ipxe.cfg", f"{N}/ipxe.cfg", Outcome.LOCALBOOT, drive=0x80,
        overrides={"next-server": "192.0.2.1"},
        scripts={f"http://192.0.2.1:5248/ipxe.cfg-{MAC}": "maas/config.local.ipxe"}),
    # No per-MAC config (404): the default one, MAAS's commissioning boot.
    "maas-commissioning": Case(
        "maas/ipxe.cfg", f"{N}/ipxe.cfg", Outcome.BOOTED,
        overrides={"next-server": "192.0.2.1"},
        scripts={"http://192.0.2.1:5248/ipxe.cfg-default-amd64": "maas/config.commissioning.ipxe"},
        kernel=f"{MAAS}/boot-kernel", initrds=[f"{MAAS}/boot-initrd"]),
    "maas-poweroff": Case("maas/config.poweroff.ipxe", f"{N}/p.ipxe", Outcome.POWEROFF),
    "matchbox": Case(
        "matchbox/boot.ipxe", f"{N}/boot.ipxe", Outcome.BOOTED,
        scripts={f"{N}/ipxe?uuid={UUID}&mac=52-54-00-a1-b2-c3&domain=example.test&hostname=n1"
                 "&serial=S1&arch=x86_64": "matchbox/ipxe.ipxe"},
        kernel=f"{FCOS}-kernel-x86_64", initrds=[f"{FCOS}-initramfs.x86_64.img"]),
    "tinkerbell": Case(
        "tinkerbell/auto.ipxe", f"{N}/auto.ipxe", Outcome.BOOTED,
        kernel=f"{TINK}/vmlinuz-x86_64", initrds=[f"{TINK}/initramfs-x86_64"],
        lines=["Loading the Tinkerbell Hook iPXE script..."]),
    "pixiecore": Case(
        "pixiecore/boot.ipxe", f"{N}/boot.ipxe", Outcome.BOOTED,
        lease={**LEASE, 67: f"{N}/_/ipxe?arch=0&mac={MAC}".encode()},
        scripts={f"{N}/_/ipxe?arch=0&mac={MAC}": "pixiecore/ipxe-script.ipxe"},
        kernel=PIXIE.format("vmlinuz", "kernel"), initrds=[PIXIE.format("initrd.img", "initrd")],
        cmdline="initrd=initrd0 console=ttyS0 ip=dhcp"),
    "sidero": Case(
        "sidero/boot.ipxe", f"{N}/boot.ipxe", Outcome.BOOTED,
        scripts={f"http://192.0.2.1:8081/ipxe?uuid={UUID}&mac=52-54-00-a1-b2-c3"
                 "&domain=example.test&hostname=n1&serial=S1&arch=x86_64": "sidero/ipxe.ipxe"},
        kernel="http://192.0.2.1:8081/env/default/vmlinuz-amd64",
        initrds=["http://192.0.2.1:8081/env/default/initramfs-amd64.xz"]),
    "sidero-disk-exit": Case("sidero/boot-from-disk-exit.ipxe", f"{N}/x.ipxe",
                             Outcome.LOCALBOOT, status=0),
    "sidero-disk-sanboot": Case("sidero/boot-from-disk-sanboot.ipxe", f"{N}/x.ipxe",
                                Outcome.LOCALBOOT, drive=0x80),
    "cobbler-profile": Case(
        "cobbler/profile.ipxe", "http://192.0.2.1/cblr/svc/op/ipxe/profile/fake",
        Outcome.BOOTED, kernel="http://192.0.2.1/images/fake/vmlinuz",
        initrds=["http://192.0.2.1/images/fake/initramfs"], cmdline=""),
    "cobbler-local": Case("cobbler/system-local.ipxe", "http://192.0.2.1/cblr/svc/op/ipxe/system/a",
                          Outcome.LOCALBOOT, drive=0x80),
    "cobbler-local-hp": Case(
        "cobbler/system-local.ipxe", "http://192.0.2.1/cblr/svc/op/ipxe/system/a",
        Outcome.LOCALBOOT, status=0, identity={**PC, "manufacturer": "HP"}),
    "cobbler-menu": Case("cobbler/menu.ipxe", "http://192.0.2.1/cblr/svc/op/ipxe/menu",
                         Outcome.LOCALBOOT, drive=0x80),
    "harvester": Case(
        "harvester/ipxe-create.ipxe", f"{N}/ipxe-create", Outcome.BOOTED,
        kernel=f"{N}/harvester/harvester-vmlinuz-amd64",
        initrds=[f"{N}/harvester/harvester-initrd-amd64"]),
    "warewulf-bios": Case(
        "warewulf/default.ipxe", f"{WW}/ipxe/{MAC}", Outcome.BOOTED,
        kernel=f"{WW}/kernel/{WW_Q}",
        initrds=[f"{WW}/{name}/{WW_Q}&compress=gz" for name in ("image", "system", "runtime")],
        cmdline="initrd=image initrd=system initrd=runtime wwid=52:54:00:a1:b2:c3 quiet "
                "crashkernel=no"),
    "warewulf-efi": Case(
        "warewulf/default.ipxe", f"{WW}/ipxe/{MAC}", Outcome.BOOTED,
        identity={**PC, "platform": "efi"}, extra=_warewulf_gz,
        kernel=f"{WW}/kernel/{WW_Q}",
        initrds=[f"{WW}/{name}/{WW_Q}&compress=gz" for name in ("image", "system", "runtime")]),
    "warewulf-localdisk": Case("warewulf/localdisk.ipxe", f"{WW}/ipxe/{MAC}", Outcome.LOCALBOOT,
                               drive=0x80),
}


def publish(root: Path, case: Case) -> None:
    """The case's scripts and stand-ins under their vhost paths (tests.lib.httpd)."""
    def put(url: str, data: bytes) -> None:
        target = root / local_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(data)

    for url, corpus in {case.url: case.script, **case.scripts}.items():
        put(url, (CORPUS / corpus).read_bytes())
    if case.extra is not None:
        case.extra(root, N)
    if case.kernel:
        put(case.kernel, stand_in_kernel(case.kernel))
    for url in case.initrds:
        put(url, stand_in_initrd(url))


def _run(case: Case, tmp_path: Path, base: str) -> tuple[Any, Recorder, list[str]]:
    settings = build_settings(case.identity, case.lease, case.overrides)
    recorder = Recorder()
    out: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None:
            pass

    interpreter = Interpreter(settings, HostFetcher(base), recorder.boot, recorder, Out(),  # type: ignore[arg-type]
                              download_dir=tmp_path / "downloads", sleep=recorder.sleeps.append,
                              cpu_flags=frozenset({"lm"}))
    result = interpreter.run_url(case.url)
    return result, recorder, "".join(out).splitlines()


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_script_reaches_the_ipxe_outcome(name: str, tmp_path: Path,
                                                http_root: tuple[Path, str]) -> None:
    case = CASES[name]
    root, base = http_root
    publish(root, case)
    result, recorder, lines = _run(case, tmp_path, base)
    assert result.outcome is case.expect, lines
    if case.expect is Outcome.BOOTED:
        spec = recorder.boots[0]
        assert spec.kernel.read_bytes() == stand_in_kernel(case.kernel or "")
        assert [p.read_bytes() for p in spec.initrds] == [stand_in_initrd(u) for u in case.initrds]
        if case.cmdline is not None:
            assert spec.cmdline == case.cmdline
    if case.expect is Outcome.LOCALBOOT:
        assert result.localboot is not None
        assert (result.localboot.drive, result.localboot.status) == (case.drive, case.status)
    if case.lines == []:
        assert lines == []
    elif case.lines is not None:
        assert _contains(lines, case.lines), lines


def _contains(lines: list[str], part: list[str]) -> bool:
    return any(lines[i:i + len(part)] == part for i in range(len(lines) - len(part) + 1))


def test_warewulf_localdisk_on_efi_fails_at_sleep_10s_as_ipxe_does(
        tmp_path: Path, http_root: tuple[Path, str]) -> None:
    # `sleep 10s` is not an integer for iPXE's parse_integer: the script dies
    # there, before its `exit 1`.
    root, base = http_root
    case = Case("warewulf/localdisk.ipxe", f"{WW}/ipxe/{MAC}", Outcome.EXITED,
                identity={**PC, "platform": "efi"})
    publish(root, case)
    with pytest.raises(ScriptError) as error:
        _run(case, tmp_path, base)
    assert "sleep" in error.value.message and "10s" in error.value.message


def test_every_corpus_file_names_its_source() -> None:
    systems = set()
    for path in CORPUS.rglob("*"):
        if path.is_file() and path.parent != CORPUS:
            head = path.read_text().splitlines()[1:5]
            assert [line.split(":")[0] for line in head] == [
                "# ramboot corpus", "# repository", "# path", "# commit"], path
            assert len(head[3].split()[-1]) == 40, path
            systems.add(path.parent.name)
    assert len(systems) >= 8, systems
    used = {case.script for case in CASES.values()} | {
        script for case in CASES.values() for script in case.scripts.values()}
    unused = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()
              and p.parent != CORPUS} - used
    assert unused == set()


def test_seed_rpi_ipxe_chains_option_224(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    (root / "next.ipxe").write_text("#!ipxe\necho uefi is ${uefi}\nkernel Image quiet\nboot\n")
    kernel = kernels.bzimage(b"rpi")
    (root / "Image").write_bytes(kernel)
    harness = make_harness({"platform": "efi", "mac": MAC, "buildarch": "x86_64"},
                           {224: f"{base}/next.ipxe?serial=1234".encode()})
    result = harness.run((CORPUS / "rpi.ipxe").read_text())
    assert harness.fetcher.urls[0] == f"{base}/next.ipxe?serial=1234&uefi=true"
    assert harness.lines == ["uefi is true"]
    assert result.outcome is Outcome.BOOTED
    assert harness.recorder.boots[0].kernel.read_bytes() == kernel
    assert "next.ipxe" not in [image.name for image in harness.interpreter.images]


def test_seed_rpi_ipxe_without_option_224(make_harness: Any) -> None:
    # The seed tests `isset 224` (the word), not `isset ${224}`: as in iPXE it
    # chains "&uefi=false", fails, prints its box and ends with `exit 0`.
    harness = make_harness({"platform": "pcbios"}, overrides={"12": "node"})
    result = harness.run((CORPUS / "rpi.ipxe").read_text())
    assert result.outcome is Outcome.LOCALBOOT and result.localboot is not None
    assert result.localboot.status == 0
    assert harness.fetcher.urls == ["file:///srv/&uefi=false"]
    assert harness.lines[1] == "* Error chaining to "
    assert harness.recorder.sleeps == [10]


def test_stand_in_helpers_are_distinct() -> None:
    assert shutil.which("true") is not None  # the module imports what it uses
    assert stand_in_kernel("a") != stand_in_kernel("b")
