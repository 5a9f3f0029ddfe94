"""Differential tests: the same script in real iPXE (QEMU) and in the agent.

Each test is one QEMU boot of Debian trixie's ipxe.lkrn (tests/lib/ipxe.py)
running a script that exercises many things at once; the agent runs the
same script with the identity the guest has (buildarch i386, platform
pcbios, the guest NIC's MAC, the same DHCP option 224 and the same files),
and the printed lines must be identical, as must success or failure.

Two kinds of line are removed from iPXE's output before comparing, both
printed by iPXE itself rather than by the script's `echo`s:

* progress lines ("http://.../x.ipxe... ok"): the agent reports downloads
  as events, not on stdout;
* iPXE's error messages: those ending in an error-code link ("Could not
  boot: Error 0x00000003 (https://ipxe.org/00000003)") and the usage block
  a bad option or argument count prints ("Unrecognised option", "Usage:"
  ... "See https://ipxe.org/cmd/echo for further information"): the agent
  reports a failure in its log and, when the script dies of it, in the
  ScriptError naming URL and line, not in iPXE's words or codes.

Both are documented in docs/agent-ipxe.md ("Deliberate differences").
"""

from __future__ import annotations

import gzip
import hashlib
import re
import secrets
import zlib
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe import Outcome, cpio
from tests.agent.ipxe.conftest import Fetched, LoopbackFetcher
from tests.agent.ipxe.test_corpus import UUID
from tests.agent.trust.cases import CASES as SIGNATURE_CASES
from tests.lib import cpio as newc
from tests.lib import ipxe, netlab, run_script, x86_stubs
from tests.lib.httpd import vhost_path
from tests.lib.images import ImageError, image_set
from tests.lib.ipxe_boots import GuestMachine, IpxeGuest, chain_and_report
from tests.lib.qemu import Qemu, strip_ansi, tap_nic_argv, x86_64_argv

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

# What the QEMU guest is, as the agent must be told.
GUEST_IDENTITY = {"buildarch": "i386", "platform": "pcbios"}
NETWORKED_IDENTITY = {**GUEST_IDENTITY, "mac": ipxe.GUEST_MAC,
                      # dnsmasq picks the address; the script only tests isset.
                      "ip": "192.0.2.50"}

_IPXE_ERROR = re.compile(r'\(https://ipxe\.org/[0-9a-f]{8}\)$|^"[^"]*": no such network device$')
# A download's progress line names the URI as the script wrote it, so a
# relative one ("sub2.ipxe... ok") too, which ipxe.drop_progress misses;
# iflinkwait says what it waits for.
_IPXE_PROGRESS = re.compile(r"^(\S+|Waiting for link-up on \S+)\.\.\. ok$")
# ping prints each reply; a failed one ends with iPXE's error text and code.
_PING_REPLY = re.compile(r"^(\d+ bytes from \S+: seq=\d+: .*) \(https://ipxe\.org/[0-9a-f]{8}\)$")

EXPANSION_SCRIPT = r"""#!ipxe
echo [${nope}] [x${nope}y] [${}] [${nope:hex}] [${nope:int32}]
set a b
set b nested
echo [${a}] [${${a}}] [${${nope}}] [${a}${b}] ${a}${a}${nope}x
set v   two   words
echo -n [${v}]
echo
echo -n a ; echo -n b ; echo c
echo a#b # comment here
echo x #hidden
echo "quoted   words" 'single' $x $ {x} \n a\ b
echo 1 \
2 \
  3
echo buildarch ${buildarch} platform ${platform}
set i:int32 -2
inc i 5
echo int ${i} ${i:uint8} ${i:hex} ${i:hexhyp} ${i:hexraw} ${i:int8} ${i:int16} ${i:uint16}
set u:uint16 0x1f
echo uint ${u} ${u:int16} ${u:hexraw} ${u:int32} ${u:uint32}
set n:int32 -1
echo neg ${n} ${n:uint32} ${n:int8} ${n:hex}
set z:uint8 0
echo zero ${z} ${z:int8} ${z:uint16}
set t:uint8 300
echo wrap ${t}
set y:int32 5
inc y -7
echo inc-neg ${y}
set c:int32 10
inc c
inc c 0x10
inc c 010
echo inc ${c}
set x:int32 5
echo typed-write ${x} ${x:hex}
set x 7
echo retyped ${x} ${x:hex}
set ip:ipv4 192.0.2.7
echo ipv4 ${ip} ${ip:hex} ${ip:int32} ${ip:uint32} ${ip:uint8} ${ip:int8}
set s a b/c&d=e~f_g.h-i%j:k
echo uri ${s:uristring}
echo str ${s:string} ${s:hex}
set h:hex 01:ab:ff
echo hex ${h} ${h:hexhyp} ${h:hexraw} ${h:uint32}
set hh:hexhyp 0a-0b
set hr:hexraw 00ff
echo hexhyp ${hh} hexraw ${hr:hex}
set m:hex 52:54:00:a1:b2:c3
echo mac-like ${m:hexhyp} ${m:hexraw}
set w:string x y
echo typed-string ${w} ${w:uristring}
clear a
set e
echo cleared [${a}] [${e}]
isset ${e} && echo set-e || echo unset-e
set str 10
inc str || echo inc-string-fails
inc str
echo never
"""

