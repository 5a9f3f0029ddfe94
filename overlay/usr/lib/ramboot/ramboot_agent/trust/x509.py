"""X.509 certificates and chain validation, checking what iPXE v2.0.0 checks (crypto/x509.c).

A certificate parses as iPXE parses it: the tbsCertificate's and the outer
signature algorithm must agree; the extensions iPXE knows are read
(basicConstraints, keyUsage, extKeyUsage, authorityInfoAccess's OCSP
responder, subjectAltName) and an unknown *critical* one makes the
certificate unusable. A chain is valid as x509_validate_chain decides:
starting from the first certificate that is valid on its own (within its
validity period, give or take iPXE's 12.5 hours, and a trusted root by its
SHA-256 fingerprint), each certificate below it must be within its
validity period, issued by the one above (issuer name, that issuer a CA
whose keyUsage, when present, allows keyCertSign, its signature), within
the path length its issuers allow, and not one that needs an OCSP check.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ramboot_agent.trust import der, keys
from ramboot_agent.trust.keys import SignatureError

# iPXE's TIMESTAMP_ERROR_MARGIN (config/crypto.h): clocks are trusted only so far.
TIME_MARGIN = (12 * 60 + 30) * 60
MAX_CHAIN = 16
COMMON_NAME = "2.5.4.3"
CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
OCSP = "1.3.6.1.5.5.7.48.1"
# keyUsage bits as iPXE holds them (the BIT STRING's first octet in the low byte).
DIGITAL_SIGNATURE = 0x0080
KEY_CERT_SIGN = 0x0004
_EXTENSIONS = {"2.5.29.19": "basicConstraints", "2.5.29.15": "keyUsage",
               "2.5.29.37": "extKeyUsage", "1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
               "2.5.29.17": "subjectAltName"}
UNLIMITED = 1 << 30


class CertificateError(SignatureError):
    """A certificate cannot be used, or a chain does not validate."""


@dataclass
class Certificate:
    raw: bytes
    tbs: bytes
    serial: bytes  # the INTEGER element, as iPXE compares it
    issuer: bytes  # the Name element, raw
    subject: bytes
    common_name: str | None
    not_before: int
    not_after: int
    key: keys.PublicKey
    signature_algorithm: str
    signature: bytes
    ca: bool = False
    path_len: int = 0  # iPXE: 0 unless a CA's pathLenConstraint says (default unlimited)
    key_usage: int | None = None  # None: no keyUsage extension
    extended_usage: set[str] = field(default_factory=set)
    ocsp_uri: str | None = None
    alt_names: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def name(self) -> str:
        """How messages name it: its commonName (iPXE's x509_name) or its fingerprint."""
        if self.common_name:
            return f"CN={self.common_name}"
        return f"the certificate with SHA-256 {self.fingerprint.hex()[:16]}..."


def parse(data: bytes, what: str = "certificate") -> Certificate:
    """A DER certificate; raises der.DerError or CertificateError naming what is wrong."""
    top = der.parse(data, what, trailing_ok=True)
    return from_element(top, what)


def from_element(top: der.Element, what: str) -> Certificate:
    if top.tag != der.SEQUENCE:
        raise der.DerError(f"{what}: not a certificate (no SEQUENCE)")
    outer = top.reader(what)
    tbs_element = outer.next(der.SEQUENCE, "tbsCertificate")
    outer_algorithm = _algorithm(outer.next(der.SEQUENCE, "signatureAlgorithm"), what)
    signature, unused = der.bit_string(outer.next(der.BIT_STRING, "signatureValue"),
                                       f"{what}: signatureValue")
    outer.finish()
    if unused:
        raise CertificateError(f"{what}: the signature is not a whole number of octets")
    tbs = tbs_element.reader(f"{what}: tbsCertificate")
    version_element = tbs.optional(der.context(0))
    if version_element is not None:
        version = der.integer(version_element.reader(f"{what}: version").next(der.INTEGER),
                              f"{what}: version")
        if version < 0:
            raise CertificateError(f"{what}: invalid version {version}")
    serial = tbs.next(der.INTEGER, "serialNumber")
    inner_algorithm = _algorithm(tbs.next(der.SEQUENCE, "signature"), what)
    if inner_algorithm != outer_algorithm:
        raise CertificateError(f"{what}: signature algorithm mismatch ({inner_algorithm} in "
                               f"the certificate, {outer_algorithm} outside)")
    keys.signature_algorithm(outer_algorithm, what)  # unknown: unusable, as in iPXE
    issuer = tbs.next(der.SEQUENCE, "issuer")
    validity = tbs.next(der.SEQUENCE, "validity").reader(f"{what}: validity")
    not_before = der.time(validity.next(None, "notBefore"), f"{what}: notBefore")
    not_after = der.time(validity.next(None, "notAfter"), f"{what}: notAfter")
    subject = tbs.next(der.SEQUENCE, "subject")
    key = keys.public_key(tbs.next(der.SEQUENCE, "subjectPublicKeyInfo"), what)
    certificate = Certificate(top.raw, tbs_element.raw, serial.raw, issuer.raw, subject.raw,
                              _common_name(subject, what), not_before, not_after, key,
                              outer_algorithm, signature)
    tbs.optional(der.context(1, constructed=False))  # issuerUniqueID
    tbs.optional(der.context(2, constructed=False))  # subjectUniqueID
    extensions = tbs.optional(der.context(3))
    tbs.finish()
    if extensions is not None:
        outer_sequence = extensions.reader(f"{what}: extensions").next(der.SEQUENCE)
        for extension in outer_sequence.reader(f"{what}: extensions").all(der.SEQUENCE,
                                                                          "extension"):
            _extension(certificate, extension, what)
    return certificate


def _algorithm(element: der.Element, what: str) -> str:
    return der.oid(element.reader(f"{what}: algorithm").next(der.OID), f"{what}: algorithm")


def _common_name(name: der.Element, what: str) -> str | None:
    for rdn in name.reader(f"{what}: name").all(der.SET, "relative name"):
        for attribute in rdn.reader(f"{what}: name").all(der.SEQUENCE, "attribute"):
            reader = attribute.reader(f"{what}: name attribute")
            if der.oid(reader.next(der.OID), f"{what}: name attribute") == COMMON_NAME:
                return reader.next(None, "commonName").value.decode("utf-8", "replace")
    return None  # certificates need not have a commonName


def _extension(certificate: Certificate, element: der.Element, what: str) -> None:
    reader = element.reader(f"{what}: extension")
    oid = der.oid(reader.next(der.OID), f"{what}: extension")
    critical_element = reader.optional(der.BOOLEAN)
    critical = der.boolean(critical_element, f"{what}: critical") if critical_element else False
    value = der.octet_string(reader.next(der.OCTET_STRING, "extnValue"), f"{what}: extnValue")
    name = _EXTENSIONS.get(oid)
    if name is None:
        if critical:
            raise CertificateError(f"{what}: unsupported critical extension {oid} (iPXE "
                                   "refuses such certificates too)")
        return
    content = der.parse(value, f"{what}: {name}")
    if name == "basicConstraints":
        inner = content.reader(f"{what}: basicConstraints")
        ca_element = inner.optional(der.BOOLEAN)
        certificate.ca = der.boolean(ca_element, f"{what}: cA") if ca_element else False
        if certificate.ca:
            path = inner.optional(der.INTEGER)
            certificate.path_len = (der.unsigned(path, f"{what}: pathLenConstraint")
                                    if path is not None else UNLIMITED)
    elif name == "keyUsage":
        bits, _ = der.bit_string(content, f"{what}: keyUsage")
        certificate.key_usage = sum(octet << (8 * index) for index, octet in enumerate(bits[:4]))
    elif name == "extKeyUsage":
        certificate.extended_usage = {
            der.oid(purpose, f"{what}: extKeyUsage")
            for purpose in content.reader(f"{what}: extKeyUsage").all(der.OID)}
    elif name == "authorityInfoAccess":
        for access in content.reader(f"{what}: authorityInfoAccess").all(der.SEQUENCE):
            inner = access.reader(f"{what}: accessDescription")
            if der.oid(inner.next(der.OID), f"{what}: accessMethod") == OCSP:
                location = inner.next(None, "accessLocation")
                certificate.ocsp_uri = location.value.decode("ascii", "replace")
    else:  # subjectAltName
        certificate.alt_names = [(name_element.tag, name_element.value) for name_element
                                 in content.reader(f"{what}: subjectAltName").all()]


def check_name(certificate: Certificate, name: str) -> bool:
    """iPXE's x509_check_name: the commonName or a dNSName (one leading "*." wildcard
    label), or an iPAddress, matches `name`."""
    def dns_matches(pattern: str) -> bool:
        wanted = name
        if pattern.startswith("*."):
            pattern = pattern[2:]
            if "." not in wanted:
                return False
            wanted = wanted.split(".", 1)[1]
        return wanted.lower() == pattern.lower()

    if certificate.common_name is not None and dns_matches(certificate.common_name):
        return True
    for tag, value in certificate.alt_names:
        if tag == 0x82 and dns_matches(value.decode("ascii", "replace")):  # dNSName
            return True
        if tag == 0x87:  # iPAddress
            try:
                if ipaddress.ip_address(name).packed == value:
                    return True
            except ValueError:
                pass
    return False


# --- chains --------------------------------------------------------------------------------------


def build_chain(first: Certificate, store: Sequence[Certificate]) -> list[Certificate]:
    """`first` and its issuers found in `store` by subject name, as x509_auto_append."""
    chain = [first]
    current = first
    while len(chain) < MAX_CHAIN:
        issuer = next((cert for cert in store if cert.subject == current.issuer), None)
        if issuer is None or issuer is current or issuer in chain:
            break
        chain.append(issuer)
        current = issuer
    return chain


def _check_time(certificate: Certificate, now: float) -> str | None:
    if certificate.not_before > now + TIME_MARGIN:
        return (f"{certificate.name} is not valid until "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(certificate.not_before))}")
    if certificate.not_after < now - TIME_MARGIN:
        return (f"{certificate.name} expired on "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(certificate.not_after))}")
    return None


