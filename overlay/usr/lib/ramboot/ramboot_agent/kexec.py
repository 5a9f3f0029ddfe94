"""Loading and executing the next kernel with kexec-tools.

`load` first asks for kexec_file_load (`kexec -l -s`: the kernel parses and,
with signature enforcement, verifies the image), then falls back to the older
kexec_load (`kexec -l`: kexec-tools parses the image) when the kernel refuses.
`-l` (load only) is needed with `-s` too: without an action kexec-tools loads
and then runs shutdown(8) to execute at once.
Several initrds are concatenated in order, each starting at a 4 KiB
boundary (zero padding between them, none after the last), byte for byte
the memory BIOS iPXE hands a kernel (its initrd_load_all, INITRD_ALIGN): the
kernel unpacks concatenated cpio archives (compressed or not) and skips the
zeros between them.

kexec is argv-only (never a shell), and `describe` says exactly what would run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ramboot_agent.errors import BootError

log = logging.getLogger("ramboot.kexec")

KEXEC_LOADED = Path("/sys/kernel/kexec_loaded")
INITRD_ALIGN = 4096
COMBINED_INITRD = "ramboot-initrd.combined"
LOAD_TIMEOUT = 120.0
# Bounds how long a reporter may hold up the boot to deliver its last events.
FLUSH_TIMEOUT = 3.0
FILE_LOAD, LEGACY_LOAD = "kexec_file_load", "kexec_load"


class EventSink(Protocol):
    def emit(self, event: str, **details: Any) -> None: ...
    def flush(self, timeout: float = ...) -> bool: ...


@dataclass(frozen=True)
class BootSpec:
    kernel: Path
    initrds: list[Path] = field(default_factory=list)
    cmdline: str = ""


@dataclass(frozen=True)
class FileInfo:
    path: Path
    size: int
    sha256: str


def file_info(path: Path) -> FileInfo:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            while chunk := source.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        raise BootError(f"cannot read {path}: {error.strerror}") from None
    return FileInfo(path, size, digest.hexdigest())


def combined_size(sizes: list[int]) -> int:
    """The length of initrds of `sizes` laid out as concatenate_initrds does."""
    size = 0
    for length in sizes:
        size += -size % INITRD_ALIGN + length
    return size


def concatenate_initrds(initrds: list[Path], dest: Path) -> FileInfo:
    """Write `initrds` to `dest` in order, each starting at an INITRD_ALIGN boundary."""
    digest = hashlib.sha256()
    size = 0
    try:
        with dest.open("wb") as out:
            for initrd in initrds:
                padding = b"\0" * (-size % INITRD_ALIGN)
                out.write(padding)
                digest.update(padding)
                size += len(padding)
                with initrd.open("rb") as source:
                    while chunk := source.read(1024 * 1024):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
    except OSError as error:
        dest.unlink(missing_ok=True)
        raise BootError(f"cannot combine initrds into {dest}: {error.strerror}") from None
    return FileInfo(dest, size, digest.hexdigest())


@dataclass(frozen=True)
class Loaded:
    spec: BootSpec
    method: str
    kernel: FileInfo
    initrd: FileInfo | None
    fallback_reason: str | None


class Kexec:
    """Loads a BootSpec into the running kernel and jumps to it.

    `work_dir` receives the combined initrd (default: next to the first
    initrd, i.e. the agent's tmpfs download directory).
    """

    def __init__(
        self,
        *,
        dry_run: bool = False,
        reporter: EventSink | None = None,
        kexec_binary: str = "kexec",
        work_dir: Path | None = None,
        loaded_flag: Path = KEXEC_LOADED,
    ) -> None:
        self.dry_run = dry_run
        self.reporter = reporter
        self.kexec_binary = kexec_binary
        self.work_dir = work_dir
        self.loaded_flag = loaded_flag
        self.loaded: Loaded | None = None
        self.dry_run_spec: BootSpec | None = None

    # -- argv -------------------------------------------------------------------

    def _initrd_path(self, spec: BootSpec) -> Path | None:
        if not spec.initrds:
            return None
        if len(spec.initrds) == 1:
            return spec.initrds[0]
        return (self.work_dir or spec.initrds[0].parent) / COMBINED_INITRD

    def load_argv(self, spec: BootSpec, method: str) -> list[str]:
        flags = ["-l", "-s"] if method == FILE_LOAD else ["-l"]
        argv = [self.kexec_binary, *flags, f"--command-line={spec.cmdline}"]
        initrd = self._initrd_path(spec)
        if initrd is not None:
            argv.append(f"--initrd={initrd}")
        argv.append(str(spec.kernel))
        return argv

    def exec_argv(self) -> list[str]:
        return [self.kexec_binary, "-e"]

    def describe(self, spec: BootSpec) -> str:
        """Exactly what `load` and `execute` would do, for --dry-run and the console."""
        kernel = file_info(spec.kernel)
        lines = [f"kernel   {kernel.path}  {kernel.size} bytes  sha256 {kernel.sha256}"]
        for initrd in spec.initrds:
            info = file_info(initrd)
            lines.append(f"initrd   {info.path}  {info.size} bytes  sha256 {info.sha256}")
        combined = self._initrd_path(spec)
        if len(spec.initrds) > 1:
            padded = combined_size([file_info(i).size for i in spec.initrds])
            lines.append(f"combined {combined}  {padded} bytes "
                         f"({len(spec.initrds)} initrds in order, each at a "
                         f"{INITRD_ALIGN}-byte boundary)")
        if not spec.initrds:
            lines.append("initrd   (none)")
        lines.append(f"cmdline  {spec.cmdline}")
        lines.append(f"load     {shlex.join(self.load_argv(spec, FILE_LOAD))}")
        lines.append(f"fallback {shlex.join(self.load_argv(spec, LEGACY_LOAD))}")
        lines.append(f"execute  {shlex.join(self.exec_argv())}")
        return "\n".join(lines)

    # -- load and execute --------------------------------------------------

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        log.debug("running %s", shlex.join(argv))
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=LOAD_TIMEOUT)
        except FileNotFoundError:
            raise BootError(f"{self.kexec_binary} not found: kexec-tools is not "
                            "installed") from None
        except subprocess.TimeoutExpired:
            raise BootError(f"{shlex.join(argv)} did not finish in "
                            f"{LOAD_TIMEOUT:.0f}s") from None

    @staticmethod
    def _reason(done: subprocess.CompletedProcess[str]) -> str:
        text = " ".join((done.stderr or done.stdout or "").split())
        return text or f"exit status {done.returncode} without a message"

    def _emit(self, event: str, **details: Any) -> None:
        if self.reporter is not None:
            self.reporter.emit(event, **details)

    def load(self, spec: BootSpec) -> Loaded | None:
        """Load `spec`; returns what was loaded (None in dry-run mode)."""
        for path in (spec.kernel, *spec.initrds):
            if not path.is_file():
                raise BootError(f"cannot load {path}: no such file")
        # Never hand kexec an HTML page, an iPXE binary or an initramfs.
        from ramboot_agent import arch, kernel_image  # noqa: PLC0415
        kernel_image.require_kernel(spec.kernel, buildarch=arch.buildarch(os.uname().machine))
        if self.dry_run:
            log.info("dry run, would load:\n%s", self.describe(spec))
            self.dry_run_spec = spec
            return None
        kernel = file_info(spec.kernel)
        initrd: FileInfo | None = None
        if len(spec.initrds) == 1:
            initrd = file_info(spec.initrds[0])
        elif spec.initrds:
            combined = self._initrd_path(spec)
            assert combined is not None
            initrd = concatenate_initrds(spec.initrds, combined)

        done = self._run(self.load_argv(spec, FILE_LOAD))
        method, fallback_reason = FILE_LOAD, None
        if done.returncode != 0:
            # kexec_file_load is refused for many reasons (no CONFIG_KEXEC_FILE,
            # an image format only kexec-tools parses, lockdown): try kexec_load.
            fallback_reason = self._reason(done)
            log.warning("kexec -l -s (kexec_file_load) failed: %s; trying kexec -l",
                        fallback_reason)
            method = LEGACY_LOAD
            done = self._run(self.load_argv(spec, LEGACY_LOAD))
            if done.returncode != 0:
                reason = (f"kexec could not load {spec.kernel}: kexec_file_load: "
                          f"{fallback_reason}; kexec_load: {self._reason(done)}")
                self._emit("kexec-load", ok=False, reason=reason)
                raise BootError(reason)
        flag = self._loaded_flag()
        if flag != "1":
            reason = (f"{shlex.join(self.load_argv(spec, method))} succeeded but "
                      f"{self.loaded_flag} is {flag!r}, not '1'")
            self._emit("kexec-load", ok=False, reason=reason)
            raise BootError(reason)
        self.loaded = Loaded(spec, method, kernel, initrd, fallback_reason)
        details: dict[str, Any] = {
            "ok": True, "method": method, "kernel": str(kernel.path),
            "kernel_size": kernel.size, "kernel_sha256": kernel.sha256,
            "initrds": [str(p) for p in spec.initrds], "cmdline": spec.cmdline,
        }
        if initrd is not None:
            details.update(initrd_size=initrd.size, initrd_sha256=initrd.sha256)
        if fallback_reason:
            details["fallback_reason"] = fallback_reason
        self._emit("kexec-load", **details)
        log.info("loaded %s with %s", spec.kernel, method)
        return self.loaded

    def _loaded_flag(self) -> str:
        try:
            return self.loaded_flag.read_text().strip()
        except OSError as error:
            return f"unreadable ({error.strerror})"

    def execute(self) -> None:
        """Jump to the loaded kernel. Returns only in dry-run mode; raises on failure."""
        if self.dry_run:
            log.info("dry run: would run %s", shlex.join(self.exec_argv()))
            if self.dry_run_spec is not None:
                # The control plane sees what would have booted, as in a real boot.
                spec = self.dry_run_spec
                self._emit("boot", dry_run=True, kernel=str(spec.kernel),
                           kernel_sha256=file_info(spec.kernel).sha256,
                           initrds=[str(p) for p in spec.initrds], cmdline=spec.cmdline)
            return
        if self.loaded is None:
            raise BootError("nothing loaded: kexec -e without a successful load")
        self._emit("boot", method=self.loaded.method, kernel=str(self.loaded.kernel.path),
                   cmdline=self.loaded.spec.cmdline)
        if self.reporter is not None:
            self.reporter.flush(FLUSH_TIMEOUT)
        done = self._run(self.exec_argv())
        # kexec -e only comes back when the jump did not happen.
        raise BootError(f"kexec -e failed: {self._reason(done)}")
