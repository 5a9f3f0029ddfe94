"""Run iPXE scripts in real iPXE (Debian's ipxe.lkrn) under QEMU and read what they print.

How the console is read: Debian's ipxe.lkrn prints through the BIOS (INT 10h)
only, not to a serial port. SeaBIOS' serial console ("sercon", enabled by the
fw_cfg file etc/sercon-port) mirrors INT 10h text to COM1, which QEMU gives
us on stdio. That console is an 80x25 text screen: long lines wrap at 80
columns and colours become ANSI escapes; `console_lines` undoes both.

How a script is run: the script is the lkrn's initrd (iPXE registers it as
the image "<INITRD>"), and the kernel command line, which iPXE runs as a
one-line script before anything else, wraps it:

    [dhcp &&] echo <BEGIN> && chain <INITRD> && echo <END>:ok || echo <END>:fail

so the lines between the two markers are exactly what the script printed,
and the harness stops QEMU as soon as the end marker appears.

What `run_in_ipxe` strips (deterministically):
- everything before the begin marker: SeaBIOS and iPXE banners, the
  wrapper's own DHCP;
- the end marker line and everything after it;
- the wrapper's "Could not boot: ..." line, printed by the wrapper's `chain`
  when the script fails (the last line before "<END>:fail");
- ANSI escape sequences and carriage returns; lines the 80-column screen
  wrapped are joined back (a physical line of exactly 80 characters
  continues on the next one).
Characters the BIOS screen cannot show (e.g. TAB, shown as a space) are not
restored. iPXE's own progress lines printed *by the script's commands*
(e.g. "Configuring (net0 ...)... ok", "http://.../x... ok") are kept: they
are part of the script's output; `drop_progress` removes them.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lib import netlab
from tests.lib.httpd import start_httpd
from tests.lib.qemu import Qemu, QemuError, strip_ansi, tap_nic_argv, x86_64_argv

SCREEN_COLUMNS = 80
HTTP_PORT = 8080
HTTP_BASE = f"http://{netlab.SERVER_IP}:{HTTP_PORT}"
GUEST_MAC = "52:54:00:a1:b2:c3"
# One QEMU NIC whose driver is in Debian's ipxe.lkrn (all-drivers build).
NIC_MODEL = "e1000"


def default_lkrn() -> Path:
    """Where scripts/install-deps unpacks trixie's iPXE (env RAMBOOT_IPXE_LKRN overrides)."""
    if os.environ.get("RAMBOOT_IPXE_LKRN"):
        return Path(os.environ["RAMBOOT_IPXE_LKRN"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ramboot"
    cache = Path(os.environ.get("RAMBOOT_CACHE", cache))
    return cache / "ipxe-trixie" / "usr" / "lib" / "ipxe" / "ipxe.lkrn"


def default_ipxe_efi() -> Path:
    """Trixie's x86_64 EFI iPXE (all drivers), beside the lkrn (env RAMBOOT_IPXE_EFI overrides)."""
    if os.environ.get("RAMBOOT_IPXE_EFI"):
        return Path(os.environ["RAMBOOT_IPXE_EFI"])
    return default_lkrn().with_name("ipxe.efi")


def require_ipxe_lkrn() -> Path:
    """Skip the calling test unless QEMU and a 2025 ipxe.lkrn are present."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (run scripts/install-deps)")
    lkrn = default_lkrn()
    if not lkrn.is_file():
        pytest.skip(f"{lkrn} is missing (scripts/install-deps unpacks Debian trixie's ipxe)")
    return lkrn


REPO = Path(__file__).resolve().parents[2]
REFERENCE_BUILDER = REPO / "scripts" / "build-reference-ipxe"
REFERENCE_ROOT_CA = REPO / "scripts" / "reference-ipxe" / "test-root-ca.crt"
REFERENCE_ROOT_KEY = REPO / "scripts" / "reference-ipxe" / "test-root-ca.key"
_REFERENCE_BUILD_TIMEOUT = 1800
_NO_SOURCE = 2  # the builder's exit status when the iPXE source tarball is absent


@functools.cache
def _reference_build() -> tuple[Path | None, str]:
    cache = os.environ.get("RAMBOOT_CACHE")
    env = {**os.environ, **({"RAMBOOT_CACHE": cache} if cache else {})}
    done = subprocess.run([str(REFERENCE_BUILDER)], capture_output=True, text=True, env=env,
                          timeout=_REFERENCE_BUILD_TIMEOUT, check=False)
    if done.returncode == _NO_SOURCE:
        return None, done.stderr.strip()
    if done.returncode != 0:
        raise QemuError(f"{REFERENCE_BUILDER.name} failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1]), ""


def require_ipxe_efi() -> Path:
    """Trixie's x86_64 EFI iPXE; skips when it is not unpacked."""
    efi = default_ipxe_efi()
    if not efi.is_file():
        pytest.skip(f"{efi} is missing (scripts/install-deps unpacks Debian trixie's ipxe)")
    return efi


def efi_system_partition(directory: Path, loader: Path, script: Path) -> Path:
    """A directory laid out as the removable-media ESP: the loader and its autoexec.ipxe."""
    boot = directory / "EFI" / "BOOT"
    boot.mkdir(parents=True)
    shutil.copyfile(loader, boot / "BOOTX64.EFI")
    shutil.copyfile(script, directory / "autoexec.ipxe")
    return directory


def require_reference_lkrn() -> Path:
    """ramboot's reference iPXE (v2.0.0 + every command the agent has, trusting only the
    tests' root CA), built once from the pinned source; skips without QEMU or the source."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (run scripts/install-deps)")
    if os.environ.get("RAMBOOT_IPXE_REFERENCE"):
        return Path(os.environ["RAMBOOT_IPXE_REFERENCE"])
    lkrn, reason = _reference_build()
    if lkrn is None:
        pytest.skip(f"no reference iPXE: {reason}")
    return lkrn


def sercon_argv(workdir: Path) -> list[str]:
    """QEMU arguments that make SeaBIOS mirror the BIOS text screen to COM1."""
    port_file = workdir / "sercon-port"
    port_file.write_bytes((0x3F8).to_bytes(2, "little"))  # SeaBIOS reads a binary integer
    return ["-fw_cfg", f"name=etc/sercon-port,file={port_file}"]


def ipxe_argv(lkrn: Path, workdir: Path, *, initrd: Path | None = None,
              cmdline: str | None = None, extra: Sequence[str] = (),
              memory_mb: int = 128) -> list[str]:
    """A BIOS x86 guest booting `lkrn` with its screen on the serial console."""
    return x86_64_argv(kernel=lkrn, initrd=initrd, append=cmdline, memory_mb=memory_mb,
                       extra=[*sercon_argv(workdir), *extra])


_WRAPPED = SCREEN_COLUMNS


def console_lines(raw: str) -> list[str]:
    """The logical lines of BIOS-console text: escapes and CRs removed, 80-column wraps joined."""
    physical = strip_ansi(raw).replace("\r", "").split("\n")
    lines: list[str] = []
    pending = ""
    for line in physical:
        pending += line
        if len(line) != _WRAPPED:
            lines.append(pending)
            pending = ""
    if pending:
        lines.append(pending)
    return lines


_PROGRESS = re.compile(
    r"^(Configuring \(net\d+ [0-9a-f:]+\)\.+ ?.*|[a-z]+://\S+\.\.\. ?.*)$"
)


def drop_progress(lines: Sequence[str]) -> list[str]:
    """`lines` without iPXE's "Configuring (net0 ...)... ok" and "<uri>... ok" lines."""
    return [line for line in lines if not _PROGRESS.match(line)]


@dataclass
class IpxeRun:
    """What one script run printed."""

    lines: list[str]
    succeeded: bool
    console: str
    seconds: float


@dataclass
class IpxeNetwork:
    """The lab a networked run uses: a tap, DHCP (dnsmasq) and HTTP in one namespace."""

    lab: netlab.TapLab
    tap: str
    http_log: Path


@contextmanager
def ipxe_network(
    workdir: Path,
    *,
    files: Mapping[str, bytes] | None = None,
    dhcp_options: Sequence[str] = (),
    dhcp_server: str = "dnsmasq",
    kea_option_224: str | None = None,
    http: bool = True,
    http_statuses: Mapping[str, int] | None = None,
    http_expand_query: Sequence[str] = (),
    dns: Mapping[str, str] | None = None,
    http_also_ports: Sequence[int] = (),
    vhosts: bool = False,
) -> Iterator[IpxeNetwork]:
    """A tap lab with a DHCP server and (unless http=False) HTTP at HTTP_BASE serving `files`.

    dhcp_server="dnsmasq" takes extra arguments `dhcp_options`, and with
    `dns` (name -> address) also answers DNS on SERVER_IP (processes run in
    the lab namespace resolve with it too); dhcp_server="kea" sends
    `kea_option_224` (always-send) when given. `http_also_ports` and
    `vhosts` are tests.lib.httpd's (vhosts: `files` are vhost_path names).
    """
    if dhcp_server not in ("dnsmasq", "kea"):
        raise ValueError(f"dhcp_server must be dnsmasq or kea, not {dhcp_server!r}")
    netlab.require_netns("kea-dhcp4" if dhcp_server == "kea" else "dnsmasq")
    root = workdir / "http"
    root.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {}).items():
        target = (root / name).resolve()
        if root.resolve() not in target.parents:
            raise ValueError(f"file name {name!r} escapes the HTTP root")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    with netlab.tap_lab() as lab:
        tap = lab.add_tap()
        if dhcp_server == "kea":
            config = netlab.kea_config(lab.bridge, workdir, option_224=kea_option_224)
            netlab.start_kea(lab.ns, config, workdir)
        else:
            netlab.start_dnsmasq(lab.ns, lab.bridge, workdir, [
                f"--dhcp-range={netlab.POOL[0]},{netlab.POOL[1]},255.255.255.0,10m",
                # Lab speed, not semantics: dnsmasq would ping a new address for
                # 3 s before offering it (nothing else is on the bridge), and iPXE
                # would wait 2 s for ProxyDHCP offers unless told there are none
                # (its encapsulated option 175.176, no-pxedhcp).
                "--no-ping", "--dhcp-option=175,b0:01:01",
                *dhcp_options,
            ], dns=dns)
            if dns is not None:
                lab.ns.use_nameserver(netlab.SERVER_IP)
        http_log = workdir / "http-requests.jsonl"
        if http:
            start_httpd(lab.ns, bind=netlab.SERVER_IP, port=HTTP_PORT, root=root,
                        log_path=http_log, statuses=dict(http_statuses or {}),
                        expand_query=http_expand_query, also_ports=http_also_ports,
                        vhosts=vhosts)
        yield IpxeNetwork(lab, tap, http_log)


def run_ipxe_script(
    script_text: str,
    *,
    tmp_path: Path,
    files: Mapping[str, bytes] | None = None,
    dhcp_options: Sequence[str] = (),
    network: bool = True,
    timeout: float = 60,
    lkrn: Path | None = None,
    dns: Mapping[str, str] | None = None,
    keys: Sequence[tuple[str, str]] = (),
) -> IpxeRun:
    """Run `script_text` in iPXE; see the module docstring for what is returned.

    `lkrn` is the iPXE to run (default: trixie's; require_reference_lkrn()
    for the reference build); `dns` as in ipxe_network; `keys`: (regex,
    text) pairs: wait for regex on the console, then type text (the BIOS
    serial console is also its keyboard).

    network=True: the guest has an e1000 NIC (MAC GUEST_MAC) on a tap lab with
    dnsmasq (extra args `dhcp_options`, e.g. "--dhcp-option-force=224,http://..."
    with no quotes: there is no shell) and an HTTP server at HTTP_BASE serving
    `files`; the wrapper runs `dhcp` before the script.
    network=False: no NIC at all, no DHCP (for scripts that only test
    expansion and flow control).
    """
    if not script_text.startswith(("#!ipxe", "#!gpxe")):
        raise ValueError("an iPXE script must start with #!ipxe")
    if not network and (files or dhcp_options):
        raise ValueError("files and dhcp_options need network=True")
    lkrn = lkrn or require_ipxe_lkrn()
    token = secrets.token_hex(4)
    begin, end = f"RB-BEGIN-{token}", f"RB-END-{token}"
    workdir = tmp_path / f"ipxe-{token}"
    workdir.mkdir(parents=True)
    script = workdir / "script.ipxe"
    script.write_text(script_text)
    cmdline = f"echo {begin} && chain <INITRD> && echo {end}:ok || echo {end}:fail"
    with ExitStack() as stack:
        namespace = None
        nic: list[str] = []
        if network:
            net = stack.enter_context(ipxe_network(workdir, files=files,
                                                   dhcp_options=dhcp_options, dns=dns))
            namespace = net.lab.ns
            nic = tap_nic_argv(net.tap, mac=GUEST_MAC, model=NIC_MODEL)
            cmdline = "dhcp && " + cmdline
        vm = stack.enter_context(Qemu(
            ipxe_argv(lkrn, workdir, initrd=script, cmdline=cmdline, extra=nic),
            workdir / "console.log", namespace,
        ))
        for pattern, text in keys:
            vm.expect(pattern, timeout=timeout)
            vm.send(text)
        outcome = vm.expect([f"{end}:ok", f"{end}:fail"], timeout=timeout)
        seconds = vm.elapsed
        console = vm.console_text()
    return IpxeRun(_between(console, begin, end), outcome == 0, console, seconds)


def _between(console: str, begin: str, end: str) -> list[str]:
    # The log's header holds the QEMU command line (with the markers); iPXE's
    # output starts after it and never echoes the command line.
    lines = console_lines(console.split("\n", 2)[-1])
    try:
        start = next(i for i, line in enumerate(lines) if line == begin)
        stop = next(i for i, line in enumerate(lines) if line.startswith(f"{end}:"))
    except StopIteration:
        raise QemuError(f"markers {begin}/{end} not found in the console:\n{console}") from None
    body = lines[start + 1:stop]
    if lines[stop] == f"{end}:fail" and body and body[-1].startswith("Could not boot: "):
        body.pop()  # printed by the wrapper's chain, not by the script
    return body


def run_in_ipxe(
    script_text: str,
    *,
    tmp_path: Path,
    files: Mapping[str, bytes] | None = None,
    dhcp_options: Sequence[str] = (),
    network: bool = True,
    timeout: float = 60,
) -> list[str]:
    """The lines `script_text` printed when run in real iPXE (see run_ipxe_script)."""
    return run_ipxe_script(script_text, tmp_path=tmp_path, files=files,
                           dhcp_options=dhcp_options, network=network, timeout=timeout).lines

