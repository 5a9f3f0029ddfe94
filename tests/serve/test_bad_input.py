"""Bad input to every endpoint gets a clear 4xx and changes nothing stored."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.harness import (
    INSTALL_MAC,
    SRV_MAC,
    Reply,
    Serve,
    event_body,
    new_boot_id,
    running_serve,
)

SRV = {"mac": SRV_MAC, "buildarch": "x86_64"}


def seeded(serve: Serve) -> str:
    """A machine with some history, so "changes nothing" has something to change."""
    token = serve.token("srv-01")
    boot_id = new_boot_id()
    assert serve.boot(SRV, token=token).status == 200
    assert serve.post_event("kernel-started", SRV, token=token, boot_id=boot_id,
                            seq=1).status == 201
    return boot_id


def check(serve: Serve, before: tuple[object, ...], reply: Reply, status: int,
          words: str) -> None:
    assert reply.status == status, (reply.status, reply.body)
    error = reply.json()["error"]
    assert words in error, error
    assert serve.snapshot() == before


def test_events_refused(serve: Serve) -> None:
    boot_id = seeded(serve)
    before = serve.snapshot()
    good = event_body("network-up", SRV, boot_id=boot_id, seq=2)
    token = serve.token("srv-01")

    def post(body: bytes, *, auth: str | None = f"Bearer {token}",
             content_type: str = "application/json") -> Reply:
        headers = {"Content-Type": content_type}
        if auth is not None:
            headers["Authorization"] = auth
        return serve.request("POST", "/events", body=body, headers=headers)

    reply = post(good, auth=None)
    check(serve, before, reply, 401, "token is needed")
    assert reply.headers["www-authenticate"].startswith("Basic")
    check(serve, before, post(good, auth="Basic !!!"), 401, "malformed Basic")
    check(serve, before, post(good, auth="Digest x"), 401, "unsupported scheme")
    check(serve, before, post(good, auth="Bearer " + "0" * 32), 403, "not host 'srv-01'")
    check(serve, before, post(good, auth=f"Bearer {serve.token('pi-01')}"), 403, "srv-01")
    check(serve, before, post(good, auth=f"Bearer {serve.token(None)}"), 403, "srv-01")
    basic = base64.b64encode(f"ramboot:{serve.token('pi-01')}".encode()).decode()
    check(serve, before, post(good, auth=f"Basic {basic}"), 403, "srv-01")
    check(serve, before, post(good, content_type="text/plain"), 415, "application/json")
    check(serve, before, post(b'{"event": "network-up",'), 400, "malformed JSON")
    check(serve, before, post(b"\xff\xfe"), 400, "malformed JSON")
    check(serve, before, post(b"[" * 100000 + b"]" * 100000), 400, "JSON")
    check(serve, before, post(b"[1, 2]"), 422, "JSON object")
    cases = {
        "boot_id": ("not-a-uuid", "boot_id"), "seq": (0, "seq"), "monotonic": ("soon", "monotonic"),
        "time": ("yesterday", "time"), "details": ([1], "details"), "event": ("Bad Name", "event"),
        "identity": ({"mac": "52:54:00"}, "mac"), "dropped": (-1, "dropped"),
    }
    for key, (value, words) in cases.items():
        data = json.loads(good)
        data[key] = value
        check(serve, before, post(json.dumps(data).encode()), 422, words)
    for seq in (True, "2", 2**40, -5, 1.5):
        data = dict(json.loads(good), seq=seq)
        check(serve, before, post(json.dumps(data).encode()), 422, "seq")
    missing = {k: v for k, v in json.loads(good).items() if k != "boot_id"}
    check(serve, before, post(json.dumps(missing).encode()), 422, "boot_id")
    nobody = dict(json.loads(good), identity={"buildarch": "x86_64"})
    check(serve, before, post(json.dumps(nobody).encode()), 422, "names no machine")
    huge = json.dumps(dict(json.loads(good), details={"x": "y" * 300_000})).encode()
    check(serve, before, post(huge), 413, "over the limit")

    # Over the limit without a Content-Length: cut off while it streams in.
    connection = serve.connection()
    connection.putrequest("POST", "/events")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    try:
        for _ in range(40):
            chunk = b"x" * 16384
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass  # serve may close as soon as it has refused
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert serve.snapshot() == before

    # A replay of the stored event: acknowledged again, nothing new stored.
    replay = serve.request("POST", "/events", token=token,
                           body=event_body("kernel-started", SRV, boot_id=boot_id, seq=1))
    assert replay.status == 200 and replay.json()["status"] == "duplicate"
    assert serve.snapshot() == before
    # The same (boot_id, seq) with other content: a conflict.
    forged = event_body("plan-done", SRV, boot_id=boot_id, seq=1, details={"outcome": "x"})
    check(serve, before, serve.request("POST", "/events", token=token, body=forged), 409,
          "different content")
    check(serve, before, serve.request("GET", "/events", token=token), 405, "")


def test_boot_refused(serve: Serve) -> None:
    seeded(serve)
    before = serve.snapshot()
    token = serve.token("srv-01")
    reply = serve.boot(SRV, token=None)
    check(serve, before, reply, 401, "token is needed")
    assert reply.headers["www-authenticate"] == 'Basic realm="ramboot machines"'
    check(serve, before, serve.boot(SRV, token="f" * 32), 403, "not host 'srv-01'")
    check(serve, before, serve.boot(SRV, token=serve.token("pi-01")), 403, "srv-01")
    stranger = {"mac": "52:54:00:77:77:77"}
    check(serve, before, serve.boot(stranger, token=token), 403, "fleet token")
    check(serve, before, serve.boot({"mac": "52:54:00:0b"}, token=token), 400, "mac")
    check(serve, before, serve.boot({"buildarch": "x86_64"}, token=token), 400, "names no")
    check(serve, before, serve.boot({"mac": SRV_MAC, "uuid": "x"}, token=token), 400, "uuid")
    check(serve, before, serve.boot({"mac": SRV_MAC, "ip": "1.2.3"}, token=token), 400, "ip")
    check(serve, before, serve.boot({"mac": SRV_MAC, "serial": "a\x01b"}, token=token), 400,
          "printable")
    check(serve, before, serve.boot(SRV, token=token, stage="agent2"), 400, "stage")
    check(serve, before, serve.boot(SRV, token=token, hostname="x" * 5000), 414, "query")
    check(serve, before, serve.request("POST", "/boot", token=token), 405, "")


def test_stage_urls_refused(serve: Serve) -> None:
    """The per-host stage URLs render writes into DHCP: the host's token only, the
    agent never stage 1, no other machine's identity, nothing else under stage1/2."""
    seeded(serve)
    before = serve.snapshot()
    token = serve.token("srv-01")
    query = f"?mac={SRV_MAC}&buildarch=x86_64"
    reply = serve.request("GET", f"/stage1/srv-01.ipxe{query}")
    check(serve, before, reply, 401, "token is needed")
    assert reply.headers["www-authenticate"] == 'Basic realm="ramboot machines"'
    check(serve, before, serve.request("GET", f"/stage1/srv-01.ipxe{query}",
                                       token=serve.token("srv-02")), 403, "not host 'srv-01'")
    check(serve, before, serve.request("GET", f"/stage1/srv-01.ipxe{query}&stage=agent",
                                       token=token), 409, "the agent asked for stage 1")
    check(serve, before, serve.request("GET", f"/stage1/srv-01.ipxe{query}", token=token,
                                       headers={"User-Agent": "ramboot-agent/0.3.0"}),
          409, "iPXE's option 224")
    other = f"?mac={INSTALL_MAC}&buildarch=x86_64"
    check(serve, before, serve.request("GET", f"/stage1/srv-01.ipxe{other}", token=token), 409,
          "host 'srv-02''s")
    check(serve, before, serve.request("GET", "/stage1/srv-01.ipxe?mac=52:54", token=token),
          400, "mac")
    for path in ("/stage1/pi-01.ipxe", "/stage2/srv-01.ipxe", "/stage1/nope.ipxe",
                 "/stage2/", "/stage1/../boot"):
        check(serve, before, serve.request("GET", f"{path}{query}", token=token), 404,
              "no host of the inventory")
    check(serve, before, serve.request("POST", f"/stage2/srv-01.json{query}", token=token),
          405, "GET only")


