"""CMS signatures made by openssl, verified by the agent's own verifier (ramboot_agent.trust).

Every case of conftest.CASES: a good signature verifies; every other one is
refused with its reason. Hostile input (mutated and random DER) fails with
a TrustError, never anything else.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramboot_agent.trust import TrustError, cms, der, roots, x509

from .cases import CASES, Signatures


def _verify(signatures: Signatures, name: str, **kwargs: object) -> list[cms.Signer]:
    case = CASES[name]
    return cms.verify(signatures.image(name), signatures.files[name].read_bytes(),
                      roots=kwargs.pop("roots", {bytes.fromhex(signatures.pki.root.fingerprint)}),  # type: ignore[arg-type]
                      signer_name=case.signer_name, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(CASES))
def test_signature_case(name: str, signatures: Signatures) -> None:
    case = CASES[name]
    if case.refusal is None:
        signers = _verify(signatures, name)
        assert [s.certificate.common_name for s in signers] == [case.signer]
    else:
        with pytest.raises(TrustError) as error:
            _verify(signatures, name)
        assert case.refusal in str(error.value)


def test_a_root_from_a_file_completes_a_chain_the_signature_lacks(signatures: Signatures,
                                                                   tmp_path: Path) -> None:
    # The root is not in the signature: trusted by fingerprint alone it cannot be
    # found (root-not-in-signature); a trust file both holds and trusts it.
    store = roots.build("none", files=[signatures.pki.root.cert], trust_dir=tmp_path / "none")
    signers = cms.verify(signatures.data, signatures.files["root-not-in-signature"].read_bytes(),
                         roots=store.roots(), store=store.certificates)
    assert signers[0].certificate.common_name == "signer"


def test_only_the_trusted_roots_count(signatures: Signatures) -> None:
    with pytest.raises(TrustError, match="is a trusted root"):
        _verify(signatures, "good", roots={roots.IPXE_ROOT_CA})
    other = bytes.fromhex(signatures.issued["other root"].fingerprint)
    assert _verify(signatures, "untrusted-root", roots={other})


def test_an_enveloped_message_is_not_a_signature(signatures: Signatures, tmp_path: Path) -> None:
    out = tmp_path / "enveloped.der"
    subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-in", signatures.data, "-outform",
                    "DER", "-out", out, signatures.issued["signer"].cert], check=True,
                   capture_output=True, timeout=60)
    with pytest.raises(TrustError, match="envelopedData"):
        cms.verify(signatures.data, out.read_bytes(), roots=set())


def test_certificates_parse_as_openssl_describes_them(signatures: Signatures) -> None:
    certificate = x509.parse(signatures.issued["san signer"].der())
    assert certificate.common_name == "san signer" and not certificate.ca
    assert certificate.key_usage == x509.DIGITAL_SIGNATURE
    assert certificate.extended_usage == {x509.CODE_SIGNING}
    assert certificate.alt_names == [(0x82, b"boot.example.com")]
    assert x509.check_name(certificate, "boot.example.com")
    assert not x509.check_name(certificate, "example.com")
    ca = x509.parse(signatures.issued["pathlen0 ca"].der())
    assert ca.ca and ca.path_len == 0 and ca.key_usage == x509.KEY_CERT_SIGN
    assert x509.parse(signatures.issued["intermediate"].der()).path_len == x509.UNLIMITED


def test_trust_settings_parse_or_say_why(tmp_path: Path) -> None:
    fingerprint = ("1D:50:6B:1B:98:BA:C3:48:20:51:35:B6:A1:17:D8:CE:"
                   "7F:D8:DF:75:24:E9:4A:8B:E9:89:8B:2F:0F:24:26:F3")
    assert roots.parse_fingerprints(f"{fingerprint}, {'ab' * 32}") == {
        bytes.fromhex(fingerprint.replace(":", "")), bytes.fromhex("ab" * 32)}
    assert roots.parse_fingerprints("none") == set()
    with pytest.raises(TrustError, match="not a SHA-256 fingerprint"):
        roots.parse_fingerprints("abcd")
    assert roots.build(None, trust_dir=tmp_path).fingerprints == {roots.IPXE_ROOT_CA}
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TrustError, match=r"junk\.pem"):
        roots.build(None, trust_dir=tmp_path)


# --- hostile input ---------------------------------------------------------------------------


def _never_crashes(signatures: Signatures, blob: bytes) -> None:
    with contextlib.suppress(TrustError):
        cms.verify(signatures.data, blob, roots={bytes.fromhex(signatures.pki.root.fingerprint)})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_signatures_fail_cleanly(signatures: Signatures, data: st.DataObject) -> None:
    good = bytearray(signatures.files[data.draw(st.sampled_from(
        ["good", "good-ec-p256", "good-pem"]))].read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "length"]))
        position = data.draw(st.integers(0, len(good) - 1))
        if action == "flip":
            good[position] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del good[position:position + data.draw(st.integers(1, 64))]
        elif action == "insert":
            good[position:position] = data.draw(st.binary(min_size=1, max_size=16))
        else:  # claim a huge length right after a tag
            good[position:position + 1] = b"\x84\xff\xff\xff\xff"
        if not good:
            good = bytearray(b"\x30")
    _never_crashes(signatures, bytes(good))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_fail_cleanly(blob: bytes) -> None:
    with contextlib.suppress(TrustError):
        cms.verify(Path("/dev/null"), blob, roots=set())
    with contextlib.suppress(TrustError):
        x509.parse(blob)
    with contextlib.suppress(der.DerError):
        der.parse(blob, "fuzz")
