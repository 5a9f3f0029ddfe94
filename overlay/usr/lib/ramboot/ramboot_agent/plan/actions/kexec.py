"""`kexec`: download a kernel and initrds by URL (digests checked) and boot them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ramboot_agent.plan.context import ActionError, Context
from ramboot_agent.plan.kind import ActionKind, Result
from ramboot_agent.plan.model import Fields, Handoff
from ramboot_agent.plan.schema import Node

if TYPE_CHECKING:
    from ramboot_agent.fetch import Fetched

MAX_CMDLINE = 4096


@dataclass(frozen=True)
class Artifact:
    url: str
    digest: tuple[str, str] | None  # (algorithm, hex)


@dataclass(frozen=True)
class KexecSpec:
    kernel: Artifact
    initrds: tuple[Artifact, ...]
    cmdline: str


def artifact(node: Node) -> Artifact | None:
    """A URL, or `{"url": URL, "digest": "sha256:…"}`."""
    if isinstance(node.value, str):
        url = node.url()
        return Artifact(url, None) if url is not None else None
    fields = node.object(required=("url",), optional=("digest",))
    if fields is None:
        return None
    url = fields["url"].url() if "url" in fields else None
    digest = fields["digest"].digest() if "digest" in fields else None
    if url is None or ("digest" in fields and digest is None):
        return None
    return Artifact(url, digest)


def fetch_artifact(item: Artifact, ctx: Context, dest: Path) -> Path:
    """Download `item` into `dest` and check its digest; the file's path."""
    from ramboot_agent.fetch import resolve_url  # noqa: PLC0415

    url = resolve_url(ctx.base_url, item.url)
    dest.mkdir(parents=True, exist_ok=True)
    fetched = ctx.fetcher.fetch_file(url, dest, origin=ctx.base_url, deadline=ctx.remaining())
    if item.digest is not None:
        verify_fetched(url, fetched, item.digest)
    ctx.reporter.emit("fetch", url=url, bytes=fetched.size, sha256=fetched.sha256,
                      seconds=round(fetched.seconds, 3))
    return Path(fetched.path)


def verify_fetched(url: str, fetched: Fetched, digest: tuple[str, str]) -> None:
    """The plan's digest of a downloaded file, or ActionError (the file removed)."""
    algorithm, expected = digest
    path = fetched.path
    assert path is not None  # fetch_file's result
    if algorithm == "sha256":
        actual = fetched.sha256  # the fetcher's own, computed as the bytes arrived
    else:
        with path.open("rb") as stream:
            actual = hashlib.file_digest(stream, algorithm).hexdigest()
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ActionError(f"{url}: {algorithm} is {actual}, the plan expects {expected}")


class KexecUrls(ActionKind[KexecSpec]):
    required = ("kernel",)
    optional = ("initrds", "cmdline")
    terminal = True
    default_timeout = 900.0

    def parse(self, fields: Fields) -> KexecSpec | None:
        kernel = artifact(fields.nodes["kernel"]) if "kernel" in fields.nodes else None
        initrds = [artifact(node) for node in fields.nodes["initrds"].items(max_items=16)] \
            if "initrds" in fields.nodes else []
        cmdline = fields.nodes["cmdline"].string(max_length=MAX_CMDLINE, allow_empty=True) \
            if "cmdline" in fields.nodes else ""
        if kernel is None or cmdline is None or any(i is None for i in initrds):
            return None
        return KexecSpec(kernel, tuple(i for i in initrds if i is not None), cmdline)

    def describe(self, spec: KexecSpec, ctx: Context) -> str:
        from ramboot_agent.fetch import redact, resolve_url  # noqa: PLC0415

        files = [spec.kernel, *spec.initrds]
        listed = ", ".join(redact(resolve_url(ctx.base_url, f.url))
                           + (f" ({f.digest[0]} checked)" if f.digest else "") for f in files)
        return f"would download {listed} and kexec with command line {spec.cmdline!r}"

    def run(self, spec: KexecSpec, ctx: Context) -> Result:
        from ramboot_agent.kexec import BootSpec, Kexec  # noqa: PLC0415

        work = ctx.runtime_dir / "plan" / f"{ctx.action_index:03d}-kexec"
        kernel = fetch_artifact(spec.kernel, ctx, work / "kernel")
        initrds = [fetch_artifact(item, ctx, work / f"initrd{n}")
                   for n, item in enumerate(spec.initrds)]
        boot = BootSpec(kernel=kernel, initrds=initrds, cmdline=spec.cmdline)
        kexec = Kexec(reporter=ctx.reporter, work_dir=work)
        kexec.load(boot)
        return Handoff("kexec", kexec.execute)
