"""The rendered tree served with Range requests (the agent resumes), and HTTPS."""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.serve.harness import SRV_MAC, running_serve


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "http"
    (root / "images" / "x86_64").mkdir(parents=True)
    (root / "images" / "x86_64" / "rootfs.cpio.zst").write_bytes(os.urandom(300_000))
    (root / "images" / "rpi4").mkdir(parents=True)
    for kernel in ("x86_64/bzImage", "rpi4/Image"):  # the inventory's kexec targets name them
        (root / "images" / kernel).write_bytes(b"kernel\n")
    # A static copy of a stage document (a rendered tree has them): never served by serve,
    # which answers every stage from the machine's state.
    (root / "stage1").mkdir()
    (root / "stage1" / "srv-01.ipxe").write_text("#!ipxe\necho STATIC COPY\n")
    (root / "stage1" / "gone-01.ipxe").write_text("#!ipxe\necho STATIC COPY\n")
    (tmp_path / "secret.txt").write_text("outside the tree")
    (root / "images" / "escape").symlink_to(tmp_path / "secret.txt")
    return root


def test_tree_with_ranges(tmp_path: Path, tree: Path) -> None:
    data = (tree / "images" / "x86_64" / "rootfs.cpio.zst").read_bytes()
    path = "/images/x86_64/rootfs.cpio.zst"
    with running_serve(tmp_path / "s", f"sqlite://{tmp_path / 'db'}",
                       args=("--tree", str(tree))) as serve:
        whole = serve.request("GET", path)
        assert whole.status == 200 and whole.body == data
        assert whole.headers["accept-ranges"] == "bytes"
        etag = whole.headers["etag"]
        part = serve.request("GET", path, headers={"Range": "bytes=100000-"})
        assert part.status == 206
        assert part.headers["content-range"] == f"bytes 100000-{len(data) - 1}/{len(data)}"
        assert part.body == data[100000:]
        # The agent's resume: If-Range with the validator it saw.
        same = serve.request("GET", path, headers={"Range": "bytes=5-9", "If-Range": etag})
        assert same.status == 206 and same.body == data[5:10]
        other = serve.request("GET", path, headers={"Range": "bytes=5-9", "If-Range": '"x"'})
        assert other.status == 200 and other.body == data  # changed: the whole file again
        assert serve.request("GET", path, headers={"Range": "bytes=999999-"}).status == 416
        # Nothing outside the tree, however asked.
        for bad in ("/../secret.txt", "/images/../../secret.txt", "/%2e%2e/secret.txt",
                    "/images/escape"):
            reply = serve.request("GET", bad)
            assert reply.status == 404, (bad, reply.status)
            assert b"outside the tree" not in reply.body
        # The API, the boot endpoint and the stage URLs are not shadowed by the tree.
        assert serve.request("GET", f"/boot?mac={SRV_MAC}").status == 401
        assert serve.request("GET", f"/stage1/srv-01.ipxe?mac={SRV_MAC}").status == 401
        stage1 = serve.request("GET", f"/stage1/srv-01.ipxe?mac={SRV_MAC}",
                               token=serve.token("srv-01"))
        assert stage1.status == 200 and b"STATIC COPY" not in stage1.body
        gone = serve.request("GET", "/stage1/gone-01.ipxe")
        assert gone.status == 404 and b"STATIC COPY" not in gone.body
        assert hashlib.sha256(whole.body).hexdigest() == hashlib.sha256(data).hexdigest()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "serve.crt", directory / "serve.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def test_https_when_given_a_certificate(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    verified = ssl.create_default_context(cafile=str(cert))
    with running_serve(tmp_path / "s", f"sqlite://{tmp_path / 'db'}", tls_context=verified,
                       args=("--tls-cert", str(cert), "--tls-key", str(key))) as serve:
        reply = serve.boot({"mac": SRV_MAC}, token=serve.token("srv-01"))
        assert reply.status == 200 and reply.body.startswith(b"#!ipxe")
        # A client that verifies against the system CAs refuses this certificate.
        serve.tls_context = ssl.create_default_context()
        with pytest.raises(ssl.SSLCertVerificationError):
            serve.request("GET", "/healthz")
        # Plain HTTP to the TLS port gets no answer.
        serve.tls_context = None
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            serve.request("GET", "/healthz")
