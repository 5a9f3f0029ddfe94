"""What the DHCP configurations share: client classes and the Pi's option 43."""

from __future__ import annotations

# Raspberry Pi Trading OUIs seen on Pi 4 / Pi 400 / CM4 Ethernet. The Pi 4
# bootloader sends the same vendor class as x86 BIOS PXE firmware
# (PXEClient:Arch:00000:UNDI:002001), so the MAC prefix is what tells them apart.
RPI_OUIS = ("28:cd:c1", "2c:cf:67", "d8:3a:dd", "dc:a6:32", "e4:5f:01")
RPI_VENDOR_CLASS = "PXEClient:Arch:00000:UNDI:002001"

# Option 43 exactly as dnsmasq's `pxe-service=0,"Raspberry Pi Boot"` (the
# Raspberry Pi documentation's server setup) encodes it, so Kea sends the same
# bytes: PXE sub-options 6 (discovery control 3), 10 (prompt: 0 s, "PXE"),
# 9 (menu item: type 0, "Raspberry Pi Boot"), 255 (end). The bootloader only
# proceeds when option 43 carries "Raspberry Pi Boot".
_MENU = b"Raspberry Pi Boot"
RPI_OPTION_43 = (
    bytes([6, 1, 3])
    + bytes([10, 4, 0]) + b"PXE"
    + bytes([9, len(_MENU) + 3, 0, 0, len(_MENU)]) + _MENU
    + bytes([255])
)

UEFI_ARCHES = (7, 9)  # EFI BC and EFI x86-64 (RFC 4578)

# The agent's DHCP vendor class (option 60) is this prefix + "<version>:<buildarch>"
# (ramboot_agent.net.vendor_class): what tells stage 2 from iPXE's stage 1.
AGENT_VENDOR_CLASS_PREFIX = "ramboot-agent:"
