"""Each generated format's own quoting, applied to every value written into it.

The inventory already refuses what no format can hold (blanks, quotes, control
characters, a newline at the end): these functions are the second wall, and
the only place that knows each format's rules. A value one of them cannot
write safely raises RambootError rather than being written damaged.

- `comment`: any text (a file name, say) as one printable line of a comment.
- `dnsmasq_string`: a double-quoted dnsmasq value. dnsmasq's config reader
  removes the quotes, turns `\\"`, `\\\\`, `\\t`, `\\n`, `\\e`, `\\b`, `\\r` inside
  them into characters and keeps commas and `#` literally.
- `kea_string_option`: Kea option data as hex with `csv-format: false`, since
  Kea's default CSV data cuts a string at its first comma (`kea-dhcp4 -t`
  accepts the file all the same).
- `word`: one blank-free word of a kernel command line, iPXE script, config.txt
  or dnsmasq key: printable ASCII without `"` (the kernel's quote) or `\\`
  (a continuation in iPXE); `'` means nothing to either.
"""

from __future__ import annotations

import re
from typing import Any

from ramboot.errors import RambootError

_WORD = re.compile(r"[!#-\[\]-~]+")  # printable ASCII but blank, '"' and '\\'
_DNSMASQ_ESCAPES = {"\\": "\\\\", '"': '\\"'}


def comment(text: object) -> str:
    """`text` as one line of printable ASCII: anything else becomes a \\x / \\u escape."""
    value = str(text)
    if value.isascii() and value.isprintable():
        return value
    return value.encode("ascii", "backslashreplace").decode("ascii").translate(
        {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}
    )


def word(value: object) -> str:
    text = str(value)
    if not _WORD.fullmatch(text):
        raise RambootError(f"refusing to write {text!r}: not one word of printable ASCII")
    return text


def dnsmasq_string(value: object) -> str:
    text = str(value)
    if not text.isascii() or not text.isprintable():
        raise RambootError(f"refusing to write {text!r} into dnsmasq.conf: control characters")
    return '"' + "".join(_DNSMASQ_ESCAPES.get(char, char) for char in text) + '"'


def kea_string_option(name: str, value: str, *, always_send: bool = False) -> dict[str, Any]:
    """A Kea `option-data` entry carrying the string `value` byte for byte
    (`comment` keeps it readable: Kea ignores it)."""
    if not value:
        raise RambootError(f"refusing an empty value for Kea option {name}")
    option: dict[str, Any] = {
        "name": name, "csv-format": False, "data": value.encode("utf-8").hex().upper(),
        "comment": value,
    }
    if always_send:
        option["always-send"] = True
    return option


FILTERS = {"comment": comment, "word": word, "dnsmasq_string": dnsmasq_string}
