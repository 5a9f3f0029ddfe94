"""Each class of bad inventory is refused with a message naming file, host and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramboot.inventory import InventoryError, parse_inventory

HEADER = """
[servers]
tftp = "192.0.2.1"
http_base = "http://192.0.2.1/ramboot"
[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]
[profiles.rescue]
kind = "rescue"
"""

PI = 'name = "pi-07"\nfamily = "rpi4"\nserial = "1a2b3c4d"\nprofile = "rescue"\n'
X86 = 'name = "srv-01"\nfamily = "x86_64"\nmacs = ["52:54:00:00:00:01"]\nprofile = "rescue"\n'


def problems(hosts: list[str], header: str = HEADER) -> list[str]:
    text = header + "".join(f"\n[[hosts]]\n{host}" for host in hosts)
    with pytest.raises(InventoryError) as raised:
        parse_inventory(text, Path("/etc/ramboot/fleet.toml"))
    return raised.value.problems


def test_valid_inventory_parses_and_normalises() -> None:
    text = HEADER + f"\n[[hosts]]\n{PI.replace('1a2b3c4d', '1A2B3C4D')}\n[[hosts]]\n" + \
        X86.replace("52:54:00:00:00:01", "52-54-00-AA-00-01")
    inventory = parse_inventory(text, Path("fleet.toml"))
    assert [h.name for h in inventory.hosts] == ["pi-07", "srv-01"]
    assert inventory.hosts[0].serial == "1a2b3c4d"
    assert inventory.hosts[0].dtb == "bcm2711-rpi-4-b.dtb"
    assert inventory.hosts[1].macs == ("52:54:00:aa:00:01",)
    assert inventory.hosts[0].target.kind == "rescue"
    assert inventory.hosts[0].profile == "rescue"
    assert inventory.hosts[0].provisioned is False


@pytest.mark.parametrize(("host", "expected"), [
    (PI.replace("1a2b3c4d", "12345"),
     "fleet.toml: host 'pi-07': serial: '12345' is not 8 hex digits"),
    (PI.replace('serial = "1a2b3c4d"\n', ""), "fleet.toml: host 'pi-07': serial: missing"),
    (X86.replace("52:54:00:00:00:01", "52:54:00:00:00"),
     "fleet.toml: host 'srv-01': macs: '52:54:00:00:00' is not a MAC address"),
    (X86.replace("52:54:00:00:00:01", "01:00:5e:00:00:01"),
     "fleet.toml: host 'srv-01': macs: '01:00:5e:00:00:01' is a multicast address"),
    (X86.replace('macs = ["52:54:00:00:00:01"]\n', ""), "fleet.toml: host 'srv-01': macs: missing"),
    (X86 + 'colour = "red"\n', "fleet.toml: host 'srv-01': unknown key 'colour'"),
    (PI.replace('profile = "rescue"', 'target = { kind = "script", url = "ftp://192.0.2.1/x" }'),
     "fleet.toml: host 'pi-07': target: url: 'ftp://192.0.2.1/x': scheme must be one of http, "
     "https"),
    (PI.replace('profile = "rescue"', 'target = { kind = "plan", url = "http://a b" }'),
     "fleet.toml: host 'pi-07': target: url: 'http://a b' contains whitespace"),
    (PI.replace('"pi-07"', '"../x"'), "fleet.toml: host #1: name: '../x' would escape"),
    (PI.replace('"pi-07"', '"/x"'), "fleet.toml: host #1: name: '/x' would escape"),
    (PI.replace('"pi-07"', '"a\\u0000b"'), "fleet.toml: host #1: name: 'a\\x00b' would escape"),
    (PI.replace('family = "rpi4"', 'family = "sparc"'),
     "fleet.toml: host 'pi-07': family: 'sparc' is not one of rpi4, x86_64"),
    (PI.replace('profile = "rescue"', 'profile = "nope"'),
     "fleet.toml: host 'pi-07': profile: 'nope' is not defined (profiles: rescue)"),
    (PI.replace('profile = "rescue"', ""), "fleet.toml: host 'pi-07': target: missing"),
    (PI + 'model = "3b"\n', "fleet.toml: host 'pi-07': model: '3b' is not one of 4b, 400, cm4"),
    (PI + 'kernel_args = ["a b"]\n', "fleet.toml: host 'pi-07': kernel_args: 'a b' contains"),
    (PI + 'ramboot = { url = "http://x/" }\n',
     "fleet.toml: host 'pi-07': ramboot.url: the host's stage 2 comes from its target"),
    (PI + 'kernel_args = ["ramboot.url=http://x/"]\n',
     "fleet.toml: host 'pi-07': kernel_args: ramboot.url= is the host's stage 2"),
    (PI + 'ramboot = { report = "http://x/" }\n',
     "fleet.toml: host 'pi-07': ramboot.report: set 'report_url' instead"),
    (PI + 'report_url = "tftp://192.0.2.1/events"\n',
     "fleet.toml: host 'pi-07': report_url: 'tftp://192.0.2.1/events' must be an http or https"),
    (PI + 'report_url = "http://192.0.2.1/a b"\n',
     "fleet.toml: host 'pi-07': report_url: 'http://192.0.2.1/a b' contains whitespace"),
    (X86 + 'ip = "198.51.100.1"\n',
     "fleet.toml: host 'srv-01': ip: 198.51.100.1 is outside the subnet 192.0.2.0/24"),
    # ramboot.* words are checked with the agent's own command-line parser.
    (PI + 'ramboot = { shell = "no" }\n',
     "fleet.toml: host 'pi-07': ramboot.shell: ramboot.shell='no': expected one of never, "
     "failure, before, after"),
    (PI + 'ramboot = { carier_timeout = 5 }\n',
     "fleet.toml: host 'pi-07': ramboot.carier_timeout: unknown kernel parameter "
     "ramboot.carier_timeout (the agent knows: "),
    (PI + 'kernel_args = ["ramboot.debug=7"]\n',
     "fleet.toml: host 'pi-07': kernel_args: ramboot.debug='7': expected 0, 1 or 2"),
])
def test_bad_host_is_named(host: str, expected: str) -> None:
    found = problems([host])
    assert any(problem.startswith(expected) for problem in found), found


@pytest.mark.parametrize(("second", "expected"), [
    (PI.replace('"pi-07"', '"pi-08"'),
     "fleet.toml: host 'pi-08': serial: 1a2b3c4d is already used by host 'pi-07'"),
    (X86.replace('"srv-01"', '"pi-07"'), "fleet.toml: host 'pi-07': name: pi-07 is already used"),
])
def test_duplicates_are_refused(second: str, expected: str) -> None:
    found = problems([PI, second])
    assert any(problem.startswith(expected) for problem in found), found


def test_duplicate_mac_across_hosts() -> None:
    found = problems([X86, X86.replace('"srv-01"', '"srv-02"').replace(":01", ":01")])
    assert "fleet.toml: host 'srv-02': macs: 52:54:00:00:00:01 is already used by host " \
        "'srv-01'" in found


def test_all_problems_are_reported_at_once() -> None:
    found = problems([
        PI.replace("1a2b3c4d", "xyz"), X86.replace("52:54:00:00:00:01", "nope"),
        'name = "../etc"\nfamily = "rpi4"\nserial = "1"\n',
    ])
    assert len(found) >= 4, found


def test_sections_are_validated() -> None:
    header = HEADER.replace('tftp = "192.0.2.1"', 'tftp = "fileserver"').replace(
        '"192.0.2.199"', '"198.51.100.9"') + '\n[eeprom]\ntftp_prefix = 7\n'
    found = problems([PI], header)
    assert "fleet.toml: servers: tftp: 'fileserver' is not an IPv4 address" in found
    assert "fleet.toml: network: pool: 198.51.100.9 is outside the subnet 192.0.2.0/24" in found
    assert "fleet.toml: eeprom: tftp_prefix: 7 is not an integer in 0..2" in found


def test_report_url_host_over_defaults_over_servers() -> None:
    header = HEADER.replace(
        'http_base = "http://192.0.2.1/ramboot"',
        'http_base = "http://192.0.2.1/ramboot"\nreport_url = "http://192.0.2.1:8080/all"',
    )
    pi_own = PI + 'report_url = "https://192.0.2.1/pi"\n'
    text = header + f"\n[[hosts]]\n{pi_own}\n[[hosts]]\n{X86}"
    inventory = parse_inventory(text, Path("fleet.toml"))
    assert inventory.servers.report_url == "http://192.0.2.1:8080/all"
    assert [h.report_url for h in inventory.hosts] == ["https://192.0.2.1/pi",
                                                       "http://192.0.2.1:8080/all"]
    with_defaults = parse_inventory(
        '[defaults]\nreport_url = "http://192.0.2.1/d"\n' + text, Path("fleet.toml"))
    assert [h.report_url for h in with_defaults.hosts] == ["https://192.0.2.1/pi",
                                                           "http://192.0.2.1/d"]
    found = problems([PI], header.replace("http://192.0.2.1:8080/all", "tftp://192.0.2.1/x"))
    assert "fleet.toml: servers: report_url: 'tftp://192.0.2.1/x' must be an http or https " \
        "URL" in found


def test_toml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(InventoryError) as raised:
        parse_inventory('[servers]\ntftp = "192.0.2.1\n', Path("fleet.toml"))
    (problem,) = raised.value.problems
    assert problem.startswith("fleet.toml:2:"), problem
    assert "TOML syntax" in problem


def test_cli_reports_every_problem_and_fails(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ramboot.cli import cli

    inventory = tmp_path / "fleet.toml"
    inventory.write_text(HEADER + f"\n[[hosts]]\n{PI.replace('1a2b3c4d', '12345')}")
    result = CliRunner().invoke(cli, ["render", str(inventory), "--images", str(tmp_path),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "serial: '12345' is not 8 hex digits" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_documented_example_is_valid(repo: Path) -> None:
    from ramboot.inventory import load_inventory

    inventory = load_inventory(repo / "examples/inventory.toml")
    assert {host.family for host in inventory.hosts} == {"rpi4", "x86_64"}


@pytest.mark.parametrize(("target", "expected"), [
    ('{ kind = "reinstall" }', "host 'pi-07': target: kind: 'reinstall' is not one of install, "
     "netroot, ramroot, disk, kexec, plan, script, rescue"),
    ('{ kind = "install", url = "http://192.0.2.1/os.img" }',
     "host 'pi-07': target: disk: missing (kind 'install' needs url, disk)"),
    ('{ kind = "install", url = "http://192.0.2.1/os.img", disk = {} }',
     "host 'pi-07': target: digest: missing (kind 'install' needs the image's digest, or bmap "
     "and bmap_digest)"),
    ('{ kind = "install", url = "http://192.0.2.1/os.img", disk = {}, '
     'bmap = "http://192.0.2.1/os.bmap" }',
     "host 'pi-07': target: digest: missing (kind 'install' needs the image's digest, or bmap "
     "and bmap_digest)"),
    (f'{{ kind = "install", url = "http://192.0.2.1/os.img", disk = {{}}, '
     f'digest = "sha256:{"0" * 64}", bmap_digest = "sha256:{"1" * 64}" }}',
     "host 'pi-07': target: bmap_digest: given without bmap"),
    ('{ kind = "install", url = "http://192.0.2.1/os.img", digest = "md5:00", disk = {} }',
     "host 'pi-07': target: digest: 'md5:00' is not a digest like 'sha256:<64 hex digits>'"),
    ('{ kind = "disk", disk = { bus = "mmc" }, method = "pxe" }',
     "host 'pi-07': target: method: 'pxe' is not one of kexec, reboot"),
    ('{ kind = "netroot", root = "http://192.0.2.1/root" }',
     "host 'pi-07': target: root: 'http://192.0.2.1/root' must be an nfs:// or nbd:// URL"),
    ('{ kind = "rescue", url = "http://192.0.2.1/x" }',
     "host 'pi-07': target (rescue): unknown key 'url'"),
    ('{ kind = "kexec", kernel = { url = "http://192.0.2.1/k", sha = "x" } }',
     "host 'pi-07': target: kernel: {'url': 'http://192.0.2.1/k', 'sha': 'x'} must be a URL or "
     "a table"),
])
def test_bad_targets_are_named(target: str, expected: str) -> None:
    found = problems([PI.replace('profile = "rescue"', f"target = {target}")])
    assert any(problem == f"fleet.toml: {expected}" or problem.startswith(f"fleet.toml: {expected}")
               for problem in found), found


def test_target_and_profile_exclude_each_other() -> None:
    found = problems([PI + 'target = { kind = "rescue" }\n'])
    assert "fleet.toml: host 'pi-07': target, profile: give one, not both" in found


def test_old_inventory_gets_told_what_to_change() -> None:
    """Today's `profile`/`url` keys: a message saying what the new format wants."""
    old_header = HEADER.replace('[profiles.rescue]\nkind = "rescue"\n', (
        '[profiles.rescue]\nkernel = "x86_64/bzImage"\ninitramfs = ["x86_64/rootfs.cpio.zst"]\n'
        '[profiles.installer]\nchain = "https://deploy.test/install.ipxe"\n'))
    old_url = PI.replace('profile = "rescue"', 'url = "http://192.0.2.1/pi.ipxe"')
    found = problems([old_url.replace('"pi-07"', '"pi-08"').replace("1a2b3c4d", "1a2b3c4e"), PI],
                     old_header)
    for profile in ("installer", "rescue"):
        assert any(p.startswith(f"fleet.toml: profile {profile!r}: this is the old format: a "
                                "profile booted a kernel (ramboot's own") for p in found), found
    assert any(p.startswith("fleet.toml: host 'pi-08': url: the old instructions URL") and
               'target = { kind = "script", url = "..." }' in p for p in found), found
    assert all("docs/tools-render.md" in p for p in found if "old" in p)
    # A host of an old profile is not told the profile is missing: it is there, old.
    assert not any("is not defined" in p for p in found), found
