"""Boot a QEMU guest and talk to its serial console with pexpect.

Modelled on Buildroot's support/testing/infra/emulator.py and labgrid's
QEMUDriver/ShellDriver:

- the command line is an argv list, never a shell string;
- the console is `-serial stdio` read by pexpect, logged with `logfile_read`
  only (what the guest printed, no double echo) to a per-test log file;
- every timeout is multiplied by one factor, RAMBOOT_TIMEOUT_FACTOR (TCG on
  a loaded machine is slow; raise it there rather than editing timeouts);
- a QEMU that dies at once is reported with its stderr;
- teardown is deterministic: terminate, wait, kill.

Typical use::

    with Qemu(x86_64_argv(kernel=k, initrd=i), log_path=tmp_path / "console.log") as vm:
        vm.expect("login:", timeout=60)
        shell = vm.shell(login="root")
        lines = shell.run_check("uname -m")
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import pexpect

from tests.lib.netlab import Namespace, wait_for

T = TypeVar("T")

# TCG on two shared cores: timeouts written for an idle machine, scaled here.
DEFAULT_TIMEOUT_FACTOR = 1.0


def timeout_factor() -> float:
    """The multiplier applied to every console timeout (env RAMBOOT_TIMEOUT_FACTOR)."""
    raw = os.environ.get("RAMBOOT_TIMEOUT_FACTOR", "")
    if not raw:
        return DEFAULT_TIMEOUT_FACTOR
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"RAMBOOT_TIMEOUT_FACTOR={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"RAMBOOT_TIMEOUT_FACTOR={raw!r} must be positive")
    return value


def scaled(seconds: float) -> float:
    return seconds * timeout_factor()


class QemuError(RuntimeError):
    """QEMU failed to start, died, or the guest did not say what was expected."""


# Escape sequences a BIOS console (SeaBIOS sercon) or a Linux console emits.
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """`text` without terminal escape sequences."""
    return _ANSI.sub("", text)


def require_qemu(system: str = "qemu-system-x86_64") -> str:
    """Skip the calling test unless the QEMU binary `system` is installed."""
    import pytest

    path = shutil.which(system)
    if path is None:
        pytest.skip(f"{system} is not installed (run scripts/install-deps)")
    return path


# --- command lines -----------------------------------------------------------------------------


def _common_argv(memory_mb: int) -> list[str]:
    return [
        "-m", str(memory_mb),
        "-display", "none",
        "-serial", "stdio",
        "-monitor", "none",
        "-no-reboot",
        "-nodefaults",
    ]


def x86_64_argv(
    *,
    kernel: str | os.PathLike[str] | None = None,
    initrd: str | os.PathLike[str] | None = None,
    append: str | None = None,
    memory_mb: int = 256,
    machine: str = "pc",
    extra: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """A TCG x86_64 guest whose only console is the first serial port."""
    argv = ["qemu-system-x86_64", "-M", machine, "-accel", "tcg", "-cpu", "max",
            *_common_argv(memory_mb)]
    if kernel is not None:
        argv += ["-kernel", os.fspath(kernel)]
    if initrd is not None:
        argv += ["-initrd", os.fspath(initrd)]
    if append is not None:
        argv += ["-append", append]
    return argv + [os.fspath(a) for a in extra]


# Debian's ovmf package: the 4 MiB pair exists in bookworm and trixie, the 2 MiB one only
# up to bookworm. CODE is shared read-only; VARS is copied per guest (the firmware writes it).
OVMF_DIR = Path("/usr/share/OVMF")
OVMF_PAIRS = (("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"), ("OVMF_CODE.fd", "OVMF_VARS.fd"))


def find_ovmf(directory: Path = OVMF_DIR) -> tuple[Path, Path] | None:
    """(code, vars template) of the first complete OVMF pair in `directory`, or None."""
    for code, variables in OVMF_PAIRS:
        if (directory / code).is_file() and (directory / variables).is_file():
            return directory / code, directory / variables
    return None


def require_ovmf() -> tuple[Path, Path]:
    """Skip the calling test unless QEMU x86_64 and OVMF (Debian package ovmf) are installed."""
    import pytest

    require_qemu("qemu-system-x86_64")
    firmware = find_ovmf()
    if firmware is None:
        pytest.skip(f"no OVMF firmware in {OVMF_DIR} (apt-get install ovmf)")
    return firmware


def ovmf_x86_64_argv(
    *,
    firmware: tuple[Path, Path],
    workdir: Path,
    esp: Path | None,
    memory_mb: int = 256,
    extra: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """A UEFI (OVMF, q35) x86_64 guest, booting from the directory `esp` as a FAT disk
    when given (else from what `extra` marks bootable, e.g. a NIC for PXE).

    `esp` is shown read-only through QEMU's vvfat (put the loader at
    EFI/BOOT/BOOTX64.EFI); it is the first boot device. OVMF's console is
    mirrored to the first serial port. A private copy of the variable store
    is made in `workdir`.
    """
    code, vars_template = firmware
    variables = workdir / "OVMF_VARS.fd"
    shutil.copyfile(vars_template, variables)
    disk: list[str] = []
    if esp is not None:
        if "," in os.fspath(esp):
            raise ValueError(f"{esp}: QEMU's -drive option cannot take a path with a comma")
        disk = ["-drive", f"if=none,id=esp,format=raw,readonly=on,file=fat:{os.fspath(esp)}",
                "-device", "virtio-blk-pci,drive=esp,bootindex=0"]
    return x86_64_argv(machine="q35", memory_mb=memory_mb, extra=[
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        *disk,
        *extra,
    ])


def aarch64_argv(
    *,
    kernel: str | os.PathLike[str],
    initrd: str | os.PathLike[str] | None = None,
    append: str = "console=ttyAMA0",
    dtb: str | os.PathLike[str] | None = None,
    machine: str = "virt",
    memory_mb: int = 512,
    extra: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """An aarch64 guest: `virt` (cortex-a57, TCG) or `raspi4b` (fixed 2 GiB, needs the DTB)."""
    if machine == "virt":
        argv = ["qemu-system-aarch64", "-M", "virt", "-accel", "tcg", "-cpu", "cortex-a57",
                *_common_argv(memory_mb)]
    elif machine == "raspi4b":
        if dtb is None:
            raise ValueError("raspi4b needs the board's DTB (bcm2711-rpi-4-b.dtb)")
        # raspi4b has fixed RAM and its own devices; -nodefaults would drop its UART.
        argv = ["qemu-system-aarch64", "-M", "raspi4b", "-m", "2G", "-display", "none",
                "-serial", "stdio", "-monitor", "none", "-no-reboot"]
    else:
        raise ValueError(f"unsupported aarch64 machine {machine!r} (virt, raspi4b)")
    argv += ["-kernel", os.fspath(kernel), "-append", append]
    if initrd is not None:
        argv += ["-initrd", os.fspath(initrd)]
    if dtb is not None:
        argv += ["-dtb", os.fspath(dtb)]
    return argv + [os.fspath(a) for a in extra]


def tap_nic_argv(tap: str, *, mac: str, model: str = "e1000", rom: bool = False) -> list[str]:
    """A NIC on an existing tap device (QEMU must run where the tap lives, e.g. a netns).

    `rom=False` skips the NIC's option ROM: it saves boot time when the guest
    brings its own network stack (iPXE .lkrn, Linux).
    """
    device = f"{model},netdev=n-{tap},mac={mac}"
    if not rom:
        device += ",romfile="
    return ["-netdev", f"tap,id=n-{tap},ifname={tap},script=no,downscript=no",
            "-device", device]


# --- the running guest -------------------------------------------------------------------------


@dataclass
class Qemu:
    """A running QEMU whose serial console is pexpect's stdin/stdout.

    argv: the full command line (argv[0] is the QEMU binary).
    log_path: the console log (what the guest printed); kept for the test report.
    namespace: run QEMU inside this network namespace (for tap devices).
    """

    argv: Sequence[str | os.PathLike[str]]
    log_path: Path
    namespace: Namespace | None = None
    startup_grace: float = 0.5

    def __post_init__(self) -> None:
        self.child: pexpect.spawn | None = None
        self._log: IO[str] | None = None
        self.stderr_path = self.log_path.with_name(self.log_path.name + ".stderr")
        self.started_at = 0.0

    # context management --------------------------------------------------------------------

    def __enter__(self) -> Qemu:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        argv = [os.fspath(a) for a in self.argv]
        if self.namespace is not None:
            argv = self.namespace.argv(argv)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w", encoding="utf-8", errors="replace", newline="")
        self._log.write(f"> factor {timeout_factor()}, load {os.getloadavg()[0]:.2f}\n")
        self._log.write(f"> {' '.join(argv)}\n")
        self._log.flush()
        self.started_at = time.monotonic()
        self.child = pexpect.spawn(
            argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=scaled(10),
            env={**os.environ, "QEMU_AUDIO_DRV": "none"}, dimensions=(24, 200),
            preexec_fn=self._redirect_stderr,
        )
        self.child.logfile_read = self._log
        time.sleep(self.startup_grace)
        if not self.child.isalive():
            self._raise_dead("exited at once")

    def _redirect_stderr(self) -> None:
        # Runs in the child after pexpect set up the pty: QEMU's own diagnostics
        # go to a file, not into the console stream.
        fd = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _raise_dead(self, how: str) -> None:
        assert self.child is not None
        with contextlib.suppress(pexpect.ExceptionPexpect):
            self.child.expect(pexpect.EOF, timeout=2)
        self.child.close()
        raise QemuError(
            f"QEMU {how} (status {self.child.exitstatus}, signal {self.child.signalstatus})\n"
            f"command: {' '.join(map(os.fspath, self.argv))}\nstderr:\n{self.stderr()}"
            f"\nconsole log: {self.log_path}"
        )

    def stop(self) -> None:
        """Terminate QEMU (SIGTERM, wait, SIGKILL); safe to call twice."""
        if self.child is not None:
            if self.child.isalive():
                self.child.terminate(force=False)
            if self.child.isalive():
                with contextlib.suppress(pexpect.ExceptionPexpect):
                    self.child.expect(pexpect.EOF, timeout=5)
            if self.child.isalive():
                self.child.terminate(force=True)
            self.child.close(force=True)
            self.child = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def elapsed(self) -> float:
        """Seconds since QEMU was started."""
        return time.monotonic() - self.started_at

    # console -------------------------------------------------------------------------------

    def _require_child(self) -> pexpect.spawn:
        if self.child is None:
            raise QemuError("QEMU is not running")
        return self.child

    def expect(self, pattern: str | re.Pattern[str] | Sequence[str | re.Pattern[str]],
               timeout: float) -> int:
        """Wait for `pattern` (regex or list of regexes) on the console; `timeout` is scaled.

        Raises QemuError with the tail of the console when the guest dies or is
        silent for too long.
        """
        child = self._require_child()
        patterns = [pattern] if isinstance(pattern, str | re.Pattern) else list(pattern)
        try:
            return int(child.expect(patterns, timeout=scaled(timeout)))
        except pexpect.TIMEOUT:
            raise QemuError(
                f"no {patterns!r} on the console within {scaled(timeout):.0f}s; "
                f"last output:\n{self.tail()}"
            ) from None
        except pexpect.EOF:
            self._raise_dead(f"exited while waiting for {patterns!r}; last output:\n{self.tail()}")
            raise AssertionError("unreachable") from None

    def expect_exact(self, text: str, timeout: float) -> None:
        child = self._require_child()
        try:
            child.expect_exact(text, timeout=scaled(timeout))
        except pexpect.TIMEOUT:
            raise QemuError(
                f"no {text!r} on the console within {scaled(timeout):.0f}s; "
                f"last output:\n{self.tail()}"
            ) from None
        except pexpect.EOF:
            self._raise_dead(f"exited while waiting for {text!r}; last output:\n{self.tail()}")

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for QEMU to exit by itself (guest poweroff, -no-reboot); returns its status."""
        child = self._require_child()
        try:
            child.expect(pexpect.EOF, timeout=scaled(timeout))
        except pexpect.TIMEOUT:
            raise QemuError(
                f"QEMU still running after {scaled(timeout):.0f}s; last output:\n{self.tail()}"
            ) from None
        child.close()
        return child.exitstatus

    @property
    def before(self) -> str:
        """Console text between the previous match and the last one."""
        child = self._require_child()
        return str(child.before or "")

    def sendline(self, line: str) -> None:
        self._require_child().sendline(line)

    def send(self, text: str) -> None:
        """Type `text` on the console as it is (no newline added)."""
        self._require_child().send(text)

    def console_text(self) -> str:
        """Everything the guest printed so far (read back from the log file)."""
        if self._log is not None:
            self._log.flush()
        # newline="": keep the CRs; universal newlines would turn "\r\r\n" into two lines.
        with self.log_path.open(encoding="utf-8", errors="replace", newline="") as log:
            return log.read()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(strip_ansi(self.console_text()).splitlines()[-lines:])

    def shell(self, prompt: str = r"[#$] ", *, login: str | None = None,
              timeout: float = 120) -> Shell:
        """A marker-wrapped shell on the console (after an optional root login)."""
        if login is not None:
            self.expect(r"login: ", timeout=timeout)
            self.sendline(login)
        shell = Shell(self)
        shell.attach(prompt, timeout=timeout)
        return shell


