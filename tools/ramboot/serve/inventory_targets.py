"""serve's answers for every host and stage: ramboot/targets.py, the functions render uses.

A host gets from serve exactly what `ramboot render` writes for it
(http/stage1/<host>.ipxe, http/stage2/<host>.json or .ipxe), computed by the same
functions, with two differences that only serve can make:

- **provisioned** is serve's record (set when the machine reached its target,
  cleared by `ramboot reinstall`) or the inventory's `provisioned = true`; what it
  changes is targets.py's to say: an `install` target then boots its disk (iPXE:
  `ramboot-next` = `disk`, which the embedded script turns into `exit` at once;
  the agent: a `localboot` plan). A target without a disk of its own (a network
  or RAM root, a kernel, rescue, a custom plan or script) is booted every time.
- **the host's machine token** goes on ramboot's kernel command line in stage 1
  (`ramboot.token=`): serve's answers need a token to be read, the rendered tree
  is public and never holds one. The agent sends it as a Bearer token with its
  events and to the origin of its stage-2 URL.

Every document is checked as render checks what it writes (plans with the
agent's validator, scripts with its parser) before it is served; an inventory
whose stage 2 would boot ramboot again is refused when it is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

from ramboot import targets
from ramboot.inventory import Host, Inventory
from ramboot.render.templates import Templates
from ramboot.serve.identify import Identity
from ramboot.serve.states import Answer
from ramboot.serve.targets_port import Document, StageRefused
from ramboot.tokens import fleet_token, host_token

ARM_BUILDARCHES = frozenset({"arm64", "aarch64", "arm32"})


def tree_facts(tree: Path | None) -> tuple[dict[str, str], set[str] | None]:
    """From a rendered http/ tree: sha256 of ramboot's initramfs per family, and the
    paths under images/ (None without a tree: files named by path are not checked)."""
    if tree is None:
        return {}, None
    digests, published = {}, set()
    for family in targets.RAMBOOT_KERNELS:
        directory = tree / "images" / family
        if not directory.is_dir():
            continue
        published |= {f"{family}/{path.name}" for path in directory.iterdir() if path.is_file()}
        initramfs = directory / targets.RAMBOOT_INITRAMFS
        if initramfs.is_file():
            with initramfs.open("rb") as stream:
                digests[family] = hashlib.file_digest(stream, "sha256").hexdigest()
    return digests, published


def check_fleet(inventory: Inventory, tree: Path | None = None) -> None:
    """Refuse, as render does, an inventory whose stage 2 would boot ramboot again."""
    digests, published = tree_facts(tree)
    if published is not None:
        problems = targets.fleet_problems(inventory, ramboot_digests=digests,
                                          published=published)
    else:
        problems = [problem for host in inventory.hosts
                    for problem in targets.loop_problems(inventory, host)]
    if problems:
        raise targets.TargetError(problems)


class InventoryTargets:
    """serve's `Targets` (targets_port.py) over ramboot/targets.py."""

    def __init__(self, inventory: Inventory, *, machine_secret: bytes,
                 report_url: str | None = None, tree: Path | None = None,
                 templates: Templates | None = None, warm: bool = True) -> None:
        check_fleet(inventory, tree)
        self.inventory = inventory
        self.secret = machine_secret
        self.report_url = report_url or inventory.servers.report_url
        self.templates = templates or Templates()
        self._discovery: dict[int, Document] = {}
        # (host, stage, boots its disk) -> its document, or why it is refused: targets.py's
        # answers depend on provisioned only through boots_disk, so each document is
        # rendered and checked once (tests/serve/test_inventory_targets.py holds it to it).
        self._documents: dict[tuple[str, int, bool], Document | StageRefused] = {}
        if warm:
            self.warm()

    def warm(self) -> None:
        """Render and check every host's documents now, at load, not in the boot storm
        that follows (about 0.3 ms each: 10,000 hosts take seconds, off the event loop)."""
        for host in self.inventory.hosts:
            for provisioned in (False, True) if host.target.kind == "install" else (False,):
                for stage in (self.stage1, self.stage2) if host.family == "x86_64" \
                        else (self.stage2,):
                    with contextlib.suppress(StageRefused):  # kept, answered when asked
                        stage(host, provisioned=provisioned)

    def stage1(self, host: Host, *, provisioned: bool) -> Document:
        provisioned = provisioned or host.provisioned
        disk = targets.boots_disk(host, provisioned=provisioned)
        key = (host.name, 1, disk)
        if key in self._documents:
            return _answer(self._documents[key])
        try:
            document = targets.stage1(self.inventory, host, provisioned=provisioned,
                                      templates=self.templates,
                                      token=host_token(self.secret, host.name))
        except targets.TargetError as error:
            refused = self._documents[key] = StageRefused(404, "; ".join(error.problems))
            raise refused from None
        if disk:
            why = "provisioned" if host.target.kind == "install" else "its target is its disk"
            kind, summary = Answer.DISK, f"its disk ({why}): exit to the next boot device"
        else:
            kind, summary = Answer.RAMBOOT, f"ramboot; then {targets.describe(host.target)}"
        return self._checked(key, host, kind, document, summary)

    def stage2(self, host: Host, *, provisioned: bool) -> Document:
        provisioned = provisioned or host.provisioned
        disk = targets.boots_disk(host, provisioned=provisioned)
        key = (host.name, 2, disk)
        if key in self._documents:
            return _answer(self._documents[key])
        document = targets.stage2(self.inventory, host, provisioned=provisioned,
                                  templates=self.templates)
        if disk:
            why = "provisioned" if host.target.kind == "install" else "its target is its disk"
            kind, summary = Answer.LOCALBOOT, f"localboot: its disk ({why})"
        else:
            kind, summary = Answer.TARGET, targets.describe(host.target)
        return self._checked(key, host, kind, document, summary)

    def discovery(self, stage: int, identity: Identity) -> Document:
        if stage == 1 and identity.buildarch in ARM_BUILDARCHES:
            raise StageRefused(404, f"{identity.key()} ({identity.buildarch}) is not in the "
                                    "inventory: only x86_64 machines have an iPXE stage 1")
        cached = self._discovery.get(stage)
        if cached is not None:
            return cached
        if stage == 2:
            document = targets.discovery_plan()
            summary = "discovery: report the hardware, wait for an operator"
        else:
            document = targets.discovery_stage1(
                self.inventory, report_url=self.report_url, token=fleet_token(self.secret),
                templates=self.templates)
            summary = "discovery: boot ramboot"
        # Not linted: its `hardware` action may be newer than this host's agent copy.
        answer = Document(Answer.DISCOVERY, document.content_type, document.data, summary)
        self._discovery[stage] = answer
        return answer

    def _checked(self, key: tuple[str, int, bool], host: Host, kind: Answer,
                 document: targets.Document, summary: str) -> Document:
        stage = key[1]
        problems = _lint(f"stage {stage} of host {host.name!r}", document)
        answer: Document | StageRefused = Document(kind, document.content_type, document.data,
                                                   summary)
        if problems:
            answer = StageRefused(500, f"stage {stage} of host {host.name!r} is not served: "
                                       "it does not pass render's checks: " + "; ".join(problems))
        self._documents[key] = answer
        return _answer(answer)


def _answer(cached: Document | StageRefused) -> Document:
    if isinstance(cached, StageRefused):
        raise cached
    return cached


def _lint(name: str, document: targets.Document) -> list[str]:
    from ramboot.lint import lint_plan, lint_text, parser_available  # noqa: PLC0415

    if document.kind == "plan":
        return lint_plan(name, document.data)
    return lint_text(name, document.text) if parser_available() else []