FLOW_SCRIPT = r"""#!ipxe
iseq a b && echo no1 || echo yes1
iseq a a && echo yes2 || echo no2
iseq a b && echo no3 ||
isset ${nope} || isset x && echo yes4
isset ${nope} && echo no5 || echo yes5
iseq ${nope} ${nope2} && echo empty-eq
iseq ${buildarch} i386 && echo arch-ok
set n:int32 0
:loop inc n
iseq ${n} 3 || goto loop
echo loop ${n}
goto done ; echo skipped
echo skipped
:done echo done-label
goto missing || echo goto-failed
iseq 1 2 ; echo semi-runs
iseq 1 2 || iseq 1 1 && echo chain-ok
iseq 1 1 && iseq 1 2 || echo and-then-or
iseq 1 2 && echo x && echo y || echo or-after-two
echo a ; ; echo b
   :indented echo indented-label
echo -- -n
echo x -n
echo -n -n y
echo
set dash -2
echo ${dash} || echo dash-is-an-option
echo - x || echo lone-dash-is-an-option
echo -nx || echo bad-short-option
echo --n=1 || echo flag-takes-no-argument
echo --n || echo long-n
iseq a || echo too-few-arguments
set k:int32 0
:again
inc k
echo k ${k}
iseq ${k} 2 && goto out
goto again
:out
echo out ${k}
"""
# FLOW_SCRIPT's loop never reaches :out: on the first pass `iseq 1 2 && goto`
# leaves the line with iseq's failure, which ends the script (status != 0).

NETWORK_SCRIPT = r"""#!ipxe
echo mac ${mac} ${net0/mac} ${netX/mac} ${net0/mac:hexhyp} ${mac:hexraw}
iseq ${mac} 52:54:00:a1:b2:c3 && echo mac-eq
echo opt ${224} ${net0.dhcp/224}
echo opt-uri ${224:uristring}
isset ${224} && echo has-224
isset ${ip} && echo has-ip
isset ${net0/ip} && echo has-net0-ip
isset ${net1/mac} || echo no-net1
chain ${224} && echo chain-ok
chain ${224}?again=1 && echo chain-ok2
chain sub.ipxe || echo by-name-failed
chain ${224}/../fail.ipxe || echo chain-failed
echo after
"""
NETWORK_FILES = {
    "sub.ipxe": b"#!ipxe\necho in-sub ${mac}\nchain sub2.ipxe && echo back-in-sub\n"
                b"chain missing.ipxe || echo missing-failed\nexit\n"
                b"echo not-reached\n",
    "sub2.ipxe": b"#!ipxe\necho in-sub2\nexit 0\n",
    "fail.ipxe": b"#!ipxe\necho in-fail\nexit 3\n",
}
OPTION_224 = f"{ipxe.HTTP_BASE}/sub.ipxe"


_USAGE_END = re.compile(r"^See https://ipxe\.org/cmd/\S+ for further information$")
_OPTION_ERROR = re.compile(r'^(Unrecognised option "|Option ".*" (requires an|takes no) argument$)')


def _drop_usage(lines: list[str]) -> list[str]:
    """`lines` without iPXE's usage blocks (and the option error before one)."""
    kept: list[str] = []
    index = 0
    while index < len(lines):
        if lines[index] == "Usage:":
            end = next((i for i in range(index, len(lines)) if _USAGE_END.match(lines[i])), None)
            assert end is not None, f"unterminated usage block in {lines}"
            if kept and _OPTION_ERROR.match(kept[-1]):
                kept.pop()
            index = end + 1
            continue
        kept.append(lines[index])
        index += 1
    return kept


def _ipxe_output(run: Any) -> list[str]:
    """iPXE's lines without its progress and error lines (see the module doc); a
    failed ping reply is kept without its error code."""
    lines = [_PING_REPLY.sub(r"\1", line) for line in ipxe.drop_progress(run.lines)]
    return [line for line in _drop_usage(lines)
            if not _IPXE_ERROR.search(line) and not _IPXE_PROGRESS.match(line)]


