"""What a host gets at each of its two stages: pure functions of the inventory.

A machine meets the boot servers twice, and each time must get something different:

- **stage 1**, into ramboot: iPXE (x86_64) asks with option 224 and gets a script that
  boots ramboot's kernel and initramfs, or, for a machine whose target is its disk
  (or that is provisioned already), one that hands it back to the firmware's next
  boot device. A Raspberry Pi's stage 1 is its per-serial TFTP directory
  (`pi_boot_files`): the EEPROM bootloader has no iPXE.
- **stage 2**, the target: the agent in ramboot asks (vendor class
  `ramboot-agent:…`, `stage=agent`) and gets what the machine becomes, as a
  provisioning plan (install an image, a network or RAM root, its disk, a kernel,
  rescue) or, for a custom URL, an iPXE script that chains to it.

Nothing here writes files: `ramboot render` writes what these functions return,
and `ramboot serve` can answer both stages with them from its recorded state.
`loop_problems` names every way a host's stage 2 would boot ramboot again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ramboot.errors import RambootError
from ramboot.inventory import DEFAULT_CONSOLES, FAMILIES, Host, Inventory, Target
from ramboot.render.escape import word

IPXE_CONTENT_TYPE = "text/plain; charset=utf-8"
PLAN_CONTENT_TYPE = "application/json"
# ramboot's own images as render publishes them under http/images/<family>/.
RAMBOOT_KERNELS = {"rpi4": "Image", "x86_64": "bzImage"}
RAMBOOT_INITRAMFS = "rootfs.cpio.zst"
# Where the agent's localboot goes when the target does not say: a reboot on the
# Pi (its EEPROM boot order then picks the disk; kexec on the Pi 4 is fragile),
# kexec on x86 (a reboot would netboot into ramboot again).
DEFAULT_METHODS = {"rpi4": "reboot", "x86_64": "kexec"}
# The Pi 4 bootloader's BOOT_ORDER modes (read from the lowest nibble up).
PI_NETWORK_MODE = 2
PI_DISK_MODES = {"mmc": {1}, "usb": {4, 5}, "nvme": {6}}
ALL_PI_DISK_MODES = {1, 4, 5, 6}
# The plan kinds each target needs from the agent (ramboot_agent.plan.registry.KINDS).
PLAN_ACTIONS = {
    "install": ("image", "localboot"), "netroot": ("netroot",), "ramroot": ("ramroot",),
    "disk": ("localboot",), "kexec": ("kexec",), "rescue": ("shell",),
    "plan": (), "script": (),
}


class TargetError(RambootError):
    """Hosts whose stages cannot be answered (a loop, a Pi asked for an iPXE stage 1)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"the fleet's stages do not hold ({count}):\n"
                         + "\n".join(f"  {problem}" for problem in problems))


@dataclass(frozen=True)
class Document:
    """One answer to a machine: what to serve and how to label it."""

    content_type: str
    data: bytes

    @property
    def kind(self) -> str:
        """"plan" or "ipxe", as the agent tells them apart."""
        return "plan" if self.content_type == PLAN_CONTENT_TYPE else "ipxe"

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass(frozen=True)
class BootSpec:
    """What an iPXE script loads (kernel, initrds, arguments) or chains to."""

    kernel: str | None
    initrds: tuple[str, ...]
    args: tuple[str, ...]
    chain: str | None


# --- paths and URLs -------------------------------------------------------------------


def stage1_path(host: Host) -> str:
    """Where the host's stage 1 lives under http/ (x86: what iPXE's option 224 names)."""
    return f"stage1/{host.name}.ipxe"


def stage2_path(host: Host) -> str:
    """Where the host's stage 2 lives under http/ (what the agent's option 224 names)."""
    extension = "ipxe" if host.target.kind in ("plan", "script") else "json"
    return f"stage2/{host.name}.{extension}"


def stage1_url(inventory: Inventory, host: Host) -> str:
    return f"{inventory.servers.http_base}/{stage1_path(host)}"


def stage2_url(inventory: Inventory, host: Host) -> str:
    return f"{inventory.servers.http_base}/{stage2_path(host)}"


