"""Every program the RAM system's code runs is in the image the defconfigs build.

The programs come from the code (tests/lib/programs.py): the overlay's shell
scripts and inittab, and the agent's Python. Each must be installed by a
package the resolved configuration selects (PROVIDERS) or be an applet of
the busybox configuration Buildroot uses: BUILDROOT_DIR's
package/busybox/busybox.config with board/common/busybox.fragment applied.
board/'s scripts (post-build, post-image) run on the build host, not in
the image: they are parsed (test_programs_scanner.py) but not checked here.
Not checked: the options each program is called with, and busybox's own
Kconfig dependencies (its Config.in is not in Buildroot's tree).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ramboot.check.buildroot import BuildrootKconfig
from tests.lib.programs import (
    Call,
    DynamicSite,
    inittab_programs,
    is_shell_script,
    python_programs,
    script_programs,
)

from .conftest import BOARDS, REPO, expand_external, resolved_config

pytestmark = pytest.mark.buildroot

OVERLAY = REPO / "overlay"
AGENT = OVERLAY / "usr/lib/ramboot/ramboot_agent"

# Programs other packages install: program -> the option that installs it.
# util-linux's "basic set" (BINARIES) does not bring the programs that have a
# switch of their own in util-linux.mk (test_util_linux_programs_have_their_own_switch).
PROVIDERS = {
    "blkdiscard": "BR2_PACKAGE_UTIL_LINUX_BINARIES",
    "blkid": "BR2_PACKAGE_UTIL_LINUX_BINARIES",
    "findfs": "BR2_PACKAGE_UTIL_LINUX_BINARIES",
    "mkswap": "BR2_PACKAGE_UTIL_LINUX_BINARIES",
    "sfdisk": "BR2_PACKAGE_UTIL_LINUX_BINARIES",
    "mount": "BR2_PACKAGE_UTIL_LINUX_MOUNT",
    "umount": "BR2_PACKAGE_UTIL_LINUX_MOUNT",
    "partx": "BR2_PACKAGE_UTIL_LINUX_PARTX",
    "switch_root": "BR2_PACKAGE_UTIL_LINUX_SWITCH_ROOT",
    "wipefs": "BR2_PACKAGE_UTIL_LINUX_WIPEFS",
    "e2fsck": "BR2_PACKAGE_E2FSPROGS",
    "mke2fs": "BR2_PACKAGE_E2FSPROGS",
    "resize2fs": "BR2_PACKAGE_E2FSPROGS_RESIZE2FS",
    "mkfs.fat": "BR2_PACKAGE_DOSFSTOOLS_MKFS_FAT",
    "kexec": "BR2_PACKAGE_KEXEC",
    "nbd-client": "BR2_PACKAGE_NBD_CLIENT",
    "python3": "BR2_PACKAGE_PYTHON3",
    "xz": "BR2_PACKAGE_XZ",
    "zstd": "BR2_PACKAGE_ZSTD",
    "dropbear": "BR2_PACKAGE_DROPBEAR",
    "mkfs.xfs": "BR2_PACKAGE_XFSPROGS",
    "xfs_growfs": "BR2_PACKAGE_XFSPROGS",
    "mkfs.btrfs": "BR2_PACKAGE_BTRFS_PROGS",
    "btrfs": "BR2_PACKAGE_BTRFS_PROGS",
    "rcS": "BR2_PACKAGE_INITSCRIPTS",
    "rcK": "BR2_PACKAGE_INITSCRIPTS",
}
# Programs the image may leave out, and why: the code checks for them or
# fails with "not found" only for what needs them. Checked when their option is on.
OPTIONAL = {
    "dropbear": ("BR2_PACKAGE_RAMBOOT_AGENT_DROPBEAR",
                 "SSH rescue access is an option; rescue.start_dropbear looks for it"),
    "mkfs.xfs": ("BR2_PACKAGE_XFSPROGS", "xfs plans need xfsprogs added (docs/plans.md)"),
    "xfs_growfs": ("BR2_PACKAGE_XFSPROGS", "xfs plans need xfsprogs added (docs/plans.md)"),
    "mkfs.btrfs": ("BR2_PACKAGE_BTRFS_PROGS", "btrfs plans need btrfs-progs (docs/plans.md)"),
    "btrfs": ("BR2_PACKAGE_BTRFS_PROGS", "btrfs plans need btrfs-progs (docs/plans.md)"),
}
# busybox applets whose config symbol is not CONFIG_<NAME>.
APPLET_SYMBOLS = {"[": "CONFIG_TEST1", "[[": "CONFIG_TEST2", "sh": "CONFIG_SH_IS_ASH",
                  "sysctl": "CONFIG_BB_SYSCTL"}
# Scripts of the tree that the RAM system does not run.
NOT_ON_THE_RAM_SYSTEM = {
    "overlay/usr/share/ramboot/report-booted":
        "copied to /run/ramboot for the new root, which runs it with its own programs",
}
# Functions named *argv whose programs the scanner cannot read: what they run.
ARGV_BUILDERS = {
    "load_argv": frozenset({"kexec"}),  # Kexec(kexec_binary="kexec")
    "exec_argv": frozenset({"kexec"}),
    "helper_argv": frozenset({"python3"}),  # sys.executable: the image's python3
}
# Calls whose program the scanner cannot read: file:function -> (programs, why).
DYNAMIC_SITES: dict[str, tuple[frozenset[str], str]] = {
    "clock.py:_ntpd": (frozenset({"ntpd"}), "argv[0] is clock.NTPD, busybox's ntpd"),
    "kexec.py:Kexec._run": (frozenset(), "runs load_argv/exec_argv, read at its callers"),
    "plan/context.py:Context.run_tool": (frozenset(), "the plan actions' runner: their argv "
                                         "lists are read at each call"),
    "plan/runner.py:_run_action": (frozenset(), "a plan kind's run(), not a process"),
    "plan/decode.py:_ZstdProcess.__init__": (frozenset({"zstd"}), "binary='zstd' by default"),
    "rescue.py:power": (frozenset({"reboot", "poweroff"}), "power(action): reboot or poweroff"),
    "roots/archive.py:open_image": (frozenset({"gzip", "xz", "zstd", "bunzip2"}),
                                    "archive.TOOLS, when Python lacks the decompressor module"),
}


def site_key(site: DynamicSite) -> str:
    return f"{site.path.relative_to(AGENT)}:{site.function}"


def ram_system_calls() -> list[Call]:
    """Every program the code of the RAM system runs, with where."""
    calls = inittab_programs(OVERLAY / "etc/inittab")
    for path in sorted(OVERLAY.rglob("*")):
        relative = str(path.relative_to(REPO))
        if not path.is_file() or relative in NOT_ON_THE_RAM_SYSTEM:
            continue
        if is_shell_script(path):
            calls += script_programs(path)
        elif path.read_bytes()[:2] == b"#!":  # the agent's launcher: its interpreter
            calls.append(Call(path.read_text().split()[0][2:], path, 1))
    found, sites = python_programs(sorted(AGENT.rglob("*.py")), ARGV_BUILDERS)
    calls += found
    for site in sites:
        programs, _ = DYNAMIC_SITES.get(site_key(site), (frozenset(), ""))
        calls += [Call(program, site.path, site.line) for program in programs]
    return calls


def busybox_config(values: dict[str, str], buildroot: Path) -> dict[str, str]:
    """CONFIG_* -> value of the busybox .config: the base file, then each fragment."""
    files = [buildroot / values["BR2_PACKAGE_BUSYBOX_CONFIG"]]
    files += [expand_external(f) for f in values["BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES"]
              .split()]
    config: dict[str, str] = {}
    for path in files:
        for line in path.read_text().splitlines():
            if match := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
                config[match[1]] = match[2]
            elif match := re.fullmatch(r"# (CONFIG_\w+) is not set", line):
                config[match[1]] = "n"
    return config


def applet_symbol(program: str) -> str:
    return APPLET_SYMBOLS.get(program) or "CONFIG_" + re.sub(r"[-.]", "_", program.upper())


def missing_programs(calls: list[Call], values: dict[str, str],
                     busybox: dict[str, str]) -> list[str]:
    """`file:line: program: why` for each call the configuration does not provide."""
    missing = []
    for call in calls:
        if call.program.startswith("/") and (OVERLAY / call.program.lstrip("/")).is_file():
            continue  # the overlay's own
        program = Path(call.program).name
        option = PROVIDERS.get(program)
        if option and values.get(option) == "y":
            continue
        if program in OPTIONAL and values.get(OPTIONAL[program][0]) != "y":
            continue
        symbol = applet_symbol(program)
        if values.get("BR2_PACKAGE_BUSYBOX") == "y" and busybox.get(symbol) == "y":
            continue
        where = f"{call.path.relative_to(REPO)}:{call.line}: {call.program}"
        if symbol not in busybox and not option:
            missing.append(f"{where}: no package in PROVIDERS and no busybox {symbol}")
        else:
            what = f"neither {option} nor {symbol} is y" if option else f"{symbol} is not y"
            missing.append(f"{where}: {what}")
    return sorted(set(missing))


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return ram_system_calls()


@pytest.mark.parametrize("also_y", [(), ("BR2_PACKAGE_RAMBOOT_AGENT_DROPBEAR",)],
                         ids=["default", "rescue-ssh"])
@pytest.mark.parametrize("board", BOARDS)
def test_every_called_program_is_in_the_image(
    buildroot_kconfig: BuildrootKconfig, buildroot_dir: Path, calls: list[Call],
    board: str, also_y: tuple[str, ...],
) -> None:
    values = resolved_config(buildroot_kconfig, board, *also_y)
    missing = missing_programs(calls, values, busybox_config(values, buildroot_dir))
    assert not missing, "programs the code runs that the image lacks:\n" + "\n".join(missing)


def test_the_scan_finds_what_the_rescue_and_boot_paths_run(calls: list[Call]) -> None:
    """Control: the scanner reads the calls the real image showed to matter."""
    programs = {c.program for c in calls}
    for program in ("cttyhack", "ntpd", "udhcpc", "ip", "modprobe", "xargs", "switch_root",
                    "kexec", "wipefs", "mount", "awk", "/sbin/init", "/etc/init.d/rcS",
                    "/usr/bin/python3", "python3", "bunzip2", "reboot"):
        assert program in programs


def test_every_unread_call_is_declared() -> None:
    """A new call whose program the scanner cannot read needs an entry saying what it runs."""
    _, sites = python_programs(sorted(AGENT.rglob("*.py")), ARGV_BUILDERS)
    unread = sorted(f"{site.path.relative_to(REPO)}:{site.line}: {site.function}: {site.text}"
                    for site in sites if site_key(site) not in DYNAMIC_SITES)
    assert not unread, "declare these in DYNAMIC_SITES:\n" + "\n".join(unread)
    stale = set(DYNAMIC_SITES) - {site_key(site) for site in sites}
    assert not stale, f"DYNAMIC_SITES entries no call matches any more: {sorted(stale)}"


def test_a_missing_applet_is_reported(
    buildroot_kconfig: BuildrootKconfig, buildroot_dir: Path, tmp_path: Path
) -> None:
    """Control: a script calling what neither busybox nor a package provides fails the check."""
    script = tmp_path / "fake-session"
    script.write_text("#!/bin/sh\nexec cttyhack sh -l\nntpd -q -p pool | conspy\n")
    values = resolved_config(buildroot_kconfig, "x86_64")
    config = busybox_config(values, buildroot_dir)
    calls = [Call(c.program, REPO / "fake-session", c.line) for c in script_programs(script)]
    assert missing_programs(calls, values, config) == [
        "fake-session:3: conspy: CONFIG_CONSPY is not y"]
    # Without the fragment, the applets it adds are reported.
    values["BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES"] = ""
    assert missing_programs(calls, values, busybox_config(values, buildroot_dir)) == [
        "fake-session:2: cttyhack: CONFIG_CTTYHACK is not y",
        "fake-session:3: conspy: CONFIG_CONSPY is not y",
        "fake-session:3: ntpd: CONFIG_NTPD is not y",
    ]


def test_util_linux_programs_have_their_own_switch(buildroot_dir: Path) -> None:
    """util-linux.mk turns off, after --enable-all-programs, every program with an option
    of its own (wipefs needs BR2_PACKAGE_UTIL_LINUX_WIPEFS): PROVIDERS must name that one."""
    mk = (buildroot_dir / "package/util-linux/util-linux.mk").read_text()
    switches = {
        program: option for option, program in
        re.findall(r"\$\(if \$\((BR2_PACKAGE_UTIL_LINUX_\w+)\),--enable-([\w-]+),", mk)}
    wrong = {program: (option, switches[program]) for program, option in PROVIDERS.items()
             if option.startswith("BR2_PACKAGE_UTIL_LINUX_") and program in switches
             and switches[program] != option}
    assert not wrong, f"program: (PROVIDERS says, util-linux.mk has): {wrong}"


def test_providers_are_buildroot_options(buildroot_kconfig: BuildrootKconfig) -> None:
    unknown = sorted({o for o in [*PROVIDERS.values(), *(o for o, _ in OPTIONAL.values())]
                      if o not in buildroot_kconfig.kconf.syms
                      or not buildroot_kconfig.kconf.syms[o].nodes})
    assert not unknown, f"not Buildroot options: {unknown}"


def test_fragment_symbols_exist(buildroot_dir: Path) -> None:
    """A misspelt symbol would be dropped by busybox's kconfig without a word."""
    known = busybox_config({"BR2_PACKAGE_BUSYBOX_CONFIG": "package/busybox/busybox.config",
                            "BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES": ""}, buildroot_dir)
    fragment = REPO / "board/common/busybox.fragment"
    symbols = re.findall(r"^(?:# )?(CONFIG_\w+)[= ]", fragment.read_text(), re.MULTILINE)
    assert symbols
    unknown = [s for s in symbols if s not in known]
    assert not unknown, f"{fragment.name}: not busybox symbols: {unknown}"
