"""The programs the tree's code runs, read from the code itself.

Shell scripts: a small lexer and parser that finds the words in command
position (the start of a script, after | || && ; ;; & ( and the reserved
words that begin a command list, inside $(...) and backquotes), follows
`exec`, `command -v` and a few wrappers (cttyhack, xargs ...), and skips
what is not code: comments, quoted strings, assignments, redirection
targets, `case` patterns and here-document bodies. Not handled (not used in
this tree): a `case` nested in another one's branch, aliases, `eval`.

Python: ast. A program is the first string of an argv list or tuple
literal in an argv position (the first argument of subprocess.run, Popen,
run_tool ...; a value assigned to a name like `argv`; what a function named
`*_argv` returns), or the string passed to `which`. A call whose argv the
scanner cannot read is returned as a DynamicSite, for the caller to account
for; nothing is guessed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Always builtins in busybox ash (and any POSIX shell). echo, printf, test,
# [ and kill are builtins only when configured: they count as programs.
SHELL_BUILTINS = frozenset({
    ":", ".", "alias", "bg", "break", "cd", "chdir", "command", "continue", "eval", "exec",
    "exit", "export", "false", "fg", "getopts", "hash", "jobs", "local", "pwd", "read",
    "readonly", "return", "set", "shift", "source", "times", "trap", "true", "type", "ulimit",
    "umask", "unalias", "unset", "wait",
})
# Words that start a command list: the next word is a command.
_LIST_STARTERS = frozenset({"if", "then", "else", "elif", "while", "until", "do", "!", "{",
                            "time"})
_LIST_ENDERS = frozenset({"fi", "done", "}", "esac"})
# Wrappers whose argument is the command they run, with the options of
# theirs that take a value (so that value is not taken for the command).
WRAPPERS: dict[str, frozenset[str]] = {
    "cttyhack": frozenset(),
    "env": frozenset({"-u"}),
    "nice": frozenset({"-n"}),
    "nohup": frozenset(),
    "setsid": frozenset(),
    "timeout": frozenset({"-s", "-k"}),
    "xargs": frozenset({"-n", "-s", "-I", "-E", "-P", "-L", "-d", "-a"}),
}
_OPERATORS = ("&&", "||", ";;", "|", ";", "&", "(", ")")
_REDIRECTION = re.compile(r"[0-9]*(<<-|<<|>>|<&|>&|<>|>\||<|>)")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PROGRAM = re.compile(r"[A-Za-z0-9_./+-]+\Z")


@dataclass(frozen=True)
class Call:
    """`program` run from `path`, line `line`."""

    program: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.program}"


@dataclass(frozen=True)
class DynamicSite:
    """A call that runs a program the scanner cannot read from the code."""

    path: Path
    line: int
    function: str  # qualified name of the enclosing function
    text: str  # the argv expression, as written


class ShellSyntaxError(ValueError):
    """What the small parser does not understand, with the file and line."""


@dataclass
class _Word:
    text: str  # with quotes removed
    line: int
    literal: bool  # no expansion: the text is what the shell sees
    operator: bool = False


@dataclass
class _Lexer:
    source: str
    path: Path
    line: int = 1
    pos: int = 0
    substitutions: list[tuple[str, int]] = field(default_factory=list)
    _heredocs: list[tuple[str, bool]] = field(default_factory=list)

    def error(self, message: str) -> ShellSyntaxError:
        return ShellSyntaxError(f"{self.path}:{self.line}: {message}")

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.source[index] if index < len(self.source) else ""

    def advance(self, count: int = 1) -> str:
        text = self.source[self.pos:self.pos + count]
        self.line += text.count("\n")
        self.pos += count
        return text

    def tokens(self) -> Iterator[_Word]:
        while self.pos < len(self.source):
            char = self.peek()
            if char == "\n":
                line = self.line
                self.advance()
                self._skip_heredoc_bodies()
                yield _Word("\n", line, True, operator=True)
            elif char in " \t":
                self.advance()
            elif char == "\\" and self.peek(1) == "\n":
                self.advance(2)
            elif char == "#":
                while self.pos < len(self.source) and self.peek() != "\n":
                    self.advance()
            elif match := _REDIRECTION.match(self.source, self.pos):
                line = self.line
                self.advance(match.end() - self.pos)
                operator = match.group(1)
                if operator in ("<<", "<<-"):
                    while self.peek() in (" ", "\t"):
                        self.advance()
                    delimiter = self._word()
                    if delimiter is None:
                        raise self.error("here-document without a delimiter")
                    self._heredocs.append((delimiter.text, operator == "<<-"))
                    yield _Word("<<", line, True, operator=True)
                else:
                    yield _Word(operator, line, True, operator=True)
            elif op := next((o for o in _OPERATORS if self.source.startswith(o, self.pos)), ""):
                line = self.line
                self.advance(len(op))
                yield _Word(op, line, True, operator=True)
            else:
                word = self._word()
                if word is not None:
                    yield word

    def _skip_heredoc_bodies(self) -> None:
        """After the newline that ends a here-document's command: skip each body."""
        for delimiter, strip_tabs in self._heredocs:
            while True:
                if self.pos >= len(self.source):
                    raise self.error(f"here-document '{delimiter}' never ends")
                end = self.source.find("\n", self.pos)
                end = len(self.source) if end < 0 else end
                text = self.source[self.pos:end]
                self.advance(end - self.pos + 1)
                if (text.lstrip("\t") if strip_tabs else text) == delimiter:
                    break
        self._heredocs.clear()

    def _word(self) -> _Word | None:
        line, start, text, literal = self.line, self.pos, [], True
        while self.pos < len(self.source):
            char = self.peek()
            if char in " \t\n;&|()<>":
                break
            if char == "\\":
                self.advance()
                text.append(self.advance())
            elif char == "'":
                self.advance()
                end = self.source.find("'", self.pos)
                if end < 0:
                    raise self.error("unterminated single quote")
                text.append(self.advance(end - self.pos))
                self.advance()
            elif char == '"':
                self.advance()
                literal &= self._double_quoted(text)
            elif char in "$`":
                literal = False
                text.append(self._expansion(char))
            else:
                text.append(self.advance())
        return _Word("".join(text), line, literal) if self.pos > start else None

    def _double_quoted(self, text: list[str]) -> bool:
        literal = True
        while True:
            char = self.peek()
            if not char:
                raise self.error("unterminated double quote")
            if char == '"':
                self.advance()
                return literal
            if char == "\\":
                self.advance()
                text.append(self.advance())
            elif char in "$`":
                literal = False
                text.append(self._expansion(char))
            else:
                text.append(self.advance())

    def _expansion(self, char: str) -> str:
        """A $-expansion or a backquoted command, read whole: never a literal word."""
        return self._dollar() if char == "$" else self._backquoted()

    def _dollar(self) -> str:
        start = self.pos
        if self.source.startswith("$((", self.pos):
            self.advance(3)
            self._balanced("(", ")", depth=2)
        elif self.source.startswith("$(", self.pos):
            self.advance(2)
            line, body_start = self.line, self.pos
            self._balanced("(", ")", depth=1)
            self.substitutions.append((self.source[body_start:self.pos - 1], line))
        elif self.source.startswith("${", self.pos):
            self.advance(2)
            self._balanced("{", "}", depth=1)
        else:
            self.advance()
            while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
                self.advance()
            if self.pos == start + 1 and self.peek() in "@*#?$!-0123456789":
                self.advance()
        return self.source[start:self.pos]

    def _balanced(self, opening: str, closing: str, depth: int) -> None:
        """Skip to the closing bracket, over quotes and nested brackets."""
        while depth:
            char = self.peek()
            if not char:
                raise self.error(f"no '{closing}' closes the expansion")
            if char == "\\":
                self.advance(2)
            elif char == "'":
                end = self.source.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("unterminated single quote")
                self.advance(end - self.pos + 1)
            elif char == '"':
                self.advance()
                self._double_quoted([])
            elif char == opening:
                depth += 1
                self.advance()
            elif char == closing:
                depth -= 1
                self.advance()
            else:
                self.advance()

    def _backquoted(self) -> str:
        start = self.pos
        self.advance()
        line, body = self.line, []
        while self.peek() != "`":
            if not self.peek():
                raise self.error("unterminated backquote")
            if self.peek() == "\\":
                self.advance()
            body.append(self.advance())
        self.advance()
        self.substitutions.append(("".join(body), line))
        return self.source[start:self.pos]