def image_url(inventory: Inventory, reference: str) -> str:
    """A kernel or initrd reference: a URL as given, or a path under http/images/."""
    if "://" in reference:
        return reference
    return f"{inventory.servers.http_base}/images/{reference}"


def ramboot_initramfs_urls(inventory: Inventory) -> set[str]:
    return {image_url(inventory, f"{family}/{RAMBOOT_INITRAMFS}") for family in FAMILIES}


# --- stage 1 ---------------------------------------------------------------------------


def boots_disk(host: Host, *, provisioned: bool) -> bool:
    """True when the machine's next boot goes to its own disk: stage 1 (iPXE) exits to
    the next boot device, stage 2 (a Pi's agent) is a `localboot` plan. For a target
    of kind disk always; for an install once it is provisioned; never for the others,
    which have no disk of their own to go back to."""
    return host.target.kind == "disk" or (provisioned and host.target.kind == "install")


def ramboot_args(host: Host, token: str | None = None) -> tuple[str, ...]:
    """ramboot's kernel command line for `host`, after its consoles (the last one wins).

    `token` is the host's machine token for `ramboot serve` (`ramboot.token=`): given
    only where the document is not public (serve's answers, the Pi's TFTP directory),
    never in the rendered HTTP tree.
    """
    words = [f"console={console}" for console in host.consoles]
    if host.report_url:
        words.append(f"ramboot.report={host.report_url}")
    words += [f"ramboot.{key}={value}" for key, value in host.ramboot]
    if token is not None:
        words.append(f"ramboot.token={token}")
    words += host.kernel_args
    return tuple(words)


def stage1(
    inventory: Inventory, host: Host, *, provisioned: bool, templates: Any = None,
    token: str | None = None,
) -> Document:
    """The iPXE script an x86_64 host gets at stage 1.

    Into ramboot (its kernel and initramfs, with the host's consoles and ramboot.*
    words), or, when `boots_disk`, a script that tells the embedded
    ramboot.ipxe to return to the firmware (`ramboot-next` = `disk`), which then
    boots the next device. A Raspberry Pi has no iPXE stage: see `pi_boot_files`.
    `token` goes on ramboot's command line (`ramboot_args`).
    """
    if host.family == "rpi4":
        raise TargetError([
            f"host {host.name!r}: a Raspberry Pi's stage 1 is its TFTP directory "
            f"(tftp/{host.serial}/), not an iPXE script"
        ])
    templates = templates or _default_templates()
    source = inventory.path.name
    if boots_disk(host, provisioned=provisioned):
        why = "provisioned" if host.target.kind == "install" else "its target is its disk"
        text = templates.render("ipxe/stage1-disk.ipxe.j2", host=host, source=source, why=why)
    else:
        spec = BootSpec(
            kernel=image_url(inventory, f"{host.family}/{RAMBOOT_KERNELS[host.family]}"),
            initrds=(image_url(inventory, f"{host.family}/{RAMBOOT_INITRAMFS}"),),
            args=ramboot_args(host, token), chain=None,
        )
        text = templates.render("ipxe/stage1.ipxe.j2", host=host, source=source, spec=spec,
                                target=describe(host.target))
    return Document(IPXE_CONTENT_TYPE, text.encode("utf-8"))


# Kinds whose stage 2 may kexec on a Pi: a script or plan (any URL), a kernel, and a
# disk booted with method "kexec".
_PI_KEXEC_KINDS = ("kexec", "plan", "script")
# A Pi 4's firmware parks the secondary CPUs in spin tables, which arm64 cannot take
# back: with more than one possible CPU kexec fails ("CPUs are stuck in the
# kernel"). One possible CPU leaves them parked for the next kernel to start.
PI_KEXEC_ARG = "nr_cpus=1"


def pi_kexecs(host: Host) -> bool:
    """Whether the RAM system of Pi `host` may hand over by kexec (docs/rpi4-kernel.md)."""
    target = host.target
    if target.kind in ("install", "disk"):
        return bool(target.get("method", DEFAULT_METHODS[host.family]) == "kexec")
    return target.kind in _PI_KEXEC_KINDS