def _agent_output(harness: Any, script: str) -> tuple[list[str], bool]:
    try:
        harness.run(script)
    except ScriptError:
        return harness.lines, False
    return harness.lines, True


def _compare(run: Any, harness: Any, script: str) -> None:
    lines, succeeded = _agent_output(harness, script)
    assert lines == _ipxe_output(run)
    assert succeeded == run.succeeded


def test_expansion_and_typed_settings(tmp_path: Path, make_harness: Any) -> None:
    run = ipxe.run_ipxe_script(EXPANSION_SCRIPT, tmp_path=tmp_path, network=False)
    assert not run.succeeded and _ipxe_output(run)[-1] == "inc-string-fails"  # ran to its end
    _compare(run, make_harness(GUEST_IDENTITY), EXPANSION_SCRIPT)


def test_flow_control_and_status(tmp_path: Path, make_harness: Any) -> None:
    run = ipxe.run_ipxe_script(FLOW_SCRIPT, tmp_path=tmp_path, network=False)
    assert not run.succeeded and _ipxe_output(run)[-1] == "k 1"
    _compare(run, make_harness(GUEST_IDENTITY), FLOW_SCRIPT)


class _LabFetcher(LoopbackFetcher):
    """Fetches the guest's HTTP_BASE URLs from a loopback server holding the same files."""

    def __init__(self, loopback_base: str) -> None:
        super().__init__()
        self.loopback_base = loopback_base

    def fetch_file(self, url: str, dest_dir: Path, **kwargs: Any) -> Fetched:
        if url.startswith(ipxe.HTTP_BASE + "/"):
            url = self.loopback_base + url[len(ipxe.HTTP_BASE):]
        return super().fetch_file(url, dest_dir, **kwargs)


@pytest.mark.netns
def test_network_settings_and_chained_scripts(
    tmp_path: Path, make_harness: Any, http_root: tuple[Path, str]
) -> None:
    run = ipxe.run_ipxe_script(NETWORK_SCRIPT, tmp_path=tmp_path, files=NETWORK_FILES,
                               dhcp_options=[f"--dhcp-option-force=224,{OPTION_224}"])
    assert run.succeeded and run.lines[-1] == "after"
    root, base = http_root
    for name, data in NETWORK_FILES.items():
        (root / name).write_bytes(data)
    harness = make_harness(NETWORKED_IDENTITY, {224: OPTION_224.encode()})
    harness.interpreter.fetcher = _LabFetcher(base)
    _compare(run, harness, NETWORK_SCRIPT)


COMPAT_SCRIPT = r"""#!ipxe
frobnicate a b || echo nf-caught
frobnicate ; echo after-nf
sanboot iscsi:192.0.2.9::::iqn.2010-04.example:disk || echo san-failed
sanhook --drive 0x81 iscsi:192.0.2.9::::iqn.2010-04.example:disk || echo sanhook-failed
sync && echo synced
shim && echo shim-ok
menu M
item
item --gap G
item a A
echo menu-ok
isset ${unixtime} && echo has-unixtime
exit 1 || echo never
"""


LOGIN_SCRIPT = "#!ipxe\necho before\nlogin || echo login-failed [${username}]\necho after\n"


def test_login_fails_as_in_ipxe_when_nobody_answers(tmp_path: Path, make_harness: Any) -> None:
    # iPXE shows its username/password form and waits; Esc (nobody there) is
    # "Operation canceled". The agent, with no console, fails at once.
    run = ipxe.run_ipxe_script(LOGIN_SCRIPT, tmp_path=tmp_path, network=False,
                               keys=[("Password", "\x1b")])
    form = [line for line in _ipxe_output(run) if line.strip() and "Username" not in line]
    harness = make_harness(GUEST_IDENTITY)
    harness.run(LOGIN_SCRIPT)
    assert harness.lines == form == ["before", "login-failed []", "after"]


def test_what_the_agent_cannot_do_fails_as_in_ipxe(tmp_path: Path, make_harness: Any) -> None:
    # Unknown commands are "command not found" (printed, caught by ||), SAN
    # URLs fail, sync/shim succeed, `item` alone is allowed; `exit 1` hands
    # the machine back to the firmware (iPXE: the wrapper's chain fails; the
    # agent: LOCALBOOT, the same "boot the next device").
    run = ipxe.run_ipxe_script(COMPAT_SCRIPT, tmp_path=tmp_path, network=False)
    harness = make_harness(GUEST_IDENTITY)
    result = harness.run(COMPAT_SCRIPT)
    assert harness.lines == _ipxe_output(run)
    assert harness.lines[-1] == "has-unixtime" and not run.succeeded
    assert result.outcome is Outcome.LOCALBOOT and result.localboot is not None
    assert result.localboot.status == 1


