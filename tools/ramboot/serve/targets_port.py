"""The one interface serve needs from the targets logic, and a stand-in for it.

What a host gets at each stage is decided from the inventory by the module
`render` uses too (ramboot.targets); serve adds only what it knows, whether
the machine is provisioned. serve calls exactly these three methods:

    stage1(host, provisioned=...)   -> Document  iPXE: ramboot, or exit to the disk
    stage2(host, provisioned=...)   -> Document  agent: the target, or localboot
    discovery(stage, identity)      -> Document  a machine not in the inventory

`StandInTargets` is what this branch ships until ramboot.targets is wired
here: stage 1 from the host's profile (the rendered host script), `exit` for
a provisioned host, `localboot` at stage 2 for a provisioned host, discovery
as `hardware`; a target at stage 2 it cannot give (the inventory has no
targets yet) is a clear 503.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from ramboot.inventory import Host, Inventory
from ramboot.render.http import boot_spec
from ramboot.render.templates import Templates
from ramboot.serve.identify import Identity
from ramboot.serve.states import Answer

IPXE = "text/plain; charset=utf-8"
PLAN = "application/json"
STAGE1_KINDS = frozenset({Answer.RAMBOOT, Answer.DISK, Answer.DISCOVERY})
STAGE2_KINDS = frozenset({Answer.TARGET, Answer.LOCALBOOT, Answer.DISCOVERY})


class TargetUnavailable(Exception):
    """The targets logic cannot answer for this host (503, naming the host)."""


@dataclass(frozen=True)
class Document:
    kind: Answer
    media_type: str
    body: bytes
    summary: str  # one line for the answers log and the fleet page


class Targets(Protocol):
    def stage1(self, host: Host, *, provisioned: bool) -> Document: ...

    def stage2(self, host: Host, *, provisioned: bool) -> Document: ...

    def discovery(self, stage: int, identity: Identity) -> Document: ...


def plan_document(kind: Answer, summary: str, actions: list[dict[str, object]],
                  description: str) -> Document:
    body = json.dumps({"ramboot-plan": 1, "description": description, "actions": actions},
                      indent=2) + "\n"
    return Document(kind, PLAN, body.encode(), summary)


def localboot(host: str) -> Document:
    return plan_document(Answer.LOCALBOOT, "localboot: provisioned, boots its disk",
                         [{"action": "localboot"}],
                         f"{host} is provisioned: boot its disk (ramboot reinstall {host} "
                         "to provision it again)")


def disk(host: str) -> Document:
    text = (f"#!ipxe\necho ramboot: {host} is provisioned: booting its disk "
            f"(ramboot reinstall {host} to provision it again)\nexit 0\n")
    return Document(Answer.DISK, IPXE, text.encode(), "exit: provisioned, boots its disk")


class StandInTargets:
    """Stage answers from today's inventory (profiles); see the module docstring."""

    def __init__(self, inventory: Inventory, *, report_url: str | None = None) -> None:
        self.inventory = inventory
        self.report_url = report_url
        self.templates = Templates(None)

    def stage1(self, host: Host, *, provisioned: bool) -> Document:
        if provisioned:
            return disk(host.name)
        if host.profile is None:
            raise TargetUnavailable(f"host {host.name!r} has no profile to boot ramboot with")
        profile = self.inventory.profiles[host.profile]
        refs = {ref for ref in (profile.kernel, *profile.initramfs) if ref and "://" not in ref}
        text = self.templates.render(
            "ipxe/host.ipxe.j2", host=host, profile=profile, source=self.inventory.path.name,
            spec=boot_spec(self.inventory, profile, refs, host))
        return Document(Answer.RAMBOOT, IPXE, text.encode(), f"ramboot: profile {profile.name}")

    def stage2(self, host: Host, *, provisioned: bool) -> Document:
        if provisioned:
            return localboot(host.name)
        raise TargetUnavailable(
            f"host {host.name!r}: no stage-2 target (the inventory's targets are not "
            "available to serve in this build)")

    def discovery(self, stage: int, identity: Identity) -> Document:
        if stage == 2:
            return plan_document(
                Answer.DISCOVERY, "discovery: report hardware, wait for an operator",
                [{"action": "hardware"}],
                "not in the inventory: report the hardware and wait for an operator")
        base = self.inventory.servers.http_base
        words = ["console=tty0", "console=ttyS0,115200"]
        if self.report_url:
            words.append(f"ramboot.report={self.report_url}")
        text = (
            "#!ipxe\n"
            "echo ramboot: this machine is not in the inventory: booting ramboot to report "
            "its hardware\n"
            f"kernel {base}/images/x86_64/bzImage {' '.join(words)} || goto failed\n"
            f"initrd {base}/images/x86_64/rootfs.cpio.gz || goto failed\n"
            "boot || goto failed\n:failed\necho ramboot: discovery boot failed\nexit 1\n")
        return Document(Answer.DISCOVERY, IPXE, text.encode(), "discovery: boot ramboot")
