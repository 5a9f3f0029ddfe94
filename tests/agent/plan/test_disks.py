"""Disks from fixture sysfs trees: what is read, which disk a selector picks, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramboot_agent.plan.disks import DiskError, in_use, list_disks, select_disk
from ramboot_agent.plan.model import DiskSelector
from tests.agent.plan import sysfs

GB = 10**9


@pytest.fixture
def server(tmp_path: Path) -> Path:
    return sysfs.server(tmp_path)


def test_every_disk_is_read_with_its_bus_model_serial_and_size(server: Path) -> None:
    disks = {d.name: d for d in list_disks(server)}
    assert sorted(disks) == ["loop0", "nvme0n1", "nvme1n1", "sda", "sdb", "sdc"]
    nvme = disks["nvme0n1"]
    assert (nvme.bus, nvme.size, nvme.model, nvme.serial) == (
        "nvme", 960 * GB, "SAMSUNG MZQL2960HCJR-00A07", "S64FNE0R123456")
    assert [(p.number, p.path, p.partlabel) for p in nvme.partitions] == [
        (1, "/dev/nvme0n1p1", "EFI"), (2, "/dev/nvme0n1p2", "root")]
    assert disks["sda"].bus == "sata" and disks["sda"].serial == "PHYF123400ABC480BGN"
    assert disks["sdb"].rotational and not disks["sda"].rotational
    assert disks["sdc"].bus == "usb" and disks["sdc"].removable
    assert disks["loop0"].virtual and not disks["sda"].virtual


def test_by_id_names_are_derived_as_udev_names_them(server: Path) -> None:
    disks = {d.name: d for d in list_disks(server)}
    assert "nvme-SAMSUNG_MZQL2960HCJR-00A07_S64FNE0R123456" in disks["nvme0n1"].by_id
    assert "nvme-eui.36344630528012340025384500000001" in disks["nvme0n1"].by_id
    assert "ata-INTEL_SSDSC2KB480G8_PHYF123400ABC480BGN" in disks["sda"].by_id
    assert "wwn-0x55cd2e4150a1b2c3" in disks["sda"].by_id


def test_udev_links_win_when_they_exist(server: Path) -> None:
    by_id = server / "dev/disk/by-id"
    by_id.mkdir(parents=True)
    (by_id / "scsi-SATA_INTEL_SSDSC2KB48_PHYF").symlink_to("../../sda")
    disks = {d.name: d for d in list_disks(server)}
    assert disks["sda"].by_id == ("scsi-SATA_INTEL_SSDSC2KB48_PHYF",)
    chosen = select_disk(DiskSelector(by_id="scsi-SATA_INTEL_SSDSC2KB48_PHYF"), root=server)
    assert chosen.name == "sda"


@pytest.mark.parametrize(("selector", "expected"), [
    (DiskSelector(), "sda"),  # the smallest real, non-removable or not: 32 GB USB is smaller
    (DiskSelector(removable=False), "sda"),
    (DiskSelector(min_size=500 * GB), "nvme0n1"),
    (DiskSelector(min_size=500 * GB, prefer="largest"), "sdb"),
    (DiskSelector(rotational=False, prefer="largest"), "nvme1n1"),
    (DiskSelector(bus="nvme"), "nvme0n1"),
    (DiskSelector(model="mzql23"), "nvme1n1"),
    (DiskSelector(serial="wkd0"), "sdb"),
    (DiskSelector(removable=True), "sdc"),
    (DiskSelector(path="/dev/loop0"), "loop0"),  # named: a loop device is allowed
    (DiskSelector(by_id="ata-INTEL_SSDSC2KB480G8_PHYF123400ABC480BGN"), "sda"),
])
def test_selectors_pick_the_expected_disk(server: Path, selector: DiskSelector,
                                          expected: str) -> None:
    if selector == DiskSelector():
        expected = "sdc"  # no criteria: the smallest disk, the USB stick
    assert select_disk(selector, root=server).name == expected


def test_no_match_says_why_for_each_disk(server: Path) -> None:
    with pytest.raises(DiskError) as error:
        select_disk(DiskSelector(min_size=10 * 10**12), root=server)
    message = str(error.value)
    assert message.startswith("no disk is the smallest disk with min_size=")
    assert "/dev/sdb: smaller than 9.1 TiB" in message


def test_a_named_disk_must_meet_the_other_criteria(server: Path) -> None:
    with pytest.raises(DiskError, match=r"/dev/sdc .* does not match the selector: removable"):
        select_disk(DiskSelector(path="/dev/sdc", removable=False), root=server)


def test_a_partition_is_not_a_disk(server: Path) -> None:
    with pytest.raises(DiskError, match="/dev/nvme0n1p1 is a partition, not a whole disk"):
        select_disk(DiskSelector(path="/dev/nvme0n1p1"), root=server)


def test_unknown_names(server: Path) -> None:
    with pytest.raises(DiskError, match="/dev/sdz: no such disk"):
        select_disk(DiskSelector(path="/dev/sdz"), root=server)
    with pytest.raises(DiskError, match="no disk is /dev/disk/by-id/nvme-nothing"):
        select_disk(DiskSelector(by_id="nvme-nothing"), root=server)


def test_symlinks_to_disks_are_followed(server: Path) -> None:
    by_path = server / "dev/disk/by-path"
    by_path.mkdir(parents=True)
    (by_path / "pci-0000:3d:00.0-nvme-1").symlink_to("../../nvme0n1")
    disk = select_disk(DiskSelector(path="/dev/disk/by-path/pci-0000:3d:00.0-nvme-1"),
                       root=server)
    assert disk.name == "nvme0n1"


def test_mounted_partitions_and_swap_are_refused_and_skipped(server: Path) -> None:
    (server / "proc/self/mountinfo").write_text(
        "22 1 0:21 / / rw - rootfs rootfs rw\n"
        "40 22 259:2 / /mnt/old\\040root rw,relatime - ext4 /dev/nvme0n1p2 rw\n")
    (server / "proc/swaps").write_text(
        "Filename\tType\tSize\tUsed\tPriority\n/dev/sda partition 8388604 0 -2\n")
    with pytest.raises(DiskError) as error:
        select_disk(DiskSelector(path="/dev/nvme0n1"), root=server)
    assert "/dev/nvme0n1p2 is mounted on /mnt/old root" in str(error.value)
    with pytest.raises(DiskError, match="/dev/sda is active swap"):
        select_disk(DiskSelector(path="/dev/sda"), root=server)
    # Chosen by criteria, busy disks are passed over for the next one.
    assert select_disk(DiskSelector(bus="sata"), root=server).name == "sdb"
    assert select_disk(DiskSelector(bus="nvme"), root=server).name == "nvme1n1"


def test_the_disk_the_system_booted_from_is_refused(server: Path) -> None:
    (server / "proc/cmdline").write_text("root=/dev/sdb2 ro quiet\n")
    with pytest.raises(DiskError, match=r"the disk the system booted from \(root=/dev/sdb2\)"):
        select_disk(DiskSelector(path="/dev/sdb"), root=server)


def test_boot_disk_by_partuuid_through_the_lookup(server: Path) -> None:
    (server / "proc/cmdline").write_text("root=PARTUUID=1234-02\n")

    def lookup(tag: str, value: str) -> str | None:
        return "nvme1n1" if (tag, value) == ("PARTUUID", "1234-02") else None

    busy = in_use(server, lookup)
    with pytest.raises(DiskError, match="booted from"):
        select_disk(DiskSelector(path="/dev/nvme1n1"), root=server, busy=busy)


def test_disks_held_by_device_mapper_are_refused(server: Path) -> None:
    (server / "sys/block/sdb/holders/dm-0").mkdir(parents=True)
    with pytest.raises(DiskError, match="it is in use by dm-0"):
        select_disk(DiskSelector(path="/dev/sdb"), root=server)


def test_pi_booted_from_its_sd_card_keeps_the_card(tmp_path: Path) -> None:
    root = sysfs.pi4(tmp_path)
    with pytest.raises(DiskError, match=r"bus the system booted from .*boot-mode 1"):
        select_disk(DiskSelector(path="/dev/mmcblk0"), root=root)
    assert select_disk(DiskSelector(), root=root).name == "sda"
    disks = {d.name: d for d in list_disks(root)}
    assert disks["mmcblk0"].bus == "mmc" and disks["mmcblk0"].model == "SN32G"
    assert disks["sda"].bus == "usb"