# --- booting: what real iPXE hands a kernel -----------------------------------------------------

BOOT_BASE = f"{ipxe.HTTP_BASE}/boot"
CPIO_ARGUMENTS = ["/etc/ramboot/config.json mode=600", "/opt/b/file mkdir=-1", "/dir/ mkdir=1"]
BOOT_SCRIPTS = {
    # netboot.xyz's initrd=initrd.magic names no image: every image is passed.
    "names-nothing": f"#!ipxe\nkernel {BOOT_BASE}/k initrd=initrd.magic quiet\n"
                     f"initrd {BOOT_BASE}/a.cpio\ninitrd {BOOT_BASE}/b.cpio\nboot\n",
    # initrd= names one of two loaded images: BIOS iPXE still passes both.
    "names-one-of-two": f"#!ipxe\nimgfetch {BOOT_BASE}/a.cpio\n"
                        f"kernel {BOOT_BASE}/k initrd=b.cpio quiet\n"
                        f"initrd {BOOT_BASE}/b.cpio\nboot\n",
    # imgfree drops one, imgargs replaces the command line, --name renames.
    "imgfree-imgargs": f"#!ipxe\nkernel --name vmlinuz {BOOT_BASE}/k first\n"
                       f"initrd {BOOT_BASE}/a.cpio\ninitrd --name two {BOOT_BASE}/b.cpio\n"
                       f"initrd {BOOT_BASE}/c.cpio\nimgfree a.cpio\n"
                       "imgargs vmlinuz initrd=two console=ttyS0 mac=${mac} \n"
                       "boot vmlinuz\n",
    # An initrd with arguments is handed over inside cpio headers naming it.
    "cpio-wrapped": f"#!ipxe\nkernel {BOOT_BASE}/k quiet\n"
                    f"initrd {BOOT_BASE}/a.cpio {CPIO_ARGUMENTS[0]}\n"
                    f"initrd --name two {BOOT_BASE}/b.cpio {CPIO_ARGUMENTS[1]}\n"
                    f"initrd {BOOT_BASE}/c.cpio {CPIO_ARGUMENTS[2]}\nboot\n",
}


def _boot_files() -> dict[str, bytes]:
    files = {vhost_path(netlab.SERVER_IP, ipxe.HTTP_PORT, f"/boot/{name}.ipxe"): text.encode()
             for name, text in BOOT_SCRIPTS.items()}
    files[vhost_path(netlab.SERVER_IP, ipxe.HTTP_PORT, "/boot/k")] = x86_stubs.kernel(b"k")
    for name in ("a", "b", "c"):
        files[vhost_path(netlab.SERVER_IP, ipxe.HTTP_PORT, f"/boot/{name}.cpio")] = _initrd(name)
    return files


def _initrd(name: str) -> bytes:
    return b"070701" + name.encode() * 700  # 2100 bytes: padding shows


@pytest.mark.netns
def test_initrds_and_command_line_are_what_bios_ipxe_hands_the_kernel(tmp_path: Path) -> None:
    # A stub kernel (tests/lib/x86_stubs.py) halts as soon as iPXE jumps to
    # it; its setup header in guest memory has the command line and the
    # initrd memory iPXE built. The agent's plan, laid out by its kexec, must
    # be those bytes.
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_ipxe_lkrn()
    root = tmp_path / "http"
    with ipxe.ipxe_network(tmp_path, files=_boot_files(), vhosts=True) as net, \
            IpxeGuest(net, tmp_path, lkrn, GuestMachine(UUID), http_root=root) as guest:
        for name in BOOT_SCRIPTS:
            url = f"{BOOT_BASE}/{name}.ipxe"
            agent = run_script.start(net.lab.ns, url, {**NETWORKED_IDENTITY, "ip": ""})
            token = secrets.token_hex(4)
            got = guest.run(f"#!ipxe\necho RB-CASE-{token}\n{chain_and_report(url, token)}\n",
                            token=token)
            done = run_script.finish(agent)
            assert got.kind == "kernel" and got.boot is not None, (name, got.lines)
            assert done.status == 0, (name, done.stderr)
            # Each stand-in as it is, and as the agent wraps it for each argument list.
            variants = [_initrd(n) for n in "abc"] + [
                cpio.headers(arguments, len(_initrd(n))) + _initrd(n)
                for n in "abc" for arguments in CPIO_ARGUMENTS]
            by_sha = {hashlib.sha256(data).hexdigest(): data for data in variants}
            memory = run_script.combined_initrd([by_sha[sha] for sha in done.initrd_sha256],
                                                tmp_path / name)
            assert (got.boot.tag, got.boot.cmdline) == (b"k", done.cmdline), name
            assert got.boot.initrd == memory, (name, done.initrd_sha256)


