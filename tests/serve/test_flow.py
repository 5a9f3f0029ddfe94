"""A machine's life through a real serve (SQLite and PostgreSQL): both stages,
events, provisioned → its disk, reinstall, discovery and adoption."""

from __future__ import annotations

import json

from tests.serve.harness import PI_SERIAL, SRV_MAC, Serve, new_boot_id

SRV = {"mac": SRV_MAC, "buildarch": "x86_64", "platform": "pcbios"}
PI = {"mac": "dc:a6:32:aa:bb:cc", "serial": PI_SERIAL, "buildarch": "arm64"}


def fleet_states(serve: Serve) -> dict[str, tuple[str, bool]]:
    fleet = serve.admin("GET", "/api/fleet").json()
    return {m["host"] or m["key"]: (m["state"], m["provisioned"]) for m in fleet["machines"]}


def provision(serve: Serve, identity: dict[str, str], host: str) -> str:
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
    assert json.loads(target.body)["description"] == f"target of {host}"
    assert fleet_states(serve)[host] == ("provisioning", False)
    serve.post_event("script-fetched", identity, token=token, boot_id=boot_id, monotonic=2.8)
    serve.post_event("plan-start", identity, token=token, boot_id=boot_id, monotonic=2.9)
    serve.post_event("plan-done", identity, token=token, boot_id=boot_id, monotonic=9.0,
                     outcome="reboot", dry_run=False)
    return boot_id


def test_x86_stage1_target_then_disk_until_reinstall(serve: Serve) -> None:
    token = serve.token("srv-01")
    first = serve.boot(SRV, token=token)
    assert first.status == 200
    assert first.body.startswith(b"#!ipxe\necho stage 1 for srv-01: ramboot")
    assert fleet_states(serve)["srv-01"] == ("booting", False)

    boot_id = provision(serve, SRV, "srv-01")
    assert fleet_states(serve)["srv-01"] == ("provisioned", True)

    # The next boot of the same machine: iPXE goes to its disk, at once and again.
    for _ in range(2):
        again = serve.boot(SRV, token=token)
        assert again.status == 200
        assert b"exit 0" in again.body and b"provisioned" in again.body
    # Even an agent (a machine whose firmware netboots ramboot anyway) is sent to disk.
    agent = serve.boot(SRV, token=token, agent=True)
    assert json.loads(agent.body)["actions"] == [{"action": "localboot"}]
    assert fleet_states(serve)["srv-01"] == ("provisioned", True)

    detail = serve.admin("GET", "/api/machines/srv-01").json()
    assert detail["boot_id"] == boot_id
    assert [e["event"] for e in detail["events"]] == [
        "kernel-started", "agent-started", "network-up", "script-fetched", "plan-start",
        "plan-done"]
    assert [s["stage"] for s in detail["stages"]] == [
        "kernel", "agent", "network", "fetch", "action", "boot"]
    assert detail["stages"][0] == {"stage": "kernel", "start": 0.0, "end": 1.6,
                                   "seconds": 1.6, "failed": False}

    reinstall = serve.admin("POST", "/api/machines/srv-01/reinstall")
    assert reinstall.status == 200 and reinstall.json()["was_provisioned"] is True
    assert serve.boot(SRV, token=token).body.startswith(b"#!ipxe\necho stage 1 for srv-01")
    assert fleet_states(serve)["srv-01"] == ("booting", False)


def test_pi_agent_path_localboot_when_provisioned(serve: Serve) -> None:
    # A Pi never asks stage 1 (its EEPROM loads ramboot from TFTP): only the agent asks.
    provision(serve, PI, "pi-01")
    assert fleet_states(serve)["pi-01"] == ("provisioned", True)
    boot_id = new_boot_id()  # it boots ramboot again from TFTP, on its way to its disk
    token = serve.token("pi-01")
    serve.post_event("kernel-started", PI, token=token, boot_id=boot_id, monotonic=3.0)
    assert fleet_states(serve)["pi-01"] == ("booting", True)  # still provisioned
    answer = serve.boot(PI, token=token, agent=True)
    assert json.loads(answer.body)["actions"] == [{"action": "localboot"}]
    serve.post_event("plan-done", PI, token=token, boot_id=boot_id, monotonic=4.0,
                     outcome="kexec")
    assert fleet_states(serve)["pi-01"] == ("provisioned", True)


def test_an_old_agent_without_stage_is_still_stage_2(serve: Serve) -> None:
    answer = serve.request("GET", f"/boot?mac={SRV_MAC}", token=serve.token("srv-01"),
                           headers={"User-Agent": "ramboot-agent/0.1.0"})
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body)["description"] == "target of srv-01"


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


def test_discovery_then_adoption_by_the_inventory(serve: Serve, tmp_path_factory: object) -> None:
    stranger = {"mac": "52:54:00:99:99:99", "buildarch": "x86_64"}
    fleet_token = serve.token(None)
    stage1 = serve.boot(stranger, token=fleet_token)
    assert b"not in the inventory" in stage1.body
    plan = json.loads(serve.boot(stranger, token=fleet_token, agent=True).body)
    assert plan["actions"] == [{"action": "hardware"}]
    boot_id = new_boot_id()
    reply = serve.post_event("action-done", stranger, token=fleet_token, boot_id=boot_id,
                             index=0, action="hardware", cpus=4, memory=8589934592)
    assert reply.status == 201
    machine = serve.admin("GET", "/api/machines/mac:52:54:00:99:99:99").json()
    assert machine["state"] == "discovered" and machine["host"] is None
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
profile = "ramboot-x86"
''')
    import signal
    import time
    serve.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while serve.boot(stranger, token=serve.token("new-01")).status != 200:
        assert time.monotonic() < deadline, serve.log_path.read_text()
        time.sleep(0.2)
    adopted = serve.admin("GET", "/api/machines/new-01").json()
    assert adopted["hardware"]["cpus"] == 4  # the discovered record, taken over
    assert adopted["key"] == "host:new-01" and adopted["state"] == "booting"
    assert serve.admin("GET", "/api/machines/mac:52:54:00:99:99:99").status == 404
