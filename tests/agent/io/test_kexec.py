"""Kexec: argv, initrd concatenation, fallback and error reporting.

Never loads anything into the host kernel: loading a kernel into the CI
machine would be harmful. Real kexec runs inside QEMU (tests/qemu). Here the
load/fallback logic runs against FAKE_KEXEC below, a stand-in that prints
what kexec-tools 2.0.x prints on the failures it must handle, and the argv we
build is checked against the real `kexec --help`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.errors import BootError
from ramboot_agent.events import Reporter
from ramboot_agent.kexec import BootSpec, Kexec, concatenate_initrds
from tests.agent.io.servers import Site
from tests.lib import kernels

# A stand-in for kexec(8): logs its argv, then behaves as configured by
# behaviour.json: {"-s": [exit, stderr], "-l": [...], "-e": [...]} ("-s" is
# `-l -s`, the file-load); a load that exits 0 writes "1" to the
# kexec_loaded file, as the kernel would. Without an action (-l, -e, ...)
# kexec-tools loads and then runs shutdown(8): the stand-in fails that way.
FAKE_KEXEC = """\
import json, sys
from pathlib import Path
here = Path(sys.argv[0]).parent
with (here / "calls.jsonl").open("a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if not {"-l", "-e", "-u", "-p"} & set(sys.argv[1:]):
    print("kexec: no action given: load, then shutdown -r now: not found", file=sys.stderr)
    sys.exit(1)
mode = "-s" if "-s" in sys.argv[1:] else sys.argv[1]
code, message = json.loads((here / "behaviour.json").read_text()).get(mode, [0, ""])
if message:
    print(message, file=sys.stderr)
if code == 0 and mode in ("-s", "-l") and (here / "writes-flag").exists():
    (here / "kexec_loaded").write_text("1\\n")
sys.exit(code)
"""

# What kexec-tools prints (kexec/kexec.c, do_kexec_file_load and my_load).
LOCKDOWN = "kexec_file_load failed: Operation not permitted"
UNSUPPORTED_SILENT = ""  # EFALLBACK (ENOEXEC/ENOSYS/EINVAL) without -a: no message
LEGACY_FAILED = "kexec_load failed: Operation not permitted"


class FakeKexec:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.binary = directory / "kexec"
        self.binary.write_text(f"#!{sys.executable}\n{FAKE_KEXEC}")
        self.binary.chmod(0o755)
        (directory / "kexec_loaded").write_text("0\n")
        (directory / "writes-flag").touch()
        self.behave()

    def behave(self, **modes: tuple[int, str]) -> None:
        table = {f"-{mode}": list(value) for mode, value in modes.items()}
        (self.dir / "behaviour.json").write_text(json.dumps(table))

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def kexec(self, **kwargs: Any) -> Kexec:
        return Kexec(kexec_binary=str(self.binary), loaded_flag=self.dir / "kexec_loaded",
                     **kwargs)


class Events:
    """Collects emitted events; flush is a no-op (the real Reporter is tested apart)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []
        self.flushed: list[float] = []

    def emit(self, event: str, **details: Any) -> None:
        self.emitted.append((event, details))

    def flush(self, timeout: float = 3.0) -> bool:
        self.flushed.append(timeout)
        return True


@pytest.fixture
def fake(tmp_path: Path) -> FakeKexec:
    directory = tmp_path / "bin"
    directory.mkdir()
    return FakeKexec(directory)


@pytest.fixture
def spec(tmp_path: Path) -> BootSpec:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "Image").write_bytes(kernels.for_this_machine(size=1024))
    (boot / "rootfs.cpio.gz").write_bytes(b"\x1f\x8b" + b"r" * 4999)  # 5001 bytes
    (boot / "extra.cpio").write_bytes(b"070701" + b"e" * 506)  # 512 bytes
    return BootSpec(boot / "Image", [boot / "rootfs.cpio.gz", boot / "extra.cpio"],
                    "console=ttyAMA0 ramboot.url='http://192.0.2.1/a b' quiet")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_initrds_concatenate_in_order_at_4k_boundaries_as_ipxe(tmp_path: Path) -> None:
    # BIOS iPXE's initrd_load_all: zeros up to the next 4 KiB before each
    # initrd, nothing after the last (tests/agent/ipxe/test_differential.py
    # compares this with the memory real iPXE hands a kernel).
    parts = []
    for name, data in (("a", b"12345"), ("b", b"abcdefgh" * 512), ("c", b"xyz")):
        (tmp_path / name).write_bytes(data)
        parts.append(tmp_path / name)
    info = concatenate_initrds(parts, tmp_path / "combined")
    expected = b"12345" + b"\0" * 4091 + b"abcdefgh" * 512 + b"xyz"
    assert (tmp_path / "combined").read_bytes() == expected
    assert info.size == len(expected) and info.sha256 == hashlib.sha256(expected).hexdigest()