# --- a real kernel, booted by iPXE and by the agent ---------------------------------------------

REAL_BASE = f"{ipxe.HTTP_BASE}/real"
REAL_SCRIPT = f"""#!ipxe
kernel {REAL_BASE}/bzImage initrd=initrd.magic console=ttyS0 quiet retain_initrd rb.mac=${{mac}}
initrd {REAL_BASE}/second-stage.cpio.gz
initrd {REAL_BASE}/report.cpio
initrd --name extra {REAL_BASE}/extra.cpio
boot
"""
# /init of report.cpio, which replaces the second stage's: what this kernel
# was given (retain_initrd keeps the initrd memory at /sys/firmware/initrd).
REPORT_INIT = """#!/bin/sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
echo "RB-REAL cmdline=[$($bb cat /proc/cmdline)]"
echo "RB-REAL initrd=[$($bb wc -c < /sys/firmware/initrd) $($bb sha256sum < /sys/firmware/initrd)]"
echo "RB-REAL received=[$($bb ls /received | $bb tr '\\n' ' ')]"
echo RB-REAL-END
$bb poweroff -f
"""
REAL_REPORT = re.compile(r"RB-REAL (\w+)=\[([^\]\r\n]*)\]")


def _real_files(images: Any) -> dict[str, bytes]:
    report = newc.newc({"received": (newc.DIRECTORY, b""), "sys": (newc.DIRECTORY, b""),
                        "init": (newc.EXECUTABLE, REPORT_INIT.encode()),
                        "received/report": (newc.FILE, b"report\n")})
    extra = newc.newc({"received": (newc.DIRECTORY, b""),
                       "received/extra": (newc.FILE, b"extra\n")})
    return {"real/boot.ipxe": REAL_SCRIPT.encode(), "real/bzImage": images.kernel.read_bytes(),
            "real/second-stage.cpio.gz": images.second_stage.read_bytes(),
            "real/report.cpio": report, "real/extra.cpio": extra}


def _reports(vm: Any) -> dict[str, str]:
    vm.expect("RB-REAL-END", timeout=240)
    return dict(REAL_REPORT.findall(strip_ansi(vm.console_text())))


@pytest.mark.netns
def test_a_real_kernel_gets_the_same_from_ipxe_and_from_the_agent(tmp_path: Path) -> None:
    # initrd=initrd.magic names nothing: iPXE hands the kernel every image;
    # the agent (the offline image, kexec for real) must hand over the same
    # command line and byte for byte the same initrd memory.
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_ipxe_lkrn()
    try:
        images = image_set("x86_64")
    except ImageError as error:
        pytest.fail(str(error))
    url = f"{REAL_BASE}/boot.ipxe"
    with ipxe.ipxe_network(tmp_path, files=_real_files(images),
                           dhcp_options=[f"--dhcp-option-force=224,{url}"]) as net:
        nic = tap_nic_argv(net.tap, mac=ipxe.GUEST_MAC, model=ipxe.NIC_MODEL)
        argv = ipxe.ipxe_argv(lkrn, tmp_path, cmdline=f"dhcp && chain {url}", memory_mb=512,
                              extra=nic)
        with Qemu(argv, tmp_path / "ipxe-console.log", net.lab.ns) as vm:
            from_ipxe = _reports(vm)
            ipxe_seconds = vm.elapsed
        nic = tap_nic_argv(net.tap, mac=ipxe.GUEST_MAC, model="virtio-net-pci")
        argv = x86_64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=512,
                           append="console=ttyS0 quiet", extra=["-smp", "1", *nic])
        with Qemu(argv, tmp_path / "agent-console.log", net.lab.ns) as vm:
            from_agent = _reports(vm)
            agent_seconds = vm.elapsed
    print(f"real kernel: iPXE {ipxe_seconds:.1f}s, agent {agent_seconds:.1f}s; {from_ipxe}")
    files = _real_files(images)
    parts = [files[f"real/{name}"] for name in ("second-stage.cpio.gz", "report.cpio",
                                                  "extra.cpio")]
    # iPXE's own layout: each image at a 4 KiB boundary, in download order.
    memory = b""
    for part in parts:
        memory += b"\0" * (-len(memory) % 4096) + part
    assert from_ipxe == {
        "cmdline": f"initrd=initrd.magic console=ttyS0 quiet retain_initrd rb.mac={ipxe.GUEST_MAC}",
        "initrd": f"{len(memory)} {hashlib.sha256(memory).hexdigest()}  -",
        "received": "extra report ",
    }
    assert from_agent == from_ipxe


