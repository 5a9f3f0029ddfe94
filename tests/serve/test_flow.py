"""A machine's life through a real serve (SQLite and PostgreSQL): both stages,
events, provisioned → its disk (install targets), reinstall, discovery and adoption.

The answers are ramboot/targets.py's (what render writes), with the host's
token on ramboot's command line; the stage documents are asked both at /boot and
at the URLs render writes into DHCP (/stage1/<host>.ipxe, /stage2/<host>.json).
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from tests.serve.harness import (
    DISK_MAC,
    INSTALL_MAC,
    INSTALLED_MAC,
    PI_INSTALL_SERIAL,
    PI_SERIAL,
    SRV_MAC,
    Serve,
    new_boot_id,
)

SRV = {"mac": SRV_MAC, "buildarch": "x86_64", "platform": "pcbios"}
PI = {"mac": "dc:a6:32:aa:bb:cc", "serial": PI_SERIAL, "buildarch": "arm64"}
INSTALL = {"mac": INSTALL_MAC, "buildarch": "x86_64", "platform": "efi"}
PI_INSTALL = {"serial": PI_INSTALL_SERIAL, "buildarch": "arm64"}


def fleet_states(serve: Serve) -> dict[str, tuple[str, bool]]:
    fleet = serve.admin("GET", "/api/fleet").json()
    return {m["host"] or m["key"]: (m["state"], m["provisioned"]) for m in fleet["machines"]}


def next_boot(serve: Serve, host: str) -> str:
    fleet = serve.admin("GET", "/api/fleet").json()
    return str(next(m["next_boot"] for m in fleet["machines"] if m["host"] == host))


def plan(body: bytes) -> dict[str, Any]:
    return dict(json.loads(body))


def provision(serve: Serve, identity: dict[str, str], host: str) -> tuple[str, dict[str, Any]]:
    """Stage 2 target, then the agent's events of a plan that completes."""
    token = serve.token(host)
    boot_id = new_boot_id()
    serve.post_event("kernel-started", identity, token=token, boot_id=boot_id, monotonic=2.0,
                     uptime=1.5)
    serve.post_event("agent-started", identity, token=token, boot_id=boot_id, monotonic=2.5,
                     seconds=0.9)
    serve.post_event("network-up", identity, token=token, boot_id=boot_id, monotonic=2.6)
    target = serve.boot(identity, token=token, agent=True)
    assert target.status == 200, target.body
    assert target.headers["content-type"] == "application/json"
    assert fleet_states(serve)[host] == ("provisioning", False)
    serve.post_event("script-fetched", identity, token=token, boot_id=boot_id, monotonic=2.8)
    serve.post_event("plan-start", identity, token=token, boot_id=boot_id, monotonic=2.9)
    serve.post_event("plan-done", identity, token=token, boot_id=boot_id, monotonic=9.0,
                     outcome="reboot", dry_run=False)
    return boot_id, plan(target.body)


def test_x86_kexec_target_both_stages_every_boot(serve: Serve) -> None:
    """A target that lives in RAM (here a kernel to kexec) is booted at every boot:
    reaching it marks the machine provisioned, which sends no machine to a disk it
    does not boot from."""
    token = serve.token("srv-01")
    first = serve.boot(SRV, token=token)
    assert first.status == 200
    text = first.body.decode()
    assert text.startswith("#!ipxe\n# ramboot host 'srv-01' (x86_64), stage 1: into ramboot.")
    kernel = next(line for line in text.splitlines() if line.startswith("kernel "))
    assert kernel.split()[1] == "http://192.0.2.1:8080/images/x86_64/bzImage"
    # The host's token rides on ramboot's command line: its agent authenticates with it.
    assert f"ramboot.token={token}" in kernel.split()
    assert "ramboot.report=http://192.0.2.1:8080/events" in kernel.split()
    assert fleet_states(serve)["srv-01"] == ("booting", False)

    boot_id, target = provision(serve, SRV, "srv-01")
    assert target["description"] == "srv-01: boot the kernel x86_64/bzImage"
    assert target["actions"] == [{
        "action": "kexec", "kernel": "http://192.0.2.1:8080/images/x86_64/bzImage",
        "initrds": ["http://192.0.2.1:8080/second/second-stage.cpio.gz"],
        "cmdline": "console=ttyS0 quiet"}]
    assert fleet_states(serve)["srv-01"] == ("provisioned", True)
    assert next_boot(serve, "srv-01") == "target"
    # The next boot: ramboot and the same target again, not a disk.
    assert serve.boot(SRV, token=token).body == first.body
    assert plan(serve.boot(SRV, token=token, agent=True).body) == target

    detail = serve.admin("GET", "/api/machines/srv-01").json()
    assert detail["boot_id"] == boot_id
    assert [e["event"] for e in detail["events"]] == [
        "kernel-started", "agent-started", "network-up", "script-fetched", "plan-start",
        "plan-done"]
    assert [s["stage"] for s in detail["stages"]] == [
        "kernel", "agent", "network", "fetch", "action", "boot"]
    assert detail["stages"][0] == {"stage": "kernel", "start": 0.0, "end": 1.6,
                                   "seconds": 1.6, "failed": False}
    assert [a["kind"] for a in detail["answers"]] == [
        "target", "ramboot", "target", "ramboot"]
    # A reinstall clears the mark; the answers were never the disk's.
    reinstall = serve.admin("POST", "/api/machines/srv-01/reinstall")
    assert reinstall.status == 200 and reinstall.json()["was_provisioned"] is True
    assert fleet_states(serve)["srv-01"][1] is False
    assert serve.boot(SRV, token=token).body == first.body


