"""`ramboot-agent run`: the boot-time flow.

cmdline → logging → network → identity → reporter → instructions URL →
fetch → interpret (an iPXE script) or run (a provisioning plan) → boot;
any failure → rescue (reason on the console, a `failure` event, then the
rescue shell or a reboot per `ramboot.shell=`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ramboot_agent import __version__, rescue
from ramboot_agent.cmdline import Settings, load_cmdline
from ramboot_agent.errors import AgentError, BootError, ConfigError, ScriptError
from ramboot_agent.log import setup_logging

if TYPE_CHECKING:
    from ramboot_agent.net import Lease

log = logging.getLogger("ramboot")

MAX_INSTRUCTIONS_SIZE = 1024 * 1024
# Flows of this process: what their scripts still held when they ended (the kernel
# of a failed kexec, say) stays on disk for the rescue shell; what they freed is gone.
_FINISHED: list[BootFlow] = []
EXIT_REFUSED = 2  # not the in-RAM system, and not --force: nothing was touched
INSTRUCTIONS_DEADLINE = 300.0  # seconds for the instructions download, retries included


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cmdline", type=Path, default=Path("/proc/cmdline"),
        help="read kernel parameters from this file (default: /proc/cmdline)",
    )
    parser.add_argument(
        "--no-kmsg", action="store_true", help="do not copy log lines to /dev/kmsg",
    )
    parser.add_argument(
        "--force", action="store_true",
        help="run even outside the in-RAM system: it takes over every Ethernet interface",
    )
    # For tests in network namespaces, which must not touch the host's files.
    parser.add_argument("--runtime-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--resolv-conf", type=Path, default=None, help=argparse.SUPPRESS)


# The query the embedded iPXE script (board/common/ipxe/ramboot.ipxe) appends
# to option 224, in its order: one endpoint serves iPXE machines and agents.
IDENTITY_QUERY_KEYS = (
    "mac", "ip", "uuid", "serial", "manufacturer", "product", "asset", "hostname",
    "buildarch", "platform",
)
# Values iPXE expands without :uristring; it escapes the others.
_VERBATIM_KEYS = frozenset({"mac", "ip", "uuid", "buildarch", "platform"})
# Added after the identity: the agent asks for the machine's target (stage 2),
# iPXE for the way into ramboot (stage 1, no `stage` key), so one endpoint can
# never send a machine back into ramboot by mistake.
STAGE_QUERY = "stage=agent"


def identity_query(identity: dict[str, str]) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    def value(key: str) -> str:
        text = identity.get(key, "")
        return text if key in _VERBATIM_KEYS else quote(text, safe="")

    pairs = [f"{key}={value(key)}" for key in IDENTITY_QUERY_KEYS]
    return "&".join([*pairs, STAGE_QUERY])


def instructions_url(settings: Settings, lease: Lease | None, identity: dict[str, str]) -> str:
    """`ramboot.url=` as given, else DHCP option 224 of the boot interface with
    the machine's identity appended, as the embedded iPXE script sends it."""
    if settings.url:
        return settings.url
    url = lease.option_text(224) if lease is not None else None
    if url:
        url = url.strip()
        return f"{url}{'&' if '?' in url else '?'}{identity_query(identity)}"
    interface = lease.interface if lease is not None else "no interface"
    raise ConfigError(
        "no instructions: neither ramboot.url= on the kernel command line nor DHCP "
        f"option 224 in the lease of {interface}"
    )


def document_kind(data: bytes, url: str) -> str:
    """"ipxe" for `#!ipxe` scripts, "plan" for JSON documents (provisioning
    plans, validated when they run); anything else is an error naming the URL."""
    from ramboot_agent.plan import is_plan  # noqa: PLC0415

    head = data.lstrip(b"\xef\xbb\xbf")  # tolerate a UTF-8 byte order mark
    if head.startswith(b"#!ipxe"):
        return "ipxe"
    if is_plan(head):
        return "plan"
    first_line = head.split(b"\n", 1)[0][:60].decode("utf-8", errors="replace")
    raise ScriptError(url, 1, "neither an iPXE script ('#!ipxe') nor a provisioning plan "
                      f"(JSON): found {first_line!r}")


def script_settings(identity: dict[str, str], lease: Lease) -> Any:
    """The settings a boot script starts with: what iPXE knows of the machine
    (net0's device, memsize, version), identity, then every DHCP option.

    A value its setting's type cannot hold (a malformed MAC or UUID from the
    firmware, an odd next-server) is left unset with a warning: it costs
    that setting, not the boot.

    `ramboot-stage` is "agent" (unset in real iPXE): a stage-1 script, which boots
    ramboot, refuses to run in ramboot (tools/ramboot/templates/ipxe/stage1.ipxe.j2).
    """
    from ramboot_agent.ipxe.platform_settings import platform_settings  # noqa: PLC0415
    from ramboot_agent.ipxe.settings import SettingError, build_settings  # noqa: PLC0415

    machine = {**platform_settings(lease.interface), **identity}
    extra = {"ramboot-stage": "agent"}
    if lease.next_server:
        extra["next-server"] = lease.next_server
    if lease.boot_file:
        extra["filename"] = lease.boot_file
    try:
        return build_settings(machine, lease.options, extra)
    except SettingError:
        pass  # find the values at fault, below

    def usable(values: dict[str, str]) -> dict[str, str]:
        kept = {}
        for key, value in values.items():
            try:
                build_settings({key: value})
            except SettingError as error:
                log.warning("%s=%r cannot be a script setting (%s); left unset",
                            key, value, error)
            else:
                kept[key] = value
        return kept

    try:
        return build_settings(usable(machine), lease.options, usable(extra))
    except SettingError as error:
        raise ConfigError(f"DHCP lease of {lease.interface}: {error}") from None


