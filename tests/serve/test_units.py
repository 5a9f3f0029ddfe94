"""The pure parts of serve: states, timeline, tokens and headers, identity, event fields."""

from __future__ import annotations

import base64
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramboot.serve import states, timeline
from ramboot.serve.auth import AuthError, Keys, presented_token
from ramboot.serve.events import EventError, parse_event
from ramboot.serve.identify import IdentityError, parse_identity
from ramboot.serve.states import Answer, MachineState, State
from ramboot.tokens import fleet_token, host_token

SECRET = b"s" * 32


def test_provisioned_is_sticky_until_reinstall() -> None:
    s = states.initial(known=True)
    s = states.on_answer(s, 1, Answer.RAMBOOT)
    s = states.on_answer(s, 2, Answer.TARGET)
    s = states.on_event(s, "plan-start", {})
    assert s.state is State.PROVISIONING
    s = states.on_event(s, "plan-done", {"outcome": "reboot"})
    assert (s.state, s.provisioned) == (State.PROVISIONED, True)
    for event in ("kernel-started", "agent-started", "network-up", "failure"):
        s = states.on_event(s, event, {"reason": "x"})
        assert s.provisioned  # no event of a later boot undoes it
    s = states.on_answer(s, 2, Answer.LOCALBOOT)
    s = states.on_event(s, "plan-done", {"outcome": "kexec"})
    assert (s.state, s.provisioned) == (State.PROVISIONED, True)
    s = states.on_reinstall(s)
    assert not s.provisioned


def test_what_is_not_a_target_reached() -> None:
    s = states.on_answer(states.initial(known=True), 2, Answer.TARGET)
    dry = states.on_event(s, "plan-done", {"outcome": "completed", "dry_run": True})
    assert not dry.provisioned
    assert not states.on_event(s, "plan-done", {"outcome": "failed"}).provisioned
    d = states.on_answer(states.initial(known=False), 2, Answer.DISCOVERY)
    d = states.on_event(d, "plan-done", {"outcome": "completed"})
    assert (d.state, d.provisioned) == (State.DISCOVERED, False)
    assert states.on_event(d, "failure", {"reason": "r"}).state is State.FAILED
    assert states.on_event(s, "boot", {}).provisioned  # an iPXE target script kexec'd


def test_rows_round_trip() -> None:
    s = MachineState(State.FAILED, True, Answer.TARGET, "why")
    assert states.from_row(s.as_row()) == s


def test_timeline_stages_from_events() -> None:
    events = [
        {"event": "kernel-started", "monotonic": 3.0, "details": {"uptime": 2.5}},
        {"event": "agent-started", "monotonic": 3.1, "details": {"seconds": 0.8}},
        {"event": "network-up", "monotonic": 5.0},
        {"event": "script-fetched", "monotonic": 5.5},
        {"event": "fetch", "monotonic": 7.0},
        {"event": "kexec-load", "monotonic": 8.0},
        {"event": "boot", "monotonic": 8.2},
    ]
    got = [(s.stage, s.start, s.end) for s in timeline.segments(events)]
    assert got == [("kernel", 0.0, 2.3), ("agent", 2.3, 2.5), ("network", 2.5, 5.0),
                   ("fetch", 5.0, 5.5), ("action", 5.5, 8.0), ("boot", 8.0, 8.2)]
    failed = timeline.segments([*events[:3], {"event": "failure", "monotonic": 9.0}])
    assert [(s.stage, s.failed) for s in failed][-1] == ("fetch", True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "event": st.sampled_from(["kernel-started", "agent-started", "network-up", "failure",
                              "script-fetched", "fetch", "plan-done", "boot", "x"]),
    "monotonic": st.one_of(st.floats(allow_nan=True), st.integers(), st.text(), st.none()),
    "details": st.one_of(st.none(), st.dictionaries(st.sampled_from(["uptime", "seconds"]),
                                                    st.floats(allow_nan=False))),
}), max_size=20))
def test_timeline_never_breaks_and_never_goes_backwards(events: list[dict[str, object]]) -> None:
    segments = timeline.segments(events)
    for segment in segments:
        assert segment.end >= segment.start >= 0
    for first, second in itertools.pairwise(segments):
        assert second.start == first.end


def test_tokens_and_headers() -> None:
    keys = Keys(SECRET, "admin-token-xyz")
    host = host_token(SECRET, "srv-01")
    keys.require_machine(f"Bearer {host}", "srv-01")
    basic = base64.b64encode(f"ramboot:{host}".encode()).decode()
    keys.require_machine(f"Basic {basic}", "srv-01")
    user_only = base64.b64encode(f"{host}:".encode()).decode()
    assert presented_token(f"Basic {user_only}") == host
    keys.require_machine(f"Bearer {fleet_token(SECRET)}", None)
    for header, target, status in ((None, "srv-01", 401), (f"Bearer {host}", "pi-01", 403),
                                   (f"Bearer {host}", None, 403),
                                   (f"Bearer {fleet_token(SECRET)}", "srv-01", 403),
                                   ("Basic ***", "srv-01", 401), ("Negotiate x", None, 401),
                                   ("Bearer " + "x" * 600, None, 401)):
        with pytest.raises(AuthError) as raised:
            keys.require_machine(header, target)
        assert raised.value.status == status, header
    assert host_token(SECRET, "a") != host_token(SECRET, "b") != fleet_token(SECRET)
    assert len(host) == 32 and int(host, 16) >= 0


def test_identity_fields() -> None:
    uuid = "5A1E4B1C-0D2E-4F30-8A41-52B6C7D8E9F0"
    got = parse_identity({"mac": "52-54-00-AA-BB-CC", "uuid": uuid, "serial": "SN 42/a&b",
                          "unknown": "ignored"})
    assert got.values == {"mac": "52:54:00:aa:bb:cc", "uuid": uuid.lower(),
                          "serial": "SN 42/a&b"}
    assert got.key() == "mac:52:54:00:aa:bb:cc"
    for bad in ({"mac": "zz"}, {"mac": "52:54:00:aa:bb:cc", "ip": "300"},
                {"serial": "x" * 300}, {"serial": "a\nb"}, {"buildarch": "x86 64", "mac": ""},
                {}):
        with pytest.raises(IdentityError):
            parse_identity(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_event_parser_only_raises_clean_errors(body: bytes) -> None:
    try:
        parse_event(body)
    except EventError as error:
        assert error.status in (400, 422)


def test_event_digest_ignores_dropped_only() -> None:
    base = {"event": "fetch", "boot_id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "seq": 1,
            "monotonic": 1.0, "identity": {"mac": "52:54:00:aa:bb:cc"}, "details": {"a": 1}}
    first = parse_event(json.dumps(base).encode())
    retried = parse_event(json.dumps(dict(base, dropped=3)).encode())
    other = parse_event(json.dumps(dict(base, details={"a": 2})).encode())
    assert first.digest == retried.digest != other.digest
