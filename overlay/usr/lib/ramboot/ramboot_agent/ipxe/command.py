"""``ramboot-agent run-script``: run an iPXE script the way the agent would.

Fetches for real (http, https, tftp, file), prints what the script prints,
and at ``boot`` prints what would be handed to kexec. It never loads a
kernel unless ``--boot`` is given, as root, on the target.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ramboot_agent.arch import buildarch
from ramboot_agent.errors import ConfigError
from ramboot_agent.fetch import Fetcher
from ramboot_agent.ipxe import uri
from ramboot_agent.ipxe.interpreter import Interpreter
from ramboot_agent.ipxe.settings import SettingError, build_settings
from ramboot_agent.ipxe.status import Outcome, RunResult
from ramboot_agent.kexec import BootSpec, Kexec

log = logging.getLogger("ramboot")

# Exit statuses (documented in docs/agent-ipxe.md).
EXIT_BOOT = 0
EXIT_FAILED = 1
EXIT_NO_BOOT = 3
EXIT_SHELL = 4
EXIT_POWER = 5
EXIT_LOCALBOOT = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("script", metavar="FILE_OR_URL", help="the script to run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="never load a kernel; print what would be booted (the default)")
    mode.add_argument("--boot", action="store_true",
                      help="really kexec the kernel the script boots (root, on the target)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting the script sees, e.g. 224=http://... mac=52:54:00:.. "
                        "platform=efi (repeatable)")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify HTTPS certificates")
    parser.add_argument("--no-sleep", action="store_true",
                        help="skip the script's sleep commands")
    parser.add_argument("--trust", action="append", default=[], metavar="FINGERPRINT|FILE",
                        help="imgverify's trusted roots: a SHA-256 fingerprint (replaces the "
                        "default, the iPXE root CA; 'none': no fingerprint) or a certificate "
                        "file (PEM or DER; also trusted), repeatable")


def parse_sets(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ConfigError(f"--set {pair!r}: expected NAME=VALUE")
        values[name] = value
    return values


def describe(spec: BootSpec) -> str:
    return Kexec(dry_run=True).describe(spec)


class _LogReporter:
    """Events go to the debug log: run-script has no server to report to."""

    def emit(self, event: str, **details: Any) -> None:
        log.debug("event %s %s", event, details)

    def flush(self, timeout: float = 0) -> bool:
        return True


def _make_booter(really: bool) -> Any:
    if not really:
        def dry_run(spec: BootSpec) -> None:
            print(describe(spec), flush=True)
        return dry_run
    if os.geteuid() != 0:
        raise ConfigError("--boot needs root (it loads and executes a kernel with kexec)")

    kexec = Kexec(dry_run=False, reporter=_LogReporter())

    def boot(spec: BootSpec) -> None:
        kexec.load(spec)
        kexec.execute()
    return boot


def main(args: argparse.Namespace) -> int:
    from ramboot_agent.ipxe.platform_settings import platform_settings  # noqa: PLC0415

    overrides = parse_sets(args.set)
    identity = {**platform_settings(None), "buildarch": buildarch(platform.machine())}
    try:
        settings = build_settings(identity, None, overrides)
    except SettingError as error:
        raise ConfigError(f"--set: {error}") from None
    download_dir = Path(tempfile.mkdtemp(prefix="ramboot-run-script-"))
    try:
        fetcher = Fetcher(insecure=args.insecure, allow_file=True)
        interpreter = Interpreter(
            settings, fetcher, _make_booter(args.boot), _LogReporter(), sys.stdout,
            download_dir=download_dir,
            sleep=(lambda _seconds: None) if args.no_sleep else time.sleep,
            trust=_trust_factory(args.trust),
        )
        result = interpreter.run_url(uri.to_url(args.script))
    finally:
        if not args.boot:
            shutil.rmtree(download_dir, ignore_errors=True)
    return _exit_status(result)


def _trust_factory(items: list[str]) -> Any:
    """--trust values: fingerprints (or none) replace the default roots; files add to them."""
    files = [Path(item) for item in items if Path(item).is_file()]
    fingerprints = [item for item in items if not Path(item).is_file()]

    def build() -> Any:
        from ramboot_agent.trust import roots  # noqa: PLC0415

        return roots.build(",".join(fingerprints) if fingerprints else None, files=files)
    return build


def _exit_status(result: RunResult) -> int:
    if result.outcome is Outcome.BOOTED:
        return EXIT_BOOT
    if result.outcome is Outcome.SHELL:
        print("ramboot-agent: the script asked for a shell", file=sys.stderr)
        return EXIT_SHELL
    if result.outcome is Outcome.LOCALBOOT and result.localboot is not None:
        print(f"ramboot-agent: {result.localboot.describe()}", file=sys.stderr)
        return EXIT_LOCALBOOT
    if result.outcome in (Outcome.REBOOT, Outcome.POWEROFF):
        print(f"ramboot-agent: the script asked to {result.outcome.value}", file=sys.stderr)
        return EXIT_POWER
    print("ramboot-agent: the script ended without booting", file=sys.stderr)
    return EXIT_NO_BOOT