# --- the network commands, against the same hosts ----------------------------------------------

NET_DNS = {"gw.lab.test": netlab.SERVER_IP, "quiet.lab.test": "192.0.2.77"}
NET_SCRIPT = r"""#!ipxe
ping --count 2 192.0.2.1 && echo ping-ok
ping --count 1 --size 100 192.0.2.1 && echo size-ok
ping --quiet --count 1 192.0.2.1 && echo quiet-ok
ping --count 2 --timeout 500 192.0.2.99 || echo no-answer-fails
ping --count 1 gw.lab.test && echo by-name-ok
ping --count 1 missing.lab.test || echo unresolved-fails
nslookup addr gw.lab.test && echo addr ${addr}
nslookup typed:ipv4 quiet.lab.test && echo typed ${typed} ${typed:hex}
nslookup nx missing.lab.test || echo nx-fails [${nx}]
nslookup net0/scoped gw.lab.test && echo scoped ${net0/scoped} [${scoped}]
show addr
iflinkwait && echo link-up
iflinkwait --timeout 1000 net0 && echo link-net0
iflinkwait net1 || echo no-net1
echo end
"""


@pytest.mark.netns
def test_ping_nslookup_iflinkwait_as_in_ipxe(tmp_path: Path) -> None:
    # Real ICMP and DNS in both: iPXE in the guest, the agent's run-script in
    # the lab namespace, against the same hosts (dnsmasq answers the names).
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_reference_lkrn()  # trixie's iPXE has no nslookup
    files = {"net.ipxe": NET_SCRIPT.encode()}
    run = ipxe.run_ipxe_script(NET_SCRIPT, tmp_path=tmp_path / "ipxe", lkrn=lkrn, dns=NET_DNS)
    assert run.succeeded and run.lines[-1] == "end"
    with ipxe.ipxe_network(tmp_path / "agent", files=files, dns=NET_DNS) as net:
        agent = run_script.run(net.lab.ns, f"{ipxe.HTTP_BASE}/net.ipxe", {
            **NETWORKED_IDENTITY, "1": "255.255.255.0", "3": netlab.SERVER_IP})
    assert agent.status == 3, agent.stderr  # ran to its end without booting
    assert agent.printed == _ipxe_output(run)


# --- the machine's settings, iPXE and the agent on the same (virtual) machine -------------------

MACHINE_SETTINGS = [
    "mac", "net0/mac", "netX/mac", "hwaddr", "ifname", "net0/ifname", "bustype", "busloc",
    "busid", "chip", "mtu", "linktype", "ip", "netmask", "gateway", "dns", "domain", "hostname",
    "dhcp-server", "next-server", "1", "3", "6", "12", "15", "54", "net0.dhcp/ip", "netX/ip",
    "uuid", "serial", "manufacturer", "product", "asset", "smbios/manufacturer", "buildarch",
    "platform", "memsize", "version", "unixtime", "cwuri", "cwduri", "net1/mac", "nosuch"]
MACHINE_URL = f"{ipxe.HTTP_BASE}/machine/settings.ipxe"
MACHINE_SCRIPT = "#!ipxe\n" + "".join(
    f"echo RB-SET {name} [${{{name}}}]\n" for name in MACHINE_SETTINGS) + "echo RB-SET-END\n"
MACHINE_SMBIOS = ["-uuid", UUID, "-smbios", "type=1,manufacturer=ACME,product=Rack 9,serial=S-42",
                  "-smbios", "type=3,asset=A-7"]
MACHINE_DHCP = [f"--dhcp-host={ipxe.GUEST_MAC},192.0.2.50,node7", "--domain=lab.test",
                f"--dhcp-option-force=224,{MACHINE_URL}"]
# Where the agent is not iPXE, by design (docs/agent-ipxe.md, settings):
MACHINE_DIFFERENCES = {
    "buildarch",  # ipxe.lkrn is a 32-bit build (i386); the agent runs x86_64
    "chip",  # iPXE names its own driver (virtio-net), the agent Linux's (virtio_net)
    "version",  # iPXE's version vs ramboot-agent-VERSION
    "unixtime",  # the clock, read seconds apart
    "cwuri",  # the agent asks option 224's URL with its identity query (?mac=...)
}
_SET = re.compile(r"RB-SET (\S+) \[([^\]\r\n]*)\]")


