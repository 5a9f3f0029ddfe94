"""The test network itself works: real Kea leases an address to real udhcpc."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib import netlab

pytestmark = pytest.mark.netns


def test_kea_leases_to_udhcpc_with_option_224(tmp_path: Path) -> None:
    netlab.require_netns("kea-dhcp4", "udhcpc")
    with netlab.veth_lab() as lab:
        config = netlab.kea_config(lab.server_if, tmp_path, option_224="http://192.0.2.1/boot.ipxe")
        netlab.start_kea(lab.server, config, tmp_path)
        hook = tmp_path / "hook.sh"
        hook.write_text('#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip opt224=$opt224"\nexit 0\n')
        hook.chmod(0o755)
        result = lab.client.run(
            ["udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", lab.client_if,
             "-O", "224", "-s", hook],
            timeout=30,
        )
    url_hex = b"http://192.0.2.1/boot.ipxe".hex()
    assert "ip=192.0.2.100 " in result.stdout
    # udhcpc hands options it has no name for to the hook as hex.
    assert f"opt224={url_hex}" in result.stdout
