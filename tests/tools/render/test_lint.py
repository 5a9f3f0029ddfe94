"""`ramboot lint` uses the agent's parser: rendered scripts pass, broken ones name the line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ramboot.cli import cli
from ramboot.lint import parser_available
from tests.tools.render.helpers import FLEET, make_images

pytestmark = pytest.mark.skipif(not parser_available(), reason="ramboot_agent.ipxe not present")


def test_render_lints_and_rendered_scripts_and_plans_pass(tmp_path: Path) -> None:
    out = tmp_path / "out"
    images = make_images(tmp_path / "images")
    result = CliRunner().invoke(cli, ["render", str(FLEET), "--images", str(images),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "not linted" not in result.output
    documents = sorted(str(p) for p in (out / "http").rglob("*") if p.suffix in (".ipxe", ".json"))
    assert len(documents) == 22  # 6 stage 1, 9 stage 2, 7 per MAC
    lint = CliRunner().invoke(cli, ["lint", *documents])
    assert lint.exit_code == 0, lint.output
    assert "22 file(s) OK" in lint.output


LANDED = """
[servers]
tftp = "192.0.2.1"
http_base = "http://192.0.2.1/ramboot"
[network]
subnet = "192.0.2.0/24"
pool = ["192.0.2.100", "192.0.2.199"]
[[hosts]]
name = "kexec-host"
family = "x86_64"
macs = ["52:54:00:00:00:01"]
target = { kind = "kexec", kernel = "x86_64/bzImage", initrds = ["http://192.0.2.1/i.gz"] }
[[hosts]]
name = "rescue-host"
family = "rpi4"
serial = "1a2b3c4d"
target = { kind = "rescue" }
[[hosts]]
name = "script-host"
family = "x86_64"
macs = ["52:54:00:00:00:02"]
target = { kind = "script", url = "http://192.0.2.1/other.ipxe" }
"""


def test_render_validates_the_plans_of_kinds_the_agent_has(tmp_path: Path) -> None:
    """kexec, rescue (shell) and custom URLs: rendered, then accepted by the agent's validator."""
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(LANDED)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(inventory), "--images",
                                      str(make_images(tmp_path / "images")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 host(s), 5 iPXE script(s), 2 plan(s)" in result.output
    plans = sorted(str(p) for p in (out / "http" / "stage2").glob("*.json"))
    assert [Path(p).name for p in plans] == ["kexec-host.json", "rescue-host.json"]
    lint = CliRunner().invoke(cli, ["lint", *plans])
    assert lint.exit_code == 0, lint.output
    # And a broken one is caught: the kexec plan with its kernel's URL made relative nonsense.
    (out / "http/stage2/kexec-host.json").write_text('{"ramboot-plan": 1, "actions": '
                                                     '[{"action": "kexec"}]}')
    lint = CliRunner().invoke(cli, ["lint", *plans])
    assert lint.exit_code != 0
    assert "kexec-host.json: actions[0].kernel" in str(lint.exception), lint.exception


def test_render_refuses_plans_the_agent_refuses_naming_the_host(tmp_path: Path) -> None:
    """Plans are validated with the agent's own validator before the tree is swapped in."""
    inventory = tmp_path / "fleet.toml"
    inventory.write_text(FLEET.read_text().replace('disk = { bus = "mmc" }',
                                                   'disk = { bus = "floppy" }'))
    images = make_images(tmp_path / "images")
    result = CliRunner().invoke(cli, ["render", str(inventory), "--images", str(images),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "host 'pi-01': http/stage2/pi-01.json: disks.system.bus:" in message, message
    assert not (tmp_path / "out").exists()


def test_broken_script_names_file_and_line(tmp_path: Path) -> None:
    script = tmp_path / "bad.ipxe"
    script.write_text("#!ipxe\necho fine\necho ${unterminated\n")
    result = CliRunner().invoke(cli, ["lint", str(script)])
    assert result.exit_code != 0
    assert f"{script}:3" in str(result.exception), result.exception


def test_plans_are_checked_with_the_agent_validator(tmp_path: Path, repo: Path) -> None:
    good = sorted(str(p) for p in (repo / "examples" / "plans").glob("*.json"))
    bad = tmp_path / "plan.json"
    bad.write_text('{"ramboot-plan": 1, "actions": [{"action": "kexec", "kernel": 5}]}')
    assert CliRunner().invoke(cli, ["lint", *good]).exit_code == 0
    result = CliRunner().invoke(cli, ["lint", *good, str(bad)])
    assert result.exit_code != 0
    assert f"{bad}: actions[0].kernel: must be an object, not a number" in \
        str(result.exception)


def test_lint_names_what_the_agent_cannot_do_with_lines(tmp_path: Path) -> None:
    script = tmp_path / "fleet.ipxe"
    script.write_text("#!ipxe\nvcreate --tag 12 net0 || echo no-vlan\nsanboot --no-describe\n"
                      "sanboot iscsi:192.0.2.9::::iqn.2010-04.example:disk || exit 1\n"
                      "imgverify a.ipxe a.ipxe.sig\nchain http://x/y##params\n${cmd} x\n"
                      "echo ok ; login\n")
    result = CliRunner().invoke(cli, ["lint", str(script)])
    assert result.exit_code != 0
    message = str(result.exception)
    assert f"{script}:2: 'vcreate': the agent has no such command" in message
    assert f"{script}:3:" not in message  # sanboot without a URL: the local disk
    assert f"{script}:4: sanboot of a SAN URL" in message
    assert f"{script}:5:" not in message  # imgverify: the agent checks signatures
    assert f"{script}:6: chain: form parameters" in message
    assert f"{script}:7:" not in message  # a command known only when it runs
    assert f"{script}:8: login: there is no console" in message


def test_lint_passes_the_real_world_corpus_commands_it_has(tmp_path: Path) -> None:
    # The corpus uses commands the agent has, except where the test says so.
    corpus = Path(__file__).resolve().parents[2] / "agent" / "ipxe" / "corpus"
    result = CliRunner().invoke(cli, ["lint", str(corpus / "maas" / "config.local.ipxe"),
                                      str(corpus / "ironic" / "boot.ipxe")])
    assert result.exit_code == 0, result.output
    warewulf = corpus / "warewulf" / "localdisk.ipxe"
    result = CliRunner().invoke(cli, ["lint", str(warewulf)])
    line = warewulf.read_text().splitlines().index("failsafe:") + 1
    assert f"{warewulf}:{line}: 'failsafe:': the agent has no such command" in str(
        result.exception)


def test_lint_refuses_a_fifo_and_a_huge_file_without_reading_them(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.ipxe"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.ipxe"
    with huge.open("wb") as stream:
        stream.truncate(5 << 20)
    result = CliRunner().invoke(cli, ["lint", str(fifo), str(huge)])
    assert result.exit_code == 1
    assert f"{fifo}: not a regular file" in str(result.exception)
    assert f"{huge}: 5242880 bytes, larger than" in str(result.exception)


def test_lint_agrees_with_the_examples_and_with_the_image_digest_rule(tmp_path: Path) -> None:
    """Every example plan lints; an image proved by nothing is named, one proved by an
    authenticated bmap (bmap_digest, no digest of the file) passes."""
    examples = sorted(str(p) for p in (Path(__file__).resolve().parents[3]
                                       / "examples" / "plans").glob("*.json"))
    lint = CliRunner().invoke(cli, ["lint", *examples])
    assert lint.exit_code == 0, lint.output
    assert f"{len(examples)} file(s) OK" in lint.output
    digest = "sha256:" + "ab" * 32
    image = {"action": "image", "url": "d.img", "bmap": "d.bmap", "target": {"path": "/dev/sda"}}
    proved = tmp_path / "proved.json"
    proved.write_text(json.dumps({"ramboot-plan": 1,
                                  "actions": [{**image, "bmap_digest": digest}]}))
    unproved = tmp_path / "unproved.json"
    unproved.write_text(json.dumps({"ramboot-plan": 1, "actions": [image]}))
    assert CliRunner().invoke(cli, ["lint", str(proved)]).exit_code == 0
    lint = CliRunner().invoke(cli, ["lint", str(unproved)])
    assert lint.exit_code != 0
    assert ('unproved.json: actions[0].digest: required, unless "bmap" and "bmap_digest" are '
            "given") in str(lint.exception) + lint.output
