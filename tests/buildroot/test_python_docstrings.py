"""python-docstrings.py: .pyc files lose their docstrings and nothing else."""

from __future__ import annotations

import importlib.util
import inspect
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPT = REPO / "board/common/python-docstrings.py"
SOURCE = '''"""The module's docstring."""

SAME = "The class's docstring."


class Widget:
    """The class's docstring."""

    def name(self):
        """The method's docstring."""
        return "The method's docstring."


def documented():
    """The function's docstring."""
    assert SAME
    return 42
'''


def compiled(tmp_path: Path) -> Path:
    source = tmp_path / "src/widget.py"
    source.parent.mkdir()
    source.write_text(SOURCE)
    target = tmp_path / "lib/widget.pyc"
    target.parent.mkdir()
    py_compile.compile(str(source), cfile=str(target), doraise=True)
    return target


def load(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"widget_{id(path)}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def strip(*directories: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, directories)],
                          capture_output=True, text=True, check=False)


def test_docstrings_go_and_the_code_still_runs(tmp_path: Path) -> None:
    pyc = compiled(tmp_path)
    header = pyc.read_bytes()[:16]
    before = pyc.stat().st_size
    done = strip(tmp_path / "lib")
    assert done.returncode == 0, done.stderr
    assert "1 .pyc files" in done.stderr
    assert pyc.stat().st_size < before
    assert pyc.read_bytes()[:16] == header
    module = load(pyc)
    assert module.__doc__ is None  # type: ignore[attr-defined]
    assert module.Widget.__doc__ is None  # type: ignore[attr-defined]
    # Equal strings share one constant: the literals that are data stay.
    assert module.SAME == "The class's docstring."  # type: ignore[attr-defined]
    assert module.Widget().name() == "The method's docstring."  # type: ignore[attr-defined]
    assert module.documented() == 42  # type: ignore[attr-defined]


@pytest.mark.skipif(not hasattr(inspect, "CO_HAS_DOCSTRING"),
                    reason="function docstrings are marked from Python 3.14 (the image's)")
def test_function_docstrings_go_on_the_images_python(tmp_path: Path) -> None:
    pyc = compiled(tmp_path)
    assert strip(tmp_path / "lib").returncode == 0
    module = load(pyc)
    assert module.documented.__doc__ is None  # type: ignore[attr-defined]
    # Its docstring is also the constant it returns: kept, or the code would break.
    assert module.Widget.name.__doc__ == "The method's docstring."  # type: ignore[attr-defined]


def test_a_pyc_of_another_python_fails_naming_it(tmp_path: Path) -> None:
    pyc = compiled(tmp_path)
    other = tmp_path / "lib/other.pyc"
    other.write_bytes(b"\x00\x00\r\n" + pyc.read_bytes()[4:])
    before = pyc.read_bytes()
    done = strip(tmp_path / "lib")
    assert done.returncode == 1
    assert f"{other}: not a .pyc of Python" in done.stderr
    assert pyc.read_bytes() == before  # sorted: other.pyc fails before widget.pyc
