"""imgextract's paths and imgverify/imgtrust (ramboot_agent/ipxe/image_commands.py), with
real HTTP.

What real iPXE does for the common ones is compared in test_differential.py
(test_digests_and_imgextract_as_in_ipxe, test_imgverify_and_imgtrust_as_in_ipxe);
these cover the rest: every way an archive can be bad, the RAM-disk bound, a
large expansion, trust carried over, what a refusal says.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from ramboot_agent.errors import ScriptError
from ramboot_agent.ipxe import image_commands
from ramboot_agent.trust import roots

PAYLOAD = b"ramboot " * 4096


def _serve(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).write_bytes(data)


def _images(harness: Any) -> list[Any]:
    """The images a script left, without the harness's own script."""
    return [image for image in harness.interpreter.images if image.name != "test.ipxe"]


def _names(harness: Any) -> list[str]:
    return [image.name for image in _images(harness)]


def test_gzip_and_zlib_with_implicit_and_given_names(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _serve(root, {"a.cpio.gz": gzip.compress(PAYLOAD), "b.zlib": zlib.compress(PAYLOAD),
                  "c": gzip.compress(b"no suffix")})
    harness = make_harness()
    harness.run(f"#!ipxe\nimgextract {base}/a.cpio.gz\nimgextract --name bee {base}/b.zlib\n"
                f"imgextract --keep {base}/c\n")
    # iPXE's image_strip_suffix drops the last ".suffix"; --keep keeps the archive.
    assert _names(harness) == ["a.cpio", "bee", "c", "c"]
    images = _images(harness)
    assert images[0].path.read_bytes() == PAYLOAD and images[1].path.read_bytes() == PAYLOAD
    assert images[3].path.read_bytes() == b"no suffix" and images[3].size == 9


@pytest.mark.parametrize(("data", "message"), [
    (b"plain bytes", "x.gz: not a gzip or zlib archive"),
    (gzip.compress(PAYLOAD)[:-20], "x.gz: truncated gzip data"),
    (gzip.compress(PAYLOAD)[:30] + b"\xff" * 64, "x.gz: corrupt gzip data"),
    (zlib.compress(PAYLOAD)[:2] + b"\x00" * 40, "x.gz: corrupt zlib data"),
], ids=["not-an-archive", "truncated", "corrupt-gzip", "corrupt-zlib"])
def test_a_bad_archive_fails_with_its_reason_and_leaves_nothing(
        data: bytes, message: str, make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _serve(root, {"x.gz": data})
    harness = make_harness()
    with pytest.raises(ScriptError) as error:
        harness.run(f"#!ipxe\nimgextract {base}/x.gz\n")
    assert message in error.value.message and error.value.line == 2
    # As iPXE: the archive is unregistered (no --keep), nothing extracted is left.
    assert _names(harness) == []
    assert not list((harness.interpreter.download_dir).rglob("*.extracted"))


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_extraction_is_bounded_by_the_ram_disk(make_harness: Any, http_root: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 MiB of zeros compress to a few KiB: the bound is on what comes out.
    root, base = http_root
    _serve(root, {"bomb.gz": gzip.compress(bytes(2 << 20))})
    free = image_commands.EXTRACT_RESERVE + (1 << 20)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(free * 2, free, free))
    harness = make_harness()
    harness.run(f"#!ipxe\nimgextract {base}/bomb.gz || echo refused\n")
    assert harness.lines == ["refused"] and _names(harness) == []
    assert not list(harness.interpreter.download_dir.rglob("*.extracted"))


def test_a_large_expansion_comes_out_whole(make_harness: Any, http_root: Any) -> None:
    # Far more than one 1 MiB chunk out of one chunk in: the unconsumed-tail loop.
    root, base = http_root
    big = bytes(range(256)) * 16384 + bytes(5 << 20)
    _serve(root, {"big.gz": gzip.compress(big)})
    harness = make_harness()
    harness.run(f"#!ipxe\nimgextract {base}/big.gz\n")
    (image,) = _images(harness)
    assert image.size == len(big) and image.path.read_bytes() == big


def test_an_extracted_script_runs_and_trust_carries_over(make_harness: Any, http_root: Any) -> None:
    root, base = http_root
    _serve(root, {"next.ipxe.gz": gzip.compress(b"#!ipxe\necho from the archive\n")})
    harness = make_harness()
    harness.run(f"#!ipxe\nimgfetch {base}/next.ipxe.gz\n")
    (archive,) = _images(harness)
    archive.trusted = True  # as after a successful imgverify
    harness.run("#!ipxe\nimgextract next.ipxe.gz\nchain next.ipxe\n")
    assert harness.lines == ["from the archive"]
    (extracted,) = _images(harness)
    assert extracted.is_script and extracted.trusted and extracted.url == f"{base}/next.ipxe.gz"


# --- imgverify and imgtrust ----------------------------------------------------------------------


def _serve_signed(root: Path, signatures: Any) -> None:
    _serve(root, {"image.bin": signatures.data.read_bytes(),
                  "good.sig": signatures.files["good"].read_bytes(),
                  "expired.sig": signatures.files["expired"].read_bytes(),
                  "unsigned.ipxe": b"#!ipxe\necho ran\n"})


def _trusting(signatures: Any) -> Any:
    fingerprint = signatures.pki.root.fingerprint
    return lambda: roots.build(fingerprint, trust_dir=Path("/nonexistent"))


def test_imgverify_marks_the_image_trusted_and_drops_the_signature(
        make_harness: Any, http_root: Any, signatures: Any) -> None:
    root, base = http_root
    _serve_signed(root, signatures)
    harness = make_harness(trust=_trusting(signatures))
    harness.run(f"#!ipxe\nimgfetch {base}/image.bin\nimgverify image.bin {base}/good.sig\n"
                "imgstat image.bin\n")
    assert harness.lines == [f"image.bin : {len(signatures.data.read_bytes())} bytes [TRUSTED]"]
    assert _names(harness) == ["image.bin"]  # no --keep: the signature is gone


def test_a_refused_signature_names_image_signature_reason_and_roots(
        make_harness: Any, http_root: Any, signatures: Any) -> None:
    root, base = http_root
    _serve_signed(root, signatures)
    harness = make_harness(trust=_trusting(signatures))
    with pytest.raises(ScriptError) as error:
        harness.run(f"#!ipxe\nimgverify --keep {base}/image.bin {base}/expired.sig\n")
    assert error.value.line == 2
    assert error.value.message.startswith(
        "imgverify: image.bin: signature expired.sig rejected: CN=expired expired on 2021-01-01")
    assert "(trusted roots: ramboot.trust= (1 fingerprints))" in error.value.message
    assert not harness.interpreter.images.find("image.bin").trusted


def test_imgtrust_refuses_to_execute_what_is_not_verified(
        make_harness: Any, http_root: Any, signatures: Any) -> None:
    root, base = http_root
    _serve_signed(root, signatures)
    harness = make_harness(trust=_trusting(signatures))
    harness.run(f"#!ipxe\nimgtrust\nchain {base}/unsigned.ipxe || echo refused\n"
                "imgtrust --allow --permanent\nchain unsigned.ipxe\n"
                "imgtrust || echo allowing-is-permanent\n")
    assert harness.lines == ["refused", "ran", "allowing-is-permanent"]
    assert harness.recorder.boots == []
