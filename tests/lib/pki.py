"""A test PKI made with openssl: CAs, code-signing certificates, CMS signatures.

The root is the tests' own CA (scripts/reference-ipxe/test-root-ca.*: the
reference iPXE is built to trust it and nothing else); everything below it,
and any other root, is made per test run with `openssl ca` (which, unlike
`openssl x509 -req` in OpenSSL 3.0, can date a certificate in the past).
Signatures are made as iPXE's documentation says:

    openssl cms -sign -binary -noattr -in FILE -signer CERT -inkey KEY \\
        -certfile CHAIN -outform DER -out FILE.sig
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lib.ipxe import REFERENCE_ROOT_CA, REFERENCE_ROOT_KEY

CODE_SIGNING = ("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                "extendedKeyUsage = codeSigning\n")
CA = "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
VALID = ("20200101000000Z", "21000101000000Z")
KEYS = {"rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        "ec256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-pkeyopt", "ec_param_enc:named_curve"],
        "ec384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384",
                  "-pkeyopt", "ec_param_enc:named_curve"]}
_CONFIG = """[ca]
default_ca = test
[test]
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[anything]
commonName = supplied
organizationName = optional
"""


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path  # PEM
    key: Path

    def der(self) -> bytes:
        return _openssl("x509", "-in", self.cert, "-outform", "DER", binary=True)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der()).hexdigest()


def _openssl(*args: str | Path, binary: bool = False) -> bytes:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {done.stderr.decode()}")
    return done.stdout if binary else b""


class Pki:
    def __init__(self, workdir: Path) -> None:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed (scripts/install-deps)")
        self.dir = workdir
        self.db = workdir / "db"
        self.db.mkdir(parents=True)
        (self.db / "index.txt").write_text("")
        (self.db / "serial").write_text("2000\n")
        self.config = workdir / "ca.cnf"
        self.config.write_text(_CONFIG.format(db=self.db))
        self.root = Issued("ramboot test root CA (tests only, never trust it)",
                           REFERENCE_ROOT_CA, REFERENCE_ROOT_KEY)

    def issue(self, name: str, *, issuer: Issued | None, extensions: str = CODE_SIGNING,
              key: str = "rsa", dates: tuple[str, str] = VALID, md: str = "sha256") -> Issued:
        """A certificate for `name` (self-signed without `issuer`)."""
        slug = name.replace(" ", "-")
        key_path, csr, cert = (self.dir / f"{slug}.{suffix}" for suffix in ("key", "csr", "crt"))
        ext = self.dir / f"{slug}.ext"
        ext.write_text("[ext]\n" + extensions)
        _openssl("genpkey", *KEYS[key], "-out", key_path)
        _openssl("req", "-new", "-key", key_path, "-subj", f"/CN={name}/O=ramboot tests",
                 "-out", csr)
        signing = (["-selfsign", "-keyfile", key_path] if issuer is None
                   else ["-keyfile", issuer.key, "-cert", issuer.cert])
        _openssl("ca", "-batch", "-config", self.config, "-notext", "-md", md, *signing,
                 "-in", csr, "-out", cert, "-startdate", dates[0], "-enddate", dates[1],
                 "-extfile", ext, "-extensions", "ext")
        return Issued(name, cert, key_path)

    def sign(self, data: Path, signer: Issued, chain: list[Issued], out: Path, *,
             md: str = "sha256", attributes: bool = False, pem: bool = False,
             keyid: bool = False, pss: bool = False) -> Path:
        """A detached CMS signature of `data` by `signer`, carrying `chain` too."""
        args: list[str | Path] = ["cms", "-sign", "-binary", "-in", data, "-signer", signer.cert,
                                  "-inkey", signer.key, "-md", md, "-outform",
                                  "PEM" if pem else "DER", "-out", out]
        if chain:
            bundle = out.with_name(out.name + ".chain.pem")
            bundle.write_bytes(b"".join(issued.cert.read_bytes() for issued in chain))
            args += ["-certfile", bundle]
        if not attributes:
            args.append("-noattr")
        if keyid:
            args.append("-keyid")
        if pss:
            args += ["-keyopt", "rsa_padding_mode:pss"]
        _openssl(*args)
        return out
