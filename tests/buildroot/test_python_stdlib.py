"""board/common/python-stdlib.py keeps every module the agent can import, and only those.

The fake target is this host's Python: its standard library copied under
usr/lib/python3.X (the suites and GUI packages left out to keep the copy
small), the overlay's agent on top. The pruned copy must still serve the
agent (checked by importing all of it with PYTHONHOME there), every import
statement of the agent (read with ast) must be kept, and what the agent's
real flows import must all be in the kept set
(tests/agent/integration/test_imports.py).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import REPO

SCRIPT = REPO / "board/common/python-stdlib.py"
VERSION_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
HOST_STDLIB = Path(sysconfig.get_paths()["stdlib"])
HOST_DYNLOAD = Path(sysconfig.get_config_var("DESTSHARED"))  # lib-dynload, also from a venv
# Not copied: large, and nothing of the agent's can reach them.
LEFT_OUT = ("site-packages", "test", "idlelib", "tkinter", "turtledemo", "lib2to3",
            "__pycache__", "ensurepip", "config-*")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_stdlib", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["python_stdlib"] = module
    spec.loader.exec_module(module)
    return module


python_stdlib = load_script()


def make_target(root: Path) -> Path:
    stdlib = root / "usr/lib" / VERSION_DIR
    shutil.copytree(HOST_STDLIB, stdlib, symlinks=True,
                    ignore=shutil.ignore_patterns(*LEFT_OUT))
    if HOST_DYNLOAD.is_dir() and not (stdlib / "lib-dynload").exists():
        shutil.copytree(HOST_DYNLOAD, stdlib / "lib-dynload")
    shutil.copytree(REPO / "overlay/usr/lib/ramboot", root / "usr/lib/ramboot",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(REPO / "overlay/usr/bin/ramboot-agent", root / "usr/bin")
    return stdlib


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fake target after the script ran, and the script's output."""
    root = tmp_path_factory.mktemp("target")
    make_target(root)
    done = subprocess.run([sys.executable, str(SCRIPT), "--list-kept", str(root)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stderr
    return root, done.stdout


def agent_modules() -> list[str]:
    base = REPO / "overlay/usr/lib/ramboot"
    names = []
    for path in sorted((base / "ramboot_agent").rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] != "__main__":  # runs the command line
            names.append(".".join(parts))
    return names


def test_the_pruned_library_still_imports_every_agent_module(pruned: tuple[Path, str]) -> None:
    root, _ = pruned
    stdlib = root / "usr/lib" / VERSION_DIR
    probe = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(root / 'usr/lib/ramboot')!r})\n"
        f"for name in {agent_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "import ramboot_agent.cli\n"
        "outside = sorted(m.__name__ for m in list(sys.modules.values())\n"
        "    if getattr(m, '__file__', None) and not m.__file__.startswith(sys.argv[1]))\n"
        "print(outside)\n"
    )
    env = {**os.environ, "PYTHONHOME": str(root / "usr")}
    env.pop("PYTHONPATH", None)
    # The base interpreter: a venv's would add its site-packages.
    base = Path(sys.base_prefix) / "bin" / VERSION_DIR
    done = subprocess.run([str(base), "-s", "-c", probe, str(root)], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "modules loaded from outside the target"
    assert (stdlib / "json").is_dir()


def test_every_import_statement_of_the_agent_is_kept(pruned: tuple[Path, str]) -> None:
    """Read with ast, not bytecode: an independent look at the agent's own imports,
    in functions and try/except ImportError blocks too."""
    _, listed = pruned
    kept = set(listed.split())
    wanted = set()
    for path in (REPO / "overlay/usr/lib/ramboot/ramboot_agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                wanted.add(node.module)
    in_host = {name for name in wanted if name.split(".")[0] in sys.stdlib_module_names
               and name not in sys.builtin_module_names
               and importlib.util.find_spec(name) is not None}
    assert in_host - kept == set()
    assert len(in_host) > 40


def test_kept_set_holds_what_the_agent_imports_and_not_the_rest(
        pruned: tuple[Path, str]) -> None:
    _, listed = pruned
    kept = set(listed.split())
    for name in ("ssl", "http.client", "json", "lzma", "tarfile", "xml.etree.ElementTree",
                 "encodings.utf_16_le", "encodings.idna", "_strptime", "traceback",
                 "ramboot_agent.plan.actions.image"):
        assert name in kept, name
    for name in ("pydoc", "doctest", "unittest", "asyncio", "sqlite3", "tkinter",
                 "multiprocessing", "ensurepip"):
        assert name not in kept, name


def test_imports_the_agent_makes_by_string_are_kept() -> None:
    """cli.py and plan/registry.py import their modules with importlib."""
    target = python_stdlib.Target(REPO / "overlay", HOST_STDLIB,
                                  [REPO / "overlay/usr/lib/ramboot", HOST_STDLIB, HOST_DYNLOAD])
    found = python_stdlib.Closure(target)
    found.want("ramboot_agent.plan.registry", "test")
    found.run()
    assert "ramboot_agent.plan.actions.writefile" in found.modules


def test_main_blocks_and_private_self_tests_are_not_followed(tmp_path: Path) -> None:
    source = (
        "import json\n"
        "def _test():\n    import doctest\n"
        "def public():\n    import csv\n"
        "if __name__ == '__main__':\n    import pdb\n"
        "    if pdb.x:\n        _test()\n"
        "    else:\n        try:\n            import pprint\n"
        "        except ImportError:\n            import reprlib\n"
        "try:\n    import _json\nexcept ImportError:\n    import textwrap\n"
    )
    code = compile(source, "m.py", "exec")
    names = {name for name, _, _ in python_stdlib.scan(code).statements}
    assert names == {"json", "csv", "_json", "textwrap"}


def test_a_pyc_of_another_python_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "target"
    stdlib = root / "usr/lib" / VERSION_DIR
    stdlib.mkdir(parents=True)
    (root / "usr/bin").mkdir()
    (root / "usr/bin/ramboot-agent").write_text("import os\n")
    (root / "usr/lib/ramboot").mkdir()
    (stdlib / "os.pyc").write_bytes(b"\x00\x01\r\n" + bytes(12) + b"junk")
    done = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    assert f"{stdlib / 'os.pyc'}: bytecode of another Python version" in done.stderr
    assert (stdlib / "os.pyc").exists()


def test_a_target_without_python_is_named(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    assert "want one python3.X directory, found none" in done.stderr
