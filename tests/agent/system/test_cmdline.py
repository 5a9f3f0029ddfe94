"""Kernel command-line parsing: quoting as the kernel does it, keys, values, errors."""

from __future__ import annotations

import pytest

from ramboot_agent.cmdline import (
    Settings,
    load_cmdline,
    normalize_bootif,
    parse_cmdline,
    split_cmdline,
)
from ramboot_agent.errors import ConfigError


def test_defaults_when_nothing_is_given() -> None:
    settings = parse_cmdline("console=ttyAMA0,115200 root=/dev/ram0 quiet\n")
    assert settings == Settings()
    assert settings.shell == "failure"
    assert settings.warnings == ()


def test_splits_like_the_kernel() -> None:
    text = 'a=1  "b=two words" c="three words here" flag d="x"y -- ramboot.url=ignored'
    assert split_cmdline(text) == [
        ("a", "1"), ("b", "two words"), ("c", "three words here"), ("flag", None), ("d", 'x"y'),
    ]


def test_quoted_values_keep_their_spaces() -> None:
    settings = parse_cmdline(
        'ramboot.ssh_authorized_keys="ssh-ed25519 AAAAC3Nza op@example" ramboot.url=https://x/a'
    )
    assert settings.ssh_authorized_keys == "ssh-ed25519 AAAAC3Nza op@example"
    assert settings.url == "https://x/a"


def test_every_key() -> None:
    settings = parse_cmdline(
        "ramboot.url=http://192.0.2.1/boot.ipxe ramboot.report=https://cp/events "
        "ramboot.debug=2 ramboot.shell=before ramboot.on_kexec_failure=reboot "
        "ramboot.reboot_delay=off ramboot.insecure ramboot.dry_run=1 "
        "ramboot.carrier_timeout=2.5 ramboot.dhcp-timeout=30 ramboot.iface=eth1,eth0 "
        f"ramboot.trust={'ab' * 32},{'CD:' * 31}CD BOOTIF=01-52-54-00-12-34-56"
    )
    assert settings == Settings(
        url="http://192.0.2.1/boot.ipxe", report_url="https://cp/events", debug=2,
        shell="before", on_kexec_failure="reboot", reboot_delay=None, insecure=True,
        dry_run=True, carrier_timeout=2.5, dhcp_timeout=30.0, interfaces=("eth1", "eth0"),
        trust=f"{'ab' * 32},{'CD:' * 31}CD", bootif="52:54:00:12:34:56",
    )


def test_last_occurrence_wins() -> None:
    assert parse_cmdline("ramboot.debug=1 ramboot.debug=0").debug == 0


def test_unknown_keys_are_warned_about_not_fatal() -> None:
    settings = parse_cmdline("ramboot.ulr=http://x/ ramboot.debug=1")
    assert settings.debug == 1
    assert len(settings.warnings) == 1
    assert "ramboot.ulr" in settings.warnings[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("01-AA-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"),
        ("aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff"),
        ("AA-BB-CC-DD-EE-FF", "aa:bb:cc:dd:ee:ff"),
    ],
)
def test_bootif_forms(value: str, expected: str) -> None:
    assert normalize_bootif(value) == expected
    assert parse_cmdline(f"BOOTIF={value}").bootif == expected


@pytest.mark.parametrize(
    "value", ["02-aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:ff", ""]
)
def test_bad_bootif_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="BOOTIF"):
        parse_cmdline(f"BOOTIF={value}")


@pytest.mark.parametrize(
    "text",
    [
        "ramboot.debug=3",
        "ramboot.shell=sometimes",
        "ramboot.on_kexec_failure=panic",
        "ramboot.insecure=maybe",
        "ramboot.carrier_timeout=soon",
        "ramboot.dhcp_timeout=-1",
        "ramboot.url=ftp://x/y",
        "ramboot.url",
        "ramboot.report=",
        "ramboot.iface=eth0,bad/name",
        "ramboot.trust=abcd",
        "ramboot.trust=",
    ],
)
def test_bad_values_name_the_key(text: str) -> None:
    key = text.partition("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_cmdline(text)


def test_load_cmdline_reads_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cmdline"
    path.write_text("ramboot.url=tftp://192.0.2.1/x\n")
    assert load_cmdline(path).url == "tftp://192.0.2.1/x"
    with pytest.raises(ConfigError, match="cannot read"):
        load_cmdline(tmp_path / "missing")
