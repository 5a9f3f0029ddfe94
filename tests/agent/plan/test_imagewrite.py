"""DeviceWriter on a plain file standing in for a disk: gathering, bounds, writeback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.plan import imagewrite
from ramboot_agent.plan.context import ActionError
from ramboot_agent.plan.imagewrite import DeviceWriter

MiB = 1 << 20


def writer_on(path: Path, size: int) -> tuple[DeviceWriter, int]:
    path.write_bytes(b"")
    os.truncate(path, size)
    fd = os.open(path, os.O_RDWR)
    return DeviceWriter(fd, str(path), size), fd


def test_small_and_large_pieces_land_at_their_offsets(tmp_path: Path) -> None:
    data = os.urandom(10 * MiB + 12345)
    writer, fd = writer_on(tmp_path / "disk", 16 * MiB)
    try:
        at = 0
        for size in (100, 4096, 2 * MiB, 7, 5 * MiB, 3 * MiB):  # gathered and direct writes
            writer.accept(memoryview(data)[at:at + size])
            at += size
        writer.accept(memoryview(data)[at:])
        writer.flush_buffer()
        assert writer.written == writer.position == len(data)
    finally:
        os.close(fd)
    assert (tmp_path / "disk").read_bytes()[:len(data)] == data


def test_a_byte_past_the_end_of_the_disk_is_refused(tmp_path: Path) -> None:
    writer, fd = writer_on(tmp_path / "disk", MiB)
    try:
        writer.accept(memoryview(bytes(MiB - 1)))
        with pytest.raises(ActionError, match="larger than the target"):
            writer.accept(memoryview(b"ab"))
    finally:
        os.close(fd)


def test_writeback_starts_behind_the_writes_not_only_at_fsync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    advice: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def recorded(fd: int, offset: int, length: int, what: int) -> None:
        advice.append((offset, length, what))
        real(fd, offset, length, what)

    monkeypatch.setattr(os, "posix_fadvise", recorded)
    writer, fd = writer_on(tmp_path / "disk", 80 * MiB)
    try:
        for at in range(0, 80 * MiB, MiB):
            writer.store(memoryview(bytes(MiB)), at)
    finally:
        os.close(fd)
    step = imagewrite.WRITEBACK_EVERY
    assert advice == [(0, step, os.POSIX_FADV_DONTNEED), (step, step, os.POSIX_FADV_DONTNEED)]


def test_splice_moves_pipe_bytes_to_their_offset_and_stops_at_the_end(tmp_path: Path) -> None:
    writer, fd = writer_on(tmp_path / "disk", 3 * MiB)
    read, write = os.pipe()
    try:
        writer.position = MiB
        os.write(write, b"x" * 1000)
        assert writer.splice_from(read) == 1000
        assert writer.position == MiB + 1000
        writer.position = 3 * MiB  # the disk is full: one more byte is too many
        os.write(write, b"y")
        with pytest.raises(ActionError, match="larger than the target"):
            writer.splice_from(read)
        os.close(write)
        write = -1
        assert writer.splice_from(read) == 0
    finally:
        for each in (read, write, fd):
            if each >= 0:
                os.close(each)
    assert (tmp_path / "disk").read_bytes()[MiB:MiB + 1001] == b"x" * 1000 + b"\0"


def test_only_a_plain_writer_without_a_hash_may_splice(tmp_path: Path) -> None:
    writer, fd = writer_on(tmp_path / "disk", MiB)
    hashed: Any = DeviceWriter(fd, "disk", MiB, image_hash="sha256")
    try:
        assert writer.can_splice and not hashed.can_splice
    finally:
        os.close(fd)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", None])
def test_the_image_is_hashed_once_by_the_digest_the_plan_names(
        tmp_path: Path, algorithm: str | None) -> None:
    """sha256: the fetcher's own hasher; sha512: only its own (the fetcher's sha256 is
    not computed, and the sink says so); none (an authenticated bmap): no hashing."""
    import hashlib

    data = os.urandom(3 * MiB + 17)
    writer, fd = writer_on(tmp_path / "disk", 4 * MiB)
    try:
        sink = imagewrite.ImageSink("http://192.0.2.1/os.img", writer, algorithm)
        for at in range(0, len(data), 64 * 1024):
            sink.write(data[at:at + 64 * 1024])
        sink.finish()
    finally:
        os.close(fd)
    assert (tmp_path / "disk").read_bytes()[:len(data)] == data
    expected = hashlib.new(algorithm, data).hexdigest() if algorithm else None
    assert sink.served_digest() == expected
    assert sink.hashed is (algorithm == "sha256")
    fetcher_hash = hashlib.sha256(data if algorithm == "sha256" else b"").hexdigest()
    assert sink.hasher.hexdigest() == fetcher_hash
