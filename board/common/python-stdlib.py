#!/usr/bin/env python3
"""Remove the Python standard library modules the ramboot agent can never import.

Run from post-build.sh with Buildroot's host python3 (the target's version, so
that the target's .pyc files load here): `python-stdlib.py TARGET_DIR`.

The kept set is the transitive closure of imports, found statically in the
code objects (compiled .py or unmarshalled .pyc, modulefinder-style), from
  - the agent: /usr/bin/ramboot-agent and every module under /usr/lib/ramboot,
  - INTERPRETER: what CPython itself imports by name, out of sight of any
    import statement (start-up, error display, strptime, `-m`),
  - the extension modules kept: string literals of an .so that name a private
    or dotted module (C code importing Python modules: _datetime imports
    _strptime, _elementtree xml.etree.ElementPath; plain words are method
    names as often as modules, and their modules come in by other routes),
  - codec names: a string constant that names a codec keeps its encodings
    module (str.encode("idna") imports encodings.idna by name),
  - in a module that calls importlib.import_module or __import__, every
    string constant naming a module ("module" or "module:attribute").
Every import statement counts wherever it is, inside functions and
try/except ImportError blocks too: a module kept when present costs a few
kilobytes, a module missing breaks a code path. The over-approximation is
deliberate. Only module files and package directories of the stdlib and
lib-dynload go; site-packages and non-module files stay.
"""

from __future__ import annotations

import argparse
import dis
import importlib.util
import marshal
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType

AGENT_SCRIPT = "usr/bin/ramboot-agent"
AGENT_DIR = "usr/lib/ramboot"

# Imported by the interpreter (C code) by name, in every agent run or on its
# error paths; each line says when.
INTERPRETER = (
    "site",  # start-up (also without -S: -I keeps it), with what it imports
    "sitecustomize",  # start-up, when present
    "usercustomize",  # start-up, when present
    "_sitebuiltins",  # start-up, by site
    "encodings",  # start-up: the codec registry
    "encodings.utf_8",  # start-up: filesystem and stdio encoding
    "encodings.ascii",  # C locale stdio, "ascii" lookups from C
    "encodings.latin_1",  # "latin-1" lookups from C
    "encodings.idna",  # _socket and _ssl encode non-ASCII host names with "idna"
    "runpy",  # python3 -m ramboot_agent, e.g. from the rescue shell
    "warnings",  # a warning raised from C
    "traceback",  # an uncaught exception: sys.excepthook prints with it (3.13+)
    "_colorize",  # the traceback's colours (3.13+)
    "linecache",  # source lines of tracebacks and warnings
    "_strptime",  # time.strptime, datetime.strptime (C modules import it)
    "copyreg",  # object.__reduce_ex__, copy and pickle protocol from C
    "importlib._bootstrap",  # frozen; the source file backs tracebacks
    "importlib._bootstrap_external",
    "zipimport",
)

# Imports that only the interactive interpreter reaches (help(), the REPL's
# completion): the image has no Python REPL user, its rescue shell is sh.
INTERACTIVE_ONLY = frozenset({
    ("_sitebuiltins", "pydoc"),  # help()
    ("_sitebuiltins", "_pyrepl.pager"),  # license(), credits() (3.14)
    ("site", "rlcompleter"),  # site.register_readline: sys.__interactivehook__
    ("site", "readline"),
    ("site", "_pyrepl.readline"),  # 3.13+ REPL
    ("site", "_pyrepl.unix_console"),
    ("site", "_pyrepl.windows_console"),
    ("site", "_pyrepl.main"),
})

MODULE_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
# "module" or "module:attribute", the forms import_module tables use.
DYNAMIC_NAME = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?::\w+)?")
# NUL-terminated strings in an extension module that may name a module it
# imports: private (_strptime) or dotted (xml.etree.ElementPath).
C_STRING = re.compile(rb"(?<=\0)(?:_[A-Za-z0-9_]+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?=\0)")
EXTENSION = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:\.[\w-]+)?\.so")
CODEC_CHARACTERS = re.compile(r"[^0-9a-z.]+")


class StdlibError(Exception):
    """A target the script cannot analyse: named file and reason."""


@dataclass(frozen=True)
class Module:
    name: str
    path: Path  # the .py, .pyc or .so file (a package's __init__)
    package: bool

    @property
    def extension(self) -> bool:
        return self.path.suffix == ".so"