def pi_cmdline(inventory: Inventory, host: Host, token: str | None = None) -> str:
    """A Pi's cmdline.txt: ramboot's words, and its stage 2 as `ramboot.url=`.

    The board's TFTP directory is its own, so the URL is written there as well as
    sent by DHCP: a board without a MAC in the inventory still finds its target.
    `token` (`ramboot.token=`, from `render --machine-secret`) is how its agent
    proves to `ramboot serve` which host it is. A target that may kexec gets
    PI_KEXEC_ARG unless the host's kernel_args already limit the CPUs.
    """
    words = [f"console={console}" for console in host.consoles]
    words.append(f"ramboot.url={stage2_url(inventory, host)}")
    rest = list(ramboot_args(host, token)[len(host.consoles):])
    limited = any(arg.startswith(("nr_cpus=", "maxcpus=")) for arg in host.kernel_args)
    if pi_kexecs(host) and not limited:
        rest.append(PI_KEXEC_ARG)
    return " ".join(word(w) for w in [*words, *rest])


def pi_boot_files(
    inventory: Inventory, host: Host, *, kernel: str, initramfs: str, templates: Any = None,
    token: str | None = None,
) -> dict[str, str]:
    """A Pi's stage 1: config.txt and cmdline.txt of its tftp/<serial>/ directory."""
    templates = templates or _default_templates()
    config = templates.render("rpi4/config.txt.j2", host=host, source=inventory.path.name,
                              kernel=kernel, initramfs=initramfs)
    return {"config.txt": config, "cmdline.txt": pi_cmdline(inventory, host, token) + "\n"}


# --- stage 2 ---------------------------------------------------------------------------


def stage2(
    inventory: Inventory, host: Host, *, provisioned: bool = False, templates: Any = None,
) -> Document:
    """What the agent gets: the host's target, as a plan (or a script for a custom URL).

    A provisioned host whose target installs an image gets `localboot` instead
    (a Pi netboots before its disk when its EEPROM says so, and must be sent on).
    """
    target = host.target
    if target.kind in ("plan", "script"):
        templates = templates or _default_templates()
        spec = BootSpec(kernel=None, initrds=(), args=(), chain=str(target.get("url")))
        text = templates.render("ipxe/stage2-chain.ipxe.j2", host=host, spec=spec,
                                source=inventory.path.name, target=describe(target))
        return Document(IPXE_CONTENT_TYPE, text.encode("utf-8"))
    plan = build_plan(inventory, host, provisioned=provisioned)
    return Document(PLAN_CONTENT_TYPE, (json.dumps(plan, indent=2) + "\n").encode("utf-8"))


def build_plan(inventory: Inventory, host: Host, *, provisioned: bool = False) -> dict[str, Any]:
    """The provisioning plan of `host`'s target (docs/plans.md)."""
    target = host.target
    kind = "disk" if provisioned and target.kind == "install" else target.kind
    plan: dict[str, Any] = {
        "ramboot-plan": 1,
        "description": f"{host.name}: {target.description or describe(target, kind)}",
    }
    method = target.get("method", DEFAULT_METHODS[host.family])
    if kind in ("install", "disk"):
        plan["disks"] = {"system": target.get("disk")}
    actions: list[dict[str, Any]] = []
    if kind == "install":
        image: dict[str, Any] = {"action": "image", "url": target.get("url")}
        for key in ("digest", "bmap", "bmap_digest", "verify"):
            if target.get(key) is not None:
                image[key] = target.get(key)
        image["target"] = "system"
        actions.append(image)
    if kind in ("install", "disk"):
        actions.append({"action": "localboot", "target": "system", "method": method})
    elif kind in ("netroot", "ramroot"):
        actions.append({"action": kind, **dict(target.options)})
    elif kind == "kexec":
        action: dict[str, Any] = {"action": "kexec", "kernel": _file(inventory,
                                                                     target.get("kernel"))}
        initrds = target.get("initrds")
        if initrds:
            action["initrds"] = [_file(inventory, ref) for ref in initrds]
        if target.get("cmdline") is not None:
            action["cmdline"] = target.get("cmdline")
        actions.append(action)
    elif kind == "rescue":
        actions.append({"action": "shell",
                        "description": "rescue: stay in ramboot with a shell on the console"})
    plan["actions"] = actions
    return plan