def shell_calls(source: str, path: Path, *, first_line: int = 1) -> tuple[list[Call], set[str]]:
    """The programs a shell script runs, and the names of its own functions."""
    lexer = _Lexer(source, path, line=first_line)
    words = list(lexer.tokens())
    calls: list[Call] = []
    functions: set[str] = set()
    expect, case_state, index = True, "", 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.operator:
            if word.text == "<<" or _REDIRECTION.fullmatch(word.text):
                index += 0 if word.text == "<<" else 1  # the target is not a command
                continue
            if word.text == ";;":
                case_state = "pattern"
            elif word.text == ")" and case_state == "pattern":
                case_state = "body"
            expect = word.text != ")" or case_state == "body"
            continue
        if case_state == "pattern":
            if word.text == "esac" and word.literal:
                case_state = ""
                expect = False
            continue
        if case_state == "in":
            case_state = "pattern" if word.text == "in" else "in"
            continue
        if not expect:
            continue
        if word.literal and word.text in _LIST_STARTERS:
            continue
        if word.literal and word.text in _LIST_ENDERS:
            expect = False
            if word.text == "esac":
                case_state = ""  # the last branch may end without ;;
            continue
        if word.literal and word.text == "case":
            case_state, expect = "in", False
            continue
        if word.literal and word.text == "for":
            # for NAME [in WORDS]; do: nothing to run before `do`.
            while index < len(words) and not (words[index].literal and words[index].text == "do"):
                index += 1
            continue
        if _ASSIGNMENT.match(word.text):
            continue  # VAR=value: the command, if any, follows
        if index + 1 < len(words) and words[index].operator and words[index].text == "(" \
                and words[index + 1].text == ")":
            functions.add(word.text)  # name() { ... }
            index += 2
            continue
        expect = False
        if not word.literal:
            continue  # "$run" or $(...) as a command: nothing to read
        programs, index = _through_wrappers(word, words, index)
        calls += [Call(program.text, path, program.line) for program in programs]
    for body, line in lexer.substitutions:
        inner, inner_functions = shell_calls(body, path, first_line=line)
        calls += inner
        functions |= inner_functions
    return calls, functions


