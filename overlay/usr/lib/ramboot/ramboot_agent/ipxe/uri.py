"""Relative URL resolution (RFC 3986 section 5.2) for any scheme.

urllib.parse.urljoin only resolves schemes it knows (not ``tftp``), so the
agent resolves references itself, as iPXE's resolve_uri() does.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit


def remove_dot_segments(path: str) -> str:
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1 or (output and output[0] != ""):
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def resolve(base: str | None, reference: str) -> str:
    """``reference`` resolved against ``base`` (returned unchanged when absolute)."""
    ref = urlsplit(reference)
    if ref.scheme or base is None:
        return reference
    bas = urlsplit(base)
    if reference.startswith("//"):
        return urlunsplit((bas.scheme, ref.netloc, remove_dot_segments(ref.path),
                           ref.query, ref.fragment))
    if ref.path == "":
        path = bas.path
        query = ref.query if "?" in reference.split("#", 1)[0] else bas.query
    elif ref.path.startswith("/"):
        path = remove_dot_segments(ref.path)
        query = ref.query
    else:
        if bas.netloc and not bas.path:
            merged = "/" + ref.path
        else:
            merged = bas.path[: bas.path.rfind("/") + 1] + ref.path
        path = remove_dot_segments(merged)
        query = ref.query
    return urlunsplit((bas.scheme, bas.netloc, path, query, ref.fragment))


def is_absolute(url: str) -> bool:
    return bool(urlsplit(url).scheme)


def to_url(file_or_url: str) -> str:
    """A command-line argument as a URL: local paths become ``file://`` URLs."""
    if is_absolute(file_or_url) and len(urlsplit(file_or_url).scheme) > 1:
        return file_or_url
    return Path(file_or_url).resolve().as_uri()


def image_name(url: str) -> str:
    """iPXE names an image after the last segment of its URL's path."""
    parts = urlsplit(url)
    path = parts.path or url
    return unquote(path.rstrip("/").rsplit("/", 1)[-1]) if path else ""
