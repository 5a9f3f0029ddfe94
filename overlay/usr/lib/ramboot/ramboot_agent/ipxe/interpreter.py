"""Run iPXE scripts: iPXE's control flow and command status rules.

* A line's status is that of the last command it ran; ``&&``/``||``/``;``
  decide whether the next command on the line runs.
* A line that fails ends the script with that status (so ``cmd || goto x``
  is how scripts handle failure); ``exit N`` ends it with status N.
* ``chain`` of a script runs it nested (relative URLs resolve against it)
  and returns its status to the caller; ``chain --replace`` runs it instead
  of the caller.
* Booting a kernel, ``shell``, ``reboot`` and ``poweroff`` end every script.
* A command the agent does not have is iPXE's "command not found": a
  failure ``||`` can catch, printed as iPXE prints it and logged as a warning
  naming the script and line.
* ``exit`` reaching the top (run by the top script, or ``exit N`` in a
  chained one that no ``||`` catches), and ``sanboot`` of a local drive, end
  the run with Outcome.LOCALBOOT: iPXE would hand the machine back to its
  firmware (the next boot device) or boot the disk. A script that just ends
  is Outcome.EXITED.

Collaborators are passed in, so the same interpreter runs on the target
(real fetcher, kexec booter) and on a workstation (dry-run booter).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ramboot_agent.errors import AgentError, BootError, FetchError, ScriptError
from ramboot_agent.fetch import release
from ramboot_agent.ipxe import uri
from ramboot_agent.ipxe.command_table import COMMANDS
from ramboot_agent.ipxe.expand import ExpansionError, expand
from ramboot_agent.ipxe.images import Image, ImageRegistry
from ramboot_agent.ipxe.parser import MAX_SCRIPT_CHARS, Line, Script, is_script, parse
from ramboot_agent.ipxe.settings import SettingError, SettingsStore, parse_setting_name
from ramboot_agent.ipxe.status import (
    CommandFailed,
    CommandNotFound,
    ExitRequested,
    LocalBoot,
    Menu,
    Outcome,
    RunResult,
)
from ramboot_agent.kexec import BootSpec
from ramboot_agent.log import sanitise
from ramboot_agent.plan.load import is_plan

if TYPE_CHECKING:
    from ramboot_agent.trust.roots import TrustStore
    from ramboot_agent.trust.x509 import Certificate

log = logging.getLogger("ramboot")

MAX_CHAIN_DEPTH = 32
MAX_LINES = 1_000_000


def _looks_like_plan(image: Image) -> bool:
    """Whether an executed image is a plan. Decided only at `chain`: a JSON file
    fetched with `initrd` is data for the kernel, whatever it starts with."""
    try:
        with image.path.open("rb") as stream:
            return is_plan(stream.read(64))
    except OSError:
        return False


class Fetcher(Protocol):
    """ramboot_agent.fetch.Fetcher's interface; the result has path, data, size,
    sha256 and seconds."""

    def fetch_file(self, url: str, dest_dir: Path, *, origin: str | None = ...) -> Any: ...


class Reporter(Protocol):
    def emit(self, event: str, **details: Any) -> None: ...


class _Finished(Exception):
    """Unwinds every running script: boot, shell, reboot, poweroff."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.outcome.value)
        self.result = result


@dataclass
class Frame:
    """One running script: where it is, and its base URL."""

    script: Script
    index: int = 0
    line: Line | None = None