def test_describe_is_exact(fake: FakeKexec, spec: BootSpec) -> None:
    boot = spec.kernel.parent
    text = fake.kexec().describe(spec)
    # shlex quoting of an argument that itself contains single quotes
    quoted_cmdline = ("""'--command-line=console=ttyAMA0 ramboot.url='"'"'"""
                      """http://192.0.2.1/a b'"'"' quiet'""")
    load = (f"{fake.binary} -l -s {quoted_cmdline} --initrd={boot}/ramboot-initrd.combined "
            f"{boot}/Image")
    assert text.splitlines() == [
        f"kernel   {boot}/Image  1024 bytes  sha256 {sha(spec.kernel)}",
        f"initrd   {boot}/rootfs.cpio.gz  5001 bytes  sha256 {sha(spec.initrds[0])}",
        f"initrd   {boot}/extra.cpio  512 bytes  sha256 {sha(spec.initrds[1])}",
        f"combined {boot}/ramboot-initrd.combined  8704 bytes "
        "(2 initrds in order, each at a 4096-byte boundary)",
        f"cmdline  {spec.cmdline}",
        f"load     {load}",
        f"fallback {load.replace(' -l -s ', ' -l ')}",
        f"execute  {fake.binary} -e",
    ]


def test_dry_run_runs_nothing(fake: FakeKexec, spec: BootSpec) -> None:
    kexec = fake.kexec(dry_run=True)
    assert kexec.load(spec) is None
    kexec.execute()
    assert fake.calls() == []
    assert not (spec.kernel.parent / "ramboot-initrd.combined").exists()


def test_file_load_first(fake: FakeKexec, spec: BootSpec) -> None:
    events = Events()
    loaded = fake.kexec(reporter=events).load(spec)
    assert loaded is not None and loaded.method == "kexec_file_load"
    combined = spec.kernel.parent / "ramboot-initrd.combined"
    assert fake.calls() == [["-l", "-s", f"--command-line={spec.cmdline}",
                             f"--initrd={combined}", str(spec.kernel)]]
    ((name, details),) = events.emitted
    assert name == "kexec-load"
    assert details["ok"] is True and details["method"] == "kexec_file_load"
    assert details["kernel_size"] == 1024 and details["kernel_sha256"] == sha(spec.kernel)
    assert details["initrd_size"] == 8704 and details["initrd_sha256"] == sha(combined)
    assert "fallback_reason" not in details


@pytest.mark.parametrize("refusal", [LOCKDOWN, UNSUPPORTED_SILENT])
def test_falls_back_to_kexec_load(fake: FakeKexec, spec: BootSpec, refusal: str) -> None:
    fake.behave(s=(1 if refusal else 255, refusal))
    events = Events()
    single = BootSpec(spec.kernel, spec.initrds[:1], "console=ttyS0")
    loaded = fake.kexec(reporter=events).load(single)
    assert loaded is not None and loaded.method == "kexec_load"
    assert [call[:2] for call in fake.calls()] == [
        ["-l", "-s"], ["-l", "--command-line=console=ttyS0"]]
    assert fake.calls()[1] == ["-l", "--command-line=console=ttyS0",
                               f"--initrd={spec.initrds[0]}", str(spec.kernel)]
    expected_reason = refusal or "exit status 255 without a message"
    assert loaded.fallback_reason == expected_reason
    assert events.emitted[0][1]["fallback_reason"] == expected_reason


