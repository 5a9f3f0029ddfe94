"""No inventory value can add a line, a word or a directive to a generated file.

Python's `$` matches before a final newline: every validator must use full-match
semantics, and every renderer writes values through its format's escaping.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ramboot.errors import RambootError
from ramboot.inventory import parse_inventory
from ramboot.render import escape
from tests.tools.render.helpers import FLEET, make_images, render_fleet
from tests.tools.render.test_inventory import HEADER, PI, X86, problems


def _toml(value: str) -> str:
    """`value` as a TOML basic string (newline and other controls escaped)."""
    return '"' + "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '"\\' or ord(c) == 0x7F else c for c in value
    ) + '"'


# Each field of the inventory that reaches a generated file, with a trailing
# newline (the `$` hole), an embedded newline and other separators.
TAILS = ["\n", "\nx", "\r", "\t", " ", "\x00", "\x85", "\u2028"]


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize(("template", "field_value"), [
    (PI, '"pi-07"'), (PI, '"1a2b3c4d"'), (X86, '"52:54:00:00:00:01"'),
])
def test_host_identifiers_with_a_separator_are_refused(
    template: str, field_value: str, tail: str
) -> None:
    host = template.replace(field_value, _toml(field_value.strip('"') + tail))
    assert problems([host]), host


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("line", [
    'target = { kind = "script", url = "http://192.0.2.1/x.ipxe@@" }',
    'report_url = "http://192.0.2.1/events@@"',
    'kernel_args = ["quiet@@"]',
    'console = ["ttyS0,115200@@"]',
    'ramboot = { debug = "1@@" }',
])
def test_host_values_with_a_separator_are_refused(line: str, tail: str) -> None:
    rendered = re.sub(r'"([^"]*)@@"', lambda m: _toml(m.group(1) + tail), line)
    host = PI.replace('profile = "rescue"\n', "") if line.startswith("target") else PI
    assert problems([host + rendered + "\n"]), rendered


def test_ramboot_key_with_a_trailing_newline_is_refused() -> None:
    assert problems([PI + 'ramboot = { "debug\\n" = 1 }\n'])


@pytest.mark.parametrize(("section", "line"), [
    ("servers", 'dhcp_interface = "eth0{}"'),
    ("servers", 'tftp_root = "/srv/tftp{}"'),
    ("servers", 'report_url = "http://192.0.2.1/e{}"'),
    ("network", 'domain = "fleet.test{}"'),
])
@pytest.mark.parametrize("tail", TAILS)
def test_section_values_with_a_separator_are_refused(section: str, line: str, tail: str) -> None:
    rendered = re.sub(r'"([^"]*)\{\}"', lambda m: _toml(m.group(1) + tail), line)
    header = HEADER.replace(f"[{section}]\n", f"[{section}]\n{rendered}\n")
    assert problems([PI], header), header


@pytest.mark.parametrize(("line", "message"), [
    ('tftp_root = "/srv/tftp,eth1"', "tftp_root: '/srv/tftp,eth1' is not an absolute path"),
    ('tftp_root = "/srv/../etc"', "tftp_root: '/srv/../etc' must be a plain absolute path"),
    ('dhcp_interface = "eth0,eth1"', "dhcp_interface: 'eth0,eth1' is not a network interface"),
    ('http_base = "http://192.0.2.1/r?x=1"', "http_base: 'http://192.0.2.1/r?x=1' has a query"),
    ('http_base = "http://192.0.2.1/r#top"', "http_base: 'http://192.0.2.1/r#top' has a query"),
    ('http_base = "http://192.0.2.1/r?"', "http_base: 'http://192.0.2.1/r?' has a query"),
    ('http_base = "tftp://192.0.2.1/r"', "http_base: 'tftp://192.0.2.1/r' must be an http"),
])
def test_server_values_are_checked_for_their_format(line: str, message: str) -> None:
    key = line.split(" = ", maxsplit=1)[0]
    header = re.sub(rf"(?m)^{key} = .*$", line, HEADER) if key in HEADER else \
        HEADER.replace("[servers]\n", f"[servers]\n{line}\n")
    found = problems([PI], header)
    assert any(problem.startswith(f"fleet.toml: servers: {message}") for problem in found), found


@pytest.mark.parametrize("url", [
    "http://192.0.2.1/a b", "http://192.0.2.1/${net0/mac}", "http://192.0.2.1/<x>",
    "http://192.0.2.1/a\\b", 'http://192.0.2.1/"x"', "http://192.0.2.1/caf\u00e9",
    "http://192.0.2.1/a|b", "http://192.0.2.1/a^b", "http://192.0.2.1/`x`", "http://",
    "http://192.0.2.1:port/x", "http://192.0.2.1/%zz",
])
def test_urls_are_rfc3986_characters_only(url: str) -> None:
    host = PI.replace('profile = "rescue"', f'target = {{ kind = "plan", url = {_toml(url)} }}')
    found = problems([host])
    assert any(p.startswith("fleet.toml: host 'pi-07': target: url: ") for p in found), found


@pytest.mark.parametrize("word", ["||", "&&", ";", "#comment", "caf\u00e9", "a'b"])
def test_kernel_args_that_ipxe_would_not_pass_on_are_refused(word: str) -> None:
    found = problems([PI + f"kernel_args = [{_toml(word)}]\n"])
    assert any(p.startswith("fleet.toml: host 'pi-07': kernel_args: ") for p in found), found


def test_the_cm4_model_boots_mainlines_io_board_dtb() -> None:
    text = HEADER + f"\n[[hosts]]\n{PI}model = \"cm4\"\n"
    (host,) = parse_inventory(text, Path("fleet.toml")).hosts
    assert host.dtb == "bcm2711-rpi-cm4-io.dtb"


def test_the_cm4s_model_is_refused_with_the_reason() -> None:
    # Mainline Linux has no CM4S device tree: no config.txt may name one.
    assert problems([PI + 'model = "cm4s"\n']) == [
        "fleet.toml: host 'pi-07': model: 'cm4s' is not supported: the Compute Module 4S has "
        "no device tree in mainline Linux 6.12, the kernel the image builds "
        "(docs/rpi4-kernel.md)"
    ]


@pytest.mark.parametrize(("host", "expected"), [
    (PI + 'ramboot = { debug = 1 }\nkernel_args = ["ramboot.debug=2"]\n',
     "fleet.toml: host 'pi-07': kernel_args: ramboot.debug is already set by ramboot on the "
     "Pi's cmdline.txt"),
    (PI + 'kernel_args = ["ramboot.url=http://192.0.2.1/x"]\n',
     "fleet.toml: host 'pi-07': kernel_args: ramboot.url is already set by target"),
    (PI + 'kernel_args = ["ramboot.dry-run", "ramboot.dry_run=0"]\n',
     "fleet.toml: host 'pi-07': kernel_args: ramboot.dry_run is already set by kernel_args"),
    (X86 + 'report_url = "http://192.0.2.1/e"\nkernel_args = ["ramboot.report=http://x/"]\n',
     "fleet.toml: host 'srv-01': kernel_args: ramboot.report is already set by report_url on "
     "the stage 1 kernel command line"),
])
def test_a_ramboot_key_twice_on_a_composed_command_line_is_an_error(
    host: str, expected: str
) -> None:
    found = problems([host])
    assert any(problem.startswith(expected) for problem in found), found


def test_unknown_agent_keys_come_from_the_parsers_structured_result() -> None:
    from ramboot_agent.cmdline import parse_cmdline

    settings = parse_cmdline("ramboot.kexec_fallback=reboot ramboot.debug=1 ramboot.x-y")
    assert settings.unknown == ("ramboot.kexec_fallback", "ramboot.x-y")
    found = problems([PI + 'kernel_args = ["ramboot.kexec_fallback=reboot"]\n'])
    assert any("unknown kernel parameter ramboot.kexec_fallback" in p for p in found), found


def test_an_inventory_file_name_cannot_break_a_comment(tmp_path: Path) -> None:
    name = "fleet\n[x]\r\u2028.toml"
    images = make_images(tmp_path / "images")
    inventory = tmp_path / name
    inventory.write_text(FLEET.read_text())
    render_fleet(images, tmp_path / "out", inventory)
    expected = escape.comment(name)
    assert "\n" not in expected and "\u2028" not in expected
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix in (
            ".conf", ".json", ".ipxe", ".txt"
        ) and path.name != "cmdline.txt":
            text = path.read_text()
            assert name not in text, path
            assert "[x]" not in text or expected in text, path
            for line in text.splitlines():
                if "[x]" in line:
                    assert line.startswith(("#", "//")), (path, line)


@pytest.mark.parametrize(("function", "value"), [
    (escape.word, "a b"), (escape.word, "a\n"), (escape.word, 'a"b'), (escape.word, ""),
    (escape.dnsmasq_string, "a\nb"), (escape.dnsmasq_string, "a\x00"),
])
def test_the_escaping_functions_refuse_what_their_format_cannot_hold(
    function: object, value: str
) -> None:
    with pytest.raises(RambootError):
        function(value)  # type: ignore[operator]


def test_dnsmasq_string_escapes_quotes_and_backslashes() -> None:
    assert escape.dnsmasq_string('a"b\\c,d#e') == '"a\\"b\\\\c,d#e"'


def test_kea_string_option_is_hex_not_csv() -> None:
    option = escape.kea_string_option("ramboot-url", "http://x/a,b", always_send=True)
    assert option["csv-format"] is False
    assert bytes.fromhex(option["data"]) == b"http://x/a,b"
