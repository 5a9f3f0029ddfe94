"""Image digests, extraction and trust (iPXE's digest_cmd.c, image_archive_cmd.c,
image_trust_cmd.c). Signatures are checked by ramboot_agent/trust (CMS, X.509,
RSA, ECDSA), against the roots trust/roots.py describes."""

from __future__ import annotations

import hashlib
import logging
import shutil
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ramboot_agent.ipxe.commands import getopt
from ramboot_agent.ipxe.images import Image
from ramboot_agent.ipxe.settings import SettingError, format_value, parse_setting_name
from ramboot_agent.ipxe.status import CommandFailed

if TYPE_CHECKING:
    from ramboot_agent.ipxe.interpreter import Interpreter

log = logging.getLogger("ramboot")

CHUNK = 1 << 20
# An extracted image may not leave less than this free in the download directory.
EXTRACT_RESERVE = 16 << 20


def _digest_command(algorithm: str) -> Callable[[Interpreter, list[str]], None]:
    def run(ip: Interpreter, argv: list[str]) -> None:
        # `md5sum [--set <setting>] <image>...`: print "<hex>  <name>" per image,
        # or store the digest (default type hexraw) when --set is given.
        options, args = getopt(argv, {"set": ("s", True)}, 1, None,
                               "[--set <setting>] <image> [<image>...]")
        target = options.get("set")
        for name_or_url in args:
            image = ip.acquire(name_or_url)
            digest = hashlib.new(algorithm)
            with image.path.open("rb") as stream:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
            raw = digest.digest()
            if isinstance(target, str):
                try:
                    name = parse_setting_name(target)
                except SettingError as error:
                    raise CommandFailed(str(error)) from None
                ip.store_setting(target, format_value(name.type or "hexraw", raw))
            else:
                ip.print(f"{raw.hex()}  {image.name}\n")
    run.__name__ = f"cmd_{algorithm}sum"
    return run


def _stripped_name(name: str) -> str:
    # iPXE's image_strip_suffix(): drop the last ".suffix".
    return name.rsplit(".", 1)[0] if "." in name else name


def _decompressor(head: bytes) -> tuple[str, zlib._Decompress] | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS)
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib", zlib.decompressobj()
    return None


def cmd_imgextract(ip: Interpreter, argv: list[str]) -> None:
    options, args = getopt(argv, {"name": ("n", True), "keep": ("k", False),
                                  "timeout": ("t", True)}, 1, 1,
                           "[--name <name>] [--keep] <uri|image>")
    image = ip.acquire(args[0])
    try:
        extracted = _extract(ip, image, options.get("name"))
    finally:
        if not options.get("keep"):
            ip.images.unregister(image)
    ip.images.register(extracted)


def _extract(ip: Interpreter, image: Image, name: object) -> Image:
    with image.path.open("rb") as source:
        found = _decompressor(source.read(2))
        if found is None:
            raise CommandFailed(f"{image.name}: not a gzip or zlib archive")
        kind, inflater = found
        source.seek(0)
        dest = image.path.with_name(image.path.name + ".extracted")
        # Bounded: a small archive must not fill the RAM disk.
        limit = max(0, shutil.disk_usage(dest.parent).free - EXTRACT_RESERVE)
        size = 0
        try:
            with dest.open("wb") as out:

                def write(data: bytes) -> None:
                    nonlocal size
                    size += len(data)
                    if size > limit:
                        raise CommandFailed(f"{image.name}: extracting would leave less than "
                                            f"{EXTRACT_RESERVE >> 20} MiB free")
                    out.write(data)

                while not inflater.eof and (chunk := source.read(CHUNK)):
                    write(inflater.decompress(chunk, CHUNK))
                    while inflater.unconsumed_tail and not inflater.eof:
                        write(inflater.decompress(inflater.unconsumed_tail, CHUNK))
            if not inflater.eof:
                raise CommandFailed(f"{image.name}: truncated {kind} data")
        except zlib.error as error:
            dest.unlink(missing_ok=True)
            raise CommandFailed(f"{image.name}: corrupt {kind} data: {error}") from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    label = name if isinstance(name, str) else _stripped_name(image.name)
    text = None
    with dest.open("rb") as stream:
        head = stream.read(8)
    from ramboot_agent.ipxe.parser import MAX_SCRIPT_CHARS, is_script  # noqa: PLC0415

    if is_script(head) and size <= MAX_SCRIPT_CHARS:
        text = dest.read_bytes().decode("utf-8", "replace")
    log.info("imgextract: %s (%s, %d bytes) -> %s (%d bytes)", image.name, kind, image.size,
             label, size)
    return Image(label, image.url, dest, size, text is not None, text=text,
                 trusted=image.trusted)


def cmd_imgverify(ip: Interpreter, argv: list[str]) -> None:
    # iPXE's usr/imgtrust.c imgverify(): a CMS signature by a trusted code signer.
    options, args = getopt(argv, {"signer": ("s", True), "keep": ("k", False),
                                  "timeout": ("t", True)}, 2, 2,
                           "[--signer <signer>] [--keep] <uri|image> <signature uri|image>")
    image = ip.acquire(args[0])
    signature = ip.acquire(args[1])
    try:
        from ramboot_agent.trust import TrustError, cms  # noqa: PLC0415 - imgverify only

        image.trusted = False  # as iPXE's cms_verify: untrusted until it verifies
        signer = options.get("signer")
        roots = "none could be loaded"
        try:
            store = ip.trust_store()
            roots = store.describe()
            if signature.size > cms.MAX_SIGNATURE_BYTES:
                raise TrustError(f"{signature.size} bytes, more than a signature can be")
            message = cms.parse(signature.path.read_bytes())
            ip.remember_certificates(message.certificates)
            signers = cms.check(image.path, message, roots=store.roots(),
                                store=[*store.certificates, *ip.certificates],
                                signer_name=signer if isinstance(signer, str) else None,
                                image_name=image.name)
        except TrustError as error:
            raise CommandFailed(f"{image.name}: signature {signature.name} rejected: {error} "
                                f"(trusted roots: {roots})") from None
        image.trusted = True
        log.info("imgverify: %s signed by %s", image.name,
                 ", ".join(s.certificate.name for s in signers))
    finally:
        if not options.get("keep"):
            ip.images.unregister(signature)


def cmd_imgtrust(ip: Interpreter, argv: list[str]) -> None:
    # iPXE's image_set_trust(): --permanent fixes the requirement for good.
    options, _ = getopt(argv, {"allow": ("a", False), "permanent": ("p", False)}, 0, 0,
                        "[--allow] [--permanent]")
    require = not options.get("allow")
    if not ip.trust_permanent:
        ip.trusted_only = require
        ip.trust_permanent = bool(options.get("permanent"))
    if ip.trusted_only != require:
        raise CommandFailed("the trust requirement is permanent (imgtrust --permanent)")


COMMANDS: dict[str, Callable[[Interpreter, list[str]], None]] = {
    "md5sum": _digest_command("md5"),
    "sha1sum": _digest_command("sha1"),
    "sha224sum": _digest_command("sha224"),
    "sha256sum": _digest_command("sha256"),
    "sha384sum": _digest_command("sha384"),
    "sha512sum": _digest_command("sha512"),
    "imgextract": cmd_imgextract,
    "imgverify": cmd_imgverify,
    "imgtrust": cmd_imgtrust,
}
