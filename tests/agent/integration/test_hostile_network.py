"""`ramboot-agent run` on a boot network that is careless or hostile (issue 12).

Real Kea or dnsmasq hand busybox udhcpc odd options; the real agent runs
against a real HTTP file server and event collector, in network namespaces.
One malformed optional value costs that value (class 6), credentials in
URLs stay out of the console and the events, network text reaches the
console escaped (class 8), every event carries the kernel's boot_id, and
the images of an earlier run in the same boot are gone (class 5).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .lab import BASE, REPORT_URL, AgentRun, BootLab
from .test_boot_flow import assert_dry_run_boot, publish_chain

pytestmark = pytest.mark.netns

BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
SECRETS = ("s3cret", "t0ps3cret", "k3rnel-token", "rep0rt-pw")
FALLBACK = """#!ipxe
echo odd option 250: ${250}
imgfetch http://192.0.2.1:99999/extra.img || echo fallback taken: the bad port cost one fetch
chain stage2/next.ipxe?mac=${mac}
"""


def assert_no_raw_controls(run: AgentRun) -> None:
    for char in ("\x1b", "\x07", "\r", "\x9b"):
        assert char not in run.console, f"{char!r} reached the console"


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_a_malformed_report_url_costs_only_reporting(boot_lab: BootLab, server: str) -> None:
    images = publish_chain(boot_lab)
    boot_lab.publish("boot.ipxe", FALLBACK)
    bad_report = "http://[::1/events"
    if server == "kea":
        boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe", report_url=bad_report)
    else:
        boot_lab.start_dnsmasq_dhcp(option_224=f"{BASE}/boot.ipxe".encode(),
                                    report_url=bad_report.encode(),
                                    extra=((250, b"odd\x1b[2J\x07"),))
    boot_lab.start_files()
    run = boot_lab.run_agent()

    assert run.returncode == 0, run.console
    assert (f"ignoring report URL {bad_report}: malformed URL: Invalid IPv6 URL; "
            "events are only logged") in run.console
    assert "fallback taken: the bad port cost one fetch" in run.console
    assert "Traceback" not in run.console and "internal error" not in run.console
    assert_dry_run_boot(run, images)
    assert_no_raw_controls(run)
    if server == "dnsmasq":
        assert "odd option 250: odd\\x1b[2J\\x07" in run.console


def test_credentials_in_urls_stay_out_of_the_console_and_the_events(boot_lab: BootLab) -> None:
    images = publish_chain(boot_lab)
    # Stage 2 names its kernel with a token, and passes the secret URL on to the next kernel.
    boot_lab.publish("stage2/next.ipxe", """#!ipxe
kernel ../vmlinuz?access_token=k3rnel-token console=ttyS0 ramboot.url=${224}
initrd ../initrd-a.cpio.gz
initrd ../initrd-b.cpio.gz
boot
""")
    instructions = BASE.replace("://", "://fleet:s3cret@") + "/boot.ipxe?token=t0ps3cret"
    report = REPORT_URL.replace("://", "://agent:rep0rt-pw@")
    boot_lab.start_dhcp(option_224=instructions, report_url=report)
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 0, run.console
    assert "dry run complete" in run.console
    assert run.event_names()[-1] == "boot" and len(run.events) >= 8
    events = json.dumps(run.events)
    for secret in SECRETS:
        assert secret not in run.console, secret
        assert secret not in events, secret
    assert "http://fleet:***@192.0.2.1:8080/boot.ipxe?token=***&mac=" in run.console
    boot = run.events[-1]["details"]
    assert "ramboot.url=http://fleet:***@192.0.2.1:8080/boot.ipxe?token=***" in boot["cmdline"]
    # The secrets themselves were used: the server saw the query, the kernel was fetched.
    kernel = [r for r in run.requests if r["path"] == "/vmlinuz"]
    assert kernel and kernel[0]["query"] == {"access_token": ["k3rnel-token"]}
    assert {event["boot_id"] for event in run.events} == {BOOT_ID}
    assert [event["seq"] for event in run.events] == list(range(1, len(run.events) + 1))
    assert images  # published, and booted (dry run) above


def test_network_text_reaches_the_console_escaped(boot_lab: BootLab) -> None:
    # Option 224 itself carries a terminal escape and an OSC title sequence.
    evil = f"{BASE}/boot.ipxe\x1b]0;owned\x07\x1b[2J".encode()
    boot_lab.publish("boot.ipxe", "#!ipxe\necho never\n")
    boot_lab.start_dnsmasq_dhcp(option_224=evil, report_url=REPORT_URL.encode())
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 10, run.console
    assert "ramboot-agent FAILED" in run.console
    assert "control characters in the URL" in run.console
    assert "boot.ipxe\\x1b]0;owned\\x07\\x1b[2J" in run.console
    assert_no_raw_controls(run)
    assert run.requests == []  # a URL with controls is never sent
    failure = run.events[-1]
    assert failure["event"] == "failure" and failure["boot_id"] == BOOT_ID


def test_a_second_run_starts_with_the_ram_of_the_first_given_back(boot_lab: BootLab) -> None:
    images = publish_chain(boot_lab)
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()
    boot_lab.start_collector()
    first = boot_lab.run_agent()
    assert first.returncode == 0, first.console
    downloads = boot_lab.workdir / "run" / "images"
    kept = sorted(p.name for p in downloads.rglob("*") if p.is_file())
    # What the script still held when it booted stays for the rescue shell to look at.
    assert kept == sorted(["next.ipxe", *images])  # boot.ipxe was fetched into memory
    stale = downloads / "099" / "left-over.img"
    stale.parent.mkdir()
    stale.write_bytes(b"x" * 4096)
    second = boot_lab.run_agent()
    assert second.returncode == 0, second.console
    assert_dry_run_boot(second, images)
    assert not stale.exists() and not stale.parent.exists()