def test_x86_install_target_boots_its_disk_until_reinstall(serve: Serve) -> None:
    token = serve.token("srv-02")
    first = serve.boot(INSTALL, token=token)
    assert b"stage 1: into ramboot" in first.body
    _, target = provision(serve, INSTALL, "srv-02")
    assert [a["action"] for a in target["actions"]] == ["image", "localboot"]
    assert fleet_states(serve)["srv-02"] == ("provisioned", True)
    assert next_boot(serve, "srv-02") == "disk"

    # The next boot of the same machine: iPXE is told to leave for its disk, at once.
    for _ in range(2):
        again = serve.boot(INSTALL, token=token)
        assert again.status == 200
        assert b"set ramboot-next disk\nexit 0\n" in again.body
    # Even an agent (a machine whose firmware netboots ramboot anyway) is sent to disk.
    agent = plan(serve.boot(INSTALL, token=token, agent=True).body)
    assert [a["action"] for a in agent["actions"]] == ["localboot"]
    assert fleet_states(serve)["srv-02"] == ("provisioned", True)

    reinstall = serve.admin("POST", "/api/machines/srv-02/reinstall")
    assert reinstall.status == 200 and reinstall.json()["was_provisioned"] is True
    assert serve.boot(INSTALL, token=token).body == first.body
    assert fleet_states(serve)["srv-02"] == ("booting", False)


def test_pi_install_target_localboot_when_provisioned(serve: Serve) -> None:
    # A Pi never asks stage 1 (its EEPROM loads ramboot from TFTP): only the agent asks.
    provision(serve, PI_INSTALL, "pi-02")
    assert fleet_states(serve)["pi-02"] == ("provisioned", True)
    boot_id = new_boot_id()  # it boots ramboot again from TFTP, on its way to its disk
    token = serve.token("pi-02")
    serve.post_event("kernel-started", PI_INSTALL, token=token, boot_id=boot_id, monotonic=3.0)
    assert fleet_states(serve)["pi-02"] == ("booting", True)  # still provisioned
    answer = plan(serve.boot(PI_INSTALL, token=token, agent=True).body)
    assert answer["actions"] == [{"action": "localboot", "target": "system",
                                  "method": "reboot"}]
    serve.post_event("plan-done", PI_INSTALL, token=token, boot_id=boot_id, monotonic=4.0,
                     outcome="reboot")
    assert fleet_states(serve)["pi-02"] == ("provisioned", True)


def test_disk_target_and_inventory_provisioned_go_to_disk_at_once(serve: Serve) -> None:
    for identity, host in ((INSTALLED_MAC, "srv-04"), (DISK_MAC, "srv-03")):
        reply = serve.boot({"mac": identity, "buildarch": "i386"}, token=serve.token(host))
        assert reply.status == 200
        text = reply.body.decode()
        assert text.endswith("set ramboot-next disk\nexit 0\n"), text
        assert fleet_states(serve)[host] == ("provisioned", False)
        assert next_boot(serve, host) == "disk"
    # provisioned = true in the inventory outranks a reinstall: the message says why.
    refused = serve.admin("POST", "/api/machines/srv-04/reinstall")
    assert refused.status == 409
    assert "provisioned = true" in refused.json()["error"]


def test_an_old_agent_without_stage_is_still_stage_2(serve: Serve) -> None:
    answer = serve.request("GET", f"/boot?mac={SRV_MAC}", token=serve.token("srv-01"),
                           headers={"User-Agent": "ramboot-agent/0.1.0"})
    assert answer.headers["content-type"] == "application/json"
    assert plan(answer.body)["actions"][0]["action"] == "kexec"


