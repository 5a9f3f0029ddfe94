"""The real-world corpus in real iPXE: each script reaches the same outcome there and in the agent.

test_corpus.py checks each corpus script's outcome in the agent against
what reading iPXE's source says it is. Here the same scripts run in real
iPXE (the reference build of the iPXE that ramboot ships, tests/lib/ipxe.py
require_reference_lkrn) and in the agent (`ramboot-agent run-script`), side
by side, against the same servers in one lab namespace: dnsmasq (DHCP with
a fixed lease, DNS for the scripts' host names), one HTTP server on every
port the scripts name, serving the same stand-in tree as test_corpus.py
(tests.lib.httpd vhost layout). Per case:

* booted: the kernel real iPXE booted is a stub (tests.lib.x86_stubs) that
  halts at once; its setup header in guest memory (read with QMP) gives the
  command line and the initrd memory exactly as iPXE handed them over. The
  agent's dry-run plan must name the same kernel and command line, and its
  initrds, laid out as its kexec lays them out, must be byte for byte that
  memory;
* local boot: `sanboot` makes iPXE boot the guest's disk, whose stub MBR
  prints the BIOS drive: the agent must name that drive. `exit N` returns
  to the driver script with status N: the agent's local-boot status;
* power off: QEMU exits; the agent asks to power off.

Both must also have fetched the same URLs in the same order (the HTTP log,
told apart by client address).

One QEMU runs every case of a machine: the guest is reset between cases
(tests/lib/ipxe_boots.py), so nothing one script set leaks into the next.
Menus without a timeout (or with a long one) get an Enter once drawn: the
agent takes the highlighted item at once, as that Enter does. Left out:
warewulf-efi (UEFI only; this is the BIOS iPXE) and the Pi seed rpi.ipxe
(test_corpus.py covers both).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.ipxe import Outcome
from tests.lib import httpd, ipxe, netlab, run_script
from tests.lib.ipxe_boots import GuestMachine, IpxeGuest, chain_and_report
from tests.lib.ipxe_boots import Outcome as IpxeOutcome
from tests.lib.run_script import AgentRun

from .test_corpus import CASES, UUID, Case, publish, stand_in_initrd, stand_in_kernel

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

SERVER = netlab.SERVER_IP
GUEST_IP = "192.0.2.50"
PORTS = (80, 8080, 5248, 8081, 9873)
DNS = dict.fromkeys(("deb.debian.org", "ftp.debian.org", "mirror.centos.org",
                     "foreman.example.com", "matchbox.example.com", "location",
                     "location.example.test"), SERVER)
# The lease dnsmasq gives the guest, as the agent is told it (--set).
LEASE = {"ip": GUEST_IP, "1": "255.255.255.0", "3": SERVER, "6": SERVER, "12": "n1",
         "15": "example.test", "54": SERVER, "next-server": SERVER}
DNSMASQ = [f"--dhcp-host={ipxe.GUEST_MAC},{GUEST_IP},n1", "--domain=example.test",
           f"--dhcp-option=3,{SERVER}"]
# The guest as iPXE sees it: the lkrn is a 32-bit BIOS build.
IDENTITY = {"mac": ipxe.GUEST_MAC, "uuid": UUID, "serial": "S1", "manufacturer": "QEMU",
            "product": "Standard PC", "buildarch": "i386", "platform": "pcbios"}
ENTER = "\r"


@dataclass(frozen=True)
class IpxeCase:
    name: str
    case: Case
    keys: tuple[tuple[str, str], ...] = ()  # (console regex, what to type)


def _bios(name: str, *, keys: tuple[tuple[str, str], ...] = (),
          overrides: dict[str, str] | None = None) -> IpxeCase:
    """CASES[name] as the 32-bit BIOS guest meets it (${buildarch} is i386)."""
    case = CASES[name]
    scripts = {url.replace("arch=x86_64", "arch=i386"): path for url, path in case.scripts.items()}
    return IpxeCase(name, dataclasses.replace(
        case, scripts=scripts, overrides={**case.overrides, **(overrides or {})}), keys)


def _menu(title: str) -> tuple[str, str]:
    return (re.escape(title), ENTER)


PIXIECORE_SCRIPT = "http://192.0.2.1:8080/_/ipxe?arch=0&mac=52:54:00:a1:b2:c3"
IPXE_CASES = [
    # Its main menu waits 300 s; ${menu} unset is an empty --default.
    _bios("netbootxyz-menu", keys=(_menu("netboot.xyz v"),)),
    _bios("netbootxyz-menu-preset", keys=(_menu("netboot.xyz v"),)),
    _bios("netbootxyz-debian", keys=(_menu("Debian - amd64"), _menu("Debian [trixie] Installer"))),
    _bios("ironic-deploy"),
    _bios("ironic-whole-disk"),
    _bios("foreman-local-boot"),
    _bios("foreman-global-default", keys=(_menu("iPXE global boot menu"),)),
    _bios("foreman-kickstart"),
    _bios("foreman-preseed"),
    _bios("foreman-intermediate"),
    _bios("maas-local"),
    _bios("maas-commissioning"),
    _bios("matchbox"),
    _bios("tinkerbell"),
    # pixiecore's ProxyDHCP gives the script's URL as the boot file name.
    _bios("pixiecore", overrides={"filename": PIXIECORE_SCRIPT}),
    _bios("sidero"),
    _bios("sidero-disk-exit"),
    _bios("sidero-disk-sanboot"),
    _bios("cobbler-profile"),
    _bios("cobbler-local"),
    _bios("cobbler-menu", keys=(_menu("Cobbler | https://cobbler.github.io"),)),
    _bios("harvester"),
    _bios("warewulf-bios"),
    _bios("warewulf-localdisk"),
    _bios("maas-poweroff"),  # last: QEMU exits
]
# A second machine: Cobbler's local boot branches on the SMBIOS manufacturer.
HP_CASES = [_bios("cobbler-local-hp")]
LEFT_OUT = {"warewulf-efi": "UEFI only: the reference iPXE is the BIOS ipxe.lkrn"}


def driver_script(case: Case, token: str) -> str:
    """Sets the case's overrides (exact bytes: hex, then string) and chains its script."""
    lines = ["#!ipxe", f"echo RB-CASE-{token} {case.script}"]
    for name, value in case.overrides.items():
        lines += [f"set {name}:hex {value.encode().hex(':')}", f"set {name} ${{{name}:string}}"]
    lines.append(chain_and_report(case.url, token))
    return "\n".join(lines) + "\n"