def _file(inventory: Inventory, reference: Any) -> Any:
    if isinstance(reference, dict):
        return {**reference, "url": image_url(inventory, str(reference["url"]))}
    return image_url(inventory, str(reference))


def describe(target: Target, kind: str | None = None) -> str:
    """One line saying what the target makes of the machine."""
    kind = kind or target.kind
    get = target.get
    if kind == "install":
        return f"install {get('url')} to its disk, then boot it"
    if kind == "disk":
        return "boot its local disk"
    if kind == "netroot":
        return f"run from the network root {get('root')}"
    if kind == "ramroot":
        return f"run from the root image {get('url')} in RAM"
    if kind == "kexec":
        kernel = get("kernel")
        return f"boot the kernel {kernel['url'] if isinstance(kernel, dict) else kernel}"
    if kind in ("plan", "script"):
        return f"run the {kind} {get('url')}"
    return "rescue: stay in ramboot"


def required_actions(inventory: Inventory) -> set[str]:
    """Every plan action the fleet's stage 2 documents use."""
    return {action for host in inventory.hosts for action in PLAN_ACTIONS[host.target.kind]}


# --- machines not in the inventory (ramboot serve's discovery) ------------------------


def discovery_stage1(
    inventory: Inventory, *, family: str = "x86_64", report_url: str | None = None,
    token: str | None = None, templates: Any = None,
) -> Document:
    """What iPXE of a machine the inventory does not list gets from `ramboot serve`:
    ramboot, with the family's default consoles, `ramboot.report=` and the fleet's
    `token`, so that its agent can report its hardware (`discovery_plan`)."""
    if family != "x86_64":
        raise TargetError([f"a machine not in the inventory of family {family!r} has no "
                           "iPXE stage 1 (a Raspberry Pi's is its TFTP directory)"])
    templates = templates or _default_templates()
    words = [f"console={console}" for console in DEFAULT_CONSOLES[family]]
    if report_url:
        words.append(f"ramboot.report={report_url}")
    if token is not None:
        words.append(f"ramboot.token={token}")
    spec = BootSpec(
        kernel=image_url(inventory, f"{family}/{RAMBOOT_KERNELS[family]}"),
        initrds=(image_url(inventory, f"{family}/{RAMBOOT_INITRAMFS}"),),
        args=tuple(words), chain=None,
    )
    text = templates.render("ipxe/discovery.ipxe.j2", source=inventory.path.name, spec=spec)
    return Document(IPXE_CONTENT_TYPE, text.encode("utf-8"))


def discovery_plan() -> Document:
    """What the agent of a machine not in the inventory gets: report its hardware, then
    stay in the RAM system (a plan that completes) until an operator adds it."""
    plan = {
        "ramboot-plan": 1,
        "description": "not in the inventory: report the hardware, then wait in ramboot "
                       "for an operator",
        "actions": [{"action": "hardware"}],
    }
    return Document(PLAN_CONTENT_TYPE, (json.dumps(plan, indent=2) + "\n").encode("utf-8"))


# --- loops -----------------------------------------------------------------------------


def loop_problems(
    inventory: Inventory, host: Host, *, ramboot_digests: Iterable[str] = (),
) -> list[str]:
    """Every way `host`'s stage 2 would boot ramboot again (empty when there is none).

    `ramboot_digests` are the sha256 hex digests of ramboot's published initramfs
    files, so a copy of it under another URL is caught too.
    """
    target, where = host.target, f"host {host.name!r}"
    digests = {f"sha256:{digest}" for digest in ramboot_digests}
    ramboot_urls = ramboot_initramfs_urls(inventory)
    base = inventory.servers.http_base
    problems: list[str] = []

    def is_ramboot(url: str, digest: object = None) -> bool:
        return url in ramboot_urls or (digest is not None and digest in digests)

    if target.kind == "kexec":
        for ref in target.get("initrds") or ():
            url = image_url(inventory, str(ref["url"] if isinstance(ref, dict) else ref))
            if is_ramboot(url, ref.get("digest") if isinstance(ref, dict) else None):
                problems.append(f"{where}: stage 2 boots ramboot again: its kexec target"
                                f"{_origin(target)} loads ramboot's initramfs {url}")
    elif target.kind == "ramroot":
        url = str(target.get("url"))
        if is_ramboot(url, target.get("digest")):
            problems.append(f"{where}: stage 2 boots ramboot again: its ramroot target"
                            f"{_origin(target)} is ramboot's own initramfs {url}")
    elif target.kind in ("plan", "script"):
        url = str(target.get("url")).split("?", 1)[0]
        stage1_spaces = (f"{base}/stage1/", f"{base}/mac/", f"{base}/images/")
        if url.startswith(stage1_spaces):
            problems.append(f"{where}: stage 2 boots ramboot again: its {target.kind} URL "
                            f"{url}{_origin(target)} is stage 1 (what iPXE gets), not a target")
        elif url == stage2_url(inventory, host):
            problems.append(f"{where}: its {target.kind} URL {url}{_origin(target)} is its own "
                            "stage 2: the agent would chain to itself forever")
    if target.kind in ("install", "disk"):
        problems += _reboot_problems(inventory, host)
    return problems


