"""Detached CMS (PKCS#7) signatures over an image, verified as iPXE's imgverify does.

What iPXE v2.0.0 accepts (crypto/cms.c, usr/imgtrust.c), and so what is
accepted here: a DER (or PEM) ContentInfo holding SignedData whose
certificates include the signer's; every signerInfo identifies its
certificate by issuer and serial number. For each signer (only those whose
certificate matches `--signer NAME`, when given): its chain (the signer,
then issuers found among the message's and the trust store's certificates)
validates against the trusted roots (trust/x509.py); the signer's
certificate allows digitalSignature and has the codeSigning extended key
usage; its signature over the image's digest (the signer's digestAlgorithm)
verifies. At least one signer must have been checked.

iPXE skips signed attributes and so rejects every signature that has them
(the signature then covers the attributes, not the image); here that is
refused with the reason: sign with `openssl cms -sign -binary -noattr`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from ramboot_agent.trust import der, keys, x509
from ramboot_agent.trust.keys import SignatureError

SIGNED_DATA = "1.2.840.113549.1.7.2"
OTHER_TYPES = {"1.2.840.113549.1.7.3": "envelopedData", "1.2.840.113549.1.9.16.1.23":
               "authEnvelopedData", "1.2.840.113549.1.7.1": "data"}
MAX_SIGNATURE_BYTES = 1 << 20
MAX_CERTIFICATES = 32
MAX_SIGNERS = 8
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


@dataclass(frozen=True)
class Signer:
    certificate: x509.Certificate
    digest_name: str
    key_kind: str
    signature: bytes


@dataclass(frozen=True)
class Message:
    certificates: list[x509.Certificate]
    signers: list[Signer]


def pem_blocks(data: bytes, label: str | None, what: str) -> list[bytes]:
    """The DER inside each PEM block of `data` (only `label` ones, when given)."""
    blocks = []
    for match in _PEM.finditer(data):
        if label is not None and match.group(1) != label.encode():
            continue
        try:
            blocks.append(base64.b64decode(b"".join(match.group(2).split()), validate=True))
        except binascii.Error:
            raise SignatureError(f"{what}: bad base64 in a PEM block") from None
    return blocks


def der_bytes(data: bytes, what: str) -> bytes:
    """`data` as DER: as it is, or its first PEM block (iPXE's IMAGE_PEM)."""
    if data[:1] == b"\x30":
        return data
    blocks = pem_blocks(data, None, what)
    if not blocks:
        raise SignatureError(f"{what}: neither DER nor PEM")
    return blocks[0]


def parse(data: bytes, what: str = "signature") -> Message:
    """A CMS signature; raises a TrustError (SignatureError, der.DerError) saying what is
    wrong."""
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"{what}: {len(data)} bytes, more than a signature can be")
    content_info = der.parse(der_bytes(data, what), what, trailing_ok=True)
    if content_info.tag != der.SEQUENCE:
        raise der.DerError(f"{what}: not a CMS message")
    reader = content_info.reader(f"{what}: ContentInfo")
    kind = der.oid(reader.next(der.OID, "contentType"), f"{what}: contentType")
    if kind != SIGNED_DATA:
        raise SignatureError(f"{what}: a CMS {OTHER_TYPES.get(kind, kind)} message, not a "
                             "signature (signedData)")
    signed = reader.next(der.context(0), "content").reader(f"{what}: content").next(
        der.SEQUENCE, "signedData").reader(f"{what}: signedData")
    signed.next(der.INTEGER, "version")
    signed.next(der.SET, "digestAlgorithms")
    signed.next(der.SEQUENCE, "encapContentInfo")
    certificates_element = signed.optional(der.context(0))
    signed.optional(der.context(1))  # crls
    signer_infos = signed.next(der.SET, "signerInfos")
    if certificates_element is None:
        raise SignatureError(f"{what}: the signature carries no certificates (iPXE needs the "
                             "signer's certificate in it)")
    certificates = [
        x509.from_element(element, f"{what}: certificate {index + 1}")
        for index, element in enumerate(certificates_element.reader(f"{what}: certificates")
                                        .all(der.SEQUENCE, "certificate",
                                             limit=MAX_CERTIFICATES))]
    signers = [_signer(element, certificates, f"{what}: signer {index + 1}")
               for index, element in enumerate(signer_infos.reader(f"{what}: signerInfos")
                                               .all(der.SEQUENCE, limit=MAX_SIGNERS))]
    return Message(certificates, signers)