def _check_issuer(certificate: Certificate, issuer: Certificate) -> None:
    if certificate.issuer != issuer.subject:
        raise CertificateError(f"{certificate.name} was not issued by {issuer.name}")
    if not issuer.ca:
        raise CertificateError(f"{issuer.name} is not a CA certificate (basicConstraints), "
                               f"so it cannot vouch for {certificate.name}")
    if issuer.key_usage is not None and not issuer.key_usage & KEY_CERT_SIGN:
        raise CertificateError(f"{issuer.name}'s keyUsage does not allow keyCertSign")
    kind, digest_name = keys.signature_algorithm(certificate.signature_algorithm,
                                                 certificate.name)
    if kind != issuer.key.kind or digest_name is None:
        raise CertificateError(f"{certificate.name} is signed with "
                               f"{keys.algorithm_name(certificate.signature_algorithm)}, "
                               f"which {issuer.name}'s {issuer.key.describe()} key cannot make")
    keys.verify(issuer.key, digest_name, keys.digest(digest_name, certificate.tbs),
                certificate.signature, f"{certificate.name}'s signature by {issuer.name}")


def validate_chain(chain: Sequence[Certificate], now: float,
                   roots: Iterable[bytes]) -> None:
    """Raise CertificateError unless `chain` (leaf first) validates against `roots`
    (SHA-256 fingerprints) at time `now`, as iPXE's x509_validate_chain."""
    trusted = set(roots)
    for index, anchor in enumerate(chain):
        if _check_time(anchor, now) is not None or anchor.fingerprint not in trusted:
            continue
        remaining = anchor.path_len + 1
        issuer = anchor
        for certificate in reversed(chain[:index]):
            if certificate.fingerprint in trusted and _check_time(certificate, now) is None:
                remaining, issuer = certificate.path_len + 1, certificate
                continue
            problem = _check_time(certificate, now)
            if problem is not None:
                raise CertificateError(problem)
            _check_issuer(certificate, issuer)
            if remaining == 0:
                raise CertificateError(f"{issuer.name} may not issue {certificate.name}: a "
                                       "path length constraint above it is exceeded")
            if certificate.ocsp_uri:
                raise CertificateError(f"{certificate.name} names an OCSP responder "
                                       f"({certificate.ocsp_uri}) and the agent does no OCSP "
                                       "checks (iPXE would ask it)")
            remaining = min(certificate.path_len + 1, remaining - 1)
            issuer = certificate
        return
    expired = [problem for cert in chain if (problem := _check_time(cert, now))]
    names = " <- ".join(cert.name for cert in chain)
    detail = f" ({'; '.join(expired)})" if expired else ""
    raise CertificateError(f"no certificate of the chain {names} is a trusted root{detail}")
