"""dhcp/dnsmasq.conf: the same DHCP (and optionally TFTP) service for dnsmasq."""

from __future__ import annotations

import ipaddress

from ramboot import targets
from ramboot.inventory import Inventory
from ramboot.render._writer import TreeWriter
from ramboot.render.dhcp import AGENT_VENDOR_CLASS_PREFIX, RPI_OUIS, UEFI_ARCHES
from ramboot.render.templates import Templates
from ramboot.tokens import Tokens


def render(inventory: Inventory, writer: TreeWriter, templates: Templates,
           tokens: Tokens | None = None) -> None:
    net = inventory.network
    netmask = str(ipaddress.IPv4Network(net.subnet).netmask)

    def tokenized(host: str, url: str | None) -> str | None:
        return tokens.host_url(host, url) if tokens is not None and url else url

    hosts = [
        {
            "name": host.name, "macs": ",".join(host.macs), "ip": host.ip,
            "stage1_url": tokenized(host.name, targets.stage1_url(inventory, host))
            if host.family == "x86_64" else None,
            "stage2_url": tokenized(host.name, targets.stage2_url(inventory, host)),
            "report_url": tokenized(host.name, host.report_url),
        }
        for host in inventory.hosts if host.macs
    ]
    fleet_report = inventory.servers.report_url
    if tokens is not None and fleet_report:
        fleet_report = tokens.fleet_url(fleet_report)
    writer.text(
        "dhcp/dnsmasq.conf",
        templates.render(
            "dhcp/dnsmasq.conf.j2", source=inventory.path.name, servers=inventory.servers,
            network=net, netmask=netmask, rpi_ouis=RPI_OUIS, uefi_arches=UEFI_ARCHES,
            hosts=hosts, agent_vendor_class=AGENT_VENDOR_CLASS_PREFIX,
            fleet_report_url=fleet_report,
        ),
    )
