"""Where the agent's trusted root certificates come from.

iPXE trusts the roots it was built with (TRUST=, by SHA-256 fingerprint;
without TRUST= the iPXE project's root CA). The agent, in this order:

* `ramboot.trust=FP[,FP...]` on the kernel command line (run-script:
  `--trust FP`): SHA-256 fingerprints of the trusted roots, hex with or
  without colons (`openssl x509 -noout -fingerprint -sha256`). They replace
  the default; `ramboot.trust=none` trusts nothing but the files below.
* Without it, the iPXE root CA (ca.ipxe.org), as an iPXE built without
  TRUST= does.
* Every certificate in /etc/ramboot/trust/ (PEM or DER; put there through
  the image's overlay, or run-script's `--trust FILE`) is trusted too, and
  also used to complete chains whose signature lacks it.

A root trusted by fingerprint only must be in the signature's certificates
(`openssl cms -sign ... -certfile ROOT.crt`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ramboot_agent.trust import TrustError

if TYPE_CHECKING:
    from ramboot_agent.trust.x509 import Certificate

TRUST_DIR = Path("/etc/ramboot/trust")
# iPXE's built-in root when built without TRUST= (crypto/rootcert.c): the iPXE root CA.
IPXE_ROOT_CA = bytes.fromhex("9faf717b7f8ca2f93c256c79f8ac5591895d66d1ff3bee6397a70d29c65eed1a")
MAX_TRUST_FILE = 256 * 1024
_FINGERPRINT = re.compile(r"(?:[0-9a-fA-F]{2}:?){31}[0-9a-fA-F]{2}")


@dataclass
class TrustStore:
    fingerprints: set[bytes] = field(default_factory=lambda: {IPXE_ROOT_CA})
    certificates: list[Certificate] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # what it was built from, for messages

    def roots(self) -> set[bytes]:
        return self.fingerprints | {cert.fingerprint for cert in self.certificates}

    def describe(self) -> str:
        return ", ".join(self.sources) or "the iPXE root CA (the default)"


def parse_fingerprints(text: str) -> set[bytes]:
    """`ramboot.trust=` values: comma-separated SHA-256 fingerprints, or `none`."""
    if text.strip().lower() == "none":
        return set()
    found = set()
    for item in text.split(","):
        part = item.strip()
        if not _FINGERPRINT.fullmatch(part):
            raise TrustError(f"{part!r} is not a SHA-256 fingerprint (64 hex digits, colons "
                             "allowed)")
        found.add(bytes.fromhex(part.replace(":", "")))
    return found


def load_certificates(paths: Iterable[Path]) -> list[Certificate]:
    """Certificates from PEM or DER files (each file may hold several PEM blocks)."""
    from ramboot_agent.trust import cms, x509  # noqa: PLC0415 - only when there are files

    loaded: list[Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()[:MAX_TRUST_FILE + 1]
        except OSError as error:
            raise TrustError(f"{path}: {error.strerror}") from None
        if len(data) > MAX_TRUST_FILE:
            raise TrustError(f"{path}: larger than {MAX_TRUST_FILE} bytes")
        ders = cms.pem_blocks(data, "CERTIFICATE", str(path)) or [data]
        loaded += [x509.parse(blob, f"{path} (certificate {index + 1})")
                   for index, blob in enumerate(ders)]
    return loaded


def build(fingerprints: str | None, *, files: Iterable[Path] = (),
          trust_dir: Path = TRUST_DIR) -> TrustStore:
    """The store from `ramboot.trust=` (None: not given), extra files and `trust_dir`."""
    store = TrustStore()
    if fingerprints is not None:
        store.fingerprints = parse_fingerprints(fingerprints)
        store.sources.append(f"ramboot.trust= ({len(store.fingerprints)} fingerprints)")
    paths = [*files]
    if trust_dir.is_dir():
        paths += sorted(p for p in trust_dir.iterdir() if p.is_file())
    if paths:
        store.certificates = load_certificates(paths)
        store.sources.append(f"{len(store.certificates)} certificates from "
                             + ", ".join(str(p) for p in paths))
    return store
