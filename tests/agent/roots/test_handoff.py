"""What the new root receives, and how the agent asks init to switch."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ramboot_agent.events import Reporter
from ramboot_agent.net import Lease
from ramboot_agent.plan.context import ActionError
from ramboot_agent.roots import handoff
from ramboot_agent.roots.layout import Layout
from tests.agent.io.servers import Handler, Site

REPO = Path(__file__).resolve().parents[3]

LEASE = Lease(interface="eth0", mac="52:54:00:00:0c:01", ip="192.0.2.100", prefix_len=24,
              router="192.0.2.1", dns=("192.0.2.1", "192.0.2.2"), hostname="node-7",
              domain="lab.example", server_id="192.0.2.1",
              options={51: (600).to_bytes(4, "big")})
HANDOVER = handoff.Handover("netroot", "nfs://192.0.2.1/srv/root", "/sbin/init",
                            ("first", "two words"), "/lib/systemd/systemd",
                            {"RAMBOOT_OVERLAY": "tmpfs"})


def layout(tmp_path: Path) -> Layout:
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")
    return Layout(newroot=tmp_path / "newroot", state=tmp_path / "run/ramboot",
                  inittab=tmp_path / "etc/inittab", switch_script=tmp_path / "switch-root",
                  booted_script=REPO / "overlay/usr/share/ramboot/report-booted",
                  resolv_conf=tmp_path / "etc/resolv.conf")


def sourced(path: Path) -> dict[str, str]:
    """The variables a POSIX shell gets from sourcing `path`."""
    out = subprocess.run(["sh", "-c", f'set -a; . "{path}"; env -0'], capture_output=True,
                         check=True).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_the_handover_files(tmp_path: Path) -> None:
    where = layout(tmp_path)
    written = handoff.write_handover(where, HANDOVER, lease=LEASE)
    assert written == [str(where.state / name) for name in
                       ("root.env", "network.env")] + [
        str(where.run_dir / "net-eth0.conf"), str(where.state / "resolv.conf"),
        str(where.state / "report-booted")]
    root = sourced(where.state / "root.env")
    assert root["RAMBOOT_ROOT"] == "nfs://192.0.2.1/srv/root"
    assert root["RAMBOOT_OVERLAY"] == "tmpfs"
    net = sourced(where.state / "network.env")
    assert net["RAMBOOT_IP"] == "192.0.2.100"
    assert net["RAMBOOT_NETMASK"] == "255.255.255.0"
    assert net["RAMBOOT_DNS"] == "192.0.2.1 192.0.2.2"
    assert net["RAMBOOT_LEASE_SECONDS"] == "600"
    assert net["RAMBOOT_KERNEL_IP"] == \
        "192.0.2.100:192.0.2.1:192.0.2.1:255.255.255.0:node-7:eth0:off:192.0.2.1:192.0.2.2"
    klibc = sourced(where.run_dir / "net-eth0.conf")
    assert (klibc["DEVICE"], klibc["IPV4ADDR"], klibc["IPV4GATEWAY"], klibc["DHCPLEASETIME"]) \
        == ("eth0", "192.0.2.100", "192.0.2.1", "600")
    assert (where.state / "resolv.conf").read_text() == "nameserver 192.0.2.1\n"
    assert (where.state / "report-booted").stat().st_mode & 0o111


def test_values_from_the_network_cannot_run_code_when_sourced(tmp_path: Path) -> None:
    where = layout(tmp_path)
    evil = Lease(interface="eth0", mac="52:54:00:00:0c:01", ip="192.0.2.100", prefix_len=24,
                 hostname="x'; touch /tmp/pwned-by-dhcp; echo '$(id)\n`id`")
    handoff.write_handover(where, HANDOVER, lease=evil)
    values = sourced(where.state / "network.env")
    assert values["RAMBOOT_HOSTNAME"] == "x'; touch /tmp/pwned-by-dhcp; echo '$(id)?`id`"
    assert not Path("/tmp/pwned-by-dhcp").exists()


def test_init_must_be_busybox_init_with_the_restart_action(tmp_path: Path) -> None:
    where = layout(tmp_path)
    where.inittab.write_text("::sysinit:/etc/init.d/rcS\n")
    with pytest.raises(ActionError, match="has no '::restart:"):
        handoff.check_init_can_switch(where)
    where.inittab.write_text(f"::restart:{where.switch_script}\n")
    with pytest.raises(ActionError, match="missing or not executable"):
        handoff.check_init_can_switch(where)
    where.switch_script.write_text("#!/bin/sh\n")
    where.switch_script.chmod(0o755)
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1/comm").write_text("systemd\n")
    with pytest.raises(ActionError, match="PID 1 is 'systemd'"):
        handoff.check_init_can_switch(where, proc)
    (proc / "1/comm").write_text("init\n")
    handoff.check_init_can_switch(where, proc)


def test_the_switch_request_and_the_booted_event(tmp_path: Path) -> None:
    where = layout(tmp_path)
    where.state.mkdir(parents=True)
    reporter = Reporter({"mac": LEASE.mac}, "http://127.0.0.1:9/events")
    reporter.emit("plan-done", outcome="switch_root")
    signals = []
    out = io.StringIO()
    with pytest.raises(ActionError, match="init did not switch"):
        handoff.switch(where, HANDOVER, reporter=reporter, out=out,
                       signal_init=lambda: signals.append(where.request.read_text()),
                       wait=0.1)
    [request] = signals
    assert request.splitlines()[1:] == [
        f"newroot={where.newroot}", "init=/sbin/init", "check=/lib/systemd/systemd",
        "root=nfs://192.0.2.1/srv/root", "arg=first", "arg=two words"]
    assert "switching to /sbin/init on nfs://192.0.2.1/srv/root" in out.getvalue()
    # Init did not take over: nothing is left that would switch or report later.
    assert not where.request.exists()
    assert not (where.state / "booted.json").exists()


def test_the_booted_event_continues_the_agents_sequence() -> None:
    reporter = Reporter({"mac": LEASE.mac}, "http://127.0.0.1:9/events")
    reporter.emit("plan-start")
    reporter.emit("plan-done")
    event = handoff.booted_event(reporter, HANDOVER)
    assert event is not None
    assert (event["event"], event["seq"], event["identity"]) == ("booted", 3,
                                                                 {"mac": LEASE.mac})
    assert json.dumps(event).count('"monotonic": -1') == 1
    assert handoff.booted_event(Reporter({"mac": LEASE.mac}), HANDOVER) is None


@pytest.mark.parametrize("sender", ["curl", "wget", "python3"])
def test_report_booted_sends_the_event_once(tmp_path: Path, site: Site, sender: str) -> None:
    """The script the new root runs, with only one of the programs it can send with."""
    import shutil

    received: list[bytes] = []

    def collect(handler: Handler) -> None:
        received.append(handler.body())
        handler.send_response(204)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    site.routes["/events"] = collect
    programs = tmp_path / "bin"
    programs.mkdir()
    found = {"wget": "/bin/busybox", "python3": sys.executable}.get(sender) \
        or shutil.which(sender)
    if found is None or not Path(found).exists():
        pytest.skip(f"{sender} is not installed")
    wrapper = programs / sender
    if sender == "wget":
        wrapper.write_text('#!/bin/sh\nexec /bin/busybox wget "$@"\n')
        wrapper.chmod(0o755)
    else:
        wrapper.symlink_to(found)
    for tool in ("sh", "head", "cut", "date", "sed", "sleep"):
        (programs / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    state = tmp_path / "run"
    state.mkdir()
    reporter = Reporter({"mac": LEASE.mac}, site.url("/events"))
    reporter.emit("plan-done")
    event = handoff.booted_event(reporter, HANDOVER)
    reporter.close(0)
    (state / "booted.json").write_text(json.dumps(event, sort_keys=True) + "\n")
    (state / "report-url").write_text(site.url("/events") + "\n")
    script = REPO / "overlay/usr/share/ramboot/report-booted"
    for _ in range(2):  # the second run has nothing left to send
        done = subprocess.run([str(programs / "sh"), str(script), str(state)],
                              env={"PATH": str(programs)}, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    [sent] = [e for e in map(json.loads, received) if e["event"] == "booted"]
    assert (sent["event"], sent["seq"]) == ("booted", 2)
    assert sent["monotonic"] > 0
    assert sent["time"].endswith("Z") and sent["time"] != "@TIME@"
