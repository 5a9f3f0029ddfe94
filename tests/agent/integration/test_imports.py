"""What the agent's real flows import is all in the set board/common/python-stdlib.py keeps.

The static closure is the image's guarantee; this is its check against the
running code: each flow runs the real agent under `python -X importtime`
(DHCP with Kea, two iPXE scripts, kernel and initrd downloads, events;
plans checked and dry-run, with every action kind; a failing script; the
identity), and every standard library module any of them imported must be
in the closure computed over this host's library.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.lib import kernels

from .lab import BASE, REPO, BootLab

SCRIPT = REPO / "board/common/python-stdlib.py"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
DYNLOAD = Path(sysconfig.get_config_var("DESTSHARED"))  # lib-dynload, also from a venv
IMPORT_LINE = re.compile(r"import time: +\d+ \| +\d+ \| (?P<name> *\S+)$")


@functools.cache
def kept_modules() -> frozenset[str]:
    spec = importlib.util.spec_from_file_location("python_stdlib", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("python_stdlib", module)
    spec.loader.exec_module(module)
    overlay = REPO / "overlay"
    target = module.Target(overlay, STDLIB, [overlay / "usr/lib/ramboot", STDLIB, DYNLOAD])
    return frozenset(module.closure(target).modules)


def imported(output: str) -> set[str]:
    names = set()
    for line in output.splitlines():
        match = IMPORT_LINE.search(line)
        if match:
            names.add(match.group("name").strip())
    return names


def from_stdlib(names: set[str]) -> set[str]:
    """The names that this host's standard library files provide."""
    found = set()
    for name in names:
        if name in sys.builtin_module_names or name.split(".")[0] not in sys.stdlib_module_names:
            continue
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec else None
        if origin and Path(origin).is_relative_to(STDLIB):
            found.add(name)
    return found


def agent(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ramboot_agent", *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=cwd)
    assert "import time:" in done.stderr
    return done.stderr


def plan_flows(tmp_path: Path) -> str:
    """--check and --dry-run over plans naming every action kind the agent has
    (some invalid here: their errors are a flow too)."""
    actions: list[dict[str, object]] = [
        {"action": "hardware"},
        {"action": "wipe", "disk": "/dev/vdz"},
        {"action": "partition", "disk": "/dev/vdz", "table": "gpt",
         "partitions": [{"size": "100%", "type": "linux", "fs": "ext4", "label": "root"}]},
        {"action": "image", "url": f"{BASE}/disk.img.zst", "disk": "/dev/vdz"},
        {"action": "write-file", "path": "/etc/hostname", "content": "x\n",
         "partition": "root"},
        {"action": "grow", "disk": "/dev/vdz"},
        {"action": "mkfs", "device": "/dev/vdz1", "fs": "vfat"},
        {"action": "netroot", "nfs": "192.0.2.1:/srv/root"},
        {"action": "ramroot", "url": f"{BASE}/root.tar.zst"},
        {"action": "localboot"},
        {"action": "kexec", "kernel": f"{BASE}/vmlinuz"},
        {"action": "reboot"}, {"action": "poweroff"}, {"action": "shell"},
    ]
    output = ""
    for index, action in enumerate(actions):
        plan = tmp_path / f"plan-{index}.json"
        plan.write_text(json.dumps({"ramboot-plan": 1, "actions": [action]}))
        output += agent("run-plan", "--check", str(plan))
        output += agent("run-plan", "--dry-run", str(plan))
    return output


def test_every_module_the_agent_flows_import_is_kept(boot_lab: BootLab, tmp_path: Path) -> None:
    boot_lab.publish("boot.ipxe", "#!ipxe\nchain stage2/next.ipxe?mac=${mac}\n")
    boot_lab.publish("stage2/next.ipxe", "#!ipxe\nkernel ../vmlinuz quiet\n"
                     "initrd ../initrd.cpio.gz\nboot\n")
    boot_lab.publish("vmlinuz", kernels.for_this_machine(size=64 * 1024))
    boot_lab.publish("initrd.cpio.gz", b"\x1f\x8b" + bytes(100))
    boot_lab.publish("bad.ipxe", "#!ipxe\nnot-a-command\n")
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()
    boot_lab.start_collector()
    argv = boot_lab.agent_argv("")
    flows = boot_lab.lab.client.run([argv[0], "-X", "importtime", *argv[1:]], check=False,
                                    cwd=REPO, timeout=90, capture_output=True).stderr
    assert "dry run complete" in flows, flows[-2000:]
    flows += boot_lab.lab.client.run(
        [sys.executable, "-X", "importtime", "-m", "ramboot_agent", "run-script",
         f"{BASE}/bad.ipxe", "--dry-run"], check=False, cwd=REPO, timeout=60,
        capture_output=True).stderr
    flows += plan_flows(tmp_path)
    flows += agent("identity")
    names = imported(flows)
    # The flows ran. (A dry run describes actions without importing their
    # modules; running them needs the RAM system: tests/qemu on the image.)
    assert {"ramboot_agent.net", "ramboot_agent.plan.load", "ramboot_agent.rescue"} <= names
    used = from_stdlib(names)
    assert {"http.client", "json", "argparse", "ssl"} <= used
    missing = used - kept_modules()
    assert not missing, f"imported by the agent's flows but not kept: {sorted(missing)}"


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_the_command_line_alone_imports_only_kept_modules(flag: str) -> None:
    used = from_stdlib(imported(agent(flag)))
    assert used
    assert used <= kept_modules()
