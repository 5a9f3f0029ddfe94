"""The rendered configurations served by the real servers to real clients.

- dnsmasq serves the rendered TFTP tree; tftp-hpa fetches what a Pi 4 asks for,
  through the per-serial symlinks, byte for byte.
- Kea and dnsmasq, each with its rendered configuration, hand options 224 (the
  instructions URL) and 225 (the report URL) to busybox udhcpc although it did
  not ask for them (no `-O`); a host's own report URL wins over the fleet's,
  and a client without a reservation gets the fleet's.
- A client that looks like a Pi 4 bootloader gets the same option 43 from both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.lib import netlab
from tests.tools.render.helpers import FLEET, make_images, render_fleet

pytestmark = pytest.mark.netns

PI_VENDOR_CLASS = "PXEClient:Arch:00000:UNDI:002001"


def _render(tmp_path: Path, tftp_root: Path | None = None) -> Path:
    text = FLEET.read_text()
    if tftp_root is not None:
        text = text.replace('tftp_root = "/srv/ramboot/tftp"', f'tftp_root = "{tftp_root}"')
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(text)
    out = tmp_path / "out"
    render_fleet(make_images(tmp_path / "images"), out, inventory)
    return out


def _kea_dict(path: Path, workdir: Path) -> dict:
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("//"))
    config = json.loads(text)
    dhcp4 = config["Dhcp4"]
    # Site-specific paths only: where leases and logs go on this test machine.
    dhcp4["lease-database"]["name"] = str(workdir / "kea-leases4.csv")
    dhcp4["loggers"] = [{
        "name": "kea-dhcp4", "severity": "INFO",
        "output_options": [{"output": str(workdir / "kea.log")}],
    }]
    return config


def _udhcpc(lab: netlab.VethLab, workdir: Path, *extra: str) -> dict[str, str]:
    hook = workdir / "hook.sh"
    hook.write_text('#!/bin/sh\n[ "$1" = bound ] && env\nexit 0\n')
    hook.chmod(0o755)
    result = lab.client.run(
        ["udhcpc", "-f", "-q", "-n", "-t", "8", "-T", "1", "-i", lab.client_if, "-s", hook,
         *extra],
        timeout=40, check=False,
    )
    assert result.returncode == 0, f"udhcpc got no lease: {result.stderr}"
    return dict(
        line.split("=", 1) for line in result.stdout.splitlines() if re.match(r"^\w+=", line)
    )


def _hex(text: str) -> str:
    return text.encode().hex()


def test_dnsmasq_serves_the_pi_tftp_tree_through_symlinks(tmp_path: Path) -> None:
    netlab.require_netns("dnsmasq", "tftp")
    out = _render(tmp_path)
    tftp_root = out / "tftp"
    with netlab.veth_lab() as lab:
        netlab.start_dnsmasq(
            lab.server, lab.server_if, tmp_path, ["--enable-tftp", f"--tftp-root={tftp_root}"]
        )
        lab.client.ip("addr", "add", "192.0.2.50/24", "dev", lab.client_if)
        fetched = tmp_path / "fetched"
        fetched.mkdir()
        # What the bootloader asks for first, then what start4.elf asks for.
        wanted = ["1a2b3c4d/start4.elf", "1a2b3c4d/config.txt", "1a2b3c4d/fixup4.dat",
                  "1a2b3c4d/bcm2711-rpi-4-b.dtb", "1a2b3c4d/cmdline.txt", "1a2b3c4d/Image",
                  "1a2b3c4d/rootfs.cpio.zst", "1a2b3c4d/overlays/miniuart-bt.dtbo"]
        for index, name in enumerate(wanted):
            local = fetched / str(index)
            result = lab.client.run(
                ["tftp", "-m", "binary", netlab.SERVER_IP, "-c", "get", name, local],
                timeout=30, check=False,
            )
            assert local.exists() and result.returncode == 0, f"{name}: {result.stderr}"
            assert local.read_bytes() == (tftp_root / name).read_bytes(), name
        # A name outside the tree is refused, symlinks or not.
        escape = lab.client.run(
            ["tftp", "-m", "binary", netlab.SERVER_IP, "-c", "get", "../fleet.toml",
             fetched / "escape"], timeout=30, check=False,
        )
        assert not (fetched / "escape").exists() or (fetched / "escape").stat().st_size == 0, \
            escape.stdout


FLEET_REPORT = "http://192.0.2.1:8080/events"  # [servers] report_url in the fixture


def _lease(tmp_path: Path, server: str, mac: str, *extra: str) -> dict[str, str]:
    out = _render(tmp_path, tftp_root=tmp_path / "out" / "tftp")
    with netlab.veth_lab(client_mac=mac) as lab:
        if server == "kea":
            netlab.start_kea(lab.server, _kea_dict(out / "dhcp/kea-dhcp4.json", tmp_path),
                             tmp_path)
        else:
            netlab.start_dnsmasq(
                lab.server, lab.server_if, tmp_path,
                [f"--conf-file={out / 'dhcp/dnsmasq.conf'}"],
            )
        return _udhcpc(lab, tmp_path, *extra)


# Kea gets srv-01's first NIC, dnsmasq its second: both share the reservation.
@pytest.mark.parametrize(("server", "mac"), [("kea", "52:54:00:12:34:56"),
                                             ("dnsmasq", "52:54:00:12:34:57")])
def test_options_224_and_225_sent_unasked(tmp_path: Path, server: str, mac: str) -> None:
    netlab.require_netns("kea-dhcp4" if server == "kea" else "dnsmasq", "udhcpc")
    env = _lease(tmp_path, server, mac)
    assert env["ip"] == "192.0.2.31"  # srv-01's reservation
    assert env["opt224"] == _hex("http://192.0.2.1/ramboot/stage1/srv-01.ipxe")
    assert env["opt225"] == _hex("https://192.0.2.1:8443/srv-events")  # its own, not the fleet's


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_unreserved_client_gets_the_fleet_report_url(tmp_path: Path, server: str) -> None:
    netlab.require_netns("kea-dhcp4" if server == "kea" else "dnsmasq", "udhcpc")
    env = _lease(tmp_path, server, "52:54:00:99:99:99")
    assert env["ip"].startswith("192.0.2.1")  # from the pool 192.0.2.100-199
    assert "opt224" not in env
    assert env["opt225"] == _hex(FLEET_REPORT)


def _pi_lease(tmp_path: Path, server: str) -> dict[str, str]:
    # Vendor class and client arch 0, as the Pi 4 bootloader sends them.
    return _lease(tmp_path, server, "dc:a6:32:00:00:01",
                  "-V", PI_VENDOR_CLASS, "-x", "0x5d:0000", "-O", "43")


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_pi_bootloader_gets_raspberry_pi_boot(tmp_path: Path, server: str) -> None:
    netlab.require_netns("kea-dhcp4" if server == "kea" else "dnsmasq", "udhcpc")
    env = _pi_lease(tmp_path, server)
    assert _hex("Raspberry Pi Boot") in env["opt43"]
    # Byte for byte what dnsmasq's pxe-service=0,"Raspberry Pi Boot" sends.
    assert env["opt43"] == "0601030a0400505845091400001152617370626572727920506920426f6f74ff"
    assert env["siaddr"] == "192.0.2.1"
    assert env["ip"] == "192.0.2.21"
    assert "opt224" not in env  # a Pi's stage 1 is its TFTP directory, not a URL
    assert env["opt225"] == _hex(FLEET_REPORT)
    assert "boot_file" not in env or env["boot_file"] != "undionly.kpxe"


STAGE1 = "http://192.0.2.1/ramboot/stage1/srv-01.ipxe"
STAGE2 = "http://192.0.2.1/ramboot/stage2/srv-01.json"
IPXE_USER_CLASS = "0x4d:" + _hex("iPXE")  # what iPXE sends as option 77


def _agent_lease(lab: netlab.VethLab, workdir: Path) -> dict[str, object]:
    """The real agent's DHCP (ramboot_agent.net: udhcpc with its vendor class and hook)."""
    import json
    import sys

    repo = Path(__file__).resolve().parents[3]
    result = lab.client.run(
        [sys.executable, "-m", "ramboot_agent.net", "--force",
         "--cmdline", "ramboot.dhcp_timeout=30",
         "--runtime-dir", workdir / "run", "--resolv-conf", workdir / "resolv.conf",
         "--hook", repo / "overlay/usr/share/ramboot/udhcpc.script"],
        check=False, timeout=90, cwd=repo,
    )
    assert result.returncode == 0, result.stderr
    lease: dict[str, object] = json.loads(result.stdout)
    return lease


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_each_stage_gets_its_own_url(tmp_path: Path, server: str) -> None:
    """iPXE (stage 1) and the real agent (stage 2) of one host, one rendered config, one
    server: each gets its own option 224, both the host's reserved address."""
    netlab.require_netns("kea-dhcp4" if server == "kea" else "dnsmasq", "udhcpc")
    out = _render(tmp_path, tftp_root=tmp_path / "out" / "tftp")
    with netlab.veth_lab(client_mac="52:54:00:12:34:56") as lab:
        if server == "kea":
            netlab.start_kea(lab.server, _kea_dict(out / "dhcp/kea-dhcp4.json", tmp_path),
                             tmp_path)
        else:
            netlab.start_dnsmasq(lab.server, lab.server_if, tmp_path,
                                 [f"--conf-file={out / 'dhcp/dnsmasq.conf'}"])
        ipxe = _udhcpc(lab, tmp_path, "-x", IPXE_USER_CLASS)
        agent = _agent_lease(lab, tmp_path)
        again = _udhcpc(lab, tmp_path, "-x", IPXE_USER_CLASS)  # the next boot's iPXE
    assert ipxe["opt224"] == again["opt224"] == _hex(STAGE1)
    assert bytes.fromhex(str(agent["options"]["224"])).decode() == STAGE2  # type: ignore[index]
    assert ipxe["ip"] == agent["ip"] == "192.0.2.31"
    # The files they name are what render wrote for each stage.
    assert (out / "http/stage1/srv-01.ipxe").read_text().startswith("#!ipxe")
    assert (out / "http/stage2/srv-01.json").read_text().startswith('{\n  "ramboot-plan": 1')


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_a_pis_agent_gets_its_stage2_from_dhcp_too(tmp_path: Path, server: str) -> None:
    """A Pi's cmdline.txt names its stage 2; the agent's lease names the same one."""
    netlab.require_netns("kea-dhcp4" if server == "kea" else "dnsmasq", "udhcpc")
    out = _render(tmp_path, tftp_root=tmp_path / "out" / "tftp")
    with netlab.veth_lab(client_mac="dc:a6:32:00:00:01") as lab:
        if server == "kea":
            netlab.start_kea(lab.server, _kea_dict(out / "dhcp/kea-dhcp4.json", tmp_path),
                             tmp_path)
        else:
            netlab.start_dnsmasq(lab.server, lab.server_if, tmp_path,
                                 [f"--conf-file={out / 'dhcp/dnsmasq.conf'}"])
        agent = _agent_lease(lab, tmp_path)
    url = bytes.fromhex(str(agent["options"]["224"])).decode()  # type: ignore[index]
    assert url == "http://192.0.2.1/ramboot/stage2/pi-01.json"
    assert f"ramboot.url={url}" in (out / "tftp/1a2b3c4d/cmdline.txt").read_text().split()