def test_both_loads_failing_is_a_boot_error_with_both_reasons(fake: FakeKexec,
                                                               spec: BootSpec) -> None:
    fake.behave(s=(1, LOCKDOWN), l=(1, LEGACY_FAILED))
    events = Events()
    with pytest.raises(BootError) as caught:
        fake.kexec(reporter=events).load(spec)
    assert str(caught.value) == (
        f"kexec could not load {spec.kernel}: kexec_file_load: {LOCKDOWN}; "
        f"kexec_load: {LEGACY_FAILED}")
    assert events.emitted == [("kexec-load", {"ok": False, "reason": str(caught.value)})]


def test_success_without_kexec_loaded_is_an_error(fake: FakeKexec, spec: BootSpec) -> None:
    (fake.dir / "writes-flag").unlink()
    with pytest.raises(BootError, match=r"kexec_loaded is '0', not '1'"):
        fake.kexec().load(spec)


def test_missing_files_and_binary(fake: FakeKexec, spec: BootSpec, tmp_path: Path) -> None:
    with pytest.raises(BootError, match="no such file"):
        fake.kexec().load(BootSpec(tmp_path / "nope", [], ""))
    missing = Kexec(kexec_binary=str(tmp_path / "no-kexec"), loaded_flag=tmp_path / "f")
    with pytest.raises(BootError, match="kexec-tools is not installed"):
        missing.load(spec)
    assert fake.calls() == []


def test_execute_reports_flushes_then_jumps(fake: FakeKexec, spec: BootSpec) -> None:
    fake.behave(e=(1, "kexec: no kernel loaded"))  # kexec -e returned: the jump failed
    events = Events()
    kexec = fake.kexec(reporter=events)
    with pytest.raises(BootError, match="nothing loaded"):
        kexec.execute()
    kexec.load(spec)
    with pytest.raises(BootError, match="kexec -e failed: kexec: no kernel loaded"):
        kexec.execute()
    assert [name for name, _ in events.emitted] == ["kexec-load", "boot"]
    assert events.flushed == [3.0]
    assert fake.calls()[-1] == ["-e"]


def test_boot_event_reaches_a_real_collector_before_the_jump(fake: FakeKexec, spec: BootSpec,
                                                             site: Site) -> None:
    received: list[str] = []
    site.routes["/events"] = lambda h: (received.append(json.loads(h.body())["event"]),
                                        h.send_bytes(b"", status=204))
    reporter = Reporter({"mac": "52:54:00:12:34:56"}, site.url("/events"))
    kexec = fake.kexec(reporter=reporter)
    kexec.load(spec)
    with pytest.raises(BootError):
        fake.behave(e=(1, "kexec_core: Starting new kernel failed"))
        kexec.execute()
    assert received == ["kexec-load", "boot"]
    reporter.close(1)


def test_argv_options_exist_in_real_kexec_tools(fake: FakeKexec, spec: BootSpec) -> None:
    kexec_path = shutil.which("kexec") or shutil.which("kexec", path="/usr/sbin:/sbin")
    if kexec_path is None:
        pytest.skip("kexec-tools is not installed (run scripts/install-deps)")
    help_text = subprocess.run([kexec_path, "--help"], capture_output=True, text=True,
                               timeout=10, check=False).stdout
    kexec = Kexec(kexec_binary=kexec_path)
    argv = [*kexec.load_argv(spec, "kexec_file_load"), *kexec.load_argv(spec, "kexec_load"),
            *kexec.exec_argv()]
    options = {arg.split("=", 1)[0] for arg in argv if arg.startswith("-")}
    assert options == {"-s", "-l", "-e", "--command-line", "--initrd"}
    for option in options:
        assert re.search(rf"(^|[\s,]){re.escape(option)}([=\s,]|$)", help_text, re.M), option
    assert re.search(r"-s, --kexec-file-syscall", help_text)
    assert re.search(r"-l, --load\s", help_text)
    assert re.search(r"-e, --exec\s", help_text)