def _settings(vm: Any) -> dict[str, str]:
    vm.expect("RB-SET-END", timeout=240)
    return dict(_SET.findall(strip_ansi(vm.console_text()).split("\n", 1)[-1]))


@pytest.mark.netns
def test_machine_settings_as_ipxe_sees_the_same_machine(tmp_path: Path) -> None:
    # The same QEMU machine (virtio NIC at the same PCI slot, the same MAC,
    # SMBIOS and RAM) and the same DHCP server: iPXE's settings and the
    # agent's (the offline image, its script from option 224) must agree.
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_reference_lkrn()  # built with ${memsize} (MEMMAP_SETTINGS)
    try:
        images = image_set("x86_64")
    except ImageError as error:
        pytest.fail(str(error))
    files = {"machine/settings.ipxe": MACHINE_SCRIPT.encode()}
    with ipxe.ipxe_network(tmp_path, files=files, dhcp_options=MACHINE_DHCP) as net:
        nic = tap_nic_argv(net.tap, mac=ipxe.GUEST_MAC, model="virtio-net-pci")
        argv = ipxe.ipxe_argv(lkrn, tmp_path, cmdline=f"dhcp && chain {MACHINE_URL}",
                              memory_mb=512, extra=[*nic, *MACHINE_SMBIOS])
        with Qemu(argv, tmp_path / "ipxe-console.log", net.lab.ns) as vm:
            from_ipxe = _settings(vm)
        argv = x86_64_argv(kernel=images.kernel, initrd=images.initramfs, memory_mb=512,
                           append="console=ttyS0 quiet ramboot.shell=never",
                           extra=["-smp", "1", *nic, *MACHINE_SMBIOS])
        with Qemu(argv, tmp_path / "agent-console.log", net.lab.ns) as vm:
            from_agent = _settings(vm)
    print("iPXE:", from_ipxe, "\nagent:", from_agent)
    assert set(from_ipxe) == set(MACHINE_SETTINGS)
    differing = {name for name in MACHINE_SETTINGS if from_ipxe[name] != from_agent.get(name)}
    assert differing == MACHINE_DIFFERENCES, {
        name: (from_ipxe[name], from_agent.get(name)) for name in differing}
    assert from_agent["cwuri"].startswith(from_ipxe["cwuri"] + "?mac=")
    assert (from_ipxe["chip"], from_agent["chip"]) == ("virtio-net", "virtio_net")


# --- digests and imgextract --------------------------------------------------------------------

DATA = bytes(range(256)) * 41 + b"tail"
IMAGES_SCRIPT = f"""#!ipxe
imgfetch {ipxe.HTTP_BASE}/d/data.bin
md5sum data.bin
sha1sum data.bin
sha224sum data.bin
sha256sum data.bin
sha384sum data.bin
sha512sum data.bin
md5sum --set m data.bin && echo m ${{m}}
sha256sum --set s:hexhyp data.bin && echo s ${{s}}
sha1sum data.bin {ipxe.HTTP_BASE}/d/other.bin
md5sum {ipxe.HTTP_BASE}/d/missing.bin || echo missing-fails
imgextract --name plain {ipxe.HTTP_BASE}/d/data.gz && sha256sum plain
imgextract {ipxe.HTTP_BASE}/d/next.ipxe.gz && chain next.ipxe
imgextract --keep {ipxe.HTTP_BASE}/d/z.zlib && md5sum z z.zlib
imgextract {ipxe.HTTP_BASE}/d/data.bin || echo not-an-archive
imgextract {ipxe.HTTP_BASE}/d/bad.gz || echo corrupt-fails
echo end
"""
IMAGES_FILES = {
    "d/data.bin": DATA, "d/other.bin": b"other\n", "d/data.gz": gzip.compress(DATA, mtime=0),
    "d/next.ipxe.gz": gzip.compress(b"#!ipxe\necho extracted from ${cwuri}\n", mtime=0),
    "d/z.zlib": zlib.compress(DATA), "d/bad.gz": gzip.compress(DATA, mtime=0)[:40] + b"junk" * 8,
}