def _code_of(path: Path) -> CodeType:
    """The code object of a .py (compiled here) or a .pyc (unmarshalled)."""
    data = path.read_bytes()
    if path.suffix == ".pyc":
        if data[:4] != importlib.util.MAGIC_NUMBER:
            raise StdlibError(
                f"{path}: bytecode of another Python version (magic {data[:4].hex()}, this"
                f" is {sys.version.split()[0]}): run with the target's host python3")
        code = marshal.loads(data[16:])  # noqa: S302 - the target's own stdlib
        if not isinstance(code, CodeType):
            raise StdlibError(f"{path}: not a module's bytecode")
        return code
    try:
        return compile(data, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        raise StdlibError(f"{path}: {error}") from error


def _code_objects(code: CodeType, skip: frozenset[str] = frozenset()) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType) and const.co_name not in skip:
            yield from _code_objects(const)


def _strings(code: CodeType) -> Iterator[str]:
    for const in code.co_consts:
        if isinstance(const, str):
            yield const
        elif isinstance(const, tuple | frozenset):
            yield from (item for item in const if isinstance(item, str))


TERMINAL = frozenset({"RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"})
JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)


def _is_main_test(window: list[dis.Instruction]) -> bool:
    """`__name__ == "__main__"` just before the jump that ends `window`."""
    loads = {(i.opname, i.argval) for i in window[:-1]}
    compares = [i for i in window[:-1] if i.opname == "COMPARE_OP"]
    return ({("LOAD_NAME", "__name__"), ("LOAD_CONST", "__main__")} <= loads
            and bool(compares) and "==" in compares[0].argrepr
            and window[-1].opname.endswith("IF_FALSE"))


def _imported_code(code: CodeType) -> set[int]:
    """Offsets of the module code an import runs: all but the body of
    `if __name__ == "__main__":` (a module's self-test: heapq's imports
    doctest). A walk of the control flow, which the compiler may lay out out
    of order (3.12+ moves cold blocks to the end), with the main test's jump
    always taken."""
    instructions = list(dis.get_instructions(code))
    index = {instruction.offset: n for n, instruction in enumerate(instructions)}
    handlers: list[tuple[int, int, int]] = [
        (entry.start, entry.end, entry.target)
        for entry in getattr(dis.Bytecode(code), "exception_entries", ())]
    seen: set[int] = set()
    queue = [0] if instructions else []
    while queue:
        n = queue.pop()
        if n in seen or n >= len(instructions):
            continue
        seen.add(n)
        instruction = instructions[n]
        offset = instruction.offset
        queue += [index[target] for start, end, target in handlers
                  if start <= offset < end and target in index]
        window = instructions[max(0, n - 5):n + 1]
        if instruction.opcode in JUMPS and isinstance(instruction.argval, int) \
                and instruction.argval in index:
            queue.append(index[instruction.argval])
            if _is_main_test(window):
                continue
            if instruction.opname.startswith("JUMP") and "IF" not in instruction.opname:
                continue
        if instruction.opname not in TERMINAL:
            queue.append(n + 1)
    return {instructions[n].offset for n in seen}


def _self_test_functions(code: CodeType, imported: set[int]) -> frozenset[str]:
    """Private module-level functions only the main block uses (pickle's
    _test imports doctest): nothing the module is imported for calls them."""
    private = {c.co_name for c in code.co_consts
               if isinstance(c, CodeType) and c.co_name.startswith("_")
               and not c.co_name.startswith("__")}
    if not private:
        return frozenset()
    used: set[str] = set()
    for each in _code_objects(code):
        if each is not code:
            used.update(each.co_names)
    for instruction in dis.get_instructions(code):
        if instruction.offset in imported and instruction.opname != "STORE_NAME" \
                and isinstance(instruction.argval, str):
            used.add(instruction.argval)
    return frozenset(private - used)


@dataclass(frozen=True)
class Imports:
    """What one module's code imports: statements, and names it imports by string."""

    statements: list[tuple[str, int, tuple[str, ...]]]  # (name, level, fromlist)
    dynamic: set[str]  # absolute names, when the code calls import_module/__import__
    strings: set[str]  # every string constant, for codec names


def scan(code: CodeType) -> Imports:
    statements: list[tuple[str, int, tuple[str, ...]]] = []
    strings: set[str] = set()
    dynamic_importer = False
    imported = _imported_code(code)
    unreachable = _self_test_functions(code, imported)
    for each in _code_objects(code, skip=unreachable):
        strings.update(_strings(each))
        dynamic_importer |= bool({"import_module", "__import__"} & set(each.co_names))
        previous: list[object] = [None, None]
        for instruction in dis.get_instructions(each):
            if each is code and instruction.offset not in imported:
                continue
            if instruction.opname == "IMPORT_NAME":
                level, fromlist = previous
                statements.append((
                    str(instruction.argval),
                    level if isinstance(level, int) else 0,
                    tuple(fromlist) if isinstance(fromlist, tuple) else ()))
            if instruction.opname != "EXTENDED_ARG":
                previous = [previous[1], instruction.argval]
    dynamic = set()
    if dynamic_importer:
        for text in strings:
            match = DYNAMIC_NAME.fullmatch(text)
            if match:
                dynamic.add(match.group(1))
    return Imports(statements, dynamic, strings)


