"""http/: each host's two stages, the per-MAC chains, and ramboot's images.

    http/images/<family>/...   ramboot's kernel and initramfs, copied from --images
    http/stage1/<name>.ipxe    stage 1 (x86_64): what iPXE's option 224 names; boots
                               ramboot, or sends the machine to its disk
    http/stage2/<name>.json    stage 2: the host's target as a provisioning plan, what
    http/stage2/<name>.ipxe    the agent's option 224 (and a Pi's ramboot.url=) names;
                               .ipxe when the target is a custom plan or script URL
    http/mac/<aa-bb-..>.ipxe   chains to the host's stage 1, for iPXE setups that use
                               ${net0/mac:hexhyp}

What each document holds is decided by `ramboot/targets.py`; this module only writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ramboot import targets
from ramboot.inventory import Inventory
from ramboot.render._writer import TreeWriter
from ramboot.render.images import ImageSet
from ramboot.render.templates import Templates


@dataclass
class HttpDocuments:
    """What was written, for linting: {path under the output tree: text or bytes}."""

    scripts: dict[str, str] = field(default_factory=dict)
    plans: dict[str, bytes] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # path -> host name


def render(
    inventory: Inventory, images: ImageSet, writer: TreeWriter, templates: Templates
) -> HttpDocuments:
    """Write the HTTP tree; return every iPXE script and plan written."""
    for family, set_ in (("rpi4", images.rpi4), ("x86_64", images.x86_64)):
        if set_ is None:
            continue
        for source in (set_.kernel, set_.initramfs):
            writer.copy(f"http/images/{family}/{source.name}", source)
    writer.ensure_dir("http")
    written = HttpDocuments()

    def document(relative: str, host: str, doc: targets.Document) -> None:
        writer.text(relative, doc.text)
        written.hosts[relative] = host
        if doc.kind == "plan":
            written.plans[relative] = doc.data
        else:
            written.scripts[relative] = doc.text

    for host in inventory.hosts:
        if host.family == "x86_64":
            document(f"http/{targets.stage1_path(host)}", host.name, targets.stage1(
                inventory, host, provisioned=host.provisioned, templates=templates))
        document(f"http/{targets.stage2_path(host)}", host.name, targets.stage2(
            inventory, host, provisioned=host.provisioned, templates=templates))
        if host.family != "x86_64":
            continue  # only iPXE chains by MAC; a Pi's stage 1 is its TFTP directory
        for mac in host.macs:
            relative = f"http/mac/{mac.replace(':', '-')}.ipxe"
            text = templates.render("ipxe/mac.ipxe.j2", host=host, mac=mac,
                                    source=inventory.path.name,
                                    url=targets.stage1_url(inventory, host))
            document(relative, host.name, targets.Document(targets.IPXE_CONTENT_TYPE,
                                                           text.encode("utf-8")))
    return written
