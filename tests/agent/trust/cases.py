"""One test PKI (tests/lib/pki.py) and a set of signatures of one file, made once per session.

Each signature case says what the agent must conclude: None (it verifies)
or the words its refusal must contain. test_cms.py checks the agent's
verifier on each; test_differential.py runs them in the reference iPXE,
which trusts the same root, and in the agent. tests/agent/conftest.py
makes `signatures` a fixture for both (built once per session).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lib.pki import CA, CODE_SIGNING, Issued, Pki

DATA = bytes(range(256)) * 40 + b"the signed image\n"


@dataclass(frozen=True)
class SignatureCase:
    signer: str
    chain: tuple[str, ...] = ("intermediate", "root")
    refusal: str | None = None  # None: it verifies
    options: dict[str, object] = field(default_factory=dict)  # Pki.sign keyword arguments
    signer_name: str | None = None  # imgverify --signer
    tampered: bool = False  # the data changed after signing


def _utc(seconds: float) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(seconds))


CASES: dict[str, SignatureCase] = {
    "good": SignatureCase("signer"),
    "good-sha384": SignatureCase("signer", options={"md": "sha384"}),
    "good-sha512": SignatureCase("signer", options={"md": "sha512"}),
    "good-sha1": SignatureCase("signer", options={"md": "sha1"}),
    "good-pem": SignatureCase("signer", options={"pem": True}),
    "good-ec-p256": SignatureCase("ec256 signer"),
    "good-ec-p384": SignatureCase("ec384 signer", options={"md": "sha384"}),
    "good-under-the-root": SignatureCase("direct signer", chain=("root",)),
    "good-just-expired": SignatureCase("just expired"),  # within iPXE's 12.5 h margin
    "good-signer-by-name": SignatureCase("san signer", signer_name="boot.example.com"),
    "tampered": SignatureCase("signer", tampered=True, refusal="does not match"),
    "tampered-ec-p256": SignatureCase("ec256 signer", tampered=True, refusal="does not match"),
    "tampered-ec-p384": SignatureCase("ec384 signer", tampered=True, refusal="does not match"),
    "wrong-signer-name": SignatureCase("san signer", signer_name="other.example.com",
                                       refusal="no signer is 'other.example.com'"),
    "untrusted-root": SignatureCase("stranger", chain=("other root",),
                                    refusal="is a trusted root"),
    "root-not-in-signature": SignatureCase("signer", chain=("intermediate",),
                                           refusal="is a trusted root"),
    "expired": SignatureCase("expired", refusal="expired on 2021-01-01"),
    "not-yet-valid": SignatureCase("future", refusal="is not valid until 2099-01-01"),
    "expired-intermediate": SignatureCase("under old", chain=("old intermediate", "root"),
                                          refusal="old intermediate expired on"),
    "issuer-not-a-ca": SignatureCase("under fake", chain=("fake ca", "intermediate", "root"),
                                     refusal="fake ca is not a CA certificate"),
    "issuer-without-keycertsign": SignatureCase(
        "under nosign", chain=("nosign ca", "root"), refusal="does not allow keyCertSign"),
    "path-length-exceeded": SignatureCase(
        "deep signer", chain=("sub ca", "pathlen0 ca", "root"),
        refusal="path length constraint above it is exceeded"),
    "no-code-signing": SignatureCase("no eku", refusal="not a code-signing certificate"),
    "server-auth-only": SignatureCase("server auth", refusal="not a code-signing certificate"),
    "no-digital-signature": SignatureCase("no digsig", refusal="not a signing certificate"),
    "no-key-usage": SignatureCase("no keyusage", refusal="not a signing certificate"),
    # iPXE asks the OCSP responder (nothing answers at 192.0.2.1:80 in the lab, so
    # it refuses too); the agent refuses such certificates without asking.
    "ocsp-responder": SignatureCase("ocsp signer", refusal="OCSP"),
    "critical-unknown-extension": SignatureCase("critical ext",
                                                refusal="unsupported critical extension"),
    "signed-attributes": SignatureCase("signer", options={"attributes": True},
                                       refusal="signed attributes"),
    "key-identifier": SignatureCase("signer", options={"keyid": True},
                                    refusal="key identifier"),
    "rsa-pss": SignatureCase("signer", options={"pss": True}, refusal="RSASSA-PSS"),
}


@dataclass
class Signatures:
    pki: Pki
    issued: dict[str, Issued]
    data: Path
    tampered: Path
    files: dict[str, Path]  # case name -> signature file

    def image(self, name: str) -> Path:
        return self.tampered if CASES[name].tampered else self.data


@pytest.fixture(scope="session")
def signatures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signatures]:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    now = time.time()
    issued: dict[str, Issued] = {"root": pki.root}

    def issue(name: str, issuer: str | None, **kwargs: object) -> None:
        issued[name] = pki.issue(name, issuer=issued[issuer] if issuer else None,
                                 **kwargs)  # type: ignore[arg-type]

    issue("intermediate", "root", extensions=CA)
    issue("signer", "intermediate")
    issue("ec256 signer", "intermediate", key="ec256")
    issue("ec384 signer", "intermediate", key="ec384", md="sha384")
    issue("direct signer", "root")
    issue("just expired", "intermediate", dates=("20200101000000Z", _utc(now - 3600)))
    issue("san signer", "intermediate",
          extensions=CODE_SIGNING + "subjectAltName = DNS:boot.example.com\n")
    issue("other root", None, extensions=CA)
    issue("stranger", "other root")
    issue("expired", "intermediate", dates=("20200101000000Z", "20210101000000Z"))
    issue("future", "intermediate", dates=("20990101000000Z", "21000101000000Z"))
    issue("old intermediate", "root", extensions=CA, dates=("20200101000000Z", "20210601000000Z"))
    issue("under old", "old intermediate")
    issue("fake ca", "intermediate")  # a code-signing certificate, not a CA
    issue("under fake", "fake ca")
    issue("nosign ca", "root", extensions="basicConstraints = critical,CA:TRUE\n"
          "keyUsage = critical,digitalSignature\n")
    issue("under nosign", "nosign ca")
    issue("pathlen0 ca", "root", extensions="basicConstraints = critical,CA:TRUE,pathlen:0\n"
          "keyUsage = critical,keyCertSign\n")
    issue("sub ca", "pathlen0 ca", extensions=CA)
    issue("deep signer", "sub ca")
    issue("no eku", "intermediate", extensions="keyUsage = critical,digitalSignature\n")
    issue("server auth", "intermediate",
          extensions="keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n")
    issue("no digsig", "intermediate",
          extensions="keyUsage = keyEncipherment\nextendedKeyUsage = codeSigning\n")
    issue("no keyusage", "intermediate", extensions="extendedKeyUsage = codeSigning\n")
    issue("ocsp signer", "intermediate",
          extensions=CODE_SIGNING + "authorityInfoAccess = OCSP;URI:http://192.0.2.1/ocsp\n")
    issue("critical ext", "intermediate", extensions=CODE_SIGNING + "1.2.3.4 = critical,DER:0500\n")
    data = pki.dir / "image.bin"
    data.write_bytes(DATA)
    tampered = pki.dir / "tampered.bin"
    tampered.write_bytes(DATA[:-2] + b"X\n")
    files = {name: pki.sign(data, issued[case.signer], [issued[c] for c in case.chain],
                            pki.dir / f"{name}.sig", **case.options)  # type: ignore[arg-type]
             for name, case in CASES.items()}
    yield Signatures(pki, issued, data, tampered, files)
