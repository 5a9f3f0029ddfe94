"""eeprom/boot.conf: the Pi 4 EEPROM bootloader settings the fleet needs.

Apply with `rpi-eeprom-config --apply boot.conf` on each board (or bake it into
the EEPROM image used for provisioning).
"""

from __future__ import annotations

from ramboot.inventory import Eeprom, Inventory
from ramboot.render._writer import TreeWriter
from ramboot.render.templates import Templates

# The oldest bootloader release that understands a setting, from rpi-eeprom's
# firmware/raspberry_pi4_network_boot_beta.md ("TFTP_PREFIX (since 2019-10-08)"),
# the first critical release carrying network boot settings (pieeprom-2020-04-16:
# BOOT_ORDER, TFTP_IP, TFTP_PREFIX, TFTP_FILE_TIMEOUT) and the Raspberry Pi
# bootloader documentation (network install / HTTP boot: 2022-03-10 or later).
FEATURE_SINCE = {
    "BOOT_ORDER with network boot (nibble 2)": "2020-04-16",
    "TFTP_PREFIX=0 (serial-number directory)": "2019-10-08 (beta), 2020-04-16 (stable)",
    "TFTP_PREFIX=2 (MAC-address directory)": "2019-10-08 (beta), 2020-04-16 (stable)",
    "TFTP_IP": "2020-04-16",
    "TFTP_FILE_TIMEOUT": "2020-04-16",
    "NET_INSTALL_ENABLED": "2022-03-10",
}


def required_features(eeprom: Eeprom) -> list[tuple[str, str]]:
    """The features this configuration uses and the bootloader date each needs."""
    used = ["BOOT_ORDER with network boot (nibble 2)", "TFTP_FILE_TIMEOUT"]
    used.append(
        "TFTP_PREFIX=2 (MAC-address directory)" if eeprom.tftp_prefix == 2
        else "TFTP_PREFIX=0 (serial-number directory)"
    )
    if eeprom.tftp_ip:
        used.append("TFTP_IP")
    used.append("NET_INSTALL_ENABLED")
    return [(feature, FEATURE_SINCE[feature]) for feature in used]


def render(inventory: Inventory, writer: TreeWriter, templates: Templates) -> list[str]:
    """Write eeprom/boot.conf; return warnings about the configuration."""
    eeprom = inventory.eeprom
    warnings = []
    if "2" not in eeprom.boot_order[2:]:
        warnings.append(
            f"{inventory.path.name}: eeprom: boot_order {eeprom.boot_order} has no network "
            "boot (nibble 2): the boards will never ask for their TFTP files"
        )
    if eeprom.tftp_prefix == 1:
        warnings.append(
            f"{inventory.path.name}: eeprom: tftp_prefix 1 needs TFTP_PREFIX_STR, which ramboot "
            "does not render; the TFTP tree is laid out by serial"
        )
    if eeprom.tftp_prefix == 2:
        warnings.append(
            f"{inventory.path.name}: eeprom: tftp_prefix 2 (MAC directories) is not what the "
            "TFTP tree uses: ramboot renders per-serial directories (tftp_prefix 0)"
        )
    writer.text(
        "eeprom/boot.conf",
        templates.render(
            "eeprom/boot.conf.j2", eeprom=eeprom, source=inventory.path.name,
            features=required_features(eeprom),
        ),
    )
    return warnings
