"""ramboot.targets: what each host gets at stage 1 and stage 2, and every loop refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ramboot import targets
from ramboot.cli import cli
from ramboot.inventory import Host, Inventory, parse_inventory
from tests.tools.render.helpers import make_images

BASE = "http://192.0.2.1/ramboot"
HEADER = f"""
[servers]
tftp = "192.0.2.1"
http_base = "{BASE}"
report_url = "http://192.0.2.1:8080/events"
[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]
"""
DIGEST = "sha256:" + "ab" * 32


def fleet(*hosts: str, header: str = HEADER) -> Inventory:
    return parse_inventory(header + "".join(f"\n[[hosts]]\n{h}" for h in hosts), Path("f.toml"))


def x86(target: str, name: str = "srv", extra: str = "") -> str:
    return (f'name = "{name}"\nfamily = "x86_64"\nmacs = ["52:54:00:00:00:01"]\n'
            f"target = {target}\n{extra}")


def pi(target: str, extra: str = "") -> str:
    return f'name = "pi"\nfamily = "rpi4"\nserial = "1a2b3c4d"\ntarget = {target}\n{extra}'


def only(inventory: Inventory) -> Host:
    (host,) = inventory.hosts
    return host


INSTALL = ('{ kind = "install", url = "http://192.0.2.1/os.img", digest = "' + DIGEST +
           '", disk = { bus = "mmc" } }')

INSTALL_REBOOT = INSTALL[:-2] + ', method = "reboot" }'


def test_stage1_boots_ramboot_with_the_hosts_words_and_no_stage2_url() -> None:
    inventory = fleet(x86('{ kind = "rescue" }', extra='kernel_args = ["nomodeset"]\n'
                          'ramboot = { debug = 1 }\n'))
    doc = targets.stage1(inventory, only(inventory), provisioned=False)
    assert doc.kind == "ipxe" and doc.content_type.startswith("text/plain")
    lines = doc.text.splitlines()
    assert lines[0] == "#!ipxe"
    kernel = next(line for line in lines if line.startswith("kernel "))
    assert kernel.split()[1] == f"{BASE}/images/x86_64/bzImage"
    assert kernel.split()[2:-3] == ["console=tty0", "console=ttyS0,115200",
                                    "ramboot.report=http://192.0.2.1:8080/events",
                                    "ramboot.debug=1", "nomodeset"]
    assert f"initrd {BASE}/images/x86_64/rootfs.cpio.zst || goto failed" in lines
    # The agent's DHCP answer names stage 2; a URL here would hide a DHCP server
    # that cannot tell the stages apart, and the agent refuses to run this script.
    assert "ramboot.url=" not in doc.text
    assert "iseq ${ramboot-stage} agent && goto wrong_stage ||" in lines


@pytest.mark.parametrize(("target", "provisioned", "why"), [
    ('{ kind = "disk", disk = { path = "/dev/sda" } }', False, "its target is its disk"),
    (INSTALL, True, "provisioned"),
])
def test_stage1_sends_to_the_disk(target: str, provisioned: bool, why: str) -> None:
    inventory = fleet(x86(target))
    text = targets.stage1(inventory, only(inventory), provisioned=provisioned).text
    assert f"echo ramboot: srv boots from its local disk ({why})" in text
    assert text.splitlines()[-2:] == ["set ramboot-next disk", "exit 0"]
    assert "kernel" not in text


def test_install_becomes_localboot_once_provisioned() -> None:
    inventory = fleet(x86(INSTALL))
    host = only(inventory)
    fresh = json.loads(targets.stage2(inventory, host).data)
    assert [a["action"] for a in fresh["actions"]] == ["image", "localboot"]
    assert fresh["disks"] == {"system": {"bus": "mmc"}}
    assert fresh["actions"][0] == {"action": "image", "url": "http://192.0.2.1/os.img",
                                   "digest": DIGEST, "target": "system"}
    assert fresh["actions"][1] == {"action": "localboot", "target": "system", "method": "kexec"}
    done = json.loads(targets.stage2(inventory, host, provisioned=True).data)
    assert [a["action"] for a in done["actions"]] == ["localboot"]
    assert targets.stage2(inventory, host).content_type == "application/json"


def test_a_sparse_install_with_an_authenticated_bmap_needs_no_image_digest() -> None:
    """bmap + bmap_digest: the plan the agent validates, with no whole-image digest."""
    from ramboot.lint import lint_plan

    bmap_digest = "sha256:" + "cd" * 32
    target = ('{ kind = "install", url = "http://192.0.2.1/os.img", disk = { bus = "mmc" }, '
              f'bmap = "http://192.0.2.1/os.img.bmap", bmap_digest = "{bmap_digest}" }}')
    inventory = fleet(x86(target))
    document = targets.stage2(inventory, only(inventory)).data
    assert json.loads(document)["actions"][0] == {
        "action": "image", "url": "http://192.0.2.1/os.img",
        "bmap": "http://192.0.2.1/os.img.bmap", "bmap_digest": bmap_digest, "target": "system"}
    assert lint_plan("srv.json", document) == []


def test_a_pi_has_no_ipxe_stage1_but_its_cmdline_names_stage2() -> None:
    inventory = fleet(pi(INSTALL))
    host = only(inventory)
    with pytest.raises(targets.TargetError, match=r"host 'pi': a Raspberry Pi's stage 1 is its "
                       r"TFTP directory \(tftp/1a2b3c4d/\)"):
        targets.stage1(inventory, host, provisioned=False)
    assert targets.pi_cmdline(inventory, host).split() == [
        "console=tty1", "console=ttyS1,115200", f"ramboot.url={BASE}/stage2/pi.json",
        "ramboot.report=http://192.0.2.1:8080/events"]
    plan = json.loads(targets.stage2(inventory, host).data)
    assert plan["actions"][-1]["method"] == "reboot"  # the Pi's default: its EEPROM picks


@pytest.mark.parametrize(("target", "kexecs"), [
    (INSTALL, False),  # localboot by reboot, the Pi's default
    (INSTALL[:-2] + ', method = "kexec" }', True),
    ('{ kind = "script", url = "http://192.0.2.9/x.ipxe" }', True),
    ('{ kind = "plan", url = "http://192.0.2.9/p.json" }', True),
    ('{ kind = "kexec", kernel = "http://192.0.2.9/Image" }', True),
    ('{ kind = "netroot", root = "nfs://192.0.2.1/srv/root" }', False),  # switch_root
    ('{ kind = "rescue" }', False),
])
def test_a_pi_that_may_kexec_boots_its_ram_system_with_one_possible_cpu(
        target: str, kexecs: bool) -> None:
    # The firmware's spin tables keep kexec from taking back the other three
    # (docs/rpi4-kernel.md); switch_root and reboot keep all four.
    host = only(fleet(pi(target)))
    assert targets.pi_kexecs(host) is kexecs
    words = targets.pi_cmdline(fleet(pi(target)), host).split()
    assert ("nr_cpus=1" in words) is kexecs


def test_a_pis_own_cpu_limit_is_kept() -> None:
    inventory = fleet(pi('{ kind = "script", url = "http://192.0.2.9/x.ipxe" }',
                         extra='kernel_args = ["maxcpus=1"]'))
    words = targets.pi_cmdline(inventory, only(inventory)).split()
    assert "maxcpus=1" in words and "nr_cpus=1" not in words


def test_urls_and_paths() -> None:
    inventory = fleet(x86('{ kind = "script", url = "http://192.0.2.9/x.ipxe" }'))
    host = only(inventory)
    assert targets.stage1_url(inventory, host) == f"{BASE}/stage1/srv.ipxe"
    assert targets.stage2_url(inventory, host) == f"{BASE}/stage2/srv.ipxe"
    doc = targets.stage2(inventory, host)
    assert doc.kind == "ipxe"
    assert "chain --autofree http://192.0.2.9/x.ipxe || goto failed" in doc.text.splitlines()


def test_kexec_plan_resolves_paths_under_images() -> None:
    inventory = fleet(x86('{ kind = "kexec", kernel = "x86_64/bzImage", initrds = [{ url = '
                          f'"http://192.0.2.1/i.gz", digest = "{DIGEST}" }}], '
                          'cmdline = "console=ttyS0" }'))
    plan = json.loads(targets.stage2(inventory, only(inventory)).data)
    assert plan["actions"] == [{"action": "kexec", "kernel": f"{BASE}/images/x86_64/bzImage",
                                "initrds": [{"url": "http://192.0.2.1/i.gz", "digest": DIGEST}],
                                "cmdline": "console=ttyS0"}]


RAMBOOT_SHA = "cd" * 32

LOOPS = [
    (x86('{ kind = "kexec", kernel = "x86_64/bzImage", initrds = ["x86_64/rootfs.cpio.zst"] }'),
     "host 'srv': stage 2 boots ramboot again: its kexec target loads ramboot's initramfs "
     f"{BASE}/images/x86_64/rootfs.cpio.zst"),
    (x86('{ kind = "kexec", kernel = "http://other/k", initrds = [{ url = "http://other/copy",'
         f' digest = "sha256:{RAMBOOT_SHA}" }}] }}'),
     "host 'srv': stage 2 boots ramboot again: its kexec target loads ramboot's initramfs "
     "http://other/copy"),
    (x86(f'{{ kind = "ramroot", url = "{BASE}/images/x86_64/rootfs.cpio.zst", digest = '
         f'"{DIGEST}" }}'),
     "host 'srv': stage 2 boots ramboot again: its ramroot target is ramboot's own initramfs"),
    (x86(f'{{ kind = "script", url = "{BASE}/stage1/srv.ipxe" }}'),
     f"host 'srv': stage 2 boots ramboot again: its script URL {BASE}/stage1/srv.ipxe is "
     "stage 1 (what iPXE gets), not a target"),
    (x86(f'{{ kind = "plan", url = "{BASE}/mac/52-54-00-00-00-01.ipxe?x=1" }}'),
     "host 'srv': stage 2 boots ramboot again: its plan URL"),
    (x86(f'{{ kind = "script", url = "{BASE}/stage2/srv.ipxe" }}'),
     f"host 'srv': its script URL {BASE}/stage2/srv.ipxe is its own stage 2"),
    (x86(INSTALL_REBOOT),
     "host 'srv': stage 2 boots ramboot again: after installing it reboots (method 'reboot'); "
     "the firmware netboots"),
    (pi('{ kind = "disk", disk = { bus = "mmc" } }'),
     "host 'pi': stage 2 boots ramboot again: its localboot reboots (method 'reboot') but "
     "[eeprom] boot_order 0xf12 tries the network before the disk"),
    (pi(INSTALL.replace('"mmc"', '"usb"')),
     "host 'pi': stage 2 boots ramboot again: its localboot reboots"),
]


@pytest.mark.parametrize(("host", "expected"), LOOPS)
def test_every_loop_is_named(host: str, expected: str) -> None:
    order = "0xf12" if "kind = \"disk\"" in host else "0xf21"
    inventory = fleet(host, header=HEADER + f'[eeprom]\nboot_order = "{order}"\n')
    problems = targets.fleet_problems(inventory, ramboot_digests={"x86_64": RAMBOOT_SHA},
                                      published={"x86_64/bzImage", "x86_64/rootfs.cpio.zst"})
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize("host", [
    pi(INSTALL),  # SD first in 0xf21: the installed card boots
    pi(INSTALL.replace('"mmc"', '"usb"'), extra=""),
    x86('{ kind = "disk", disk = { path = "/dev/sda" }, method = "reboot" }'),
    x86(INSTALL_REBOOT, extra="provisioned = true\n"),
    x86('{ kind = "kexec", kernel = "x86_64/bzImage", initrds = ["http://192.0.2.1/other.gz"] }'),
    x86('{ kind = "script", url = "http://192.0.2.1/elsewhere.ipxe" }'),
    x86('{ kind = "rescue" }'),
])
def test_targets_that_do_not_loop_pass(host: str) -> None:
    order = "0xf241" if '"usb"' in host else "0xf21"
    inventory = fleet(host, header=HEADER + f'[eeprom]\nboot_order = "{order}"\n')
    assert targets.fleet_problems(inventory, ramboot_digests={"x86_64": RAMBOOT_SHA},
                                  published={"x86_64/bzImage"}) == []


def test_render_refuses_a_looping_fleet_naming_every_host_and_writes_nothing(
        tmp_path: Path) -> None:
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(HEADER + "".join(f"\n[[hosts]]\n{h}" for h in (
        x86('{ kind = "kexec", kernel = "x86_64/bzImage", initrds = ["x86_64/rootfs.cpio.zst"] }',
            name="srv-a"),
        x86(f'{{ kind = "script", url = "{BASE}/stage1/srv-a.ipxe" }}', name="srv-b").replace(
            ":01", ":02"),
        x86('{ kind = "rescue" }', name="srv-c").replace(":01", ":03"),
    )))
    result = CliRunner().invoke(cli, ["render", str(inventory), "--images",
                                      str(make_images(tmp_path / "images")),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "the fleet's stages do not hold (2 problems)" in message
    assert "host 'srv-a': stage 2 boots ramboot again" in message
    assert "host 'srv-b': stage 2 boots ramboot again" in message
    assert "srv-c" not in message
    assert not (tmp_path / "out").exists()


def test_the_real_initramfs_digest_catches_a_copy(tmp_path: Path) -> None:
    """render hashes ramboot's initramfs from --images: a copy under another URL loops too."""
    import hashlib

    images = make_images(tmp_path / "images")
    digest = hashlib.sha256((images / "x86_64/rootfs.cpio.zst").read_bytes()).hexdigest()
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(HEADER + "\n[[hosts]]\n" + x86(
        '{ kind = "kexec", kernel = "x86_64/bzImage", initrds = [{ url = "http://mirror/r.gz", '
        f'digest = "sha256:{digest}" }}] }}'))
    result = CliRunner().invoke(cli, ["render", str(inventory), "--images", str(images),
                                      "--out", str(tmp_path / "out")])
    assert "loads ramboot's initramfs http://mirror/r.gz" in str(result.exception)
