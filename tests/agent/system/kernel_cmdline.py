"""The kernel's own command-line splitter, compiled from Debian's linux-source-6.12.

`build()` copies, at test time and unmodified, `next_arg()` from
lib/cmdline.c, `skip_spaces()` from lib/string_helpers.c, the `_ctype` table
from lib/ctype.c and the ctype macros from include/linux/ctype.h into one C
file, adds the loop of kernel/params.c `parse_args()` that drives them, and
compiles it with the host's cc. The program reads length-prefixed command
lines on stdin and answers each with the (param, value) pairs the kernel
would hand to parse_one(), so a test can compare the agent's splitter with
the kernel's on any input.
"""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

# The three lines of parse_args() the driver below reproduces; checked against
# the source so a kernel that changes them fails the test instead of fooling it.
PARSE_ARGS_LINES = (
    "args = skip_spaces(args);",
    "while (*args) {",
    "args = next_arg(args, &param, &val);",
    'if (!val && strcmp(param, "--") == 0)',
)

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(const char *text) {
    unsigned int length = (unsigned int)strlen(text);
    fwrite(&length, 4, 1, stdout);
    fwrite(text, 1, length, stdout);
}

int main(void) {
    unsigned int length;
    while (fread(&length, 4, 1, stdin) == 1) {
        char *line = calloc(length + 1, 1), *args = line, *param, *val;
        if (fread(line, 1, length, stdin) != length)
            return 1;
        /* kernel/params.c parse_args(), without parse_one() */
        args = skip_spaces(args);
        while (*args) {
            args = next_arg(args, &param, &val);
            if (!val && strcmp(param, "--") == 0)
                break;
            fputc(val ? 'V' : 'N', stdout);
            put(param);
            if (val)
                put(val);
        }
        fputc('.', stdout);
        fflush(stdout);
        free(line);
    }
    return 0;
}
"""


def _function(source: str, signature: str) -> str:
    """The text of the C function starting at `signature`, to its closing brace."""
    start = source.index(signature)
    end = source.index("\n}\n", start) + 3
    return source[start:end]


def build(linux: Path, workdir: Path) -> Path:
    cmdline_c = (linux / "lib/cmdline.c").read_text()
    helpers_c = (linux / "lib/string_helpers.c").read_text()
    ctype_c = (linux / "lib/ctype.c").read_text()
    ctype_h = (linux / "include/linux/ctype.h").read_text()
    params_c = (linux / "kernel/params.c").read_text()
    parse_args = _function(params_c, "char *parse_args(")
    missing = [line for line in PARSE_ARGS_LINES if line not in parse_args]
    if missing:
        raise AssertionError(f"kernel/params.c parse_args() changed: {missing}")

    masks = re.findall(r"^#define (?:_[A-Z]{1,2}|__ismask\(x\)|isspace\(c\))\s.*$", ctype_h,
                       re.MULTILINE)
    table = ctype_c[ctype_c.index("const unsigned char _ctype[]"):ctype_c.index("};") + 2]
    program = "\n".join([
        "#include <string.h>",
        *masks,
        table,
        _function(helpers_c, "char *skip_spaces(const char *str)"),
        _function(cmdline_c, "char *next_arg(char *args, char **param, char **val)"),
        DRIVER,
    ])
    source = workdir / "kernel_cmdline.c"
    source.write_text(program)
    binary = workdir / "kernel_cmdline"
    subprocess.run(["cc", "-O1", "-w", "-o", str(binary), str(source)], check=True,
                   capture_output=True, timeout=120)
    return binary


class KernelSplitter:
    """A running kernel_cmdline program: one command line in, its pairs out."""

    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)

    def split(self, line: bytes) -> list[tuple[bytes, bytes | None]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(struct.pack("=I", len(line)) + line)
        self.process.stdin.flush()
        out = self.process.stdout
        pairs: list[tuple[bytes, bytes | None]] = []

        def string() -> bytes:
            (length,) = struct.unpack("=I", out.read(4))
            return out.read(length)

        while (kind := out.read(1)) != b".":
            if kind not in (b"V", b"N"):
                raise AssertionError(f"kernel_cmdline said {kind!r}")
            param = string()
            pairs.append((param, string() if kind == b"V" else None))
        return pairs

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
