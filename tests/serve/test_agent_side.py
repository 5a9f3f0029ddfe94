"""The agent's own Reporter and Fetcher against a real serve: boot_id, seq, and the
token of `ramboot.token=` (sent to the control plane's origin only)."""

from __future__ import annotations

import json

import pytest

from ramboot_agent.cmdline import parse_cmdline
from ramboot_agent.events import BOOT_ID, Reporter, read_boot_id
from ramboot_agent.fetch import Fetcher
from tests.agent.io.servers import serve as serve_http
from tests.serve.harness import SRV_MAC, Serve

IDENTITY = {"mac": SRV_MAC, "buildarch": "x86_64", "platform": "pcbios", "serial": "",
            "uuid": "", "ip": "192.0.2.10"}


def test_reporter_events_are_stored_once_with_the_kernels_boot_id(serve: Serve) -> None:
    token = serve.token("srv-01")
    settings = parse_cmdline(f"console=ttyS0 ramboot.token={token}")
    assert settings.token == token
    reporter = Reporter(IDENTITY, f"{serve.url}/events", token=settings.token)
    assert reporter.boot_id == BOOT_ID.read_text().strip() == read_boot_id()
    for name in ("kernel-started", "agent-started", "network-up"):
        reporter.emit(name, uptime=1.0)
    assert reporter.close(20)
    detail = serve.admin("GET", "/api/machines/srv-01").json()
    assert detail["boot_id"] == reporter.boot_id
    assert [(e["seq"], e["event"]) for e in detail["events"]] == [
        (1, "kernel-started"), (2, "agent-started"), (3, "network-up")]


def test_reporter_without_token_is_refused_and_drops_nothing_silently(serve: Serve) -> None:
    reporter = Reporter(IDENTITY, f"{serve.url}/events")
    reporter.emit("kernel-started")
    assert reporter.close(10)  # 401 is final: the event is dropped, not retried forever
    assert reporter._rejected == 1
    assert serve.admin("GET", "/api/fleet").json()["machines"] == []


def test_fetcher_sends_the_token_to_the_control_plane_only(serve: Serve) -> None:
    token = serve.token("srv-01")
    with serve_http() as other:
        other.routes["/image"] = lambda handler: handler.send_bytes(b"image bytes")
        fetcher = Fetcher(retries=0)
        boot_url = f"{serve.url}/boot?mac={SRV_MAC}&buildarch=x86_64&stage=agent"
        fetcher.authorize(boot_url, token)
        fetched = fetcher.fetch_bytes(boot_url, max_size=1 << 20)
        assert json.loads(fetched.data or b"")["description"] == \
            "srv-01: boot the kernel x86_64/bzImage"
        assert fetcher.fetch_bytes(other.url("/image"), max_size=1 << 20).data == b"image bytes"
        [(_, path, headers)] = other.requests
        assert path == "/image"
        assert "authorization" not in {name.lower() for name in headers}
    # Without the token, serve refuses the same request.
    assert serve.request("GET", f"/boot?mac={SRV_MAC}&stage=agent").status == 401


def test_a_bad_token_on_the_command_line_is_refused() -> None:
    from ramboot_agent.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ramboot\.token"):
        parse_cmdline("ramboot.token=short")
    with pytest.raises(ConfigError, match=r"ramboot\.token"):
        parse_cmdline("ramboot.token=has;semicolons;in;it;at;all")
