#!/usr/bin/env python3
"""imgverify: the agent's pure-Python CMS check against `openssl cms -verify`, side by side.

Makes a test PKI (tests/lib/pki.py: root, intermediate, an RSA-2048, an
ECDSA P-256 and a P-384 code signer), signs a small script and a 64 MiB
image with each, and times, per signature, the agent's
`ramboot_agent.trust.cms.verify` (in this process, the median of --runs)
and `openssl cms -verify` (a process per run, as a user would call it),
both checking the chain to the same root.

    .venv/bin/python bench/imgverify_bench.py [--runs 10] [--size-mib 64]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "overlay/usr/lib/ramboot")]

from ramboot_agent.trust import cms  # noqa: E402
from tests.lib.pki import CA, Pki  # noqa: E402


def _median_ms(action: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgverify-bench-") as tmp:
        work = Path(tmp)
        pki = Pki(work / "pki")
        intermediate = pki.issue("intermediate", issuer=pki.root, extensions=CA)
        signers = {kind: pki.issue(f"{kind} signer", issuer=intermediate, key=kind)
                   for kind in ("rsa", "ec256", "ec384")}
        small = work / "boot.ipxe"
        small.write_bytes(b"#!ipxe\nkernel vmlinuz\nboot\n")
        big = work / "image.bin"
        with big.open("wb") as out:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                out.write(block)
        root = bytes.fromhex(pki.root.fingerprint)
        bundle = work / "chain.pem"
        bundle.write_bytes(intermediate.cert.read_bytes() + pki.root.cert.read_bytes())
        print(f"load {os.getloadavg()[0]:.1f}, {args.runs} runs, median ms")
        print("| image | signer | agent (in process) | openssl cms -verify (a process) |")
        print("| --- | --- | --- | --- |")
        for image in (small, big):
            for kind, signer in signers.items():
                signature = pki.sign(image, signer, [intermediate, pki.root],
                                     work / f"{image.name}.{kind}.sig")
                data = signature.read_bytes()

                def agent(data: bytes = data, image: Path = image) -> None:
                    cms.verify(image, data, roots={root})

                def openssl(signature: Path = signature, image: Path = image) -> None:
                    subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                                    "-in", signature, "-content", image, "-CAfile",
                                    pki.root.cert, "-purpose", "any", "-out", os.devnull],
                                   check=True, capture_output=True)

                size = f"{image.stat().st_size >> 20} MiB" if image is big else \
                    f"{image.stat().st_size} B"
                print(f"| {size} | {kind} | {_median_ms(agent, args.runs):.1f} | "
                      f"{_median_ms(openssl, args.runs):.1f} |")
        hashed = _median_ms(lambda: hashlib.sha256(big.read_bytes()).digest(), args.runs)
        print(f"\nsha256 of the {args.size_mib} MiB image alone (hashlib): {hashed:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