def _signer(element: der.Element, certificates: Sequence[x509.Certificate],
            what: str) -> Signer:
    reader = element.reader(what)
    reader.next(der.INTEGER, "version")
    if reader.peek_tag() != der.SEQUENCE:
        raise SignatureError(f"{what}: identifies its certificate by key identifier; iPXE "
                             "needs issuer and serial number (do not sign with -keyid)")
    identifier = reader.next(der.SEQUENCE, "issuerAndSerialNumber").reader(what)
    issuer = identifier.next(der.SEQUENCE, "issuer").raw
    serial = identifier.next(der.INTEGER, "serialNumber").raw
    certificate = next((cert for cert in certificates
                        if cert.issuer == issuer and cert.serial == serial), None)
    if certificate is None:
        raise SignatureError(f"{what}: its certificate is not in the signature")
    digest_oid = der.oid(reader.next(der.SEQUENCE, "digestAlgorithm").reader(what).next(der.OID),
                         f"{what}: digestAlgorithm")
    digest_name = keys.digest_algorithm(digest_oid, what)
    if reader.peek_tag() == der.context(0):
        raise SignatureError(f"{what}: has signed attributes, which iPXE does not verify (it "
                             "rejects such signatures): sign with openssl cms -sign -binary "
                             "-noattr")
    algorithm = der.oid(reader.next(der.SEQUENCE, "signatureAlgorithm").reader(what)
                        .next(der.OID), f"{what}: signatureAlgorithm")
    key_kind, _ = keys.signature_algorithm(algorithm, what)
    signature = der.octet_string(reader.next(der.OCTET_STRING, "signature"), f"{what}: signature")
    return Signer(certificate, digest_name, key_kind, signature)


def verify(image: Path, signature: bytes, *, roots: Collection[bytes],
           store: Sequence[x509.Certificate] = (), signer_name: str | None = None,
           now: float | None = None, image_name: str = "image") -> list[Signer]:
    """Check `signature` over the file `image`; the signers checked. Raises a TrustError."""
    return check(image, parse(signature), roots=roots, store=store, signer_name=signer_name,
                 now=now, image_name=image_name)


def check(image: Path, message: Message, *, roots: Collection[bytes],
          store: Sequence[x509.Certificate] = (), signer_name: str | None = None,
          now: float | None = None, image_name: str = "image") -> list[Signer]:
    """Check a parsed signature over the file `image`. Chains are completed from the
    message's certificates, then from `store` (iPXE: its certificate store, which
    keeps every certificate it has parsed)."""
    moment = time.time() if now is None else now
    checked = []
    for signer in message.signers:
        certificate = signer.certificate
        if signer_name is not None and not x509.check_name(certificate, signer_name):
            continue
        chain = x509.build_chain(certificate, [*message.certificates, *store])
        x509.validate_chain(chain, moment, roots)
        if certificate.key_usage is None or not certificate.key_usage & x509.DIGITAL_SIGNATURE:
            raise SignatureError(f"{certificate.name} is not a signing certificate (its "
                                 "keyUsage lacks digitalSignature)")
        if x509.CODE_SIGNING not in certificate.extended_usage:
            raise SignatureError(f"{certificate.name} is not a code-signing certificate (its "
                                 "extendedKeyUsage lacks codeSigning)")
        if signer.key_kind != certificate.key.kind:
            raise SignatureError(f"{certificate.name}'s {certificate.key.describe()} key "
                                 f"cannot have made a {signer.key_kind.upper()} signature")
        keys.verify(certificate.key, signer.digest_name, _file_digest(image, signer.digest_name),
                    signer.signature, f"{image_name}'s signature by {certificate.name}")
        checked.append(signer)
    if not checked:
        if signer_name is not None:
            raise SignatureError(f"no signer is {signer_name!r} (signed by "
                                 + ", ".join(s.certificate.name for s in message.signers) + ")")
        raise SignatureError("the signature has no signers")
    return checked


def _file_digest(path: Path, name: str) -> bytes:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, name).digest()
