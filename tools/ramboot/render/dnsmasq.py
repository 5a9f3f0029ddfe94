"""dhcp/dnsmasq.conf: the same DHCP (and optionally TFTP) service for dnsmasq."""

from __future__ import annotations

import ipaddress

from ramboot.inventory import Inventory
from ramboot.render._writer import TreeWriter
from ramboot.render.dhcp import RPI_OUIS, UEFI_ARCHES
from ramboot.render.templates import Templates


def render(inventory: Inventory, writer: TreeWriter, templates: Templates) -> None:
    net = inventory.network
    netmask = str(ipaddress.IPv4Network(net.subnet).netmask)
    hosts = [
        {
            "name": host.name, "macs": ",".join(host.macs), "ip": host.ip,
            "url": inventory.host_url(host),
        }
        for host in inventory.hosts if host.macs
    ]
    writer.text(
        "dhcp/dnsmasq.conf",
        templates.render(
            "dhcp/dnsmasq.conf.j2", source=inventory.path.name, servers=inventory.servers,
            network=net, netmask=netmask, rpi_ouis=RPI_OUIS, uefi_arches=UEFI_ARCHES,
            hosts=hosts,
        ),
    )
