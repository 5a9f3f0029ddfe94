"""Finding the kernel an installed system boots: BLS entries, GRUB, the Pi's config.txt.

Pure parsing of the text of those files (read by the localboot action from the
mounted partitions), so each rule is tested on real files:

- Boot Loader Specification type #1 entries (`/loader/entries/*.conf`):
  `linux`, `initrd` (several), `options` (several, joined), `devicetree`;
  the default is loader.conf's `default` (a glob), else the first after
  sorting by `sort-key`, `machine-id`, then `version` newest first (the
  specification's order), else by file name, newest first.
- GRUB (`grub.cfg`): the `menuentry` that `set default=` names (an index,
  "saved" or a title; submenus as "1>2"), its `linux`/`linuxefi`/`linux16`
  and `initrd` lines, and the filesystem its `search --fs-uuid --set=root`
  names. Variables set at the top level are expanded; others dropped.
- Raspberry Pi (`config.txt` + `cmdline.txt`): `kernel=` (default
  kernel8.img with arm_64bit, the firmware's default on a Pi 4),
  `initramfs FILE`, `cmdline=`, `os_prefix=`, `device_tree=`, in the
  `[all]` / `[pi4]`-family sections that apply to the board.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BootEntry:
    """What to kexec: paths relative to the filesystem they are on."""

    source: str  # where it was found, e.g. "loader/entries/fedora.conf"
    title: str
    kernel: str
    initrds: tuple[str, ...] = ()
    cmdline: str = ""
    devicetree: str | None = None
    fs_uuid: str | None = None  # GRUB: the filesystem holding the files, when it says


class EntryError(ValueError):
    """A boot configuration that names no kernel."""


# --- Boot Loader Specification --------------------------------------------------------------


def parse_bls(text: str, source: str) -> dict[str, list[str]]:
    """A BLS entry's keys, each with every value it has (in order)."""
    values: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if "\t" in key:
            key, _, rest = key.partition("\t")
            value = f"{rest} {value}".strip()
        values.setdefault(key, []).append(value.strip())
    return values


