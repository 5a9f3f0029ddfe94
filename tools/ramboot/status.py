"""`ramboot status [HOST]`, `ramboot reinstall HOST`, `ramboot token`: the operator's side.

status and reinstall talk to `ramboot serve` over its admin API (so they work
the same against one SQLite server or PostgreSQL replicas behind a balancer);
token derives machine tokens from the fleet secret, as render and serve do.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from ramboot.errors import RambootError
from ramboot.tokens import fleet_token, host_token, read_secret, read_token

TIMEOUT = 30.0
STAGES = ("kernel", "agent", "network", "fetch", "action", "boot")
NEXT_BOOT = {"disk": "its disk", "target": "ramboot, then its target",
             "discovery": "discovery (not in the inventory)"}


def _request(server: str, token_file: Path, path: str, *, method: str = "GET",
             cafile: Path | None = None) -> Any:
    token = read_token(token_file)
    if not server.startswith(("http://", "https://")):
        raise RambootError(f"--server {server!r}: expected an http:// or https:// URL")
    url = server.rstrip("/") + path
    request = urllib.request.Request(url, method=method, headers={  # noqa: S310 (checked)
        "Authorization": f"Bearer {token}", "Accept": "application/json"})
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:  # noqa: S310
            return json.loads(response.read(16 * 1024 * 1024))
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read(65536)).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        raise RambootError(f"{url}: HTTP {error.code}: {message or error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RambootError(f"cannot reach serve at {server}: {reason}") from None
    except ValueError:
        raise RambootError(f"{url}: the answer is not JSON") from None


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = max(0, int(now - at))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _stage_cells(stages: list[dict[str, Any]]) -> list[str]:
    by_name = {stage["stage"]: stage for stage in stages}
    cells = []
    for name in STAGES:
        stage = by_name.get(name)
        if stage is None:
            cells.append("-")
        else:
            cells.append(f"{stage['seconds']:.1f}{'!' if stage.get('failed') else ''}")
    return cells


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def format_fleet(data: dict[str, Any], *, width: int = 60) -> str:
    now = float(data.get("now") or time.time())
    counts = ", ".join(f"{count} {state}" for state, count in data["counts"].items() if count)
    lines = [f"{len(data['machines'])} machine(s): {counts or 'none yet'}"]
    if data.get("never_seen"):
        lines.append(f"never seen: {', '.join(data['never_seen'])}")
    rows = [["HOST", "STATE", "NEXT", "LAST EVENT", "AGO", *[s.upper() for s in STAGES],
             "FAILURE"]]
    for machine in data["machines"]:
        failure = (machine["failure"] or "").replace("\n", " ")
        if len(failure) > width:
            failure = failure[:width - 1] + "…"
        rows.append([
            machine["host"] or machine["key"], machine["state"],
            machine["next_boot"], machine["last_event"] or "-",
            _ago(machine["last_event_at"], now), *_stage_cells(machine["stages"]), failure,
        ])
    lines.append("")
    lines.append(_table(rows))
    return "\n".join(lines)


def format_machine(data: dict[str, Any], *, log_lines: int = 20) -> str:
    now = time.time()
    name = data["host"] or data["key"]
    lines = [
        f"{name}: {data['state']} for {_ago(data['state_since'], now)}",
        f"  next boot:  {NEXT_BOOT.get(data['next_boot'], data['next_boot'])}",
        f"  boot id:    {data['boot_id'] or '-'}",
        f"  last event: {data['last_event'] or '-'} ({_ago(data['last_event_at'], now)} ago)",
    ]
    identity = data.get("identity") or {}
    shown = " ".join(f"{key}={value}" for key, value in sorted(identity.items()))
    lines.append(f"  identity:   {shown or '-'}")
    if data["stages"]:
        lines.append("  stages:     " + "  ".join(
            f"{stage['stage']} {stage['seconds']:.1f}s{' (failed)' if stage['failed'] else ''}"
            for stage in data["stages"]))
    if data["failure"]:
        lines.append(f"  failure:    {data['failure']}")
        tail = data.get("failure_log") or []
        if tail:
            lines.append(f"  log tail (last {min(log_lines, len(tail))} lines):")
            lines += [f"    {line}" for line in tail[-log_lines:]]
    if data["events"]:
        lines.append("  events of this boot:")
        for event in data["events"][-30:]:
            lines.append(f"    {event['seq']:>4}  {event['monotonic']:9.3f}s  {event['event']}")
    if data["answers"]:
        lines.append("  answers (latest first):")
        for answer in data["answers"][:5]:
            lines.append(f"    stage {answer['stage']}  {_ago(answer['answered_at'], now):>4} ago"
                         f"  {answer['summary']}")
    return "\n".join(lines)


_server = click.option("--server", required=True, envvar="RAMBOOT_SERVER",
                       help="URL of `ramboot serve` (env RAMBOOT_SERVER).")
_admin = click.option("--admin-token", "admin_token", required=True,
                      envvar="RAMBOOT_ADMIN_TOKEN_FILE",
                      type=click.Path(path_type=Path, dir_okay=False),
                      help="File with the admin token (env RAMBOOT_ADMIN_TOKEN_FILE).")
_cafile = click.option("--cafile", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                       help="CA bundle to verify an HTTPS serve with.")


@click.command("status")
@click.argument("host", required=False)
@_server
@_admin
@_cafile
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON as it is.")
def status(host: str | None, server: str, admin_token: Path, cafile: Path | None,
           as_json: bool) -> None:
    """The fleet (state, last event, stage timings, failure), or one HOST in detail."""
    path = f"/api/machines/{quote(host, safe=':')}" if host else "/api/fleet"
    data = _request(server, admin_token, path, cafile=cafile)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(format_machine(data) if host else format_fleet(data))


@click.command("reinstall")
@click.argument("host")
@_server
@_admin
@_cafile
def reinstall(host: str, server: str, admin_token: Path, cafile: Path | None) -> None:
    """Provision HOST again on its next boot (it is no longer sent to its disk)."""
    data = _request(server, admin_token, f"/api/machines/{quote(host, safe='')}/reinstall",
                    method="POST", cafile=cafile)
    click.echo(f"{host}: {data['message']}")


@click.command("token")
@click.argument("host", required=False)
@click.option("--fleet", is_flag=True, help="The fleet token (machines not in the inventory).")
@click.option("--machine-secret", required=True, envvar="RAMBOOT_MACHINE_SECRET",
              type=click.Path(path_type=Path, dir_okay=False), help="The fleet secret file.")
def token(host: str | None, fleet: bool, machine_secret: Path) -> None:
    """Print HOST's machine token, or the fleet token with --fleet."""
    if fleet == (host is not None):
        raise click.UsageError("give HOST or --fleet")
    secret = read_secret(machine_secret)
    click.echo(fleet_token(secret) if host is None else host_token(secret, host))
