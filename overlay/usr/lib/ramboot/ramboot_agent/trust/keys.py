"""Public keys and signature verification: RSA PKCS#1 v1.5 and ECDSA (P-256, P-384).

The algorithms iPXE v2.0.0 verifies certificates and CMS signatures with
(crypto/rsa.c, crypto/ecdsa.c, crypto/mishmash/): RSA by comparing the
whole decrypted block with the expected PKCS#1 v1.5 encoding of the digest
(no parsing of the padding), ECDSA over the NIST curves P-256 and P-384.
Digests are the standard library's (hashlib). Verification only: nothing
here handles a private key, so timing does not matter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ramboot_agent.trust import TrustError, der

# Digest algorithms by OID: (name for hashlib, PKCS#1 v1.5 DigestInfo prefix).
DIGESTS: dict[str, tuple[str, bytes]] = {
    "1.3.14.3.2.26": ("sha1", bytes.fromhex("3021300906052b0e03021a05000414")),
    "2.16.840.1.101.3.4.2.4": ("sha224", bytes.fromhex("302d300d06096086480165030402040500041c")),
    "2.16.840.1.101.3.4.2.1": ("sha256", bytes.fromhex("3031300d060960864801650304020105000420")),
    "2.16.840.1.101.3.4.2.2": ("sha384", bytes.fromhex("3041300d060960864801650304020205000430")),
    "2.16.840.1.101.3.4.2.3": ("sha512", bytes.fromhex("3051300d060960864801650304020305000440")),
}
_PREFIX = dict(DIGESTS.values())
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
# Signature algorithms by OID: (key kind, digest name; None: the digest is named elsewhere,
# as a CMS signerInfo's digestAlgorithm does for rsaEncryption).
SIGNATURES: dict[str, tuple[str, str | None]] = {
    RSA_ENCRYPTION: ("rsa", None),
    "1.2.840.113549.1.1.5": ("rsa", "sha1"),
    "1.2.840.113549.1.1.14": ("rsa", "sha224"),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.4.3.1": ("ec", "sha224"),
    "1.2.840.10045.4.3.2": ("ec", "sha256"),
    "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"),
}
_KNOWN_UNSUPPORTED = {
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption", "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1", "1.3.101.112": "Ed25519", "1.2.840.113549.2.5": "md5",
}


class SignatureError(TrustError):
    """A key, an algorithm or a signature is unusable or wrong; says which and why."""


def algorithm_name(oid: str) -> str:
    return _KNOWN_UNSUPPORTED.get(oid, oid)


def digest_algorithm(oid: str, what: str) -> str:
    if oid not in DIGESTS:
        raise SignatureError(f"{what}: unsupported digest algorithm {algorithm_name(oid)}")
    return DIGESTS[oid][0]


def signature_algorithm(oid: str, what: str) -> tuple[str, str | None]:
    if oid not in SIGNATURES:
        raise SignatureError(f"{what}: unsupported signature algorithm {algorithm_name(oid)}")
    return SIGNATURES[oid]


def digest(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


@dataclass(frozen=True)
class Curve:
    name: str
    oid: str
    p: int
    b: int  # a is -3 on both
    gx: int
    gy: int
    n: int

    @property
    def size(self) -> int:
        return (self.p.bit_length() + 7) // 8


CURVES = {curve.oid: curve for curve in (
    Curve("P-256", "1.2.840.10045.3.1.7",
          0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
          0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
          0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
          0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
          0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
    Curve("P-384", "1.3.132.0.34",
          int("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff"
              "0000000000000000ffffffff", 16),
          int("b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d"
              "8a2ed19d2a85c8edd3ec2aef", 16),
          int("aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25d"
              "bf55296c3a545e3872760ab7", 16),
          int("3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce"
              "1d7e819d7a431d7c90ea0e5f", 16),
          int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db2"
              "48b0a77aecec196accc52973", 16)),
)}


@dataclass(frozen=True)
class RsaKey:
    n: int
    e: int

    kind = "rsa"

    def describe(self) -> str:
        return f"RSA-{self.n.bit_length()}"


@dataclass(frozen=True)
class EcKey:
    curve: Curve
    x: int
    y: int

    kind = "ec"

    def describe(self) -> str:
        return f"ECDSA {self.curve.name}"


PublicKey = RsaKey | EcKey


def public_key(spki: der.Element, what: str) -> PublicKey:
    """A SubjectPublicKeyInfo's key; raises SignatureError or der.DerError."""
    reader = spki.reader(f"{what}: subjectPublicKeyInfo")
    algorithm = reader.next(der.SEQUENCE, "algorithm").reader(f"{what}: key algorithm")
    kind = der.oid(algorithm.next(der.OID), f"{what}: key algorithm")
    bits, unused = der.bit_string(reader.next(der.BIT_STRING, "subjectPublicKey"),
                                  f"{what}: subjectPublicKey")
    reader.finish()
    if unused:
        raise SignatureError(f"{what}: the public key is not a whole number of octets")
    if kind == RSA_ENCRYPTION:
        inner = der.parse(bits, f"{what}: RSA public key").reader(f"{what}: RSA public key")
        n = der.unsigned(inner.next(der.INTEGER, "modulus"), f"{what}: RSA modulus")
        e = der.unsigned(inner.next(der.INTEGER, "exponent"), f"{what}: RSA exponent")
        inner.finish()
        if n < 3 or e < 3 or not e & 1:
            raise SignatureError(f"{what}: not a usable RSA key")
        return RsaKey(n, e)
    if kind == EC_PUBLIC_KEY:
        curve_oid = der.oid(algorithm.next(der.OID, "namedCurve"), f"{what}: EC curve")
        curve = CURVES.get(curve_oid)
        if curve is None:
            raise SignatureError(f"{what}: unsupported elliptic curve {curve_oid} "
                                 "(P-256 and P-384 are)")
        size = curve.size
        if len(bits) != 1 + 2 * size or bits[0] != 4:
            raise SignatureError(f"{what}: the EC point is not an uncompressed {curve.name} point")
        x, y = int.from_bytes(bits[1:1 + size], "big"), int.from_bytes(bits[1 + size:], "big")
        if not (x < curve.p and y < curve.p and _on_curve(curve, x, y)):
            raise SignatureError(f"{what}: the EC point is not on {curve.name}")
        return EcKey(curve, x, y)
    raise SignatureError(f"{what}: unsupported public key algorithm {algorithm_name(kind)}")