class Interpreter:
    def __init__(
        self,
        settings: SettingsStore,
        fetcher: Fetcher,
        booter: Callable[[BootSpec], None],
        reporter: Reporter,
        out: TextIO,
        *,
        download_dir: Path,
        sleep: Callable[[float], None] = time.sleep,
        cpu_flags: frozenset[str] | None = None,
        interface: str | None = None,
        clock_setter: Callable[[str], None] | None = None,
        plan_runner: Callable[[bytes, str], Outcome] | None = None,
        trust: Callable[[], TrustStore] | None = None,
    ) -> None:
        self.settings = settings
        self.fetcher = fetcher
        self.booter = booter
        self.reporter = reporter
        self.out = out
        self.download_dir = download_dir
        self.sleep = sleep
        self.cpu_flags = cpu_flags
        self.interface = interface  # the Linux name of iPXE's net0, when there is one
        self._clock_setter = clock_setter
        self.plan_runner = plan_runner
        self.images = ImageRegistry()
        self.menus: dict[str | None, Menu] = {}
        self.params: dict[str | None, list[tuple[str, str]]] = {}
        self.frames: list[Frame] = []
        self._downloads = 0
        self._lines_run = 0
        self._stop_line = False  # goto: stop the rest of this line
        self._stop_script = False  # exit / chain --replace: stop this script
        self._replacement: Image | None = None
        self._failure: ScriptError | None = None
        # Set by `exit`; cleared by any other failure and when a chain returns.
        self._exit_request: LocalBoot | None = None
        self.trusted_only = False  # imgtrust: execute only images imgverify checked
        self.trust_permanent = False  # imgtrust --permanent: no changing it again
        self._trust_factory = trust
        self._trust: TrustStore | None = None
        # Every certificate a signature carried: later chains may use them, as
        # iPXE's certificate store keeps what it parsed.
        self.certificates: list[Certificate] = []
        # iPXE's current working URI: the running script's (final) URL.
        settings.define_dynamic("builtin", "cwuri", self._cwuri, "string")
        settings.define_dynamic("builtin", "cwduri", self._cwduri, "string")

    # --- entry points ------------------------------------------------------

    def run_url(self, url: str) -> RunResult:
        """Fetch and run the script at ``url``; raises ScriptError on failure."""
        try:
            image = self.download(url)
        except CommandFailed as error:
            raise ScriptError(url, None, str(error)) from None
        if not image.is_script:
            raise ScriptError(url, None, "not an iPXE script: it must start with '#!ipxe'")
        return self._run_top(image)

    def run_text(self, text: str, url: str) -> RunResult:
        """Run a script already in memory; ``url`` is its base for relative URLs."""
        script = parse(text, url)
        image = Image(uri.image_name(url), url, Path(), len(text), True, text=text)
        return self._run_top(image, script)

    def _run_top(self, image: Image, script: Script | None = None) -> RunResult:
        self._exit_request, self._failure = None, None
        try:
            status = self.exec_script_image(image, script)
        except _Finished as finished:
            return finished.result
        if self._exit_request is not None:
            log.info("%s", self._exit_request.describe())
            return RunResult(Outcome.LOCALBOOT, localboot=self._exit_request)
        if status != 0:
            if self._failure is not None:
                raise self._failure
            raise ScriptError(image.url, None, f"script failed with status {status}")
        return RunResult(Outcome.EXITED)

    # --- scripts -----------------------------------------------------------

    def exec_script_image(self, image: Image, script: Script | None = None) -> int:
        """Run a script image (and any ``--replace`` successors); its status."""
        while True:
            if len(self.frames) >= MAX_CHAIN_DEPTH:
                raise ScriptError(image.url, None,
                                  f"scripts chained more than {MAX_CHAIN_DEPTH} deep")
            if script is None:
                script = parse(image.text or "", image.url)
            # iPXE unregisters a script while it runs, and frees it after if asked.
            self.images.unregister(image)
            try:
                status = self._run_script(script)
            finally:
                if not image.autofree:
                    self.images.register(image)
            replacement, self._replacement = self._replacement, None
            if replacement is None:
                return status
            image, script = replacement, None

    def _run_script(self, script: Script) -> int:
        frame = Frame(script)
        self.frames.append(frame)
        try:
            status = 0
            while frame.index < len(script.lines):
                line = script.lines[frame.index]
                frame.index += 1
                frame.line = line
                self._lines_run += 1
                if self._lines_run > MAX_LINES:
                    raise ScriptError(script.url, line.number,
                                      f"more than {MAX_LINES} lines run: an endless loop?")
                status = self._run_line(frame, line)
                if self._stop_script:
                    self._stop_script = False
                    return status
                if status != 0:
                    return status
            return 0
        finally:
            self.frames.pop()

    def _run_line(self, frame: Frame, line: Line) -> int:
        status = 0
        run = True
        for command in line.commands:
            if run:
                status = self._run_command(frame, line, command.words)
            if self._stop_line or self._stop_script:
                self._stop_line = False
                break
            if command.connector is None:
                break
            run = {"&&": status == 0, "||": status != 0, ";": True}[command.connector]
        return status

    def _run_command(self, frame: Frame, line: Line, words: tuple[str, ...]) -> int:
        url = frame.script.url
        if not words:
            return 0  # an empty command succeeds (e.g. after a trailing `||`)
        try:
            argv = [expand(word, self.settings.get) for word in words]
        except ExpansionError as error:
            raise ScriptError(url, line.number, str(error)) from None
        handler = COMMANDS.get(argv[0])
        try:
            if handler is None:
                # As an iPXE build without the command: a status `||` catches.
                self.print(f"{argv[0]}: command not found\n")
                raise CommandNotFound("command not found: the agent does not implement it")
            handler(self, argv)
        except CommandFailed as failed:
            message = f"{argv[0]}: {failed}"
            if isinstance(failed, CommandNotFound):
                log.warning("%s:%d: %s", url, line.number, message)
            else:
                log.info("%s:%d: %s", url, line.number, message)
            if not isinstance(failed, ExitRequested):
                self._exit_request = None
            self._failure = ScriptError(url, line.number, message)
            return failed.status
        except ScriptError:
            raise
        except AgentError as error:
            raise ScriptError(url, line.number, f"{argv[0]}: {error}") from error
        if argv[0] != "exit":
            self._exit_request = None  # the script went on: an earlier exit was handled
        return 0

    # --- services for commands ---------------------------------------------

    @property
    def current(self) -> Frame:
        return self.frames[-1]

    def goto(self, label: str) -> None:
        index = self.current.script.find_label(label)
        if index is None:
            raise CommandFailed(f"no such label ':{label}'")
        self.current.index = index
        self._stop_line = True

    def exit_script(self) -> None:
        self._stop_script = True

    def request_exit(self, words: list[str], status: int) -> None:
        """`exit [N]`: ends this script. Run by the top script, or N != 0 and
        no caller's `||` catches it: the run ends in LOCALBOOT (iPXE returns
        to the firmware, which boots its next device)."""
        frame = self.current
        self._exit_request = LocalBoot(frame.script.url, frame.line.number if frame.line
                                       else None, " ".join(words), status=status)
        self._stop_script = True
        if status:
            raise ExitRequested(f"script exited with status {status}", status)

    def boot_local_drive(self, words: list[str], drive: int) -> None:
        """`sanboot` without a SAN URL: boot a local BIOS drive (never returns)."""
        frame = self.current
        request = LocalBoot(frame.script.url, frame.line.number if frame.line else None,
                            " ".join(words), drive=drive)
        log.info("%s", request.describe())
        raise _Finished(RunResult(Outcome.LOCALBOOT, localboot=request))

    def replace_script(self, image: Image) -> None:
        self._replacement = image
        self._stop_script = True

    def finish(self, outcome: Outcome, boot: BootSpec | None = None) -> None:
        raise _Finished(RunResult(outcome, boot))

    def print(self, text: str) -> None:
        self.out.write(sanitise(text, newlines=True))  # script output may carry DHCP text
        self.out.flush()

    def lookup_setting(self, text: str) -> str | None:
        return self.settings.get(text)

    def store_setting(self, name: str, value: str) -> None:
        try:
            self.settings.set_text(name, value)
        except SettingError as error:
            raise CommandFailed(f"could not store {name!r}: {error}") from None

    def set_clock(self, server: str) -> None:
        """`ntp SERVER`: as the agent sets its clock (clock.py), unless the caller
        gave another way."""
        if self._clock_setter is not None:
            self._clock_setter(server)
            return
        from ramboot_agent import clock  # noqa: PLC0415

        try:
            clock.set_from(server)
        except clock.ClockError as error:
            raise CommandFailed(f"could not set the clock: {error}") from None

    def trust_store(self) -> TrustStore:
        """The trusted roots for imgverify, built at its first use (trust/roots.py)."""
        if self._trust is None:
            if self._trust_factory is not None:
                self._trust = self._trust_factory()
            else:
                from ramboot_agent.trust import roots  # noqa: PLC0415

                self._trust = roots.build(None)
        return self._trust

    def remember_certificates(self, certificates: list[Certificate]) -> None:
        known = {certificate.raw for certificate in self.certificates}
        self.certificates += [cert for cert in certificates if cert.raw not in known]

    def has_lease(self) -> bool:
        return self.settings.has_block("net0.dhcp")

    def resolve(self, reference: str) -> str:
        base = self.frames[-1].script.url if self.frames else None
        return uri.resolve(base, reference)

    def _cwuri(self) -> bytes:
        return (self.current_url or "").encode()

    def _cwduri(self) -> bytes:
        return uri.resolve(self.current_url, ".").encode() if self.current_url else b""

    @property
    def current_url(self) -> str | None:
        """The running script's URL (after redirects): iPXE's ${cwuri}."""
        return self.frames[-1].script.url if self.frames else None

    def download(self, reference: str, *, name: str | None = None) -> Image:
        """Fetch ``reference`` (relative to the running script) as a new image."""
        origin = self.frames[-1].script.url if self.frames else None
        url = self.resolve(reference)
        if "##params" in url:
            raise ScriptError(url, self.frames[-1].line.number if self.frames and
                              self.frames[-1].line else None,
                              "form parameters (##params, HTTP POST) are not supported")
        if not uri.is_absolute(url):
            raise CommandFailed(f"{url}: not a URL and no such image")
        self._downloads += 1
        dest = self.download_dir / f"{self._downloads:03d}"
        dest.mkdir(parents=True, exist_ok=True)
        try:
            fetched = self.fetcher.fetch_file(url, dest, origin=origin)
        except FetchError as error:
            raise CommandFailed(str(error)) from None
        path = Path(fetched.path) if fetched.path is not None else dest / "image"
        if fetched.path is None:
            path.write_bytes(fetched.data or b"")
        # As iPXE's downloader: the image keeps the name of the URL asked for,
        # and relative URLs in it resolve against where redirects led.
        final_url = getattr(fetched, "final_url", None) or url
        details = {"final_url": final_url} if final_url != url else {}
        self.reporter.emit("fetch", url=url, bytes=fetched.size,
                           seconds=round(fetched.seconds, 3), sha256=fetched.sha256, **details)
        with path.open("rb") as stream:
            head = stream.read(64)
        text = None
        if is_script(head):
            if fetched.size > MAX_SCRIPT_CHARS:
                raise CommandFailed(f"{url}: script larger than {MAX_SCRIPT_CHARS} bytes")
            text = path.read_bytes().decode("utf-8", "replace")
            self.reporter.emit("script-fetched", url=url, bytes=fetched.size)
        image = Image(name or uri.image_name(url), final_url, path, fetched.size,
                      text is not None, text=text)
        if path.parent == dest:  # like iPXE's refcounted images: freed with the last user
            weakref.finalize(image, release, path).atexit = False
        self.images.register(image)
        return image

    def acquire(self, name_or_url: str) -> Image:
        """An existing image by name, else a download (iPXE's imgacquire)."""
        return self.images.find(name_or_url) or self.download(name_or_url)

    def execute(self, image: Image, *, replace: bool = False) -> None:
        """``chain``/``boot``: run a script or a plan, or boot a kernel (never returns)."""
        if self.trusted_only and not image.trusted:
            # iPXE's image_exec: with imgtrust, nothing unverified runs, scripts included.
            raise CommandFailed(f"{image.name}: not trusted (imgtrust is on and no imgverify "
                                "checked this image)")
        if not image.is_script and _looks_like_plan(image):
            self.run_plan(image)
        if image.is_script:
            if replace:
                self.replace_script(image)
                return
            status = self.exec_script_image(image)
            if status != 0:
                message = f"{image.url}: script failed with status {status}"
                if self._exit_request is not None:  # it ran `exit N`: pass the request up
                    raise ExitRequested(message, status)
                raise CommandFailed(message, status)
            self._exit_request = None  # a chained script's `exit 0` only returns
            return
        self.check_kernel(image)
        initrds, unmatched = self.images.initrds_for(image)
        if unmatched:
            # iPXE passes every loaded image whatever initrd= says.
            log.warning("%s: initrd=%s names no loaded image: booting with every loaded "
                        "initrd, as iPXE does: %s", image.name, ",".join(unmatched),
                        ", ".join(i.name for i in initrds) or "none")
        spec = BootSpec(kernel=image.path, initrds=[self._initrd_file(i) for i in initrds],
                        cmdline=image.cmdline or "")
        try:
            self.booter(spec)
        except BootError as error:
            raise CommandFailed(f"could not boot {image.name}: {error}") from None
        self.finish(Outcome.BOOTED, spec)

    def _initrd_file(self, image: Image) -> Path:
        """The initrd as iPXE hands it over: with arguments (`initrd URL /path mode=600`)
        wrapped in the cpio headers that name it (ipxe/cpio.py)."""
        from ramboot_agent.ipxe import cpio  # noqa: PLC0415

        prefix = cpio.headers(image.cmdline, image.size)
        if not prefix:
            return image.path
        wrapped = image.path.with_name(image.path.name + ".cpio")
        try:
            with wrapped.open("wb") as out, image.path.open("rb") as source:
                out.write(prefix)
                while chunk := source.read(1 << 20):
                    out.write(chunk)
        except OSError as error:
            wrapped.unlink(missing_ok=True)
            raise CommandFailed(f"cannot wrap {image.name} in cpio: {error.strerror}") from None
        log.info("%s: passed as %s inside a cpio archive", image.name, image.cmdline)
        return wrapped

    def run_plan(self, image: Image) -> None:
        """A chained provisioning plan: it ends every script, however it ends."""
        if self.plan_runner is None:
            raise CommandFailed(f"{image.url}: provisioning plans cannot run here")
        data = image.path.read_bytes()
        outcome = self.plan_runner(data, image.url)
        self.finish(outcome)

    def check_kernel(self, image: Image) -> None:
        """Refuse what is no kernel for this machine (iPXE: Exec format error)."""
        from ramboot_agent.kernel_image import NotAKernel, require_kernel  # noqa: PLC0415

        try:
            require_kernel(image.path, buildarch=self.settings.get("buildarch") or None,
                           name=image.url)
        except NotAKernel as error:
            raise CommandFailed(f"could not boot {image.name}: {error}") from None

    def setting_name_ok(self, text: str) -> None:
        try:
            parse_setting_name(text)
        except SettingError as error:
            raise CommandFailed(f"{text!r}: {error}") from None
