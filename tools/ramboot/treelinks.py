"""Where a symlink of a tree really leads, decided on the resolved path.

A link's text alone says little: `a -> .` and `b -> a/..` each look harmless,
but `b` names the tree's parent. `resolve` follows the tree's own links
component by component, as the kernel does, and fails as soon as a step leaves
the tree: a later `..` must not bring it back, since the tree is published
under another name (`releases/<id>`) and what is beside it there differs.

A boot server serves a top-level directory (`tftp/`, `http/`) as its root, so
`check_links` also keeps each link inside the top-level directory it is in.
"""

from __future__ import annotations

from collections.abc import Mapping

from ramboot.errors import RambootError

MAX_HOPS = 40  # the kernel's limit on symlinks followed in one lookup


def resolve(links: Mapping[str, str], link: str) -> str | None:
    """The tree-relative path that `link` finally names, or None when a step
    leaves the tree, a target is absolute, or the links loop."""
    resolved = link.split("/")[:-1]
    remaining = links[link].split("/")
    hops = 1
    while remaining:
        part = remaining.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        candidate = "/".join([*resolved, part])
        target = links.get(candidate)
        if target is None:
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_HOPS or target.startswith("/"):
            return None
        remaining = target.split("/") + remaining
    return "/".join(resolved)


def check_links(links: Mapping[str, str], where: str) -> None:
    """Refuse any link of `links` (path -> target) that leads outside its
    top-level directory (or, at the top level, outside the tree)."""
    for link in sorted(links):
        check_link(links, link, where)


def check_link(links: Mapping[str, str], link: str, where: str) -> None:
    """Refuse `link` (one of `links`) unless it resolves inside its top-level directory."""
    target = links[link]
    if target.startswith("/") or "\x00" in target or not target:
        raise RambootError(f"{where}{link}: symlink to absolute path {target!r} is not "
                           "allowed: only relative links inside the tree")
    resolved = resolve(links, link)
    top = link.split("/", 1)[0] if "/" in link else ""
    if resolved is None or (top and resolved != top and not resolved.startswith(f"{top}/")):
        scope = f"{top}/" if top else "the tree"
        raise RambootError(
            f"{where}{link}: symlink {target!r} leads outside {scope} once resolved "
            "(a boot server would serve a file from elsewhere)"
        )