def unpublish(root: Path) -> None:
    """Empty the served tree (the next case publishes its own)."""
    for host in root.iterdir():
        for path in sorted(host.rglob("*"), reverse=True):
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                path.rmdir()


@dataclass
class Result:
    ipxe: IpxeOutcome
    agent: AgentRun
    ipxe_requests: list[str]
    agent_requests: list[str]


def _requests(entries: list[dict[str, Any]], client: str) -> list[str]:
    """host:port/path?query of each request from `client` (the driver script left out)."""
    seen = []
    for entry in entries:
        if entry["client"] == client and entry["path"] != "/rb-driver.ipxe":
            host = entry["host"].partition(":")[0]
            query = f"?{entry['raw_query']}" if entry["raw_query"] else ""
            seen.append(f"{host}:{entry['port']}{entry['path']}{query}")
    return seen


def _run_machine(cases: list[IpxeCase], machine: GuestMachine, workdir: Path,
                 lkrn: Path) -> dict[str, Result]:
    """Each case in the agent and, meanwhile, in one iPXE guest reset between cases."""
    results: dict[str, Result] = {}
    workdir.mkdir(parents=True)
    root = workdir / "http"
    with ipxe.ipxe_network(workdir, dhcp_options=DNSMASQ, dns=DNS,
                           http_also_ports=[p for p in PORTS if p != ipxe.HTTP_PORT],
                           vhosts=True) as net, \
            IpxeGuest(net, workdir, lkrn, machine, http_root=root) as guest:
        for item in cases:
            case = item.case
            unpublish(root)
            publish(root, case)
            start = len(httpd.requests(net.http_log))
            agent = run_script.start(net.lab.ns, case.url, {**IDENTITY, **_identity(machine),
                                                       **LEASE, **case.overrides})
            token = secrets.token_hex(4)
            try:
                outcome = guest.run(driver_script(case, token), token=token, keys=item.keys)
            finally:
                agent_run = run_script.finish(agent)
            log = httpd.requests(net.http_log)[start:]
            results[item.name] = Result(outcome, agent_run, _requests(log, GUEST_IP),
                                        _requests(log, SERVER))
    return results


