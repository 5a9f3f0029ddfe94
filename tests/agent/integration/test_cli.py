"""`ramboot-agent run-script URL --dry-run --set 224=...` against the namespace HTTP server.

The script is the one shipped for iPXE (board/common/ipxe/ramboot.ipxe): the
agent runs it as iPXE would and sends the server the same identity query.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib import httpd, kernels
from tests.lib.netlab import SERVER_IP, VethLab, require_netns, veth_lab

from .lab import BASE, FILES_PORT, REPO, sha256

pytestmark = pytest.mark.netns

SHIPPED = REPO / "board/common/ipxe/ramboot.ipxe"
NEXT = "#!ipxe\necho stage 2 got @QUERY@\nkernel vmlinuz console=ttyS0 serial=${serial}\nboot\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[VethLab, Path]]:
    """The shipped script and a stage 2 on the server; the client at a static address."""
    require_netns()
    www = tmp_path / "www"
    www.mkdir()
    (www / "ramboot.ipxe").write_bytes(SHIPPED.read_bytes())
    (www / "next.ipxe").write_text(NEXT)
    (www / "vmlinuz").write_bytes(kernels.for_this_machine(size=6993))
    log = tmp_path / "requests.jsonl"
    with veth_lab() as lab:
        lab.client.ip("addr", "add", "192.0.2.50/24", "dev", lab.client_if)
        httpd.start_httpd(lab.server, bind=SERVER_IP, port=FILES_PORT, root=www, log_path=log,
                          expand_query=["/next.ipxe"])
        yield lab, log


def run_script(lab: VethLab, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.client.run(
        [sys.executable, "-m", "ramboot_agent", "run-script", f"{BASE}/ramboot.ipxe",
         "--dry-run", "--no-sleep", *args],
        check=False, timeout=60, cwd=REPO,
    )


def test_shipped_script_chains_with_identity_and_prints_the_boot(
    served: tuple[VethLab, Path],
) -> None:
    lab, log = served
    done = run_script(lab, "--set", f"224={BASE}/next.ipxe", "--set", "mac=52:54:00:aa:bb:cc",
                      "--set", "serial=SN 42&x")
    assert done.returncode == 0, done.stderr
    chained = [r for r in httpd.requests(log) if r["path"] == "/next.ipxe"]
    assert len(chained) == 1
    # The free-text serial arrives URI-escaped and decodes back intact.
    assert chained[0]["query"]["mac"] == ["52:54:00:aa:bb:cc"]
    assert chained[0]["query"]["serial"] == ["SN 42&x"]
    assert f"stage 2 got {chained[0]['raw_query']}" in done.stdout
    kernel = kernels.for_this_machine(size=6993)
    assert f"{len(kernel)} bytes  sha256 {sha256(kernel)}" in done.stdout
    assert "cmdline  console=ttyS0 serial=SN 42&x" in done.stdout.splitlines()


def test_shipped_script_without_224_gives_up_with_its_reason(
    served: tuple[VethLab, Path],
) -> None:
    lab, log = served
    done = run_script(lab, "--set", "ip=192.0.2.50")  # a DHCP value: `dhcp` succeeds
    # `exit 1` is iPXE's "the firmware's next boot device": run-script's exit 6, naming the line.
    exit_line = SHIPPED.read_text().splitlines().index("exit 1") + 1
    assert done.returncode == 6, done.stderr
    assert (f"{BASE}/ramboot.ipxe:{exit_line}: 'exit 1' asked to boot the next device"
            in done.stderr)
    assert done.stdout.count("reason: DHCP option 224 (boot script URL) is not set") == 3
    assert [r["path"] for r in httpd.requests(log)] == ["/ramboot.ipxe"]


def test_a_missing_script_url_is_an_error_naming_it(served: tuple[VethLab, Path]) -> None:
    lab, _log = served
    done = lab.client.run(
        [sys.executable, "-m", "ramboot_agent", "run-script", f"{BASE}/nope.ipxe", "--dry-run"],
        check=False, timeout=60, cwd=REPO,
    )
    assert done.returncode == 1
    assert f"{BASE}/nope.ipxe: HTTP 404" in done.stderr