@dataclass
class Target:
    """A target root: where its Python looks for modules."""

    root: Path
    stdlib: Path  # usr/lib/python3.X
    search: list[Path] = field(default_factory=list)

    @classmethod
    def of(cls, root: Path) -> Target:
        candidates = sorted(p for p in (root / "usr/lib").glob("python3.*") if p.is_dir())
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise StdlibError(f"{root}/usr/lib: want one python3.X directory, found {found}")
        stdlib = candidates[0]
        # Not site-packages: the agent uses the standard library alone.
        search = [root / AGENT_DIR, stdlib, stdlib / "lib-dynload"]
        return cls(root, stdlib, [p for p in search if p.is_dir()])

    def find_in(self, directory: Path, name: str, leaf: str) -> Module | None:
        package = directory / leaf
        for init in ("__init__.py", "__init__.pyc"):
            if (package / init).is_file():
                return Module(name, package / init, package=True)
        for suffix in (".py", ".pyc"):
            if (directory / f"{leaf}{suffix}").is_file():
                return Module(name, directory / f"{leaf}{suffix}", package=False)
        for candidate in sorted(directory.glob(f"{leaf}.*so")):
            match = EXTENSION.fullmatch(candidate.name)
            if match and match.group("name") == leaf:
                return Module(name, candidate, package=False)
        return None


@dataclass
class Closure:
    target: Target
    modules: dict[str, Module] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # name -> first importer
    _codecs: dict[str, str] | None = None
    _queue: list[Module] = field(default_factory=list)

    def find(self, name: str) -> Module | None:
        """The module `name` as the target's import system would find it."""
        if name in self.modules:
            return self.modules[name]
        parent, _, leaf = name.rpartition(".")
        if parent:
            package = self.find(parent)
            if package is None or not package.package:
                return None
            directories = [package.path.parent]
        else:
            directories = self.target.search
        for directory in directories:
            module = self.target.find_in(directory, name, leaf)
            if module is not None:
                return module
        return None

    def want(self, name: str, importer: str) -> None:
        """Keep `name` and its parent packages, and scan what they import."""
        if (importer, name) in INTERACTIVE_ONLY:
            return
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in self.modules:
                continue
            module = self.find(prefix)
            if module is None:
                self.missing.setdefault(prefix, importer)
                return
            self.modules[prefix] = module
            self._queue.append(module)

    def codecs(self) -> dict[str, str]:
        """Codec alias -> encodings module, from the target's encodings.aliases."""
        if self._codecs is None:
            self._codecs = {}
            aliases = self.find("encodings.aliases")
            if aliases is not None:
                namespace: dict[str, object] = {}
                exec(_code_of(aliases.path), namespace)  # noqa: S102 - a dict literal
                table = namespace.get("aliases")
                if isinstance(table, dict):
                    self._codecs = {str(k): str(v) for k, v in table.items()}
        return self._codecs

    def codec_module(self, text: str) -> str | None:
        if len(text) > 40:
            return None
        normal = CODEC_CHARACTERS.sub("_", text.lower()).strip("_")
        if not normal:
            return None
        table = self.codecs()
        name = table.get(normal) or table.get(normal.replace(".", "_")) or normal
        return f"encodings.{name}" if MODULE_NAME.fullmatch(name) else None

    def resolve(self, module: Module, statement: tuple[str, int, tuple[str, ...]]) -> None:
        name, level, fromlist = statement
        if level:
            package = module.name if module.package else module.name.rpartition(".")[0]
            base = package.split(".")
            if level - 1 > len(base) - 1:
                return  # beyond the top-level package: fails at run time anyway
            base = base[:len(base) - (level - 1)]
            name = ".".join([*base, name] if name else base)
        if not name:
            return
        self.want(name, module.name)
        imported = self.modules.get(name)
        if imported is None or not imported.package:
            return
        if "*" in fromlist:
            fromlist = tuple(self.submodules(imported))
        for item in fromlist:
            if self.find(f"{name}.{item}") is not None:
                self.want(f"{name}.{item}", module.name)

    def submodules(self, package: Module) -> list[str]:
        names = set()
        for path in package.path.parent.iterdir():
            leaf = path.name.split(".")[0]
            if leaf != "__init__" and MODULE_NAME.fullmatch(leaf) and \
                    self.target.find_in(package.path.parent, "", leaf):
                names.add(leaf)
        return sorted(names)

    def run(self) -> None:
        while self._queue:
            module = self._queue.pop()
            if module.extension:
                for raw in C_STRING.findall(module.path.read_bytes()):
                    text = raw.decode()
                    if MODULE_NAME.fullmatch(text) and self.find(text) is not None:
                        self.want(text, module.name)
                continue
            found = scan(_code_of(module.path))
            for statement in found.statements:
                self.resolve(module, statement)
            for name in found.dynamic:
                if self.find(name) is not None:
                    self.want(name, module.name)
            for text in found.strings:
                codec = self.codec_module(text)
                if codec and self.find(codec) is not None:
                    self.want(codec, module.name)


