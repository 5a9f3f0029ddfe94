"""Typed settings: formats as iPXE prints them, scopes, DHCP options by number."""

from __future__ import annotations

import pytest

from ramboot_agent.ipxe.settings import (
    SettingError,
    SettingsStore,
    build_settings,
    format_value,
    parse_value,
)


@pytest.mark.parametrize(("type_name", "text", "raw", "shown"), [
    ("string", "hello world", b"hello world", "hello world"),
    ("hex", "52:54:00:AB:cd:ef", bytes.fromhex("525400abcdef"), "52:54:00:ab:cd:ef"),
    ("hexhyp", "52-54-00-ab-cd-ef", bytes.fromhex("525400abcdef"), "52-54-00-ab-cd-ef"),
    ("hexraw", "525400abcdef", bytes.fromhex("525400abcdef"), "525400abcdef"),
    ("int32", "-1", b"\xff\xff\xff\xff", "-1"),
    ("int8", "0x7f", b"\x7f", "127"),
    ("uint8", "255", b"\xff", "0xff"),
    ("uint16", "0", b"\0\0", "0x0"),  # iPXE prints unsigned zero as 0x0 too (measured)
    ("uint32", "010", b"\0\0\0\x08", "0x8"),
    ("ipv4", "192.0.2.10", bytes([192, 0, 2, 10]), "192.0.2.10"),
    ("uristring", "a b/c&d=e", b"a b/c&d=e", "a%20b%2Fc%26d%3De"),
    ("uuid", "8a5c4a8e-0bd6-4e8b-9f55-4a1f3b5d2c10",
     bytes.fromhex("8a5c4a8e0bd64e8b9f554a1f3b5d2c10"), "8a5c4a8e-0bd6-4e8b-9f55-4a1f3b5d2c10"),
    ("base64", "aGk=", b"hi", "aGk="),
])
def test_types_round_trip(type_name: str, text: str, raw: bytes, shown: str) -> None:
    assert parse_value(type_name, text) == raw
    assert format_value(type_name, raw) == shown


@pytest.mark.parametrize(("type_name", "text"), [
    ("hex", "5:54"), ("hexhyp", "52:54"), ("int32", "12abc"), ("ipv4", "300.1.1.1"),
    ("uuid", "nope"), ("int32", ""),
])
def test_bad_values_are_rejected(type_name: str, text: str) -> None:
    with pytest.raises(SettingError):
        parse_value(type_name, text)


def test_scopes_and_option_numbers() -> None:
    store = build_settings(
        {"mac": "52:54:00:12:34:56", "serial": "10000000abcdef01", "platform": "efi"},
        {224: b"http://192.0.2.1/boot.ipxe", 12: b"node1"},
        {"15": "example.test"},
    )
    assert store.get("mac") == "52:54:00:12:34:56"
    assert store.get("net0/mac:hexhyp") == "52-54-00-12-34-56"
    assert store.get("netX/mac") == "52:54:00:12:34:56"
    assert store.get("net0.dhcp/224") == "http://192.0.2.1/boot.ipxe"
    assert store.get("224") == store.get("net0/224")
    assert store.get("hostname") == "node1" and store.get("12") == "node1"
    assert store.get("domain") == "example.test"
    assert store.get("smbios/serial") == "10000000abcdef01"
    assert store.get("net1/mac") is None and store.get("mac:nosuchtype") is None


def test_global_setting_shadows_and_clear_deletes() -> None:
    store = build_settings({}, {224: b"from-dhcp"})
    store.set_text("224", "from-script")
    assert store.get("224") == "from-script"
    store.set_text("224", "")
    assert store.get("224") == "from-dhcp"
    assert SettingsStore().get("anything") is None
