"""A minimal QMP (QEMU Machine Protocol) client: read guest memory, reset the guest.

QEMU is started with `qmp_argv(socket)`; `Qmp(socket)` connects (waiting
for QEMU to create the socket), negotiates capabilities and runs commands.
Every read is bounded by a timeout. Used by the iPXE tests to read what a
boot loader left in guest memory (pmemsave) and to restart a guest quickly
(system_reset) without starting a new QEMU.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from tests.lib.qemu import QemuError, scaled


def qmp_argv(path: Path) -> list[str]:
    """QEMU arguments for a QMP server on the unix socket `path`."""
    return ["-qmp", f"unix:{path},server=on,wait=off"]


class Qmp:
    def __init__(self, path: Path, *, timeout: float = 10) -> None:
        self.path = path
        self.timeout = scaled(timeout)
        deadline = time.monotonic() + self.timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise QemuError(f"no QMP socket at {path} within {self.timeout:.0f}s") from None
                time.sleep(0.05)
        self.sock.settimeout(self.timeout)
        self._buffer = b""
        self._read()  # the greeting
        self.command("qmp_capabilities")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise QemuError(f"QMP at {self.path} did not answer within "
                                f"{self.timeout:.0f}s") from None
            if not chunk:
                raise QemuError(f"QMP at {self.path} closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message

    def command(self, name: str, **arguments: Any) -> Any:
        """Run one QMP command; its "return" value (events in between are skipped)."""
        request: dict[str, Any] = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QemuError(f"QMP {name} {arguments}: {reply['error']}")

    def read_memory(self, address: int, size: int, scratch: Path) -> bytes:
        """`size` bytes of guest physical memory at `address` (via pmemsave into `scratch`)."""
        scratch.unlink(missing_ok=True)
        self.command("pmemsave", val=address, size=size, filename=str(scratch))
        data = scratch.read_bytes()
        if len(data) != size:
            raise QemuError(f"pmemsave gave {len(data)} bytes, not {size}")
        return data

    def reset(self) -> None:
        """Restart the guest (firmware and all) in the same QEMU, also under -no-reboot."""
        self.command("set-action", reboot="reset")
        self.command("system_reset")