def agent_roots(target: Target) -> Iterator[Module]:
    """The agent's launcher and every module of /usr/lib/ramboot."""
    script = target.root / AGENT_SCRIPT
    if not script.is_file():
        raise StdlibError(f"{script} missing: is the overlay installed?")
    yield Module("__main__", script, package=False)
    agent = target.root / AGENT_DIR
    for path in sorted(agent.rglob("*.py*")):
        if path.suffix not in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(agent).with_suffix("")
        parts = list(relative.parts)
        package = parts[-1] == "__init__"
        if package:
            parts.pop()
        if all(MODULE_NAME.fullmatch(part) for part in parts):
            yield Module(".".join(parts), path, package=package)


def closure(target: Target, extra: Iterable[str] = ()) -> Closure:
    """The modules the agent can import on `target`, with what they import."""
    found = Closure(target)
    for module in agent_roots(target):
        found.modules.setdefault(module.name, module)
        found._queue.append(module)
    for name in (*INTERPRETER, *extra):
        found.want(name, "(interpreter)")
    found.run()
    return found


def _module_name(stdlib: Path, path: Path) -> str | None:
    """The module a stdlib file belongs to, or None for a non-module file."""
    relative = path.relative_to(stdlib)
    parts = list(relative.parts)
    if parts[0] == "lib-dynload":
        parts.pop(0)
    name = path.name
    if "__pycache__" in parts:
        parts.remove("__pycache__")
        leaf = name.split(".")[0]  # x.cpython-314.pyc
    elif name.endswith((".py", ".pyc")):
        leaf = name.rsplit(".", 1)[0]
    else:
        match = EXTENSION.fullmatch(name)
        if not match:
            return None
        leaf = match.group("name")
    parts[-1] = leaf
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) if all(MODULE_NAME.fullmatch(p) for p in parts) else None


@dataclass
class Removal:
    files: list[Path] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)
    size: int = 0


def plan_removal(found: Closure) -> Removal:
    """Module files and package directories of the stdlib that the closure lacks."""
    stdlib = found.target.stdlib
    kept = set(found.modules)
    removal = Removal()

    def walk(directory: Path, package: str | None) -> None:
        for path in sorted(directory.iterdir()):
            if path.is_symlink() or path.is_file():
                name = _module_name(stdlib, path)
                if name is not None and name not in kept:
                    removal.files.append(path)
                    removal.size += path.lstat().st_size
            elif path.is_dir():
                if path.name == "__pycache__":
                    walk(path, package)
                    continue
                if package is None and path.name == "site-packages":
                    continue
                is_package = any((path / init).is_file()
                                 for init in ("__init__.py", "__init__.pyc"))
                prefix = f"{package}." if package else ""
                if is_package and f"{prefix}{path.name}" not in kept:
                    removal.directories.append(path)
                    removal.size += sum(p.lstat().st_size for p in path.rglob("*"))
                elif is_package:
                    walk(path, f"{prefix}{path.name}")
                elif path.name == "lib-dynload" and package is None:
                    walk(path, None)

    walk(stdlib, None)
    return removal


def apply(removal: Removal) -> None:
    for path in removal.files:
        path.unlink()
    for path in removal.directories:
        shutil.rmtree(path)
    for path in {p.parent for p in removal.files}:
        if path.name == "__pycache__" and not any(path.iterdir()):
            path.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", type=Path, help="the target root (TARGET_DIR)")
    parser.add_argument("--dry-run", action="store_true", help="only say what would go")
    parser.add_argument("--list-kept", action="store_true", help="print the kept modules")
    parser.add_argument("--keep", action="append", default=[], metavar="MODULE",
                        help="also keep MODULE and what it imports (repeatable)")
    args = parser.parse_args(argv)
    try:
        target = Target.of(args.target)
        found = closure(target, args.keep)
        removal = plan_removal(found)
    except (StdlibError, OSError) as error:
        print(f"python-stdlib: {error}", file=sys.stderr)
        return 1
    if args.list_kept:
        for name in sorted(found.modules):
            print(name)
    verb = "would remove" if args.dry_run else "removed"
    print(f"python-stdlib: kept {len(found.modules)} modules; {verb}"
          f" {len(removal.files)} files and {len(removal.directories)} packages"
          f" ({removal.size / 1e6:.1f} MB)", file=sys.stderr)
    if not args.dry_run:
        apply(removal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
