"""What localboot would boot, from the boot files installed systems have.

The fixtures are the files as their tools write them: Fedora 41's BLS entries
(kernel-install, one per kernel plus the rescue entry), Debian 12's grub.cfg
(grub-mkconfig, with the "Advanced options" submenu), Raspberry Pi OS
bookworm's config.txt and cmdline.txt (as first boot leaves them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ramboot_agent.plan.bootentries import EntryError, choose_bls, choose_grub, choose_pi

FIXTURES = Path(__file__).parent / "fixtures" / "boot"


def fedora_entries() -> dict[str, str]:
    directory = FIXTURES / "fedora/loader/entries"
    return {f"loader/entries/{p.name}": p.read_text() for p in sorted(directory.iterdir())}


def test_bls_picks_the_newest_version_not_the_rescue_entry() -> None:
    entry = choose_bls(fedora_entries())
    assert entry.kernel == "/vmlinuz-6.11.4-301.fc41.x86_64"
    assert entry.initrds == ("/initramfs-6.11.4-301.fc41.x86_64.img",)
    assert entry.cmdline == ("root=UUID=3c5e2b91-8a0e-4c0f-9f3e-1b2a3c4d5e6f ro "
                             "rootflags=subvol=root rhgb quiet")
    assert entry.title.startswith("Fedora Linux (6.11.4-301.fc41.x86_64) 41")


def test_bls_loader_conf_default_glob_wins() -> None:
    entry = choose_bls(fedora_entries(), "timeout 3\ndefault *6.9.9*\n")
    assert entry.kernel == "/vmlinuz-6.9.9-200.fc40.x86_64"


def test_bls_sort_key_orders_before_version() -> None:
    entries = {
        "loader/entries/a.conf": "title A\nsort-key zzz\nversion 9.0\nlinux /a\n",
        "loader/entries/b.conf": "title B\nsort-key aaa\nversion 1.0\nlinux /b\n"
                                 "initrd /b1 /b2\ninitrd /b3\noptions one\noptions two\n",
    }
    entry = choose_bls(entries)
    assert (entry.kernel, entry.initrds, entry.cmdline) == ("/b", ("/b1", "/b2", "/b3"),
                                                           "one two")


def test_bls_entries_without_linux_or_for_efi_are_skipped() -> None:
    with pytest.raises(EntryError, match="no Boot Loader Specification entry"):
        choose_bls({"loader/entries/uki.conf": "title UKI\nefi /EFI/Linux/x.efi\n",
                    "loader/entries/empty.conf": "# nothing\n"})


def test_grub_default_zero_is_the_first_menuentry() -> None:
    text = (FIXTURES / "debian/grub.cfg").read_text()
    entry = choose_grub(text, "grub.cfg")
    assert entry.title == "Debian GNU/Linux"
    assert entry.kernel == "/boot/vmlinuz-6.1.0-27-amd64"
    assert entry.initrds == ("/boot/initrd.img-6.1.0-27-amd64",)
    assert entry.cmdline == ("root=UUID=5d0a9c2e-1f4b-4e7a-9d3c-2b1a0f9e8d7c ro "
                             "console=ttyS0,115200n8 quiet")
    assert entry.fs_uuid == "5d0a9c2e-1f4b-4e7a-9d3c-2b1a0f9e8d7c"


@pytest.mark.parametrize(("default", "kernel", "args_end"), [
    ("1>2", "/boot/vmlinuz-6.1.0-26-amd64", "quiet"),
    ("Advanced options for Debian GNU/Linux>"
     "Debian GNU/Linux, with Linux 6.1.0-27-amd64 (recovery mode)",
     "/boot/vmlinuz-6.1.0-27-amd64", "ro single console=ttyS0,115200n8"),
    ("Debian GNU/Linux, with Linux 6.1.0-26-amd64", "/boot/vmlinuz-6.1.0-26-amd64", "quiet"),
    ("1", "/boot/vmlinuz-6.1.0-27-amd64", "quiet"),  # a submenu: its first entry
])
def test_grub_default_by_index_path_and_title(default: str, kernel: str, args_end: str) -> None:
    text = (FIXTURES / "debian/grub.cfg").read_text().replace(
        'set default="0"', f'set default="{default}"')
    entry = choose_grub(text, "grub.cfg")
    assert entry.kernel == kernel
    assert entry.cmdline.endswith(args_end)


def test_grub_saved_default_uses_the_saved_entry() -> None:
    text = (FIXTURES / "debian/grub.cfg").read_text().replace('set default="0"',
                                                             'set default="saved"')
    assert choose_grub(text, "g", saved_entry="1>2").kernel == "/boot/vmlinuz-6.1.0-26-amd64"
    assert choose_grub(text, "g").kernel == "/boot/vmlinuz-6.1.0-27-amd64"


def test_grub_top_level_variables_are_expanded_others_dropped() -> None:
    text = ("set kopts=\"console=ttyS0\"\nmenuentry 'x' {\n"
            "  linux /vmlinuz $kopts ${vt_handoff}\n  initrd /initrd.img\n}\n")
    entry = choose_grub(text, "g")
    assert entry.cmdline == "console=ttyS0"


def test_grub_without_a_linux_line_is_an_error() -> None:
    with pytest.raises(EntryError, match="menuentry 'UEFI Firmware Settings' has no linux line"):
        choose_grub("menuentry 'UEFI Firmware Settings' {\n fwsetup\n}\n", "g")


def test_raspberry_pi_os_config_txt_with_auto_initramfs() -> None:
    config = (FIXTURES / "raspios/config.txt").read_text()
    cmdline = (FIXTURES / "raspios/cmdline.txt").read_text()
    present = {"config.txt", "cmdline.txt", "kernel8.img", "initramfs8", "kernel_2712.img",
               "initramfs_2712", "bcm2711-rpi-4-b.dtb"}
    entry = choose_pi(config, {"cmdline.txt": cmdline}, "Raspberry Pi 4 Model B Rev 1.4",
                      present)
    assert entry.kernel == "kernel8.img"
    assert entry.initrds == ("initramfs8",)
    assert entry.cmdline.startswith("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02")


def test_pi_kernel_initramfs_cmdline_and_sections() -> None:
    config = ("[pi3]\nkernel=wrong.img\n[pi4]\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n"
              "cmdline=boot-args.txt\nos_prefix=current/\n[all]\narm_64bit=1\n")
    entry = choose_pi(config, {"current/boot-args.txt": "root=/dev/sda2  rootwait\n"})
    assert (entry.kernel, entry.initrds, entry.cmdline) == (
        "current/vmlinuz", ("current/initrd.img",), "root=/dev/sda2 rootwait")


def test_pi_cm4_section_applies_only_to_a_cm4() -> None:
    config = "[cm4]\nkernel=cm4.img\n[all]\n"
    assert choose_pi(config, {}, "Raspberry Pi Compute Module 4 Rev 1.0").kernel == "cm4.img"
    assert choose_pi(config, {}, "Raspberry Pi 4 Model B Rev 1.4").kernel == "kernel8.img"
