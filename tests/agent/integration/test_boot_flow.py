"""`ramboot-agent run` against real servers: Kea, HTTP files, an event collector.

Each test boots one client namespace through busybox udhcpc and Kea to a
chain of iPXE scripts, in dry-run mode, and checks what the console says,
what the servers saw and which events arrived, in order.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.lib import kernels

from .lab import BASE, REPORT_URL, AgentRun, BootLab, sha256

pytestmark = pytest.mark.netns

MAC = "52:54:00:12:34:56"  # netlab.veth_lab's client
FIRST = "#!ipxe\necho ramboot e2e: stage 1 for ${mac}\nchain stage2/next.ipxe?mac=${mac}\n"
SECOND = """#!ipxe
echo ramboot e2e: stage 2
kernel ../vmlinuz console=ttyS0,115200 ramboot.url=${224} mac=${net0/mac} quiet
initrd ../initrd-a.cpio.gz
initrd ../initrd-b.cpio.gz
boot
"""
CMDLINE = f"console=ttyS0,115200 ramboot.url={BASE}/boot.ipxe mac={MAC} quiet"


def publish_chain(boot_lab: BootLab, kernel_size: int = 64 * 1024) -> dict[str, bytes]:
    """The two scripts and three images; returns the images by path."""
    boot_lab.publish("boot.ipxe", FIRST)
    boot_lab.publish("stage2/next.ipxe", SECOND)
    # Random bytes: a resumed download that splices wrongly cannot match by chance.
    return {
        "vmlinuz": boot_lab.publish(
            "vmlinuz", kernels.for_this_machine(size=1024) + os.urandom(kernel_size - 1024)),
        "initrd-a.cpio.gz": boot_lab.publish("initrd-a.cpio.gz", os.urandom(3000)),
        "initrd-b.cpio.gz": boot_lab.publish("initrd-b.cpio.gz", os.urandom(5001)),
    }


def failure_event(run: AgentRun) -> dict[str, object]:
    failures = [event for event in run.events if event["event"] == "failure"]
    assert len(failures) == 1, run.event_names()
    assert run.events[-1] is failures[0], "the failure is the last event"
    return failures[0]["details"]


def assert_dry_run_boot(run: AgentRun, images: dict[str, bytes]) -> None:
    """The console shows exactly the kernel, the initrds in order and the command line."""
    described = [line for line in run.console.splitlines()
                 if re.match(r"(kernel|initrd|cmdline) {2,3}\S", line)]
    expected = [
        ("kernel", "vmlinuz"), ("initrd", "initrd-a.cpio.gz"), ("initrd", "initrd-b.cpio.gz"),
    ]
    assert len(described) == 4, run.console
    for line, (kind, name) in zip(described, expected, strict=False):
        data = images[name]
        assert re.fullmatch(
            rf"{kind} +\S+/{re.escape(name)}  {len(data)} bytes  sha256 {sha256(data)}", line
        ), line
    assert described[3] == f"cmdline  {CMDLINE}"
    assert "dry run complete: nothing was booted" in run.console


def test_chain_of_two_scripts_boots_the_right_kernel_and_reports_each_step(
    boot_lab: BootLab,
) -> None:
    images = publish_chain(boot_lab)
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 0, run.console
    assert f"ramboot e2e: stage 1 for {MAC}" in run.console
    assert "ramboot e2e: stage 2" in run.console
    assert_dry_run_boot(run, images)
    # The second script's relative URLs resolve against its own URL.
    assert [(r["path"], r["raw_query"], r["status"]) for r in run.requests] == [
        ("/boot.ipxe", run.requests[0]["raw_query"], 200), ("/stage2/next.ipxe", f"mac={MAC}", 200),
        ("/vmlinuz", "", 200), ("/initrd-a.cpio.gz", "", 200), ("/initrd-b.cpio.gz", "", 200),
    ]

    names = run.event_names()
    assert names == [
        "kernel-started", "agent-started", "network-up", "clock", "script-fetched",
        "fetch", "script-fetched", "fetch", "fetch", "fetch", "boot",
    ], names
    assert [event["seq"] for event in run.events] == list(range(1, len(names) + 1))
    assert all(event["identity"]["mac"] == MAC for event in run.events)
    network = run.events[2]["details"]
    assert network["interface"] == "eth0" and network["router"] == "192.0.2.1"
    # Option 224 is fetched with the identity query the embedded iPXE script sends.
    query = run.requests[0]["raw_query"]
    assert query.startswith(f"mac={MAC}&ip=192.0.2.1")
    assert query.endswith("&platform=pcbios&stage=agent")
    assert run.events[4]["details"]["url"] == f"{BASE}/boot.ipxe?{query}"  # after the clock
    fetches = [event["details"] for event in run.events if event["event"] == "fetch"]
    assert fetches[0]["url"] == f"{BASE}/stage2/next.ipxe?mac={MAC}"
    served = {f"{BASE}/{name}": data for name, data in images.items()}
    assert [fetch["url"] for fetch in fetches[1:]] == list(served)
    for fetch in fetches[1:]:
        data = served[fetch["url"]]
        assert (fetch["bytes"], fetch["sha256"]) == (len(data), sha256(data))
    assert run.seconds < 30


def test_a_dry_run_reports_what_it_would_have_booted(boot_lab: BootLab) -> None:
    images = publish_chain(boot_lab)
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()
    assert run.returncode == 0, run.console
    assert run.event_names()[-1] == "boot", run.event_names()
    boot = run.events[-1]["details"]
    assert boot["cmdline"] == CMDLINE
    assert boot["dry_run"] is True
    assert boot["kernel_sha256"] == sha256(images["vmlinuz"])


def test_no_option_224_and_no_url_is_a_clear_error(boot_lab: BootLab) -> None:
    boot_lab.start_dhcp(option_224=None)
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 10, run.console  # the console session's rescue shell
    reason = ("no instructions: neither ramboot.url= on the kernel command line nor DHCP "
              "option 224 in the lease of eth0")
    assert "ramboot-agent FAILED" in run.console
    assert reason in " ".join(run.console.split())  # the box wraps long lines
    assert run.requests == []
    assert run.event_names() == ["kernel-started", "agent-started", "network-up", "clock",
                                 "failure"]
    details = failure_event(run)
    assert reason in str(details["reason"])
    assert details["log_tail"]


def test_a_missing_script_is_named_and_not_retried(boot_lab: BootLab) -> None:
    boot_lab.start_dhcp(option_224=f"{BASE}/missing.ipxe")
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 10, run.console
    assert f"FetchError: {BASE}/missing.ipxe?mac={MAC}&ip=" in run.console
    assert "&platform=pcbios&stage=agent: HTTP 404" in run.console
    assert [(r["path"], r["status"]) for r in run.requests] == [("/missing.ipxe", 404)]
    assert "retry" not in run.console
    details = failure_event(run)
    assert f"{BASE}/missing.ipxe?mac={MAC}" in str(details["reason"])
    assert str(details["reason"]).endswith("HTTP 404 File not found")
    assert run.seconds < 30


def test_a_dropped_kernel_download_resumes_and_boots(boot_lab: BootLab) -> None:
    images = publish_chain(boot_lab, kernel_size=512 * 1024)
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files(drop_after={"/vmlinuz": 200_000})
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 0, run.console
    kernel_requests = [(r["status"], r["range"]) for r in run.requests if r["path"] == "/vmlinuz"]
    assert kernel_requests == [("drop", ""), (206, "bytes=200000-")]
    assert f"{BASE}/vmlinuz: connection closed after 200000 of 524288 bytes; resuming" \
        in run.console
    assert_dry_run_boot(run, images)
    kernel = next(event["details"] for event in run.events
                  if event["event"] == "fetch" and event["details"]["url"] == f"{BASE}/vmlinuz")
    assert (kernel["bytes"], kernel["sha256"]) == (512 * 1024, sha256(images["vmlinuz"]))


def test_a_malformed_script_is_a_line_numbered_error_naming_its_url(boot_lab: BootLab) -> None:
    boot_lab.publish("boot.ipxe", FIRST)
    boot_lab.publish("stage2/next.ipxe", "#!ipxe\necho ok\nset broken ${unterminated\nboot\n")
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()
    boot_lab.start_collector()
    run = boot_lab.run_agent()

    assert run.returncode == 10, run.console
    where = f"{BASE}/stage2/next.ipxe?mac={MAC}:3: unterminated '${{'"
    assert where in run.console
    assert "ScriptError" in run.console
    assert str(failure_event(run)["reason"]).startswith(f"ScriptError: {where}")


def test_boot_proceeds_while_the_control_plane_is_down_and_events_follow(
    boot_lab: BootLab,
) -> None:
    images = publish_chain(boot_lab)
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()
    go = boot_lab.workdir / "collector-up"
    boot_lab.start_collector(listen_when=go)  # started, not yet listening: refused
    process, console = boot_lab.start_agent()
    boot_lab.wait_console(console, f"report to {REPORT_URL} failed (Connection refused)")
    go.touch()
    returncode = process.wait(timeout=60)
    run = boot_lab.outcome(returncode, console.read_text(), 0.0)

    assert run.returncode == 0, run.console
    assert_dry_run_boot(run, images)
    # Every event arrived once, in order, after the collector came up.
    assert run.event_names() == [
        "kernel-started", "agent-started", "network-up", "clock", "script-fetched",
        "fetch", "script-fetched", "fetch", "fetch", "fetch", "boot",
    ]
    assert [event["seq"] for event in run.events] == list(range(1, 12))
    assert "not yet delivered" not in run.console


def test_a_control_plane_that_stays_down_delays_the_end_by_a_bounded_time(
    boot_lab: BootLab,
) -> None:
    images = publish_chain(boot_lab)
    boot_lab.start_dhcp(option_224=f"{BASE}/boot.ipxe")
    boot_lab.start_files()  # no collector at all
    run = boot_lab.run_agent()

    assert run.returncode == 0, run.console
    assert_dry_run_boot(run, images)
    assert f"report to {REPORT_URL} failed (Connection refused)" in run.console
    assert "report: 11 event(s) not yet delivered after 5.0s" in run.console
    assert run.seconds < 30