def _identity(machine: GuestMachine) -> dict[str, str]:
    return {"manufacturer": machine.manufacturer, "product": machine.product,
            "serial": machine.serial, "uuid": machine.uuid}


@pytest.fixture(scope="module")
def corpus_in_ipxe(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Result]]:
    """Every selected case's result (`-k name` runs one case, in one short QEMU run)."""
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_reference_lkrn()
    test_name = test_corpus_script_in_real_ipxe_and_in_the_agent.__name__
    selected = {test.callspec.params["item"].name for test in request.session.items
                if isinstance(test, pytest.Function) and test.originalname == test_name}
    workdir = tmp_path_factory.mktemp("corpus-ipxe")
    results: dict[str, Result] = {}
    for cases, machine, name in ((IPXE_CASES, GuestMachine(UUID), "pc"),
                                 (HP_CASES, GuestMachine(UUID, manufacturer="HP"), "hp")):
        chosen = [item for item in cases if item.name in selected]
        if chosen:
            results.update(_run_machine(chosen, machine, workdir / name, lkrn))
    print("seconds in iPXE per case:", {name: round(r.ipxe.seconds, 1)
                                         for name, r in results.items()})
    yield results


def _shas(urls: list[str], stand_in: Any) -> list[str]:
    return [hashlib.sha256(stand_in(url)).hexdigest() for url in urls]


def _readable(memory: bytes) -> list[str]:
    return [run.decode() for run in re.findall(rb"[\x20-\x7e]{6,}", memory)]


@pytest.mark.parametrize("item", IPXE_CASES + HP_CASES, ids=lambda item: item.name)
def test_corpus_script_in_real_ipxe_and_in_the_agent(
        item: IpxeCase, corpus_in_ipxe: dict[str, Result], tmp_path: Path) -> None:
    result = corpus_in_ipxe[item.name]
    case, got, agent = item.case, result.ipxe, result.agent
    where = (f"iPXE: {got.describe()}\n{chr(10).join(got.lines[-25:])}\n"
             f"agent (exit {agent.status}):\n{agent.stdout[-2000:]}\n{agent.stderr[-2000:]}")
    if case.expect is Outcome.BOOTED:
        assert got.kind == "kernel" and got.boot is not None, where
        assert agent.status == 0, where
        assert got.boot.tag.decode() == case.kernel, where
        assert agent.kernel_sha256 == _shas([case.kernel or ""], stand_in_kernel)[0], where
        assert agent.cmdline == got.boot.cmdline, where
        if case.cmdline is not None:
            assert got.boot.cmdline == case.cmdline, where
        assert agent.initrd_sha256 == _shas(case.initrds, stand_in_initrd), where
        expected = run_script.combined_initrd([stand_in_initrd(url) for url in case.initrds],
                                              tmp_path)
        assert got.boot.initrd == expected, (_readable(got.boot.initrd), _readable(expected))
    elif case.expect is Outcome.LOCALBOOT and case.drive is not None:
        assert got.kind == "disk" and got.drive == case.drive, where
        assert agent.status == 6 and f"boot local drive {case.drive:#04x}" in agent.stderr, where
    elif case.expect is Outcome.LOCALBOOT:
        assert got.kind == "returned" and got.status == case.status, where
        assert agent.status == 6, where
        assert f"boot the next device (exit status {case.status})" in agent.stderr, where
    else:
        assert case.expect is Outcome.POWEROFF
        assert got.kind == "poweroff", where
        assert agent.status == 5 and "power" in agent.stderr, where
    assert result.agent_requests == result.ipxe_requests


def test_every_corpus_case_runs_in_real_ipxe_or_says_why() -> None:
    covered = {item.name for item in IPXE_CASES + HP_CASES}
    assert covered | set(LEFT_OUT) == set(CASES)
    assert not covered & set(LEFT_OUT)
