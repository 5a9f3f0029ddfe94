"""The image action against a real HTTP server and real loop devices, with faults injected.

Connections are cut at random (seeded) offsets, bytes corrupted, Range
ignored, the object replaced between requests; sparse writes are compared
with `bmaptool copy` of the same image and bmap onto another loop device.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ramboot_agent.events import Reporter
from ramboot_agent.fetch import Fetcher
from ramboot_agent.plan.bmap import parse_bmap
from ramboot_agent.plan.context import Context
from ramboot_agent.plan.runner import PlanFailed, run_document
from tests.lib.imageserver import ImageServer, image_server
from tests.lib.loopdev import loop_device, require_loop

pytestmark = pytest.mark.slow

MiB = 1 << 20
DISK = 64 * MiB
IMAGE = 24 * MiB


def sparse_image(path: Path, size: int, seed: int = 8) -> list[tuple[int, int]]:
    """A file of `size` bytes with data in a few extents and holes between; the extents."""
    rng = random.Random(seed)
    extents = [(0, 3 * MiB + 4096), (5 * MiB, 1 * MiB), (9 * MiB + 8192, 5 * MiB),
               (size - 2 * MiB, 2 * MiB)]
    with path.open("wb") as stream:
        stream.truncate(size)
        for start, length in extents:
            stream.seek(start)
            # Compressible but not trivial: repeated random 4 KiB blocks.
            blocks = [rng.randbytes(4096) for _ in range(8)]
            stream.write(b"".join(rng.choice(blocks) for _ in range(length // 4096)))
    return extents


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def device_bytes(device: str, length: int, offset: int = 0) -> bytes:
    with Path(device).open("rb") as stream:
        stream.seek(offset)
        return stream.read(length)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("www")
    sparse_image(root / "disk.img", IMAGE)
    for tool, suffix in (("gzip", "gz"), ("xz", "xz"), ("zstd", "zst")):
        if shutil.which(tool) is None:
            continue
        with (root / f"disk.img.{suffix}").open("wb") as out:
            subprocess.run([tool, "-c", str(root / "disk.img")], stdout=out, check=True)
    if shutil.which("bmaptool"):
        subprocess.run(["bmaptool", "create", "-o", str(root / "disk.img.bmap"),
                        str(root / "disk.img")], check=True, capture_output=True)
    return root


@pytest.fixture
def server(images: Path) -> Iterator[ImageServer]:
    with image_server(images) as running:
        yield running


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    require_loop()
    with loop_device(tmp_path / "disk.raw", DISK) as device:
        yield device


def context(tmp_path: Path) -> tuple[Context, Reporter]:
    reporter = Reporter({"mac": "52:54:00:00:00:01"})
    fetcher = Fetcher(retries=2, timeout=5, sleep=lambda _s: None)
    work = tmp_path / "run"
    work.mkdir(exist_ok=True)
    return Context(reporter=reporter, fetcher=fetcher, out=io.StringIO(), runtime_dir=work,
                   base_url="http://unused/"), reporter


def image_plan(url: str, digest: str, device: str, **extra: Any) -> bytes:
    action = {"action": "image", "url": url, "digest": f"sha256:{digest}",
              "target": {"path": device}, **extra}
    return json.dumps({"ramboot-plan": 1, "actions": [action]}).encode()


def done_details(reporter: Reporter) -> dict[str, Any]:
    done = [e for e in reporter.recent(500) if e["event"] == "action-done"]
    assert len(done) == 1, [e["event"] for e in reporter.recent(500)]
    return dict(done[0]["details"])


@pytest.mark.parametrize("name", ["disk.img", "disk.img.gz", "disk.img.xz", "disk.img.zst"])
def test_cut_connections_resume_and_nothing_is_written_twice(
        name: str, images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    if not (images / name).exists():
        pytest.skip(f"{name}: compressor not installed")
    size = (images / name).stat().st_size
    rng = random.Random(name)
    cuts = sorted(rng.randrange(1, size) for _ in range(3))
    server.faults.cut_at = list(cuts)
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url(f"/{name}"), sha256(images / name), disk, verify=True),
                 "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert device_bytes(disk, IMAGE) == (images / "disk.img").read_bytes()
    assert details["written_bytes"] == IMAGE  # resumed: no byte written twice
    assert details["restarts"] == 0
    assert details["format"] == {"img": "raw", "gz": "gzip", "xz": "xz",
                                 "zst": "zstd"}[name.rsplit(".", 1)[-1]]
    ranges = [r for (_m, _p, r, _s) in server.requests if r]
    assert ranges == [f"bytes={cut}-" for cut in cuts]
    assert details["verified"].startswith(f"{IMAGE} bytes read back")


def test_a_corrupted_byte_is_a_failure_and_the_disk_is_invalidated(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    server.faults.corrupt = {7 * MiB + 3: 0x55}
    ctx, reporter = context(tmp_path)
    with pytest.raises(PlanFailed, match=r"actions\[0\] \(image\): .*sha256 is [0-9a-f]{64}, "
                                         r"the plan expects"):
        run_document(image_plan(server.url("/disk.img"), sha256(images / "disk.img"), disk),
                     "http://unused/plan.json", ctx)
    assert "action-done" not in [e["event"] for e in reporter.recent(500)]
    assert device_bytes(disk, MiB) == bytes(MiB)  # nothing half-installed boots


def test_a_server_ignoring_range_makes_a_clean_restart(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    server.faults.cut_at = [(images / "disk.img.zst").stat().st_size // 2]
    server.faults.ignore_range = True
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url("/disk.img.zst"), sha256(images / "disk.img.zst"), disk),
                 "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert details["restarts"] == 1
    assert [s for (_m, _p, _r, s) in server.requests] == [200, 200]
    assert device_bytes(disk, IMAGE) == (images / "disk.img").read_bytes()


def test_a_replaced_object_is_never_spliced(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    original = (images / "disk.img").read_bytes()
    other = bytearray(original)
    other[12 * MiB:12 * MiB + 16] = b"another version!"
    server.faults.cut_at = [8 * MiB]
    server.faults.replace_after_first = {"/disk.img": bytes(other)}
    ctx, reporter = context(tmp_path)
    with pytest.raises(PlanFailed, match="the plan expects"):
        run_document(image_plan(server.url("/disk.img"), sha256(images / "disk.img"), disk),
                     "http://unused/plan.json", ctx)
    # If-Range with the old ETag: the server sent the new object whole (200), not a range.
    assert [s for (_m, _p, _r, s) in server.requests] == [200, 200]
    assert "action-done" not in [e["event"] for e in reporter.recent(500)]


def test_an_image_larger_than_the_disk_is_refused_before_writing(
        tmp_path: Path, disk: str) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "big.img").write_bytes(b"\1" * (DISK + MiB))
    with Path(disk).open("r+b") as stream:
        stream.write(b"KEEP" * 1024)
    with image_server(root) as server:
        ctx, _ = context(tmp_path)
        with pytest.raises(PlanFailed) as error:
            run_document(image_plan(server.url("/big.img"), sha256(root / "big.img"), disk),
                         "http://unused/plan.json", ctx)
    assert f"the image is larger than the target {disk} (64.0 MiB, {DISK} bytes)" \
        in str(error.value)
    assert device_bytes(disk, 4096) == b"KEEP" * 1024


def test_a_mounted_disk_is_refused(tmp_path: Path, images: Path, server: ImageServer,
                                   disk: str) -> None:
    subprocess.run(["mke2fs", "-q", "-t", "ext4", disk], check=True)
    point = tmp_path / "mnt"
    point.mkdir()
    subprocess.run(["mount", disk, str(point)], check=True)
    try:
        ctx, _ = context(tmp_path)
        with pytest.raises(PlanFailed, match=f"refusing {disk} .*: {disk} is mounted on {point}"):
            run_document(image_plan(server.url("/disk.img"), sha256(images / "disk.img"), disk),
                         "http://unused/plan.json", ctx)
    finally:
        subprocess.run(["umount", str(point)], check=True)


# --- bmap ------------------------------------------------------------------------------------


def require_bmaptool() -> None:
    if shutil.which("bmaptool") is None:
        pytest.skip("bmaptool is not installed (apt package bmap-tools)")


@pytest.mark.parametrize("name", ["disk.img", "disk.img.zst"])
def test_bmap_writes_what_bmaptool_copy_writes(name: str, images: Path, server: ImageServer,
                                               disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    bmap = (images / "disk.img.bmap").read_text()
    mapped = parse_bmap(bmap.encode(), "bmap").mapped_bytes
    # Both disks start with the same non-zero pattern: unmapped ranges must stay as they are.
    pattern = b"old data " * (DISK // 9) + b"x" * (DISK % 9)
    Path(disk).write_bytes(pattern)
    server.faults.cut_at = [3 * MiB + 5, 9 * MiB + 77]
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url(f"/{name}"), sha256(images / name), disk,
                            bmap=server.url("/disk.img.bmap"), verify=True),
                 "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert details["written_bytes"] == mapped
    assert details["mapped_bytes"] == mapped
    assert "bmap ranges" in details["verified"]
    with loop_device(tmp_path / "peer.raw", DISK) as peer:
        Path(peer).write_bytes(pattern)
        subprocess.run(["bmaptool", "copy", "--bmap", str(images / "disk.img.bmap"),
                        server.url(f"/{name}"), peer], check=True, capture_output=True)
        assert device_bytes(disk, DISK) == device_bytes(peer, DISK)


def _rewrite_bmap(text: str, change: Any) -> str:
    """A bmap edited by `change`, its own checksum made right again."""
    import re

    edited = change(text)
    old = re.search(r"<BmapFileChecksum>\s*([0-9a-f]{64})", edited)
    assert old is not None
    zeroed = edited.replace(old.group(1), "0" * 64)
    return zeroed.replace("0" * 64, hashlib.sha256(zeroed.encode()).hexdigest(), 1)


def test_a_raw_image_with_a_bmap_is_fetched_by_ranges_not_whole(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    bmap = parse_bmap((images / "disk.img.bmap").read_bytes(), "bmap")
    server.faults.cut_at = [9 * MiB + 8192 + 777]  # inside a range: resumed within it
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url("/disk.img"), sha256(images / "disk.img"), disk,
                            bmap=server.url("/disk.img.bmap"), verify=True),
                 "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert details["served_bytes"] < IMAGE - 6 * MiB  # the 8 MiB hole was not downloaded
    assert details["written_bytes"] == bmap.mapped_bytes
    assert device_bytes(disk, IMAGE) == (images / "disk.img").read_bytes()
    ranged = [r for (_m, p, r, s) in server.requests if p == "/disk.img"]
    assert ranged[0] == "" and len(ranged) >= 3 and all(r.startswith("bytes=") for r in ranged[1:])
    assert f"bytes={9 * MiB + 8192 + 777}-" in ranged  # the resume inside a span


def test_a_server_ignoring_range_makes_the_bmap_download_a_stream(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    server.faults.ignore_range = True
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url("/disk.img"), sha256(images / "disk.img"), disk,
                            bmap=server.url("/disk.img.bmap")), "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert details["served_bytes"] == IMAGE and details["restarts"] == 1
    assert device_bytes(disk, IMAGE) == (images / "disk.img").read_bytes()


def _first_checksum_changed(text: str) -> str:
    start = text.index('chksum="') + len('chksum="')
    return text[:start] + ("0" if text[start] != "0" else "1") + text[start + 1:]


def _ranges_dropped(text: str) -> str:
    """The first two ranges left out (and MappedBlocksCount kept consistent)."""
    import re

    ranges = re.findall(r"<Range chksum=\"[0-9a-f]+\">\s*([0-9]+)(?:-([0-9]+))?\s*</Range>",
                        text)
    dropped = sum(int(b or a) - int(a) + 1 for a, b in ranges[:2])
    count = re.search(r"<MappedBlocksCount>\s*(\d+)\s*</MappedBlocksCount>", text)
    assert count is not None
    text = re.sub(r"<Range .*?</Range>", "", text, count=2)
    return text.replace(count.group(0), f"<MappedBlocksCount> {int(count.group(1)) - dropped} "
                        "</MappedBlocksCount>")


@pytest.mark.parametrize(("change", "message"), [
    (_first_checksum_changed, r"bmap range 0 \(image bytes 0-"),
    (_ranges_dropped, "are outside the bmap's ranges but not zeros: the bmap does not "
                      "describe this image|sha256 is [0-9a-f]+ \\(counting the holes between "
                      "the bmap's ranges as zeros\\), the plan expects"),
])
def test_a_bmap_that_does_not_fit_the_image_is_a_failure(
        change: Any, message: str, images: Path, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    root = tmp_path / "www"
    root.mkdir()
    shutil.copyfile(images / "disk.img", root / "disk.img")
    text = (images / "disk.img.bmap").read_text()
    (root / "disk.img.bmap").write_text(_rewrite_bmap(text, change))
    with image_server(root) as server:
        ctx, reporter = context(tmp_path)
        with pytest.raises(PlanFailed, match=message):
            run_document(image_plan(server.url("/disk.img"), sha256(root / "disk.img"), disk,
                                    bmap=server.url("/disk.img.bmap")),
                         "http://unused/plan.json", ctx)
    assert "action-done" not in [e["event"] for e in reporter.recent(500)]


def test_a_damaged_bmap_is_refused_before_anything_is_written(
        images: Path, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    root = tmp_path / "www"
    root.mkdir()
    shutil.copyfile(images / "disk.img", root / "disk.img")
    text = (images / "disk.img.bmap").read_text()
    (root / "disk.img.bmap").write_text(text.replace("Image size in bytes", "Image size", 1))
    Path(disk).write_bytes(b"K" * MiB)
    with image_server(root) as server:
        ctx, _ = context(tmp_path)
        with pytest.raises(PlanFailed, match="the bmap's own checksum does not match"):
            run_document(image_plan(server.url("/disk.img"), sha256(root / "disk.img"), disk,
                                    bmap=server.url("/disk.img.bmap")),
                         "http://unused/plan.json", ctx)
        assert [p for (_m, p, _r, _s) in server.requests] == ["/disk.img.bmap"]
    assert device_bytes(disk, MiB) == b"K" * MiB


def test_a_dry_run_names_the_disk_and_the_mapped_bytes_and_writes_nothing(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    Path(disk).write_bytes(b"K" * MiB)
    ctx, _ = context(tmp_path)
    ctx.dry_run = True
    run_document(image_plan(server.url("/disk.img.zst"), sha256(images / "disk.img.zst"), disk,
                            bmap=server.url("/disk.img.bmap")), "http://unused/plan.json", ctx)
    said = ctx.out.getvalue()  # type: ignore[attr-defined]
    assert f"would stream {server.url('/disk.img.zst')} (sha256 checked) to {disk}" in said
    assert f"of {IMAGE} bytes)" in said
    assert [p for (_m, p, _r, _s) in server.requests] == ["/disk.img.bmap"]
    assert device_bytes(disk, MiB) == b"K" * MiB


# --- an authenticated bmap instead of the file's digest -----------------------------------


def bmap_plan(url: str, bmap_url: str, bmap_file: Path, device: str, **extra: Any) -> bytes:
    """An image action proved by its bmap alone: bmap_digest, no digest of the file."""
    action = {"action": "image", "url": url, "bmap": bmap_url,
              "bmap_digest": f"sha256:{sha256(bmap_file)}", "target": {"path": device},
              **extra}
    return json.dumps({"ramboot-plan": 1, "actions": [action]}).encode()


@pytest.mark.parametrize("name", ["disk.img", "disk.img.zst"])
def test_an_authenticated_bmap_needs_no_file_digest(name: str, images: Path,
                                                    server: ImageServer, disk: str,
                                                    tmp_path: Path) -> None:
    require_bmaptool()
    bmap = parse_bmap((images / "disk.img.bmap").read_bytes(), "bmap")
    pattern = b"old data " * (DISK // 9) + b"x" * (DISK % 9)
    Path(disk).write_bytes(pattern)
    server.faults.cut_at = [3 * MiB + 5, 9 * MiB + 8192 + 777]
    ctx, reporter = context(tmp_path)
    run_document(bmap_plan(server.url(f"/{name}"), server.url("/disk.img.bmap"),
                           images / "disk.img.bmap", disk), "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert "sha256" not in details  # no digest of the file was asked for, none is claimed
    assert details["written_bytes"] == bmap.mapped_bytes
    if name == "disk.img":
        assert details["served_bytes"] < IMAGE - 6 * MiB  # fetched by ranges
    with loop_device(tmp_path / "peer.raw", DISK) as peer:
        Path(peer).write_bytes(pattern)
        subprocess.run(["bmaptool", "copy", "--bmap", str(images / "disk.img.bmap"),
                        server.url(f"/{name}"), peer], check=True, capture_output=True)
        assert device_bytes(disk, DISK) == device_bytes(peer, DISK)


def test_a_bmap_that_is_not_the_one_the_plan_names_is_refused_before_writing(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    other = tmp_path / "other.bmap"
    other.write_text(_rewrite_bmap((images / "disk.img.bmap").read_text(),
                                   lambda text: text.replace("<!--", "<!-- edited", 1)))
    Path(disk).write_bytes(b"K" * MiB)
    ctx, _ = context(tmp_path)
    with pytest.raises(PlanFailed, match=r"disk.img.bmap: sha256 is [0-9a-f]{64}, the plan's "
                                         r"bmap_digest is [0-9a-f]{64}: refusing the bmap"):
        run_document(bmap_plan(server.url("/disk.img"), server.url("/disk.img.bmap"), other,
                               disk), "http://unused/plan.json", ctx)
    assert [p for (_m, p, _r, _s) in server.requests] == ["/disk.img.bmap"]
    assert device_bytes(disk, MiB) == b"K" * MiB


@pytest.mark.parametrize("name", ["disk.img", "disk.img.zst"])
def test_without_a_file_digest_a_corrupted_range_is_still_a_failure(
        name: str, images: Path, disk: str, tmp_path: Path) -> None:
    require_bmaptool()
    root = tmp_path / "www"
    root.mkdir()
    damaged = bytearray((images / "disk.img").read_bytes())
    damaged[9 * MiB + 8192 + 100] ^= 0x55  # inside the third range
    (root / "disk.img").write_bytes(damaged)
    shutil.copyfile(images / "disk.img.bmap", root / "disk.img.bmap")
    if name == "disk.img.zst":
        subprocess.run(["zstd", "-q", str(root / "disk.img"), "-o", str(root / name)],
                       check=True)
    Path(disk).write_bytes(b"K" * MiB)
    with image_server(root) as server:
        ctx, reporter = context(tmp_path)
        with pytest.raises(PlanFailed, match=r"bmap range 2 \(image bytes [0-9]+-[0-9]+\): "
                                             r"sha256 is [0-9a-f]{64}, the bmap says"):
            run_document(bmap_plan(server.url(f"/{name}"), server.url("/disk.img.bmap"),
                                   images / "disk.img.bmap", disk),
                         "http://unused/plan.json", ctx)
    assert "action-done" not in [e["event"] for e in reporter.recent(500)]
    assert device_bytes(disk, MiB) == bytes(MiB)  # invalidated: nothing boots half an image


def test_with_a_bmap_and_a_file_digest_the_holes_are_hashed_as_zeros(
        images: Path, server: ImageServer, disk: str, tmp_path: Path) -> None:
    """Both given: both are checked; the file's digest counts the holes not downloaded."""
    require_bmaptool()
    ctx, reporter = context(tmp_path)
    action = json.loads(bmap_plan(server.url("/disk.img"), server.url("/disk.img.bmap"),
                                  images / "disk.img.bmap", disk))
    action["actions"][0]["digest"] = f"sha256:{sha256(images / 'disk.img')}"
    run_document(json.dumps(action).encode(), "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert details["sha256"] == sha256(images / "disk.img")
    assert details["served_bytes"] < IMAGE - 6 * MiB


# --- zstd through the zstd program: its output spliced to the disk ---------------------------


def test_a_zstd_image_is_spliced_to_the_disk_and_resumed(
        images: Path, server: ImageServer, disk: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not (images / "disk.img.zst").exists():
        pytest.skip("zstd not installed")
    from ramboot_agent.plan import decode

    monkeypatch.setattr(decode, "zstd_module", lambda: None)  # the zstd program, as on 3.11
    spliced = [0]
    real_splice = os.splice

    def counting_splice(*args: Any, **kwargs: Any) -> int:
        count = real_splice(*args, **kwargs)
        spliced[0] += count
        return count

    monkeypatch.setattr(os, "splice", counting_splice)
    size = (images / "disk.img.zst").stat().st_size
    server.faults.cut_at = [size // 3, 2 * size // 3]
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url("/disk.img.zst"), sha256(images / "disk.img.zst"), disk),
                 "http://unused/plan.json", ctx)
    details = done_details(reporter)
    assert spliced[0] == IMAGE == details["written_bytes"]  # every byte by splice, once
    assert device_bytes(disk, IMAGE) == (images / "disk.img").read_bytes()


def test_when_splice_is_refused_the_zstd_output_is_read_and_written(
        images: Path, server: ImageServer, disk: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not (images / "disk.img.zst").exists():
        pytest.skip("zstd not installed")
    from ramboot_agent.plan import decode

    monkeypatch.setattr(decode, "zstd_module", lambda: None)

    def refused(*_args: Any, **_kwargs: Any) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refused)
    ctx, reporter = context(tmp_path)
    run_document(image_plan(server.url("/disk.img.zst"), sha256(images / "disk.img.zst"), disk),
                 "http://unused/plan.json", ctx)
    assert done_details(reporter)["written_bytes"] == IMAGE
    assert device_bytes(disk, IMAGE) == (images / "disk.img").read_bytes()


def test_a_spliced_zstd_image_larger_than_the_disk_fails_at_the_end_of_the_disk(
        tmp_path: Path, disk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd not installed")
    from ramboot_agent.plan import decode

    monkeypatch.setattr(decode, "zstd_module", lambda: None)
    root = tmp_path / "big"
    root.mkdir()
    # From a pipe: the frame does not announce its size, so only the writer can notice.
    with (root / "big.img.zst").open("wb") as out:
        subprocess.run(["zstd", "-q", "-c"], input=b"\1" * (DISK + MiB), stdout=out, check=True)
    assert decode.zstd_frame_content_size((root / "big.img.zst").read_bytes()[:18]) is None
    with image_server(root) as server:
        ctx, reporter = context(tmp_path)
        with pytest.raises(PlanFailed, match=f"the image is larger than the target {disk}"):
            run_document(image_plan(server.url("/big.img.zst"), sha256(root / "big.img.zst"),
                                    disk), "http://unused/plan.json", ctx)
    assert "action-done" not in [e["event"] for e in reporter.recent(500)]
    assert device_bytes(disk, MiB) == bytes(MiB)
