"""tftp/: the Pi 4 per-serial directories and the x86 iPXE binaries.

The Pi 4 bootloader (TFTP_PREFIX=0) asks for `<serial>/start4.elf`; when that
exists, every later request (config.txt, the DTB, the kernel, the initramfs)
carries the same prefix. Each board's directory therefore holds its own
config.txt and cmdline.txt plus *relative symlinks* to one shared copy of the
boot files in the TFTP root: dnsmasq and tftpd-hpa follow symlinks that stay
inside the root (tests/tools/render/test_netns.py proves it with dnsmasq), the
tree can be moved or published anywhere as a whole, and, unlike hardlinks, it
does not depend on the published copy staying on one filesystem.
"""

from __future__ import annotations

from ramboot import targets
from ramboot.inventory import Inventory
from ramboot.render._writer import TreeWriter
from ramboot.render.images import ImageSet
from ramboot.render.templates import Templates
from ramboot.tokens import Tokens

RPI_KERNEL = "Image"
RPI_INITRAMFS = targets.RAMBOOT_INITRAMFS


def render(
    inventory: Inventory, images: ImageSet, writer: TreeWriter, templates: Templates,
    tokens: Tokens | None = None,
) -> None:
    writer.ensure_dir("tftp")
    for name, source in sorted(images.ipxe.items()):
        writer.copy(f"tftp/{name}", source)
    rpi = images.rpi4
    if rpi is None:
        return
    shared = dict(rpi.boot_files)
    shared[RPI_KERNEL] = rpi.kernel
    shared[RPI_INITRAMFS] = rpi.initramfs
    for name, source in sorted(shared.items()):
        writer.copy(f"tftp/{name}", source)
    if rpi.overlays is not None:
        writer.copy_tree("tftp/overlays", rpi.overlays, images.root)
    links = sorted(shared) + (["overlays"] if rpi.overlays is not None else [])

    for host in inventory.hosts:
        if host.family != "rpi4" or host.serial is None:
            continue
        token = tokens.host(host.name) if tokens is not None else None
        files = targets.pi_boot_files(inventory, host, kernel=RPI_KERNEL,
                                      initramfs=RPI_INITRAMFS, templates=templates, token=token)
        writer.populate(f"tftp/{host.serial}", files, {name: f"../{name}" for name in links})