def _uptime() -> float | None:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class PlanStarter:
    """Runs a plan the boot flow fetched, directly or by an iPXE script's `chain`."""

    def __init__(self, reporter: Any, fetcher: Any, settings: Settings,
                 runtime_dir: Path) -> None:
        self.reporter = reporter
        self.fetcher = fetcher
        self.settings = settings
        self.runtime_dir = runtime_dir

    def context(self, url: str) -> Any:
        from ramboot_agent.plan.context import Context  # noqa: PLC0415

        return Context(reporter=self.reporter, fetcher=self.fetcher, out=sys.stdout,
                       runtime_dir=self.runtime_dir, base_url=url,
                       dry_run=self.settings.dry_run, insecure=self.settings.insecure,
                       settings=self.settings)

    def __call__(self, data: bytes, url: str) -> Any:
        from ramboot_agent.plan.runner import run_document  # noqa: PLC0415

        return run_document(data, url, self.context(url))


class BootFlow:
    """One run of the flow; keeps what the failure path can use (reporter, fetcher)."""

    def __init__(
        self, settings: Settings, started: float, *,
        runtime_dir: Path | None = None, resolv_conf: Path | None = None,
    ) -> None:
        self.settings = settings
        self.started = started
        self.runtime_dir = runtime_dir
        self.resolv_conf = resolv_conf
        self.reporter: Any = None
        self.fetcher: Any = None
        self.interpreter: Any = None  # its images' files live as long as it does

    def run(self) -> int:
        """The flow proper; raises AgentError on any failure."""
        # Imported here: start-up of `run` pays only for what it uses, in order.
        from ramboot_agent import net  # noqa: PLC0415

        settings = self.settings
        uptime = _uptime()
        runtime_dir = self.runtime_dir or net.RUNTIME_DIR
        lease = net.bring_up(
            settings, runtime_dir=runtime_dir,
            resolv_conf=self.resolv_conf or Path("/etc/resolv.conf"),
        )

        from ramboot_agent.events import Reporter  # noqa: PLC0415
        from ramboot_agent.fetch import Fetcher  # noqa: PLC0415
        from ramboot_agent.identity import collect_identity  # noqa: PLC0415

        identity = collect_identity(lease)
        report_url = settings.report_url or lease.option_text(net.OPTION_REPORT_URL)
        self.reporter = reporter = Reporter(identity, report_url, insecure=settings.insecure,
                                            token=settings.token)
        reporter.emit("kernel-started", uptime=uptime)
        reporter.emit(
            "agent-started", version=__version__,
            seconds=round(time.monotonic() - self.started, 3),
        )
        reporter.emit(
            "network-up", interface=lease.interface, ip=lease.ip, prefix_len=lease.prefix_len,
            router=lease.router, server_id=lease.server_id,
        )
        log.info("identity: %s", " ".join(f"{k}={v}" for k, v in identity.items() if v))
        from ramboot_agent import clock  # noqa: PLC0415

        # Before anything checks a certificate: a Pi starts in 1970.
        clock.set_clock(clock.servers_from(settings.ntp_servers,
                                           lease.options.get(net.OPTION_NTP_SERVERS)), reporter)

        url = instructions_url(settings, lease, identity)
        # file: only when the kernel command line itself names a local file.
        local = url == settings.url and url.lower().startswith("file:")
        self.fetcher = fetcher = Fetcher(insecure=settings.insecure, allow_file=local)
        if settings.token:  # for the control plane that answers the instructions URL
            fetcher.authorize(url, settings.token)
        log.info("instructions: %s", url)
        fetched = fetcher.fetch_bytes(url, max_size=MAX_INSTRUCTIONS_SIZE,
                                      deadline=INSTRUCTIONS_DEADLINE)
        data = fetched.data or b""
        reporter.emit(
            "script-fetched", url=url, bytes=fetched.size, sha256=fetched.sha256,
            seconds=round(fetched.seconds, 3),
        )
        kind = document_kind(data, url)
        download_dir = runtime_dir / "images"
        # Images of an earlier run in this boot are the agent's own, and take RAM.
        shutil.rmtree(download_dir, ignore_errors=True)
        download_dir.mkdir(parents=True, exist_ok=True)
        plans = PlanStarter(reporter, fetcher, settings, runtime_dir)
        if kind == "plan":
            return self.finish(plans(data, fetched.final_url), url)

        from ramboot_agent.ipxe.interpreter import Interpreter  # noqa: PLC0415
        from ramboot_agent.kexec import BootSpec, Kexec  # noqa: PLC0415

        kexec = Kexec(dry_run=settings.dry_run, reporter=reporter)

        def booter(spec: BootSpec) -> None:
            kexec.load(spec)
            kexec.execute()  # returns only in a dry run

        from ramboot_agent.trust import roots  # noqa: PLC0415

        self.interpreter = interpreter = Interpreter(
            script_settings(identity, lease), fetcher, booter, reporter, sys.stdout,
            download_dir=download_dir, interface=lease.interface, plan_runner=plans,
            trust=lambda: roots.build(settings.trust),
        )
        # Relative URLs resolve against where redirects led, as in iPXE.
        base = getattr(fetched, "final_url", None) or url
        result = interpreter.run_text(data.decode("utf-8", errors="replace"), base)
        if result.localboot is not None:
            return boot_next_device(result.localboot, plans)
        return self.finish(result.outcome, url)

    def finish(self, outcome: Any, url: str) -> int:
        """What happens after a script returned (a real boot never returns)."""
        from ramboot_agent.ipxe.status import Outcome  # noqa: PLC0415

        reporter = self.reporter
        if outcome is Outcome.BOOTED and self.settings.dry_run:
            log.info("dry run complete: nothing was booted")
            reporter.close(5.0)
            return rescue.EXIT_RESCUE if self.settings.shell == "after" else rescue.EXIT_DONE
        if outcome is Outcome.COMPLETED:
            log.info("%s: the plan is complete; the machine stays in the RAM system", url)
            reporter.close(5.0)
            return rescue.EXIT_RESCUE if self.settings.shell == "after" else rescue.EXIT_DONE
        if outcome is Outcome.SHELL:
            reporter.emit("shell", url=url)
            reporter.close(5.0)
            log.info("%s asked for a shell", url)
            return rescue.EXIT_RESCUE
        if outcome in (Outcome.REBOOT, Outcome.POWEROFF):
            reporter.emit(outcome.value, url=url)
            reporter.close(5.0)
            rescue.power(outcome.value)
            return rescue.EXIT_RESCUE
        raise ScriptError(url, None, "the script ended without booting a kernel")