def test_api_refused(serve: Serve) -> None:
    seeded(serve)
    before = serve.snapshot()
    machine_token = serve.token("srv-01")
    for method, path in (("GET", "/api/fleet"), ("GET", "/api/machines/srv-01"),
                         ("POST", "/api/machines/srv-01/reinstall")):
        reply = serve.request(method, path)
        check(serve, before, reply, 401, "admin token")
        assert reply.headers["www-authenticate"].startswith("Bearer")
        check(serve, before, serve.request(method, path, token=machine_token), 403, "wrong")
    check(serve, before, serve.admin("GET", "/api/machines/nope"), 404, "no such machine")
    check(serve, before, serve.admin("GET", "/api/machines/pi-01"), 404, "not booted yet")
    check(serve, before, serve.admin("POST", "/api/machines/nope/reinstall"), 404, "not a host")
    check(serve, before, serve.admin("GET", "/api/fleet?since=soon"), 400, "since")
    check(serve, before, serve.admin("GET", "/api/fleet?since=nan"), 400, "since")
    check(serve, before, serve.admin("GET", "/api/fleet?since=1&wait=-1"), 400, "wait")


@pytest.fixture
def closed_serve(tmp_path: Path, database_url: str) -> Iterator[Serve]:
    with running_serve(tmp_path / "closed", database_url, args=("--no-discovery",)) as serve:
        yield serve


def test_unknown_machines_without_discovery(closed_serve: Serve) -> None:
    serve = closed_serve
    seeded(serve)
    before = serve.snapshot()
    stranger = {"mac": "52:54:00:77:77:77"}
    check(serve, before, serve.boot(stranger, token=serve.token(None)), 404, "discovery is off")
    body = event_body("kernel-started", stranger, boot_id=new_boot_id(), seq=1)
    check(serve, before, serve.request("POST", "/events", body=body, token=serve.token(None)),
          404, "discovery is off")


def test_slow_body_is_cut_off(serve: Serve) -> None:
    connection = serve.connection(timeout=30)
    connection.putrequest("POST", "/events")
    connection.putheader("Authorization", f"Bearer {serve.token('srv-01')}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", "1000")
    connection.endheaders()
    connection.send(b"{")
    response = connection.getresponse()  # serve gives up on the rest after BODY_SECONDS
    assert response.status == 408
    assert b"did not arrive" in response.read()
    connection.close()
    assert isinstance(connection, http.client.HTTPConnection)
