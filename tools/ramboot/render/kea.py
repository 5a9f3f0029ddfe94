"""dhcp/kea-dhcp4.json: Kea DHCPv4 for the fleet, built as data and dumped as JSON.

Building a dict (not a text template) makes invalid JSON impossible; keys are
sorted so the same inventory always gives the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from ramboot import targets
from ramboot.inventory import Host, Inventory
from ramboot.render._writer import TreeWriter
from ramboot.render.dhcp import (
    AGENT_VENDOR_CLASS_PREFIX,
    RPI_OPTION_43,
    RPI_OUIS,
    RPI_VENDOR_CLASS,
    UEFI_ARCHES,
)
from ramboot.render.escape import comment, kea_string_option
from ramboot.tokens import Tokens

NOT_IPXE = "not member('ipxe')"
AGENT_CLASS = "ramboot-agent"


def _client_classes(inventory: Inventory, tokens: Tokens | None) -> list[dict[str, Any]]:
    return [*_boot_classes(inventory), *(
        cls for host in inventory.hosts if host.macs
        for cls in _stage_classes(inventory, host, tokens)
    )]


def _stage_classes(inventory: Inventory, host: Host,
                   tokens: Tokens | None) -> list[dict[str, Any]]:
    """Option 224 per host and stage: the agent gets stage 2, anything else stage 1.

    Kea 2.2 sends a reservation's own options to every client of that MAC, and a
    class a reservation assigns ranks above a tested class, so neither can tell the
    two stages apart. Two classes per host, tested on the MAC, can (Kea 2.7's
    per-class option data in reservations would need one). Kea evaluates every
    class for every packet: 15-20 ms per packet at 10,000 hosts with Kea 2.2
    (bench/kea_stage_classes.py, bench/RESULTS.md). With `tokens`, both URLs carry
    the host's token as userinfo (docs/serve.md#tokens).
    """
    stage1, stage2 = targets.stage1_url(inventory, host), targets.stage2_url(inventory, host)
    if tokens is not None:
        stage1, stage2 = tokens.host_url(host.name, stage1), tokens.host_url(host.name, stage2)
    macs = " or ".join(f"pkt4.mac == 0x{mac.replace(':', '')}" for mac in host.macs)
    classes = [
        {
            "name": f"host-{host.name}-stage2",
            "test": f"member('{AGENT_CLASS}') and ({macs})",
            "option-data": [kea_string_option("ramboot-url", stage2, always_send=True)],
        },
        {
            "name": f"host-{host.name}-stage1",
            "test": f"not member('{AGENT_CLASS}') and ({macs})",
            "option-data": [kea_string_option("ramboot-url", stage1, always_send=True)],
        },
    ]
    # A Pi's stage 1 is its TFTP directory: its bootloader has no use for option 224.
    return classes if host.family == "x86_64" else classes[:1]


def _boot_classes(inventory: Inventory) -> list[dict[str, Any]]:
    tftp = inventory.servers.tftp
    pi_macs = " or ".join(
        f"substring(pkt4.mac,0,3) == 0x{oui.replace(':', '')}" for oui in RPI_OUIS
    )
    uefi = " or ".join(f"option[93].hex == 0x{arch:04x}" for arch in UEFI_ARCHES)
    prefix = AGENT_VENDOR_CLASS_PREFIX
    return [
        {
            # ramboot's agent (stage 2) sends vendor class ramboot-agent:<version>:<arch>.
            "name": AGENT_CLASS,
            "test": f"substring(option[60].text,0,{len(prefix)}) == '{prefix}'",
        },
        {
            # iPXE sends user class "iPXE" and its own option 175: no boot file,
            # its embedded script reads option 224.
            "name": "ipxe",
            "test": "option[77].hex == 'iPXE' or option[175].exists",
            "boot-file-name": "",
        },
        {
            "name": "rpi4-bootloader",
            "test": f"{NOT_IPXE} and option[60].text == '{RPI_VENDOR_CLASS}' and ({pi_macs})",
            "next-server": tftp,
            # Option 43 redefined as binary for this class (Kea allows it per
            # class): otherwise Kea re-encodes the sub-options in code order and
            # drops the END byte, and the bytes would differ from dnsmasq's.
            "option-def": [{"name": "vendor-encapsulated-options", "code": 43, "type": "binary"}],
            "option-data": [
                {"name": "vendor-class-identifier", "data": "PXEClient", "always-send": True},
                {
                    "name": "vendor-encapsulated-options", "csv-format": False,
                    "data": RPI_OPTION_43.hex().upper(), "always-send": True,
                },
                {"name": "tftp-server-name", "data": tftp, "always-send": True},
            ],
        },
        {
            "name": "x86-bios",
            "test": f"{NOT_IPXE} and not member('rpi4-bootloader') and option[93].hex == 0x0000",
            "next-server": tftp,
            "boot-file-name": "undionly.kpxe",
        },
        {
            "name": "x86-uefi",
            "test": f"{NOT_IPXE} and ({uefi})",
            "next-server": tftp,
            "boot-file-name": inventory.servers.uefi_binary,
        },
    ]


def _reservations(inventory: Inventory, host: Host,
                  tokens: Tokens | None) -> list[dict[str, Any]]:
    report = host.report_url
    if tokens is not None and report:
        report = tokens.host_url(host.name, report)
    out = []
    for index, mac in enumerate(host.macs):
        reservation: dict[str, Any] = {
            "hw-address": mac,
            "hostname": host.name,
        }
        # Option 224 comes from the host's two stage classes, never from here:
        # a reservation's options would reach both stages alike.
        if report:
            reservation["option-data"] = [
                kea_string_option("ramboot-report", report, always_send=True)
            ]
        # Kea refuses one address reserved twice in a subnet: it goes to the first MAC.
        if host.ip and index == 0:
            reservation["ip-address"] = host.ip
        out.append(reservation)
    return out


def kea_config(inventory: Inventory, tokens: Tokens | None = None) -> dict[str, Any]:
    net = inventory.network
    options: list[dict[str, Any]] = []
    if net.router:
        options.append({"name": "routers", "data": net.router})
    if net.dns:
        options.append({"name": "domain-name-servers", "data": ", ".join(net.dns)})
    if net.domain:
        options.append(kea_string_option("domain-name", net.domain))
    if inventory.servers.report_url:
        # Clients without a reservation (a new board) still learn where to report.
        report = inventory.servers.report_url
        if tokens is not None:
            report = tokens.fleet_url(report)
        options.append(kea_string_option("ramboot-report", report, always_send=True))
    interface = inventory.servers.dhcp_interface or "*"
    return {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [interface]},
            "lease-database": {"type": "memfile", "persist": True, "lfc-interval": 3600},
            "valid-lifetime": net.lease_time,
            "option-def": [
                # Option 224 is private-use: a text URL, what iPXE's ${224} reads.
                {"name": "ramboot-url", "code": 224, "type": "string", "space": "dhcp4"},
                # Option 225, also private-use: the agent's status report URL.
                {"name": "ramboot-report", "code": 225, "type": "string", "space": "dhcp4"},
            ],
            "client-classes": _client_classes(inventory, tokens),
            "subnet4": [{
                "id": 1,
                "subnet": net.subnet,
                "pools": [{"pool": f"{net.pool[0]} - {net.pool[1]}"}],
                "option-data": options,
                "reservations": [
                    r for host in inventory.hosts for r in _reservations(inventory, host, tokens)
                ],
            }],
        }
    }


def render(inventory: Inventory, writer: TreeWriter, tokens: Tokens | None = None) -> None:
    header = (
        f"// Kea DHCPv4 configuration for the ramboot fleet.\n"
        f"// Generated by `ramboot render` from {comment(inventory.path.name)}; do not edit.\n"
    )
    writer.text("dhcp/kea-dhcp4.json", header + dumps(kea_config(inventory, tokens)) + "\n")


_RESERVATIONS = "@@ramboot-reservations@@"


def dumps(config: dict[str, Any]) -> str:
    """Indented JSON with one reservation per line: as readable for a fleet of
    thousands, and fast, since only the small skeleton goes through the pure
    Python indenting encoder (json's C encoder cannot indent)."""
    subnet = config["Dhcp4"]["subnet4"][0]
    reservations = subnet["reservations"]
    subnet["reservations"] = _RESERVATIONS
    try:
        skeleton = json.dumps(config, indent=2, sort_keys=True)
    finally:
        subnet["reservations"] = reservations
    indent = " " * 10
    lines = ",\n".join(indent + json.dumps(r, sort_keys=True) for r in reservations)
    listing = f"[\n{lines}\n{indent[:-2]}]" if reservations else "[]"
    return skeleton.replace(json.dumps(_RESERVATIONS), listing, 1)