@pytest.mark.netns
def test_digests_and_imgextract_as_in_ipxe(tmp_path: Path) -> None:
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_reference_lkrn()  # a BIOS build has neither by default
    run = ipxe.run_ipxe_script(IMAGES_SCRIPT, tmp_path=tmp_path / "ipxe", lkrn=lkrn,
                               files=IMAGES_FILES)
    assert run.succeeded and run.lines[-1] == "end"
    with ipxe.ipxe_network(tmp_path / "agent", files=IMAGES_FILES) as net:
        (tmp_path / "agent" / "http" / "images.ipxe").write_text(IMAGES_SCRIPT)
        agent = run_script.run(net.lab.ns, f"{ipxe.HTTP_BASE}/images.ipxe", NETWORKED_IDENTITY)
    assert agent.status == 3, agent.stderr
    assert agent.printed == _ipxe_output(run)


# --- imgverify and imgtrust: real signatures --------------------------------------------------

TRUST_BASE = f"{ipxe.HTTP_BASE}/t"
HELLO = b"#!ipxe\necho hello from a signed script\n"


# First, before any signature has shown iPXE the root: its certificate store
# keeps every certificate it parses, so the same signature verifies later.
IMGVERIFY_ORDER = ["root-not-in-signature", *SIGNATURE_CASES, "root-not-in-signature"]


def _imgverify_script() -> str:
    lines = ["#!ipxe"]
    for name in IMGVERIFY_ORDER:
        case = SIGNATURE_CASES[name]
        image = "tampered.bin" if case.tampered else "image.bin"
        signer = f"--signer {case.signer_name} " if case.signer_name else ""
        lines += [f"imgverify {signer}{TRUST_BASE}/{image} {TRUST_BASE}/{name}.sig "
                  f"&& echo {name} verified || echo {name} refused", "imgfree"]
    lines += [
        # imgtrust: nothing unverified is executed, scripts included.
        "imgtrust",
        f"chain {TRUST_BASE}/hello.ipxe && echo unverified-ran || echo unverified-refused",
        f"imgfetch {TRUST_BASE}/hello.ipxe",
        f"imgverify hello.ipxe {TRUST_BASE}/hello.ipxe.sig && chain hello.ipxe",
        "imgtrust --allow && echo allowed-again",
        f"chain {TRUST_BASE}/tampered.bin.ipxe && echo unverified-ran-now",
        "imgtrust --permanent && echo permanent",
        "imgtrust --allow || echo still-required",
        "imgtrust && echo requiring-is-fine",
        "echo end",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.netns
def test_imgverify_and_imgtrust_as_in_ipxe(tmp_path: Path, signatures: Any) -> None:
    # The reference iPXE trusts the tests' root CA only (TRUST=); the agent
    # is told the same root's fingerprint (run-script --trust). Each case of
    # tests/agent/trust/cases.py, then imgtrust's rules.
    netlab.require_netns("dnsmasq")
    lkrn = ipxe.require_reference_lkrn()
    hello = tmp_path / "hello.ipxe"
    hello.write_bytes(HELLO)
    pki = signatures.pki
    files = {f"t/{name}.sig": path.read_bytes() for name, path in signatures.files.items()}
    files.update({
        "t/image.bin": signatures.data.read_bytes(), "t/tampered.bin": signatures.tampered
        .read_bytes(), "t/hello.ipxe": HELLO, "t/tampered.bin.ipxe": HELLO + b"echo changed\n",
        "t/hello.ipxe.sig": pki.sign(hello, signatures.issued["signer"],
                                     [signatures.issued["intermediate"], pki.root],
                                     tmp_path / "hello.ipxe.sig").read_bytes(),
    })
    script = _imgverify_script()
    run = ipxe.run_ipxe_script(script, tmp_path=tmp_path / "ipxe", lkrn=lkrn, files=files)
    assert run.succeeded and run.lines[-1] == "end", run.lines
    with ipxe.ipxe_network(tmp_path / "agent", files={**files, "t/s.ipxe": script.encode()}) as net:
        agent = run_script.run(net.lab.ns, f"{TRUST_BASE}/s.ipxe", NETWORKED_IDENTITY,
                               extra=["--trust", pki.root.fingerprint])
    assert agent.status == 3, agent.stderr
    expected = [f"{name} {'verified' if SIGNATURE_CASES[name].refusal is None else 'refused'}"
                for name in IMGVERIFY_ORDER]
    # After the first, the root is in the store (an earlier signature carried it).
    expected = [expected[0]] + [line.replace("root-not-in-signature refused",
                                             "root-not-in-signature verified")
                                for line in expected[1:]]
    assert _ipxe_output(run)[:len(expected)] == expected
    assert agent.printed == _ipxe_output(run)
    assert agent.printed[len(expected):] == [
        "unverified-refused", "hello from a signed script", "allowed-again", "hello from a "
        "signed script", "changed", "unverified-ran-now", "permanent", "still-required",
        "requiring-is-fine", "end"]