def _reboot_problems(inventory: Inventory, host: Host) -> list[str]:
    """A localboot by reboot that the next boot brings back into ramboot."""
    target, where = host.target, f"host {host.name!r}"
    if target.get("method", DEFAULT_METHODS[host.family]) != "reboot":
        return []
    if host.family == "x86_64":
        if target.kind == "install" and not host.provisioned:
            return [f"{where}: stage 2 boots ramboot again: after installing it reboots "
                    f"(method 'reboot'{_origin(target, ', ')}); the firmware netboots, "
                    "stage 1 boots ramboot and the install starts over, forever. Use "
                    "method = \"kexec\", or set provisioned = true once it is installed"]
        return []
    order = inventory.eeprom.boot_order.lower().removeprefix("0x")
    modes = [int(nibble, 16) for nibble in reversed(order)]  # tried lowest nibble first
    disk = target.get("disk")
    wanted = PI_DISK_MODES.get(str(disk.get("bus"))) if isinstance(disk, Mapping) else None
    wanted = wanted or ALL_PI_DISK_MODES
    first_disk = next((i for i, mode in enumerate(modes) if mode in wanted), None)
    first_network = next((i for i, mode in enumerate(modes) if mode == PI_NETWORK_MODE), None)
    if first_network is not None and (first_disk is None or first_network < first_disk):
        return [f"{where}: stage 2 boots ramboot again: its localboot reboots (method "
                f"'reboot'{_origin(target, ', ')}) but [eeprom] boot_order "
                f"{inventory.eeprom.boot_order} tries the network before the disk, so the "
                "board comes back into ramboot. Put the disk's boot mode first (e.g. 0xf21: "
                "SD card, then network) or use method = \"kexec\""]
    return []


def fleet_problems(
    inventory: Inventory, *, ramboot_digests: Mapping[str, str], published: set[str],
) -> list[str]:
    """`loop_problems` of every host, and kexec files named by a path under http/images/
    that is not there. `ramboot_digests` maps family -> sha256 hex; `published` holds
    the paths under http/images/ (`x86_64/bzImage`)."""
    digests = tuple(ramboot_digests.values())
    problems = []
    for host in inventory.hosts:
        problems += loop_problems(inventory, host, ramboot_digests=digests)
        if host.target.kind != "kexec":
            continue
        refs = [host.target.get("kernel"), *(host.target.get("initrds") or ())]
        for ref in refs:
            path = str(ref["url"] if isinstance(ref, dict) else ref)
            if "://" not in path and path not in published:
                problems.append(
                    f"host {host.name!r}: kexec target{_origin(host.target)}: {path!r} is "
                    f"not under http/images/ (available: "
                    f"{', '.join(sorted(published)) or 'nothing'})")
    return problems


def _origin(target: Target, joiner: str = " ") -> str:
    """Where a target came from, for messages: its profile, or nothing for a host's own."""
    if not target.where.startswith("profile "):
        return ""
    return f"{joiner}from {target.where}" if joiner != " " else f" (from {target.where})"


@functools.cache
def _default_templates() -> Any:
    from ramboot.render.templates import Templates  # noqa: PLC0415 - jinja2 only when rendering

    return Templates()
