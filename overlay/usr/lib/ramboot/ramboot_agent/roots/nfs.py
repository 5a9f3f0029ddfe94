"""NFS roots and mounts: `nfs://SERVER[:PORT]/EXPORT/PATH` to a kernel NFS mount.

No mount.nfs helper is involved: `mount -t nfs` hands the options to the
kernel, which needs the server's address (`addr=`) and a version. Without
`vers=` in the plan's options the versions are tried as mount.nfs does,
newest first, moving on only when the server says a version is not
supported, from 4.1: NFSv4.2 adds nothing a root needs, and its READ_PLUS
reads come back as zeros from nfs-ganesha (seen with 4.3 and Linux 6.12),
so it is used only when the options ask for `vers=4.2`. NFSv3 gets
`nolock` (no rpc.statd in the RAM system) unless the options say `lock`.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ramboot_agent.plan.context import ActionError
from ramboot_agent.roots.keys import has_option
from ramboot_agent.roots.mounts import Mounts

log = logging.getLogger("ramboot.roots")

VERSIONS = ("4.1", "4.0", "3")


@dataclass(frozen=True)
class NfsUrl:
    host: str  # without IPv6 brackets
    port: int | None
    path: str  # on the server, at least "/"

    @property
    def source(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.path}"


def parse_url(url: str) -> NfsUrl:
    """An `nfs://` URL the plan's validator accepted (keys.NFS_URL)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    return NfsUrl(host, parts.port, path)


def resolve(host: str) -> str:
    """The server's address for `addr=` (the kernel does not resolve names)."""
    try:
        infos = socket.getaddrinfo(host, 2049, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ActionError(f"cannot resolve the NFS server {host}: {error}") from None
    # IPv4 first: the lease the agent got is IPv4.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return str(infos[0][4][0])


def _version_in(options: str | None) -> str | None:
    for option in (options or "").split(","):
        name, _, value = option.partition("=")
        if name in ("vers", "nfsvers") and value:
            return value
    return None


def mount(mounts: Mounts, url: NfsUrl, target: Path, *, read_only: bool,
          options: str | None = None) -> str:
    """Mount `url` on `target`; the NFS version that was used."""
    mounts.modprobe("nfs", "nfsv4", "nfsv3")
    mounts.require_filesystem("nfs", "CONFIG_NFS_FS")
    base = ["ro"] if read_only else []
    if not has_option(options, "addr"):
        base.append(f"addr={resolve(url.host)}")
    if url.port is not None and not has_option(options, "port"):
        base.append(f"port={url.port}")
    given = _version_in(options)
    versions: tuple[str | None, ...] = (None,) if given else VERSIONS
    user = options.split(",") if options else []
    for index, version in enumerate(versions):
        effective = version or given or ""
        extra = [f"vers={version}"] if version else []
        if effective[:1] in ("2", "3") and not has_option(options, "lock", "nolock"):
            extra.append("nolock")
        try:
            mounts.mount(url.source, target, fstype="nfs", options=[*base, *extra, *user])
        except ActionError as error:
            last = index == len(versions) - 1
            if last or "not supported" not in str(error).lower():
                raise ActionError(f"cannot mount {url.source}: {error}") from None
            log.info("%s: NFS %s not supported by the server, trying %s", url.source,
                     version, versions[index + 1])
            continue
        return effective
    raise AssertionError("unreachable")
