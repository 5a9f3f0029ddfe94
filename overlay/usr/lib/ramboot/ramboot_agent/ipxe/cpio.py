"""iPXE's cpio wrapping of an initrd that has arguments (core/cpio.c, image/initrd.c).

`initrd http://server/config.json /etc/app/config.json mode=600 mkdir=1`
hands the kernel that file inside a newc cpio archive: iPXE puts cpio
headers before the image's bytes, one per path component it is asked to
create (`mkdir=N` parent directories, `mkdir=-1` all of them; the last
header is the file itself, or a directory when the name ends in "/"),
with mode `mode=` (octal, default 0644; directories 0755). Every header is
NUL-padded to 4 bytes; the image follows; no trailer. The kernel unpacks it
into its initramfs.
"""

from __future__ import annotations

CPIO_MAGIC = b"070701"
MODE_FILE = 0o100000
MODE_DIRECTORY = 0o040000
DEFAULT_MODE = 0o644
DEFAULT_DIRECTORY_MODE = 0o755
ALIGN = 4
_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "maj", "min", "rmaj",
           "rmin", "namesize", "chksum")


def _argument(arguments: str, key: str) -> str | None:
    """iPXE's image_argument: the text after `key` where it starts a word."""
    start = 0
    while (found := arguments.find(key, start)) >= 0:
        if found == 0 or arguments[found - 1] == " ":
            return arguments[found + len(key):].split(" ", 1)[0]
        start = found + len(key)
    return None


def _leading_number(text: str, base: int) -> int:
    # strtoul: the longest valid prefix (an optional sign, digits); nothing is 0.
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    valid = "01234567" if base == 8 else "0123456789"
    prefix = ""
    for char in digits:
        if char not in valid:
            break
        prefix += char
    return sign * int(prefix, base) if prefix else 0


def _components(name: str) -> list[int]:
    """The end offset of each path component of `name` (iPXE's cpio_name_len by depth)."""
    ends = []
    previous = "/"
    for index, char in enumerate(name):
        if char == "/" and previous != "/":
            ends.append(index)
        previous = char
    if name and not name.endswith("/"):
        ends.append(len(name))
    return ends


def headers(arguments: str | None, size: int) -> bytes:
    """The cpio headers iPXE puts before an initrd whose arguments are `arguments`
    (b"" when it has none); `size` is the image's length."""
    if not arguments:
        return b""
    name = arguments.split(" ", 1)[0]
    ends = _components(name)
    if not ends:
        return b""
    mode_text = _argument(arguments, "mode=")
    mode = _leading_number(mode_text, 8) if mode_text is not None else DEFAULT_MODE
    mkdir_text = _argument(arguments, "mkdir=")
    count = 1 + (_leading_number(mkdir_text, 10) if mkdir_text is not None else 0)
    if count <= 0:  # mkdir=-1: every parent directory
        count = len(ends)
    count = min(count, len(ends))
    out = b""
    for depth in range(len(ends) - count + 1, len(ends) + 1):
        length = ends[depth - 1]
        is_directory = length < len(name) and name[length] == "/"
        values = dict.fromkeys(_FIELDS, 0)
        values["mode"] = (MODE_DIRECTORY | DEFAULT_DIRECTORY_MODE if is_directory
                          else (mode | MODE_FILE)) & 0xFFFFFFFF
        values["nlink"] = 1
        values["filesize"] = size if depth == len(ends) else 0
        values["namesize"] = length + 1
        header = CPIO_MAGIC + b"".join(f"{values[f]:08x}".encode() for f in _FIELDS)
        entry = header + name[:length].encode()
        out += entry + b"\0" * (ALIGN - len(entry) % ALIGN)
    return out
