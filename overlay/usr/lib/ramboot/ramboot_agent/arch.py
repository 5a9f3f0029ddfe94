"""The machine's architecture as iPXE names it (`${buildarch}`)."""

from __future__ import annotations

# uname machine -> iPXE's ${buildarch}
BUILDARCH = {
    "x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64",
    "i386": "i386", "i686": "i386",
    "armv7l": "arm32", "armv6l": "arm32", "riscv64": "riscv64", "loongarch64": "loong64",
}


def buildarch(machine: str) -> str:
    return BUILDARCH.get(machine, machine)