def _through_wrappers(word: _Word, words: list[_Word],
                      index: int) -> tuple[list[_Word], int]:
    """The programs `word` runs: itself (unless a builtin), and what exec, command -v,
    a wrapper (cttyhack, xargs ...) or find -exec runs."""
    programs = []
    while word.literal and (word.text in ("exec", "command") or word.text in WRAPPERS):
        if word.text in WRAPPERS:
            programs.append(word)
        takes_value = WRAPPERS.get(word.text, frozenset())
        while index < len(words) and not words[index].operator:
            option = words[index].text
            if not (words[index].literal and option.startswith("-") and option != "-"):
                break
            index += 2 if option in takes_value else 1
        if word.text == "timeout" and index < len(words) and not words[index].operator:
            index += 1  # the duration
        while word.text == "env" and index < len(words) and _ASSIGNMENT.match(words[index].text):
            index += 1
        if index >= len(words) or words[index].operator:
            return programs, index
        word, index = words[index], index + 1
    if not word.literal or word.text in SHELL_BUILTINS:
        return programs, index
    programs.append(word)
    if word.text == "find":
        end = index
        while end < len(words) and not words[end].operator:
            if words[end].text in ("-exec", "-execdir", "-ok") and end + 1 < len(words) \
                    and words[end + 1].literal and not words[end + 1].operator:
                programs.append(words[end + 1])
            end += 1
    return programs, index


def script_programs(path: Path) -> list[Call]:
    """The programs script `path` runs (its interpreter first), minus its own functions."""
    source = path.read_text(encoding="utf-8")
    calls = []
    if source.startswith("#!"):
        interpreter = source.splitlines()[0][2:].split()
        calls.append(Call(interpreter[0], path, 1))
    found, functions = shell_calls(source, path)
    return calls + [c for c in found if c.program not in functions]


def is_shell_script(path: Path) -> bool:
    with path.open("rb") as stream:
        first = stream.readline(200)
    return first.startswith(b"#!") and first.split()[0].endswith((b"/sh", b"/ash", b"/bash"))


def inittab_programs(path: Path) -> list[Call]:
    """The process field of each busybox inittab entry: id:runlevels:action:process."""
    calls = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":", 3)
        if len(fields) != 4 or not fields[3].strip():
            raise ShellSyntaxError(f"{path}:{number}: not id:runlevels:action:process")
        found, _ = shell_calls(fields[3], path, first_line=number)
        calls += found
    return calls


# --- Python -----------------------------------------------------------------

RUNNERS = frozenset({"run", "Popen", "call", "check_call", "check_output", "run_tool", "_run",
                     "execv", "execvp", "execve", "execvpe", "spawnv", "spawnvp"})
_ARGV_NAME = re.compile(r"(^|_)(argv|program|cmd|command)$")