def test_the_stage_urls_render_writes_are_answered_by_serve(serve: Serve) -> None:
    token = serve.token("srv-01")
    query = f"mac={SRV_MAC}&buildarch=x86_64&platform=pcbios"
    stage1 = serve.request("GET", f"/stage1/srv-01.ipxe?{query}", token=token)
    assert stage1.status == 200
    assert stage1.body == serve.boot(SRV, token=token).body
    stage2 = serve.request("GET", f"/stage2/srv-01.json?{query}&stage=agent", token=token)
    assert stage2.status == 200 and stage2.headers["content-type"] == "application/json"
    assert stage2.headers["cache-control"] == "no-store"
    # The Pi's agent asks what its cmdline.txt names, with its ramboot.token= as Bearer.
    pi = serve.request("GET", f"/stage2/pi-01.json?serial={PI_SERIAL}&buildarch=arm64"
                       "&stage=agent", token=serve.token("pi-01"),
                       headers={"User-Agent": "ramboot-agent/0.3.0"})
    assert plan(pi.body)["actions"][0]["kernel"] == "http://192.0.2.1:8080/images/rpi4/Image"
    # ... which the agent uses exactly as written: no identity in the query. The host is
    # the path's; the identity it last sent stays on record.
    bare = serve.request("GET", "/stage2/pi-01.json", token=serve.token("pi-01"),
                         headers={"User-Agent": "ramboot-agent/0.3.0"})
    assert bare.status == 200 and bare.body == pi.body
    assert serve.admin("GET", "/api/machines/pi-01").json()["identity"] == {
        "serial": PI_SERIAL, "buildarch": "arm64"}
    detail = serve.admin("GET", "/api/machines/srv-01").json()
    assert [(a["stage"], a["kind"]) for a in detail["answers"]] == [  # latest first
        (2, "target"), (1, "ramboot"), (1, "ramboot")]


def test_failure_is_kept_with_its_log_tail_and_cleared_by_the_next_boot(serve: Serve) -> None:
    token = serve.token("srv-01")
    boot_id = new_boot_id()
    serve.boot(SRV, token=token)
    serve.boot(SRV, token=token, agent=True)
    serve.post_event("network-up", SRV, token=token, boot_id=boot_id, monotonic=5.0)
    serve.post_event("failure", SRV, token=token, boot_id=boot_id, monotonic=7.5,
                     reason="plan actions[0] (kexec): digest mismatch",
                     log_tail=["fetching kernel", "sha256 mismatch"], index=0, action="kexec")
    detail = serve.admin("GET", "/api/machines/srv-01").json()
    assert detail["state"] == "failed" and not detail["provisioned"]
    assert detail["failure"] == "plan actions[0] (kexec): digest mismatch"
    assert detail["failure_log"] == ["fetching kernel", "sha256 mismatch"]
    assert detail["stages"][-1]["failed"] is True
    fleet = serve.admin("GET", "/api/fleet").json()
    assert fleet["machines"][0]["host"] == "srv-01"  # failures first
    serve.post_event("kernel-started", SRV, token=token, boot_id=new_boot_id(), monotonic=1.0)
    assert fleet_states(serve)["srv-01"] == ("booting", False)


def test_discovery_then_adoption_by_the_inventory(serve: Serve) -> None:
    stranger = {"mac": "52:54:00:99:99:99", "buildarch": "x86_64"}
    fleet_token = serve.token(None)
    stage1 = serve.boot(stranger, token=fleet_token)
    text = stage1.body.decode()
    assert "not in the inventory" in text
    kernel = next(line for line in text.splitlines() if line.startswith("kernel "))
    assert f"ramboot.token={fleet_token}" in kernel.split()  # its agent reports with it
    assert plan(serve.boot(stranger, token=fleet_token, agent=True).body)["actions"] == [
        {"action": "hardware"}]
    boot_id = new_boot_id()
    reply = serve.post_event("action-done", stranger, token=fleet_token, boot_id=boot_id,
                             index=0, action="hardware", cpus=4, memory=8589934592)
    assert reply.status == 201
    machine = serve.admin("GET", "/api/machines/mac:52:54:00:99:99:99").json()
    assert machine["state"] == "discovered" and machine["host"] is None
    assert machine["next_boot"] == "discovery"
    assert machine["hardware"]["cpus"] == 4
    # A plan-done of the discovery plan is not a provisioned machine.
    serve.post_event("plan-done", stranger, token=fleet_token, boot_id=boot_id,
                     outcome="completed")
    assert fleet_states(serve)["mac:52:54:00:99:99:99"] == ("discovered", False)

    # The operator adds it to the inventory and reloads serve (SIGHUP).
    inventory = serve.log_path.parent / "fleet.toml"
    inventory.write_text(inventory.read_text() + '''
[[hosts]]
name = "new-01"
family = "x86_64"
macs = ["52:54:00:99:99:99"]
profile = "second-x86"
''')
    serve.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while serve.boot(stranger, token=serve.token("new-01")).status != 200:
        assert time.monotonic() < deadline, serve.log_path.read_text()
        time.sleep(0.2)
    adopted = serve.admin("GET", "/api/machines/new-01").json()
    assert adopted["hardware"]["cpus"] == 4  # the discovered record, taken over
    assert adopted["key"] == "host:new-01" and adopted["state"] == "booting"
    assert serve.admin("GET", "/api/machines/mac:52:54:00:99:99:99").status == 404