def _version_key(version: str) -> list[tuple[int, object]]:
    """Comparable form of a version: digit runs as numbers, other runs as text."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.findall(r"\d+|[A-Za-z]+", version)]


def choose_bls(entries: dict[str, str], loader_conf: str | None = None) -> BootEntry:
    """The default of `entries` (file name -> text), as systemd-boot would pick it."""
    parsed = {name: parse_bls(text, name) for name, text in entries.items()}
    usable = {name: keys for name, keys in parsed.items()
              if keys.get("linux") and not keys.get("efi")}
    if not usable:
        raise EntryError("no Boot Loader Specification entry with a 'linux' line")
    default = None
    for line in (loader_conf or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "default" and value.strip() and value.strip() != "@saved":
            default = value.strip()
    if default:
        for name in sorted(usable):
            stem = name.rsplit("/", 1)[-1]
            if fnmatch.fnmatch(stem, default) or fnmatch.fnmatch(stem.removesuffix(".conf"),
                                                                 default):
                return _bls_entry(name, usable[name])

    def order(name: str) -> tuple[object, ...]:
        keys = usable[name]
        first = {key: (keys.get(key) or [""])[0] for key in ("sort-key", "machine-id",
                                                              "version")}
        # Entries with a sort-key come first; versions and names newest first.
        return (not first["sort-key"], first["sort-key"], first["machine-id"],
                _Reverse(_version_key(first["version"])), _Reverse(_version_key(name)))

    name = sorted(usable, key=order)[0]
    return _bls_entry(name, usable[name])


@dataclass(frozen=True)
class _Reverse:
    value: list[tuple[int, object]]

    def __lt__(self, other: _Reverse) -> bool:
        return _compare(other.value, self.value) < 0


def _compare(left: list[tuple[int, object]], right: list[tuple[int, object]]) -> int:
    for a, b in zip(left, right, strict=False):
        if a != b:
            if a[0] != b[0]:
                return -1 if a[0] < b[0] else 1
            return -1 if a[1] < b[1] else 1  # type: ignore[operator]
    return (len(left) > len(right)) - (len(left) < len(right))


def _bls_entry(name: str, keys: dict[str, list[str]]) -> BootEntry:
    title = (keys.get("title") or [""])[0] or name
    if keys.get("version"):
        title = f"{title} ({keys['version'][0]})"
    initrds = tuple(path for value in keys.get("initrd", []) for path in value.split())
    return BootEntry(source=name, title=title, kernel=keys["linux"][0], initrds=initrds,
                     cmdline=" ".join(keys.get("options", [])),
                     devicetree=keys["devicetree"][0] if keys.get("devicetree") else None)


# --- GRUB ------------------------------------------------------------------------------------


@dataclass
class _Menu:
    title: str
    lines: list[str] = field(default_factory=list)
    children: list[_Menu] = field(default_factory=list)
    is_submenu: bool = False


def _grub_words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True, posix=True)
    except ValueError:
        return line.split()


def _parse_grub_tree(text: str) -> tuple[_Menu, dict[str, str]]:
    root = _Menu("")
    stack = [root]
    variables: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = _grub_words(line)
        if not words:
            continue
        if words[0] in ("menuentry", "submenu") and len(words) > 1:
            menu = _Menu(words[1], is_submenu=words[0] == "submenu")
            stack[-1].children.append(menu)
            if line.rstrip().endswith("{"):
                stack.append(menu)
            continue
        if line == "}" or line.startswith("}"):
            if len(stack) > 1:
                stack.pop()
            continue
        if len(stack) == 1 and words[0] == "set" and len(words) >= 2 and "=" in words[1]:
            name, _, value = " ".join(words[1:]).partition("=")
            variables[name.strip()] = value.strip()
            continue
        stack[-1].lines.append(line)
    return root, variables


def _expand(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return variables.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value, text)


def _pick(menu: _Menu, selector: str) -> _Menu | None:
    """An entry by index path ("1>2"), by title, or by title path."""
    current = menu
    for raw_step in selector.split(">"):
        step = raw_step.strip()
        entries = current.children
        chosen = None
        if step.isdigit() and int(step) < len(entries):
            chosen = entries[int(step)]
        else:
            chosen = next((e for e in entries if e.title == step), None)
            if chosen is None:  # a title anywhere below, as grub's default= allows
                chosen = next((e for e in _walk(current) if e.title == step), None)
        if chosen is None:
            return None
        current = chosen
    return current


def _walk(menu: _Menu) -> list[_Menu]:
    found = []
    for child in menu.children:
        found.append(child)
        found.extend(_walk(child))
    return found


def _first_entry(menu: _Menu) -> _Menu | None:
    for child in menu.children:
        if not child.is_submenu:
            return child
        inner = _first_entry(child)
        if inner is not None:
            return inner
    return None


def choose_grub(text: str, source: str, saved_entry: str | None = None) -> BootEntry:
    """The default menuentry of a grub.cfg as a BootEntry."""
    root, variables = _parse_grub_tree(text)
    default = variables.get("default", "0").strip('"')
    if default in ("saved", "${saved_entry}", "$saved_entry"):
        default = saved_entry or "0"
    if default.startswith("${") or default.startswith("$"):
        default = "0"
    menu = _pick(root, default) or _first_entry(root)
    if menu is not None and menu.is_submenu:
        menu = _first_entry(menu)
    if menu is None:
        raise EntryError(f"{source}: no menuentry")
    kernel, args, initrds, uuid = None, "", [], None
    for line in menu.lines:
        words = _grub_words(_expand(line, variables))
        if not words:
            continue
        if words[0] in ("linux", "linuxefi", "linux16") and len(words) > 1:
            kernel, args = words[1], " ".join(words[2:])
        elif words[0] in ("initrd", "initrdefi", "initrd16"):
            initrds.extend(words[1:])
        elif (words[0] == "search" and "--set=root" in words) or (
                words[0] == "search" and "--set" in words):
            uuid = next((w for w in reversed(words) if not w.startswith("-")), None)
            if not any(w in ("--fs-uuid", "-u") for w in words):
                uuid = None
    if kernel is None:
        raise EntryError(f"{source}: menuentry {menu.title!r} has no linux line")
    return BootEntry(source=source, title=menu.title, kernel=kernel, initrds=tuple(initrds),
                     cmdline=args, fs_uuid=uuid)


# --- Raspberry Pi ------------------------------------------------------------------------------


PI4_FILTERS = {"all", "pi4", "pi400", "cm4", "cm4s"}


def _section_applies(name: str, model: str) -> bool:
    name = name.strip().lower()
    if name == "all":
        return True
    if name == "none":
        return False
    wanted = "pi400" if "400" in model else "cm4" if "Compute Module 4" in model else "pi4"
    return name in ("pi4", wanted)


def choose_pi(config_txt: str, read: dict[str, str], model: str = "Raspberry Pi 4",
              present: set[str] | None = None) -> BootEntry:
    """The kernel the Pi firmware would start, from config.txt (and the cmdline file).

    `read` maps file names on the boot partition to their text (the cmdline
    file must be among them when it exists); `present` names the files there,
    for `auto_initramfs=1` (Raspberry Pi OS bookworm: initramfs8 beside kernel8.img).
    """
    settings: dict[str, str] = {}
    initramfs: str | None = None
    applies = True
    for raw in config_txt.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            applies = _section_applies(line[1:-1], model)
            continue
        if not applies:
            continue
        if line.startswith("initramfs"):
            words = line.split()
            initramfs = words[1] if len(words) > 1 else None
            continue
        key, equals, value = line.partition("=")
        if equals:
            settings[key.strip().lower()] = value.strip()
    prefix = settings.get("os_prefix", "")
    arm_64 = settings.get("arm_64bit", "1") == "1"
    kernel = settings.get("kernel") or ("kernel8.img" if arm_64 else "kernel7l.img")
    cmdline_file = settings.get("cmdline", "cmdline.txt")
    cmdline = " ".join(read.get(prefix + cmdline_file, read.get(cmdline_file, "")).split())
    if initramfs is None and settings.get("auto_initramfs") == "1":
        automatic = kernel.replace("kernel", "initramfs", 1).removesuffix(".img")
        if present is None or prefix + automatic in present:
            initramfs = automatic
    return BootEntry(source="config.txt", title=f"{model} {prefix}{kernel}",
                     kernel=prefix + kernel,
                     initrds=(prefix + initramfs,) if initramfs else (),
                     cmdline=cmdline, devicetree=settings.get("device_tree"))