def _qualname(stack: list[ast.AST]) -> str:
    names = [n.name for n in stack if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    return ".".join(names) or "<module>"


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


class _PythonScanner(ast.NodeVisitor):
    def __init__(self, path: Path, argv_functions: Mapping[str, frozenset[str]]) -> None:
        self.path = path
        self.argv_functions = argv_functions  # name -> programs, for calls to argv builders
        self.calls: list[Call] = []
        self.sites: list[DynamicSite] = []
        self.unreadable_builders: set[str] = set()  # *argv functions with an unread return
        self.stack: list[ast.AST] = []
        self.resolved: list[set[str]] = [set()]  # per function: names bound to a read argv

    def _program(self, value: ast.expr, line: int) -> bool:
        """Record the program(s) argv expression `value` runs; whether it could be read."""
        if isinstance(value, ast.IfExp):
            return self._all([value.body, value.orelse], line)
        if isinstance(value, ast.BoolOp):
            return self._all(value.values, line)
        if isinstance(value, ast.Call):
            name = _callee(value)
            if name == "which" and value.args:
                return self._program(ast.List(elts=[value.args[0]]), line)
            if name in self.argv_functions:
                self.calls += [Call(p, self.path, line) for p in self.argv_functions[name]]
                return True
            return False
        if isinstance(value, ast.Name):
            return value.id in self.resolved[-1]
        if not isinstance(value, ast.List | ast.Tuple) or not value.elts:
            return False
        first = value.elts[0]
        if isinstance(first, ast.Starred):
            first = first.value
        if isinstance(first, ast.Name):
            return first.id in self.resolved[-1]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) \
                and _PROGRAM.match(first.value):
            program = first.value
            second = value.elts[1] if len(value.elts) > 1 else None
            if program == "busybox" and isinstance(second, ast.Constant) \
                    and isinstance(second.value, str):
                program = second.value
            self.calls.append(Call(program, self.path, line))
            return True
        return False

    def _all(self, values: list[ast.expr], line: int) -> bool:
        """Whether every one of `values` is read; each one's programs recorded either way."""
        read = [self._program(value, line) for value in values]
        return all(read)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.stack.append(node)
        self.resolved.append(set())
        self.generic_visit(node)
        self.resolved.pop()
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node)
        self.generic_visit(node)
        self.stack.pop()

    def _bind(self, target: ast.expr, value: ast.expr, line: int) -> None:
        if not isinstance(target, ast.Name):
            return
        # name = which("x") is a program too, whatever the name.
        is_which = isinstance(value, ast.Call) and _callee(value) == "which"
        if (is_which or _ARGV_NAME.search(target.id)) and self._program(value, line):
            self.resolved[-1].add(target.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._bind(target, node.value, node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._bind(node.target, node.value, node.lineno)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        # for argv in ([...], [...]): each element is an argv
        if isinstance(node.target, ast.Name) and _ARGV_NAME.search(node.target.id) \
                and isinstance(node.iter, ast.List | ast.Tuple) and node.iter.elts \
                and self._all(node.iter.elts, node.lineno):
            self.resolved[-1].add(node.target.id)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        function = next((n for n in reversed(self.stack) if isinstance(n, ast.FunctionDef)), None)
        if function and function.name.endswith("argv") and node.value is not None \
                and not self._program(node.value, node.lineno):
            self.unreadable_builders.add(function.name)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _callee(node)
        if name == "which" and node.args:
            self._program(ast.List(elts=[node.args[0]]), node.lineno)
        elif name in RUNNERS and node.args and not self._program(node.args[0], node.lineno):
            self.sites.append(DynamicSite(self.path, node.lineno, _qualname(self.stack),
                                          ast.unparse(node.args[0])))
        self.generic_visit(node)


def python_programs(
    paths: Iterable[Path], builders: Mapping[str, frozenset[str]] | None = None
) -> tuple[list[Call], list[DynamicSite]]:
    """The programs Python modules `paths` run, and the calls whose program is unread.

    A call to a function named `*argv` (an argv builder) counts as read when
    every return of that function is, or when `builders` declares what it
    runs (name -> programs).
    """
    declared = dict(builders or {})
    trees = [(path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
             for path in paths]
    # First pass: which argv builders can be read; their calls resolve in the second.
    readable: dict[str, frozenset[str]] = {}
    unreadable: set[str] = set()
    for path, tree in trees:
        first = _PythonScanner(path, declared)
        first.visit(tree)
        unreadable |= first.unreadable_builders
        readable |= {n.name: frozenset() for n in ast.walk(tree)
                     if isinstance(n, ast.FunctionDef) and n.name.endswith("argv")}
    functions = {name: programs for name, programs in readable.items() if name not in unreadable}
    functions |= declared
    calls: set[Call] = set()
    sites: list[DynamicSite] = []
    for path, tree in trees:
        scanner = _PythonScanner(path, functions)
        scanner.visit(tree)
        calls |= set(scanner.calls)
        sites += scanner.sites
    return sorted(calls, key=lambda c: (str(c.path), c.line, c.program)), sites
