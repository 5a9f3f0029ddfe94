"""A decision on every init script the defconfigs' packages install, and it holds.

rcS runs every /etc/init.d/S??* at boot. Each script a selected package's
.mk installs into /etc/init.d is in INIT_SCRIPTS with what happens to it
and why; a package or Buildroot upgrade that brings a new one fails here
until it is decided on. Removals by post-build.sh are tested in
test_post_build.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from ramboot.check.buildroot import BuildrootKconfig

from .conftest import BOARDS, REPO, resolved_config
from .test_busybox_applets import busybox_config

pytestmark = pytest.mark.buildroot


@dataclass(frozen=True)
class Decision:
    how: str  # "runs", "busybox" (applet off), "option" (package or option off), "post-build"
    why: str
    symbol: str = ""  # the busybox CONFIG_ or BR2_ symbol that must be off

    def holds(self, values: dict[str, str], busybox: dict[str, str]) -> bool:
        if self.how == "busybox":
            return busybox.get(self.symbol, "n") != "y"
        if self.how == "option":
            return values.get(self.symbol, "n") != "y"
        return True


INIT_SCRIPTS = {
    "rcS": Decision("runs", "inittab's sysinit runs it: it starts the S??* scripts"),
    "rcK": Decision("runs", "the shutdown action runs it (not before a switch_root)"),
    "S02sysctl": Decision("runs", "applies /etc/sysctl.d/*.conf: nothing, unless an overlay "
                          "adds some"),
    "S11modules": Decision("runs", "loads what /etc/modules-load.d names: nothing, unless an "
                           "overlay adds some; S10coldplug loads the devices' modules"),
    "S40network": Decision("runs", "brings up lo only (BR2_SYSTEM_DHCP is empty: checked "
                           "below); the agent configures the Ethernet interfaces"),
    "S01syslogd": Decision("busybox", "the agent logs to the console and the kernel log",
                           "CONFIG_SYSLOGD"),
    "S02klogd": Decision("busybox", "no syslogd to feed", "CONFIG_KLOGD"),
    "S50crond": Decision("busybox", "nothing is scheduled", "CONFIG_CROND"),
    "S41ifplugd": Decision("busybox", "the agent watches its links itself", "CONFIG_IFPLUGD"),
    "S50telnet": Decision("busybox", "no telnet server", "CONFIG_FEATURE_TELNETD_STANDALONE"),
    "S90httpd": Decision("option", "no web server", "BR2_PACKAGE_BUSYBOX_HTTPD"),
    "S15watchdog": Decision("option", "no watchdog daemon", "BR2_PACKAGE_BUSYBOX_WATCHDOG"),
    "S10mdev": Decision("option", "one module-loading policy: S10coldplug; post-build.sh "
                        "fails if S10mdev is installed", "BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_MDEV"),
    "S01seedrng": Decision("option", "it saves a seed for the next boot, and nothing of a RAM "
                           "system outlives it", "BR2_PACKAGE_URANDOM_SCRIPTS"),
    "S50dropbear": Decision("post-build", "it would start sshd on every boot; the agent starts "
                            "dropbear, with the given keys, only for a rescue shell"),
}
_INSTALLED = re.compile(r"\$\(TARGET_DIR\)/etc/init\.d/([A-Za-z0-9_.-]*)")
_WILDCARD = re.compile(r"(\S+)/\*\s+\$\(TARGET_DIR\)/etc/init\.d/?\s")


def enabled_packages(values: dict[str, str], buildroot: Path) -> list[Path]:
    """The package directories of every BR2_PACKAGE_<NAME>=y."""
    names = {n.removeprefix("BR2_PACKAGE_").lower().replace("_", "-")
             for n, v in values.items() if n.startswith("BR2_PACKAGE_") and v == "y"}
    return sorted(p for name in names if (p := buildroot / "package" / name).is_dir())


def init_scripts(package: Path, buildroot: Path) -> set[str]:
    """What the package's .mk files may install into /etc/init.d, whatever the condition."""
    found = set()
    for mk in package.glob("*.mk"):
        text = mk.read_text()
        found |= {name for name in _INSTALLED.findall(text) if name}
        for source in _WILDCARD.findall(text):
            found |= {p.name for p in (buildroot / source).iterdir() if not p.name.startswith(".")}
    return found


@pytest.mark.parametrize("also_y", [(), ("BR2_PACKAGE_RAMBOOT_AGENT_DROPBEAR",)],
                         ids=["default", "rescue-ssh"])
@pytest.mark.parametrize("board", BOARDS)
def test_every_init_script_is_decided_and_the_decision_holds(
    buildroot_kconfig: BuildrootKconfig, buildroot_dir: Path, board: str,
    also_y: tuple[str, ...],
) -> None:
    values = resolved_config(buildroot_kconfig, board, *also_y)
    busybox = busybox_config(values, buildroot_dir)
    installed = {script: package.name for package in enabled_packages(values, buildroot_dir)
                 for script in init_scripts(package, buildroot_dir)}
    undecided = {s: p for s, p in installed.items() if s not in INIT_SCRIPTS}
    assert not undecided, f"init scripts (script: package) with no decision: {undecided}"
    broken = {s: INIT_SCRIPTS[s] for s in installed if not INIT_SCRIPTS[s].holds(values, busybox)}
    assert not broken, f"decisions that do not hold on {board}: {broken}"
    # Control: the packages' scripts were found (dropbear's only with the rescue option).
    assert {"rcS", "S40network", "S01syslogd"} <= set(installed)
    assert ("S50dropbear" in installed) == bool(also_y)


@pytest.mark.parametrize("board", BOARDS)
def test_one_module_loading_policy(buildroot_kconfig: BuildrootKconfig, board: str) -> None:
    """devtmpfs makes the nodes, the overlay's S10coldplug loads the modules: no mdev, no udev."""
    values = resolved_config(buildroot_kconfig, board)
    assert values["BR2_ROOTFS_DEVICE_CREATION_DYNAMIC_DEVTMPFS"] == "y"
    assert (REPO / "overlay/etc/init.d/S10coldplug").is_file()


@pytest.mark.parametrize("board", BOARDS)
def test_network_script_leaves_ethernet_to_the_agent(
    buildroot_kconfig: BuildrootKconfig, board: str
) -> None:
    values = resolved_config(buildroot_kconfig, board)
    assert values["BR2_SYSTEM_DHCP"] == "", "S40network would run udhcpc next to the agent"


def test_discovery_finds_scripts(buildroot_dir: Path) -> None:
    """Control: the .mk reading finds plain and wildcard installs."""
    package = buildroot_dir / "package"
    assert {"S01syslogd", "S02klogd", "S10mdev"} <= init_scripts(package / "busybox",
                                                                 buildroot_dir)
    assert {"rcS", "rcK", "S11modules"} <= init_scripts(package / "initscripts", buildroot_dir)
    assert init_scripts(package / "dropbear", buildroot_dir) == {"S50dropbear"}
