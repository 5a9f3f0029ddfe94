"""A machine whose clock starts in 1970 fetches its plan over HTTPS from a server whose
certificate was made a moment ago: only because the agent set the clock first.

Kea hands out option 42 (NTP servers) and option 224 (an https:// plan URL);
chronyd in the namespace answers NTP with this machine's time; the HTTPS
server's certificate comes from a CA made for the test, which the guest
trusts through a second initramfs archive that replaces its CA bundle.
Without an NTP answer the clock only reaches the image's build date, which is
older than the certificate: the fetch fails, and the test sees that too.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.agent.io.servers import make_pki
from tests.lib.cpio import decompressed, read_newc
from tests.lib.httpd import start_httpd
from tests.lib.netlab import SERVER_IP, kea_config, require_netns, start_kea, tap_lab
from tests.lib.ntp import start_chronyd
from tests.lib.qemu import Qemu, poll_until, require_qemu, tap_nic_argv, x86_64_argv
from tests.qemu.collector import events, start_collector
from tests.qemu.conftest import image_set_or_fail

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.slow]

GUEST_MAC = "52:54:00:00:0c:01"
HTTPS_PORT = 8443
REPORT_PORT = 8081
PLAN_URL = f"https://{SERVER_IP}:{HTTPS_PORT}/plan.json"
REPORT_URL = f"http://{SERVER_IP}:{REPORT_PORT}/events"


def ca_overlay(ca: Path, dest: Path, work: Path) -> Path:
    """A gzip'ed newc archive holding /etc/ssl/certs/ca-certificates.crt = `ca`."""
    root = work / "ca-root"
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca.read_bytes())
    names = "etc\netc/ssl\netc/ssl/certs\netc/ssl/certs/ca-certificates.crt\n"
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root,
                             input=names.encode(), capture_output=True, check=True).stdout
    dest.write_bytes(gzip.compress(archive))
    return dest


def has_ntpd(initramfs: Path) -> bool:
    """Whether the image has busybox's ntpd on PATH: the agent runs it then, SNTP otherwise."""
    names = {e.name.removeprefix("./") for e in read_newc(decompressed(initramfs.read_bytes()))}
    return any(f"{directory}/ntpd" in names for directory in ("bin", "sbin", "usr/bin", "usr/sbin"))


def boot(tmp_path: Path, *, ntp: bool) -> list[dict[str, Any]]:
    images = image_set_or_fail("x86_64")
    pki = make_pki(tmp_path, ip=SERVER_IP)  # made now: not valid before this minute
    www = tmp_path / "www"
    www.mkdir()
    (www / "plan.json").write_text(json.dumps(
        {"ramboot-plan": 1, "actions": [{"action": "hardware"}]}))
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(images.initramfs.read_bytes()
                       + ca_overlay(pki.ca, tmp_path / "ca.cpio.gz", tmp_path).read_bytes())
    config = kea_config("br0", tmp_path, option_224=PLAN_URL, extra_options=(
        [{"name": "ntp-servers", "data": SERVER_IP}] if ntp else []))
    dhcp4 = config["Dhcp4"]
    dhcp4["option-def"].append(
        {"name": "ramboot-report", "code": 225, "type": "string", "space": "dhcp4"})
    dhcp4["subnet4"][0]["option-data"].append(
        {"name": "ramboot-report", "data": REPORT_URL, "always-send": True})
    with tap_lab() as lab:
        start_kea(lab.ns, config, tmp_path)
        start_chronyd(tmp_path, bind=SERVER_IP, ns=lab.ns)
        start_httpd(lab.ns, bind=SERVER_IP, port=HTTPS_PORT, root=www,
                    log_path=tmp_path / "https.jsonl", tls=(pki.cert, pki.key))
        events_log = tmp_path / "events.jsonl"
        start_collector(lab.ns, bind=SERVER_IP, port=REPORT_PORT, log_path=events_log)
        tap = lab.add_tap()
        argv = x86_64_argv(kernel=images.kernel, initrd=initrd, memory_mb=512,
                           append="console=ttyS0 quiet ramboot.shell=never "
                                  "ramboot.reboot_delay=off",
                           extra=["-smp", "1", "-rtc", "base=1970-01-02",
                                  *tap_nic_argv(tap, mac=GUEST_MAC, model="virtio-net-pci")])
        with Qemu(argv, log_path=tmp_path / "console.log", namespace=lab.ns):
            poll_until(lambda: any(e["event"] in ("plan-done", "failure")
                                   for e in events(events_log)),
                       timeout=300, interval=1, what="plan-done or failure")
            time.sleep(1)
        return events(events_log)


def test_the_clock_is_set_by_ntp_before_https(tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    received = boot(tmp_path, ntp=True)
    names = [e["event"] for e in received]
    clock = next(e for e in received if e["event"] == "clock")["details"]
    # The Buildroot image's busybox has ntpd (board/common/busybox.fragment).
    method = "ntpd" if has_ntpd(image_set_or_fail("x86_64").initramfs) else "sntp"
    assert clock["method"] == method and clock["server"] == SERVER_IP
    assert clock["before"] < 86400 * 7  # the guest started in January 1970
    assert abs(clock["after"] - time.time()) < 600
    assert names.index("clock") < names.index("script-fetched")
    assert "failure" not in names
    done = next(e for e in received if e["event"] == "plan-done")["details"]
    assert done["outcome"] == "completed"


def test_without_ntp_the_build_date_is_not_enough_for_a_fresh_certificate(
        tmp_path: Path) -> None:
    require_netns("kea-dhcp4")
    require_qemu("qemu-system-x86_64")
    received = boot(tmp_path, ntp=False)
    clock = next(e for e in received if e["event"] == "clock")["details"]
    assert clock["method"] == "build-date"
    failure = next(e for e in received if e["event"] == "failure")["details"]
    assert "certificate verification failed" in failure["reason"]
    assert "not yet valid" in failure["reason"]