def verify(key: PublicKey, digest_name: str, value: bytes, signature: bytes, what: str) -> None:
    """Check `signature` (the BIT or OCTET STRING contents) over digest `value`."""
    if isinstance(key, RsaKey):
        _verify_rsa(key, digest_name, value, signature, what)
    else:
        _verify_ecdsa(key, value, signature, what)


def _verify_rsa(key: RsaKey, digest_name: str, value: bytes, signature: bytes,
                what: str) -> None:
    size = (key.n.bit_length() + 7) // 8
    if len(signature) != size:
        raise SignatureError(f"{what}: a {len(signature)}-byte signature for a {size}-byte "
                             f"{key.describe()} key")
    prefix = _PREFIX[digest_name]
    if len(prefix) + len(value) > size - 11:
        raise SignatureError(f"{what}: {key.describe()} is too small for a {digest_name} digest")
    number = int.from_bytes(signature, "big")
    if number >= key.n:
        raise SignatureError(f"{what}: the signature is out of range for the key")
    decrypted = pow(number, key.e, key.n).to_bytes(size, "big")
    padding = size - 3 - len(prefix) - len(value)
    expected = b"\x00\x01" + b"\xff" * padding + b"\x00" + prefix + value
    if decrypted != expected:
        raise SignatureError(f"{what}: the {key.describe()} signature does not match "
                             f"(wrong key, or the data changed)")


# --- ECDSA, in Jacobian coordinates (a = -3 on both curves) ------------------------------------

_Point = tuple[int, int, int]  # X, Y, Z; Z == 0 is the point at infinity
_INFINITY: _Point = (1, 1, 0)


def _on_curve(curve: Curve, x: int, y: int) -> bool:
    return (y * y - (x * x * x - 3 * x + curve.b)) % curve.p == 0


def _double(point: _Point, p: int) -> _Point:
    x, y, z = point
    if z == 0 or y == 0:
        return _INFINITY
    delta = z * z % p
    gamma = y * y % p
    beta = x * gamma % p
    alpha = 3 * (x - delta) * (x + delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def _add(one: _Point, two: _Point, p: int) -> _Point:
    if one[2] == 0:
        return two
    if two[2] == 0:
        return one
    x1, y1, z1 = one
    x2, y2, z2 = two
    z1z1, z2z2 = z1 * z1 % p, z2 * z2 % p
    u1, u2 = x1 * z2z2 % p, x2 * z1z1 % p
    s1, s2 = y1 * z2 * z2z2 % p, y2 * z1 * z1z1 % p
    if u1 == u2:
        return _double(one, p) if s1 == s2 else _INFINITY
    h, r = (u2 - u1) % p, (s2 - s1) % p
    hh = h * h % p
    hhh = h * hh % p
    x3 = (r * r - hhh - 2 * u1 * hh) % p
    y3 = (r * (u1 * hh - x3) - s1 * hhh) % p
    return x3, y3, h * z1 * z2 % p


def _twin_multiply(curve: Curve, u1: int, u2: int, qx: int, qy: int) -> _Point:
    """u1*G + u2*Q (Shamir's trick: one pass over the bits of both)."""
    p = curve.p
    g, q = (curve.gx, curve.gy, 1), (qx, qy, 1)
    table = {1: g, 2: q, 3: _add(g, q, p)}
    result = _INFINITY
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        result = _double(result, p)
        index = ((u1 >> bit) & 1) | (((u2 >> bit) & 1) << 1)
        if index:
            result = _add(result, table[index], p)
    return result


def _verify_ecdsa(key: EcKey, value: bytes, signature: bytes, what: str) -> None:
    curve = key.curve
    reader = der.parse(signature, f"{what}: ECDSA signature").reader(f"{what}: ECDSA signature")
    r = der.integer(reader.next(der.INTEGER, "r"), f"{what}: ECDSA r")
    s = der.integer(reader.next(der.INTEGER, "s"), f"{what}: ECDSA s")
    reader.finish()
    n = curve.n
    if not (0 < r < n and 0 < s < n):
        raise SignatureError(f"{what}: the ECDSA signature is out of range")
    e = int.from_bytes(value, "big") >> max(0, 8 * len(value) - n.bit_length())
    w = pow(s, -1, n)
    x, _, z = _twin_multiply(curve, e * w % n, r * w % n, key.x, key.y)
    if z == 0 or (x * pow(z * z, -1, curve.p) % curve.p) % n != r:
        raise SignatureError(f"{what}: the {key.describe()} signature does not match "
                             f"(wrong key, or the data changed)")
