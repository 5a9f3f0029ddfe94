"""Flow control, command status, images and URL resolution, with real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe import Outcome
from ramboot_agent.ipxe.uri import resolve
from tests.lib import kernels


def test_failed_command_ends_script_unless_handled(make_harness: Any) -> None:
    harness = make_harness()
    with pytest.raises(ScriptError) as error:
        harness.run("#!ipxe\necho one\niseq a b || echo handled\n\niseq a b\necho never\n")
    assert harness.lines == ["one", "handled"]
    assert error.value.line == 5 and "iseq" in error.value.message


def test_connectors_follow_the_last_status(make_harness: Any) -> None:
    harness = make_harness()
    harness.run("#!ipxe\n"
                "iseq a b && echo no1 || echo yes1\n"
                "iseq a a && echo yes2 || echo no2\n"
                "iseq a b && echo no3 ||\n"
                "iseq a b ; echo yes4\n"
                "isset ${unset} || isset ${also} || echo yes5\n")
    assert harness.lines == ["yes1", "yes2", "yes4", "yes5"]


def test_goto_labels_and_loops(make_harness: Any) -> None:
    harness = make_harness()
    harness.run("#!ipxe\nset n:int32 0\n:loop inc n\necho n=${n}\n"
                "iseq ${n} 3 || goto loop\ngoto end ; echo skipped\necho skipped\n:end\n")
    assert harness.lines == ["n=1", "n=2", "n=3"]


def test_unknown_label_and_unknown_command(make_harness: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    harness = make_harness()
    with pytest.raises(ScriptError) as error:
        harness.run("#!ipxe\n\ngoto nowhere\n")
    assert error.value.line == 3 and "nowhere" in error.value.message
    harness.run("#!ipxe\ngoto nowhere || echo caught\n")
    assert harness.lines == ["caught"]
    # iPXE's "command not found": a status `||` catches, printed, and a warning naming URL:line.
    harness = make_harness()
    harness.run("#!ipxe\necho a\nvcreate --tag 12 net0 || echo caught\necho after\n")
    assert harness.lines == ["a", "vcreate: command not found", "caught", "after"]
    assert "file:///srv/test.ipxe:3: vcreate: command not found" in caplog.text
    with pytest.raises(ScriptError) as error:
        harness.run("#!ipxe\necho a\nfrobnicate\necho never\n")
    assert error.value.line == 3 and "frobnicate: command not found" in error.value.message


def test_exit_status(make_harness: Any, tmp_path: Path) -> None:
    harness = make_harness()
    assert harness.run("#!ipxe\necho x\n").outcome is Outcome.EXITED
    # exit is iPXE's return to the firmware, i.e. "boot the next device":
    # exit 1 in Foreman's and netboot.xyz's local boot, plain exit in Sidero's.
    assert harness.run("#!ipxe\nexit\necho never\n").outcome is Outcome.LOCALBOOT
    assert harness.run("#!ipxe\nexit 0\necho never\n").outcome is Outcome.LOCALBOOT
    harness = make_harness()
    result = harness.run("#!ipxe\necho x\nexit 2\necho never\n")
    assert result.outcome is Outcome.LOCALBOOT and harness.lines == ["x"]
    assert result.localboot is not None
    assert (result.localboot.line, result.localboot.status) == (3, 2)
    assert result.localboot.describe() == ("file:///srv/test.ipxe:3: 'exit 2' asked to boot "
                                           "the next device (exit status 2)")
    # exit stops the line (its || is not run), as iPXE's shell_stop() does.
    harness = make_harness()
    assert harness.run("#!ipxe\nexit 3 || echo no\n").outcome is Outcome.LOCALBOOT
    assert harness.lines == []
    # A chained script's exit N reaches the top unless a caller's || catches it;
    # a later failure is a broken script again.
    sub = tmp_path / "sub.ipxe"
    sub.write_text("#!ipxe\nexit 4\n")
    result = harness.run(f"#!ipxe\necho in\nchain {sub.as_uri()}\n")
    assert result.outcome is Outcome.LOCALBOOT and result.localboot is not None
    assert (result.localboot.url, result.localboot.line) == (sub.as_uri(), 2)
    assert harness.run(f"#!ipxe\nchain {sub.as_uri()} || echo caught\necho on\n").outcome \
        is Outcome.EXITED
    assert harness.lines[-2:] == ["caught", "on"]
    sub.write_text("#!ipxe\nexit 0\n")  # a chained script's exit 0 only returns
    assert harness.run(f"#!ipxe\nchain {sub.as_uri()}\necho back\n").outcome is Outcome.EXITED
    with pytest.raises(ScriptError, match="iseq"):
        harness.run(f"#!ipxe\nchain {sub.as_uri()} || echo caught\niseq a b\n")


def test_echo_and_set_join_words(make_harness: Any) -> None:
    harness = make_harness()
    harness.run("#!ipxe\nset v  a   b\necho -n [${v}]\necho  x   y\necho -- -n\n"
                "echo x -n\nset v\nisset ${v} || echo cleared\n")
    assert harness.lines == ["[a b]x y", "-n", "x -n", "cleared"]


def test_typed_settings_and_bad_store(make_harness: Any) -> None:
    harness = make_harness({"mac": "52:54:00:aa:bb:cc"})
    harness.run("#!ipxe\nset i:uint8 0xfe\ninc i 3\necho ${i} ${i:int8}\n"
                "set m:hex ${mac}\necho ${m:hexhyp}\n"
                "set bad:ipv4 not-an-ip || echo rejected\nset s 5\ninc s || echo not-int\n")
    assert harness.lines == ["0x1 1", "52-54-00-aa-bb-cc", "rejected", "not-int"]


def test_dhcp_follows_the_lease(make_harness: Any) -> None:
    harness = make_harness()
    harness.run("#!ipxe\ndhcp || echo no-lease\n")
    assert harness.lines == ["no-lease"]
    leased = make_harness(options={224: b"http://192.0.2.1/x"})
    leased.run("#!ipxe\ndhcp && echo lease ${224}\n")
    assert leased.lines == ["lease http://192.0.2.1/x"]


def test_menus_take_what_ipxe_highlights(make_harness: Any) -> None:
    # show_menu(): the --default label when it is an item, else (without
    # --default) the item marked --default, else the first item.
    harness = make_harness()
    harness.run("#!ipxe\nmenu Title\nitem a A\nitem --default b B\nchoose pick && echo ${pick}\n"
                "menu Again\nitem --gap G\nitem\nitem a A\nitem c C\nchoose pick && echo ${pick}\n"
                "menu M\nitem a A\nitem --default c C\nchoose --default zz pick && echo ${pick}\n"
                "menu M\nitem a A\nitem c C\nchoose --default c pick && echo ${pick}\n"
                "menu Empty\nitem --gap only a gap\nchoose pick || echo no-items\n"
                "prompt --timeout 1000 Press a key || echo timeout\n")
    assert harness.lines == ["b", "a", "a", "c", "no-items", "Press a key", "timeout"]


def test_shell_reboot_poweroff_end_everything(make_harness: Any) -> None:
    for command, outcome in [("shell", Outcome.SHELL), ("reboot", Outcome.REBOOT),
                             ("poweroff", Outcome.POWEROFF)]:
        assert make_harness().run(f"#!ipxe\n{command}\necho never\n").outcome is outcome


def test_cpuid_uses_cpu_flags(make_harness: Any) -> None:
    script = "#!ipxe\ncpuid --ext 29 && set arch x86_64 || set arch i386\necho ${arch}\n"
    yes = make_harness(cpu_flags=frozenset({"lm"}))
    no = make_harness(cpu_flags=frozenset())
    yes.run(script)
    no.run(script)
    assert (yes.lines, no.lines) == (["x86_64"], ["i386"])


@pytest.mark.parametrize(("base", "ref", "expected"), [
    ("http://h/a/b/c.ipxe", "d.ipxe", "http://h/a/b/d.ipxe"),
    ("http://h/a/b/c.ipxe", "../d?x=1", "http://h/a/d?x=1"),
    ("http://h/a/b/c.ipxe", "/top/k", "http://h/top/k"),
    ("http://h/a/b/c.ipxe?old=1", "?uuid=5&mac=aa", "http://h/a/b/c.ipxe?uuid=5&mac=aa"),
    ("http://h/a/c.ipxe", "../../../x", "http://h/x"),
    ("tftp://192.0.2.1/boot/c.ipxe", "k/vmlinuz", "tftp://192.0.2.1/boot/k/vmlinuz"),
    ("http://h/a/c.ipxe", "//other/p", "http://other/p"),
    ("http://h/a/c.ipxe", "https://x/y/./z", "https://x/y/./z"),
    ("file:///srv/x/c.ipxe", "./k", "file:///srv/x/k"),
])
def test_url_resolution(base: str, ref: str, expected: str) -> None:
    assert resolve(base, ref) == expected


KERNEL = kernels.bzimage(b"kernel bytes")


def _serve_boot_files(root: Path) -> None:
    (root / "boot").mkdir()
    (root / "boot" / "vmlinuz").write_bytes(KERNEL)
    (root / "boot" / "initrd.img").write_bytes(b"070701 initrd bytes")
    (root / "boot" / "extra.cpio").write_bytes(b"070701 extra")


def test_chain_nested_script_relative_urls_and_boot(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _serve_boot_files(root)
    (root / "menu.ipxe").write_text(
        "#!ipxe\necho in menu\nchain boot/sub.ipxe?mac=${mac:hexhyp} || echo sub failed\n"
        "echo back ${from_sub}\nkernel boot/vmlinuz console=ttyS0 root=/dev/ram0\n"
        "initrd boot/initrd.img\nimgfetch --name extra boot/extra.cpio\nboot\n")
    (root / "boot" / "sub.ipxe").write_text(
        "#!ipxe\nset from_sub yes\necho sub sees ${mac}\nexit 0\necho never\n")
    harness = make_harness({"mac": "52:54:00:00:00:01"})
    result = harness.interpreter.run_url(f"{base}/menu.ipxe")
    assert harness.lines == ["in menu", "sub sees 52:54:00:00:00:01", "back yes"]
    assert harness.fetcher.urls[1] == f"{base}/boot/sub.ipxe?mac=52-54-00-00-00-01"
    assert result.outcome is Outcome.BOOTED
    spec = harness.recorder.boots[0]
    assert spec.kernel.read_bytes() == KERNEL
    assert [p.read_bytes() for p in spec.initrds] == [b"070701 initrd bytes", b"070701 extra"]
    assert spec.cmdline == "console=ttyS0 root=/dev/ram0"
    fetched = [details["url"] for event, details in harness.recorder.events if event == "fetch"]
    assert fetched == harness.fetcher.urls


def test_failed_fetch_is_a_status_and_names_the_line(make_harness: Any, http_root: Any) -> None:
    _, base = http_root
    harness = make_harness()
    harness.run(f"#!ipxe\nchain {base}/missing.ipxe || echo handled\n")
    assert harness.lines == ["handled"]
    with pytest.raises(ScriptError) as error:
        harness.run(f"#!ipxe\n\nkernel {base}/missing\n")
    assert error.value.line == 3 and "missing" in error.value.message


def test_chain_replace_does_not_return(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    (root / "next.ipxe").write_text("#!ipxe\necho replaced\n")
    harness = make_harness()
    harness.run(f"#!ipxe\nchain --replace {base}/next.ipxe\necho never\n")
    assert harness.lines == ["replaced"]


def test_initrd_names_in_cmdline_select_nothing(make_harness: Any, http_root: Any) -> None:
    # As real iPXE (test_differential.py): every loaded image, in download
    # order; initrd= stays on the command line for the kernel.
    root, base = http_root
    _serve_boot_files(root)
    harness = make_harness()
    harness.run(f"#!ipxe\nimgfetch {base}/boot/extra.cpio\ninitrd {base}/boot/initrd.img\n"
                f"chain {base}/boot/vmlinuz initrd=initrd.img quiet\n")
    spec = harness.recorder.boots[0]
    assert [p.read_bytes() for p in spec.initrds] == [b"070701 extra", b"070701 initrd bytes"]
    assert spec.cmdline == "initrd=initrd.img quiet"


def test_initrd_name_matching_nothing_boots_with_every_initrd(
        make_harness: Any, http_root: Any, caplog: pytest.LogCaptureFixture) -> None:
    # BIOS iPXE ignores initrd=: netboot.xyz's initrd=initrd.magic, Foreman's
    # initrd=initrd.img beside an initrd.gz.
    root, base = http_root
    _serve_boot_files(root)
    harness = make_harness()
    harness.run(f"#!ipxe\nkernel {base}/boot/vmlinuz initrd=nope quiet\n"
                f"initrd {base}/boot/initrd.img\nimgfetch {base}/boot/extra.cpio\nboot\n")
    spec = harness.recorder.boots[0]
    assert [p.read_bytes() for p in spec.initrds] == [b"070701 initrd bytes", b"070701 extra"]
    assert spec.cmdline == "initrd=nope quiet"
    assert ("initrd=nope names no loaded image: booting with every loaded initrd, as "
            "iPXE does: initrd.img, extra.cpio") in caplog.text


def test_a_json_initrd_is_data_for_the_kernel_not_a_plan(make_harness: Any, http_root: Any) -> None:
    # `initrd config.json /etc/app/config.json`: only `chain` runs a plan; an
    # initrd that starts with "{" (a config file, or random bytes) is booted with.
    root, base = http_root
    _serve_boot_files(root)
    config = b'{"ramboot-plan": 1, "actions": []}'
    (root / "boot" / "config.json").write_bytes(config)
    harness = make_harness()
    harness.run(f"#!ipxe\nkernel {base}/boot/vmlinuz quiet\n"
                f"initrd {base}/boot/initrd.img\ninitrd {base}/boot/config.json\nboot\n")
    spec = harness.recorder.boots[0]
    assert [p.read_bytes() for p in spec.initrds] == [b"070701 initrd bytes", config]


def test_what_is_not_a_kernel_is_not_booted(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    (root / "404.html").write_text("<!DOCTYPE html>\n<html><body>Not Found</body></html>\n")
    (root / "arm64").write_bytes(kernels.arm64_image())
    harness = make_harness({"buildarch": "x86_64"})
    harness.run(f"#!ipxe\nchain {base}/404.html || echo refused\n"
                f"chain {base}/arm64 || echo wrong-arch\n")
    assert harness.lines == ["refused", "wrong-arch"] and harness.recorder.boots == []
    with pytest.raises(ScriptError) as error:
        harness.run(f"#!ipxe\nkernel {base}/404.html\nboot\n")
    assert error.value.line == 3
    assert f"{base}/404.html: not a kernel: an HTML page" in error.value.message


def test_post_params_are_refused(make_harness: Any) -> None:
    with pytest.raises(ScriptError, match="params"):
        make_harness().run("#!ipxe\nparams\nparam mac ${mac}\nchain http://127.0.0.1:9/x##params\n")


def test_inc_takes_a_signed_increment_as_strtoul_does(make_harness: Any) -> None:
    # iPXE's parse_integer is strtoul: "-7" is 2^32 - 7, which wraps in a
    # setting of 32 bits or fewer (measured in iPXE: the differential tests).
    harness = make_harness()
    harness.run("#!ipxe\nset y:int32 5\ninc y -7\nset u:uint8 1\ninc u +2\ninc u -4\n"
                "set z:uint16 0\necho = ${y} ${u} ${u:int8} ${z}\ninc y 1x || echo bad\n")
    assert harness.lines == ["= -2 0xff -1 0x0", "bad"]


def test_options_are_parsed_as_ipxe_getopt_does(make_harness: Any) -> None:
    # An expanded "-2" and a lone "-" are options (unrecognised), a flag
    # given "=value" is an error; "--" ends the options (checked against iPXE).
    harness = make_harness()
    harness.run("#!ipxe\nset d -2\necho ${d} || echo dash\necho - x || echo lone\n"
                "echo --n=1 || echo flag-value\necho -- -n ${d}\n")
    assert harness.lines == ["dash", "lone", "flag-value", "-n -2"]