class Shell:
    """A POSIX shell on a serial console, with a unique prompt and marker-wrapped commands.

    `run(cmd)` prints a marker before and after the command's output; the
    markers are written in the command as two halves joined by the shell, so
    the echoed command line never contains a whole marker.
    """

    def __init__(self, vm: Qemu) -> None:
        self.vm = vm
        self.prompt = f"RB{secrets.token_hex(4)}# "

    def attach(self, prompt: str, *, timeout: float) -> None:
        self.vm.sendline("")
        self.vm.expect(prompt, timeout=timeout)
        # Set PS1 with a quoted split so the echo of this line is not the prompt.
        half = len(self.prompt) // 2
        self.vm.sendline(f"PS1='{self.prompt[:half]}''{self.prompt[half:]}'; stty -echo cols 1000")
        self.vm.expect_exact(self.prompt, timeout=timeout)

    def run(self, command: str, timeout: float = 30) -> tuple[list[str], int]:
        """Run `command`; return its output lines and exit status."""
        token = secrets.token_hex(6)
        begin, end = f"RBB{token}", f"RBE{token}"
        # '%s' joins the halves at run time: the echoed line holds neither marker.
        self.vm.sendline(
            f"printf '%s%s\\n' RBB {token}; {command}; "
            f"printf '%s%s:%s\\n' RBE {token} \"$?\""
        )
        self.vm.expect_exact(begin, timeout=timeout)
        self.vm.expect(rf"{end}:(\d+)", timeout=timeout)
        child = self.vm._require_child()
        status = int(child.match.group(1))
        output = strip_ansi(self.vm.before).replace("\r", "")
        # The first line is the rest of the begin-marker line, normally empty.
        lines = output.split("\n")[1:]
        while lines and lines[-1] == "":
            lines.pop()
        self.vm.expect_exact(self.prompt, timeout=timeout)
        return lines, status

    def run_check(self, command: str, timeout: float = 30) -> list[str]:
        """Run `command`; raise QemuError unless it exits 0."""
        lines, status = self.run(command, timeout=timeout)
        if status != 0:
            raise QemuError(f"{command!r} exited {status}:\n" + "\n".join(lines))
        return lines

    def poll_until(self, command: str, predicate: Callable[[list[str], int], bool], *,
                   timeout: float, interval: float = 1.0) -> list[str]:
        """Re-run `command` until `predicate(lines, status)`, within `timeout` (scaled) overall."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            lines, status = self.run(command, timeout=timeout)
            if predicate(lines, status):
                return lines
            if time.monotonic() >= deadline:
                raise QemuError(
                    f"{command!r} never satisfied the condition within {scaled(timeout):.0f}s; "
                    f"last (status {status}):\n" + "\n".join(lines)
                )
            time.sleep(interval)


@contextlib.contextmanager
def running(argv: Sequence[str | os.PathLike[str]], log_path: Path,
            namespace: Namespace | None = None) -> Iterator[Qemu]:
    """`with running(argv, log) as vm:`; on an exception the console tail is in the message."""
    vm = Qemu(argv, log_path, namespace)
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


def poll_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.2,
               what: str = "condition") -> T:
    """Host-side polling with a scaled overall deadline."""
    return wait_for(predicate, timeout=scaled(timeout), interval=interval, what=what)


__all__ = [
    "OVMF_DIR", "Qemu", "QemuError", "Shell", "aarch64_argv", "find_ovmf", "ovmf_x86_64_argv",
    "poll_until", "require_ovmf", "require_qemu", "running", "scaled", "strip_ansi",
    "tap_nic_argv", "timeout_factor", "x86_64_argv",
]
