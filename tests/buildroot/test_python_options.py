"""The Python modules the agent imports are built: their Buildroot python3 option is selected.

Buildroot builds some standard library modules only when an option asks for
them (and removes the Python side too: no `xml` package without pyexpat).
The Debian stand-in image has them all, so a missing select only shows on
the real image, as the bmap parser's ModuleNotFoundError: No module named
'xml' did. Each module the agent imports (anywhere, ast) that needs an
option must have it selected by BR2_PACKAGE_RAMBOOT_AGENT.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .conftest import REPO

AGENT = REPO / "overlay/usr/lib/ramboot/ramboot_agent"
CONFIG_IN = REPO / "package/ramboot-agent/Config.in"

# Top-level module -> the python3 option that builds it (package/python3/Config.in).
OPTIONS = {
    "xml": "BR2_PACKAGE_PYTHON3_PYEXPAT",
    "pyexpat": "BR2_PACKAGE_PYTHON3_PYEXPAT",
    "ssl": "BR2_PACKAGE_PYTHON3_SSL",
    "hashlib": "BR2_PACKAGE_PYTHON3_SSL",  # its OpenSSL algorithms; builtins otherwise
    "lzma": "BR2_PACKAGE_PYTHON3_XZ",
    "zlib": "BR2_PACKAGE_PYTHON3_ZLIB",
    "gzip": "BR2_PACKAGE_PYTHON3_ZLIB",
    "zipfile": "BR2_PACKAGE_PYTHON3_ZLIB",
    "compression": "BR2_PACKAGE_PYTHON3_ZSTD",  # compression.zstd
    "bz2": "BR2_PACKAGE_PYTHON3_BZIP2",
    "sqlite3": "BR2_PACKAGE_PYTHON3_SQLITE",
    "curses": "BR2_PACKAGE_PYTHON3_CURSES",
    "readline": "BR2_PACKAGE_PYTHON3_READLINE",
    "dbm": "BR2_PACKAGE_PYTHON3_BERKELEYDB",
    "unicodedata": "BR2_PACKAGE_PYTHON3_UNICODEDATA",
}


def agent_imports() -> dict[str, Path]:
    """Top-level module name -> a file of the agent that imports it."""
    found: dict[str, Path] = {}
    for path in sorted(AGENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def selected() -> set[str]:
    return set(re.findall(r"^\s*select (BR2_\w+)", CONFIG_IN.read_text(), re.MULTILINE))


def test_every_optional_module_the_agent_imports_is_selected() -> None:
    options = selected()
    missing = {module: (OPTIONS[module], str(path.relative_to(REPO)))
               for module, path in agent_imports().items()
               if module in OPTIONS and OPTIONS[module] not in options}
    assert not missing, f"{CONFIG_IN.relative_to(REPO)} lacks: {missing}"


def test_the_scan_sees_the_bmap_parsers_xml_import() -> None:
    assert "xml" in agent_imports()
    assert "ssl" in agent_imports()