def boot_next_device(request: Any, plans: PlanStarter) -> int:
    """The one place a script's "boot the local disk" arrives: `exit N` (iPXE
    hands back to the firmware's next boot device) or `sanboot` of a BIOS drive.

    The agent does what the firmware would: it boots the first local disk
    whose boot loader names a kernel (the `localboot` action's kexec, see
    docs/plans.md); with none, the reason goes to the rescue path.
    """
    from ramboot_agent.plan.actions.localboot import first_disk_handoff  # noqa: PLC0415

    reporter = plans.reporter
    reporter.emit("localboot-requested", url=request.url, line=request.line,
                  command=request.command, drive=request.drive, status=request.status)
    log.info("%s: booting the local disk", request.describe())
    ctx = plans.context(request.url)
    try:
        handoff = first_disk_handoff(ctx)
    except AgentError as error:
        raise AgentError(f"{request.describe()}, but {error}: staying in ramboot") from None
    reporter.flush(5.0)
    handoff.perform()  # returns only in a dry run
    if plans.settings.dry_run:
        reporter.close(5.0)
        return rescue.EXIT_DONE
    raise BootError(f"{request.describe()}: booting the local disk returned")


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from ramboot_agent.net import refuse_outside_ram_system  # noqa: PLC0415

    refusal = refuse_outside_ram_system("ramboot-agent run", force=args.force)
    if refusal:
        print(f"ramboot-agent: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        settings = load_cmdline(args.cmdline)
    except ConfigError as error:
        setup_logging(0, kmsg=not args.no_kmsg)
        return rescue.fail(f"kernel command line: {error}", None, Settings())
    setup_logging(settings.debug, kmsg=not args.no_kmsg)
    log.info("ramboot-agent %s starting (python %s)", __version__, sys.version.split()[0])
    for warning in settings.warnings:
        log.warning("%s", warning)
    if settings.shell == "before":
        rescue.interactive_shell("rescue shell requested by ramboot.shell=before")
    flow = BootFlow(
        settings, started, runtime_dir=args.runtime_dir, resolv_conf=args.resolv_conf
    )
    _FINISHED.append(flow)
    policy = None
    details: dict[str, Any] = {}
    try:
        return flow.run()
    except BootError as error:
        reason = f"{type(error).__name__}: {error}"
        policy = "reboot" if settings.on_kexec_failure == "reboot" else None
    except AgentError as error:
        reason = f"{type(error).__name__}: {error}"
        details = getattr(error, "details", {})
    except Exception as error:
        # A bug must still end in a reason on the console and a rescue shell.
        log.error("%s", "".join(traceback.format_exception(error)).rstrip())
        reason = f"internal error: {type(error).__name__}: {error}"
    return rescue.fail(reason, flow.reporter, settings, fetcher=flow.fetcher, policy=policy,
                       details=details)
