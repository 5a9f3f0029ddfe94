"""http/: iPXE scripts per host, per MAC and per profile, and the images they load.

    http/images/<family>/...   kernel and initramfs copied from --images
    http/profiles/<name>.ipxe  a profile on its own (no host arguments)
    http/hosts/<name>.ipxe     what option 224 points at for a host with a profile
    http/mac/<aa-bb-..>.ipxe   chains to the host's script, for iPXE setups that
                               use ${net0/mac:hexhyp}

The agent runs the same scripts as iPXE does, so one tree serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ramboot.errors import RambootError
from ramboot.inventory import Host, Inventory, Profile, profile_args
from ramboot.render._writer import TreeWriter
from ramboot.render.images import ImageSet
from ramboot.render.templates import Templates


@dataclass(frozen=True)
class BootSpec:
    """A profile resolved to URLs: what a script loads and with which arguments."""

    kernel: str | None
    initrds: tuple[str, ...]
    args: tuple[str, ...]
    chain: str | None


def _resolve(inventory: Inventory, reference: str, published: set[str], where: str) -> str:
    if "://" in reference:
        return reference
    if reference not in published:
        raise RambootError(
            f"{inventory.path.name}: {where}: {reference!r} is not under http/images/ "
            f"(available: {', '.join(sorted(published)) or 'nothing'})"
        )
    return f"{inventory.servers.http_base}/images/{reference}"


def boot_spec(
    inventory: Inventory, profile: Profile, published: set[str], host: Host | None = None
) -> BootSpec:
    where = f"profile {profile.name!r}"
    if profile.chain:
        return BootSpec(kernel=None, initrds=(), args=(), chain=profile.chain)
    assert profile.kernel is not None  # the inventory guarantees kernel or chain
    # The host's words come last: on a kernel command line the last one wins.
    args: list[str] = []
    if host is not None:
        args += [f"console={console}" for console in host.consoles]
    args += profile.args if host is None else profile_args(profile, dict(host.ramboot))
    if host is not None:
        if host.report_url:
            args.append(f"ramboot.report={host.report_url}")
        args += [f"ramboot.{key}={value}" for key, value in host.ramboot]
        args += host.kernel_args
    return BootSpec(
        kernel=_resolve(inventory, profile.kernel, published, where),
        initrds=tuple(_resolve(inventory, ref, published, where) for ref in profile.initramfs),
        args=tuple(args), chain=None,
    )


def render(
    inventory: Inventory, images: ImageSet, writer: TreeWriter, templates: Templates
) -> dict[str, str]:
    """Write the HTTP tree; return {relative path: text} of every iPXE script written."""
    published: set[str] = set()
    for family, set_ in (("rpi4", images.rpi4), ("x86_64", images.x86_64)):
        if set_ is None:
            continue
        for source in (set_.kernel, set_.initramfs):
            writer.copy(f"http/images/{family}/{source.name}", source)
            published.add(f"{family}/{source.name}")
    writer.ensure_dir("http")
    inventory_name = inventory.path.name
    scripts: dict[str, str] = {}

    def script(relative: str, text: str) -> None:
        writer.text(relative, text)
        scripts[relative] = text

    for name, profile in sorted(inventory.profiles.items()):
        script(
            f"http/profiles/{name}.ipxe",
            templates.render(
                "ipxe/profile.ipxe.j2", profile=profile, source=inventory_name,
                spec=boot_spec(inventory, profile, published),
            ),
        )
    for host in inventory.hosts:
        if host.profile is not None:
            profile = inventory.profiles[host.profile]
            script(
                f"http/hosts/{host.name}.ipxe",
                templates.render(
                    "ipxe/host.ipxe.j2", host=host, profile=profile, source=inventory_name,
                    spec=boot_spec(inventory, profile, published, host),
                ),
            )
        for mac in host.macs:
            script(
                f"http/mac/{mac.replace(':', '-')}.ipxe",
                templates.render(
                    "ipxe/mac.ipxe.j2", host=host, mac=mac, source=inventory_name,
                    url=inventory.host_url(host),
                ),
            )
    return scripts
