"""Accumulation lint: containers that grow across an unbounded loop and are used after it.

Incident 003: a loop appended every row of every pickle to one list and wrote it only after
the loop (13 GB, 21 hours of swapping).  Flagged, per function/lambda/class/module scope:

* a list/dict/set/deque created before a ``for``/``async for``/``while`` loop, grown in it
  (``append``, ``extend``, ``add``, ``insert``, ``update``, ``setdefault``, ``+=``, ``|=``,
  ``d[k] = v``, ``d[k].append``, ``heappush``) and read after it (returned, written, ...);
* a comprehension over a non-literal iterable, materialised outside any loop, whose result
  goes to a write-like call such as ``executemany``.

Loops over literals (``("a", "b")``, ``range(3)``) are bounded.  Containers created or reset
(re-assigned, ``.clear()``) inside the loop are per-item batches and fine.  A deliberate
bounded case needs ``# bounded: <reason>`` on the creating line or the growth line.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["Finding", "lint_paths", "lint_source", "main"]

FIX_HINT = "write per item or mark '# bounded: <why>'"
_MARKER = re.compile(r"(?<![\w-])bounded:(?P<reason>.*)$", re.IGNORECASE)
_DICT_KINDS = {"dict", "defaultdict", "OrderedDict", "Counter"}
_CONSTRUCTORS = {"list", "set", "deque", *_DICT_KINDS}  # the kind is the constructor name
_GROW_METHODS = {"append", "extend", "add", "insert", "update", "setdefault", "appendleft",
                 "extendleft"}  # fmt: skip
_PUSH_FUNCTIONS = {"heappush", "insort", "insort_left", "insort_right"}
_MATERIALISERS = {"list": "list", "set": "set", "tuple": "tuple", "sorted": "list",
                  "frozenset": "frozenset", "dict": "dict"}  # fmt: skip
#: Calls that write (or copy in full) what they are given: the sinks of the incident.
WRITE_SINKS = frozenset({
    "executemany", "execute", "write", "writelines", "writerow", "writerows", "write_table",
    "write_batch", "write_parquet", "write_csv", "insert", "insert_many", "insert_rows",
    "to_sql", "from_pylist", "from_records", "from_pydict", "DataFrame", "register", "dump",
    "save", "savez", "savez_compressed", "log_dict", "log_metrics", "log_batch",
})  # fmt: skip
_KINDS: dict[type, str] = {
    ast.List: "list", ast.ListComp: "list", ast.Dict: "dict", ast.DictComp: "dict",
    ast.Set: "set", ast.SetComp: "set",
}  # fmt: skip
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
Loop = ast.For | ast.AsyncFor | ast.While
Pos = tuple[int, int]


@dataclass(frozen=True, order=True)
class Finding:
    """One problem; ``str()`` gives ``path:line:col: message`` (1-based column)."""

    path: Path
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class _Binding(NamedTuple):
    name: str
    pos: Pos  # end of the statement: its right-hand side is read first
    node: ast.AST
    loops: tuple[Loop, ...]
    kind: str | None = None  # container kind when bound to a container expression
    comprehension: bool = False  # bound to a comprehension over a non-literal iterable


class _Growth(NamedTuple):
    name: str
    node: ast.AST
    op: str
    loops: tuple[Loop, ...]
    operand_kind: str | None = None  # for += / |=: kind of the right-hand side


def _pos(node: ast.AST) -> Pos:
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def _end(node: ast.AST) -> Pos:
    return (getattr(node, "end_lineno", None) or 0, getattr(node, "end_col_offset", None) or 0)


def _call_name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _is_bounded_iterable(node: ast.expr) -> bool:
    """A literal collection, a constant ``range`` or ``enumerate``/``zip``/... of those."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):  # [*runs] is as long as runs
        return not any(isinstance(elt, ast.Starred) for elt in node.elts)
    if isinstance(node, ast.Dict | ast.Constant):
        return None not in getattr(node, "keys", ())  # {**d} is as long as d
    if not isinstance(node, ast.Call) or node.keywords or not node.args:
        return False
    if _call_name(node.func) == "range":
        return all(isinstance(arg, ast.Constant) for arg in node.args)
    wrapper = _call_name(node.func) in {"enumerate", "reversed", "sorted", "zip"}
    return wrapper and all(_is_bounded_iterable(arg) for arg in node.args)


def _is_unbounded(loop: Loop) -> bool:
    return isinstance(loop, ast.While | ast.AsyncFor) or not _is_bounded_iterable(loop.iter)


def _in_unbounded_loop(loops: tuple[Loop, ...]) -> bool:
    return any(_is_unbounded(loop) for loop in loops)


def _comprehension_kind(node: ast.expr) -> str | None:
    """Kind of a comprehension (or ``list(genexp)``) that iterates a non-literal iterable."""
    kind = _KINDS.get(type(node))
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        kind, node = _MATERIALISERS.get(_call_name(node.func)), node.args[0]
    if not (kind and isinstance(node, _COMPREHENSIONS)):
        return None
    return kind if any(not _is_bounded_iterable(g.iter) for g in node.generators) else None


def _container_kind(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Call):
        if any(kw.arg == "maxlen" for kw in node.keywords):
            return None  # deque(maxlen=N) bounds itself
        name = _call_name(node.func)
        return name if name in _CONSTRUCTORS else _comprehension_kind(node)
    return _KINDS.get(type(node))


class _ScopeFacts:
    """Bindings, reads and growth of names in one scope, each with its enclosing loops."""

    def __init__(self, scope: ast.AST) -> None:
        self.bindings: list[_Binding] = []
        self.reads: list[tuple[str, Pos, ast.Name]] = []
        self.growth: list[_Growth] = []
        self.sink_args: dict[int, str] = {}  # id(Name passed to a write sink) -> sink name
        self.inline: list[tuple[ast.expr, str, str, tuple[Loop, ...]]] = []
        self.receivers: set[int] = set()  # ids of Names that are grown, not read
        body = [scope.body] if isinstance(scope, ast.Lambda) else getattr(scope, "body", [])
        for node in body:
            self.visit(node, ())

    def visit(self, node: ast.AST, loops: tuple[Loop, ...]) -> None:
        if isinstance(node, _SCOPES):
            return  # analysed as a scope of its own
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            inner = (*loops, node)  # while tests and for targets run in every iteration
            if isinstance(node, ast.While):
                self.visit(node.test, inner)
            else:
                self.visit(node.iter, loops)
                self.visit(node.target, inner)
            for stmt in node.body:
                self.visit(stmt, inner)
            for stmt in node.orelse:
                self.visit(stmt, loops)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets if node.value is not None else []:
                self._bind(target, node.value, node, loops)  # before the value: receivers
            if node.value is not None:
                self.visit(node.value, loops)
        elif isinstance(node, ast.AugAssign):
            target, op = node.target, "+=" if isinstance(node.op, ast.Add) else "|="
            if isinstance(target, ast.Name) and isinstance(node.op, ast.Add | ast.BitOr):
                kind = _container_kind(node.value)
                self.growth.append(_Growth(target.id, node, op, loops, kind))
            elif not isinstance(target, ast.Name):
                self._bind(target, None, node, loops)
            self.visit(node.value, loops)
        elif isinstance(node, _COMPREHENSIONS):  # their targets are not names of this scope
            for child in ast.iter_child_nodes(node):
                for part in (
                    [child.iter, *child.ifs] if isinstance(child, ast.comprehension) else [child]
                ):
                    self.visit(part, loops)
        else:
            if isinstance(node, ast.Call):
                self._note_call(node, loops)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if id(node) not in self.receivers:
                    self.reads.append((node.id, _pos(node), node))
            elif isinstance(node, ast.Name):  # Store (for/with targets) or Del: a rebinding
                self.bindings.append(_Binding(node.id, _pos(node), node, loops))
            for child in ast.iter_child_nodes(node):
                self.visit(child, loops)

    def _bind(
        self, target: ast.expr, value: ast.expr | None, stmt: ast.AST, loops: tuple[Loop, ...]
    ) -> None:
        if isinstance(target, ast.Name):
            concat = isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add | ast.BitOr)
            left = value.left if isinstance(value, ast.BinOp) and concat else None
            if isinstance(left, ast.Name) and left.id == target.id:  # rows = rows + [...]
                self._grow(left, stmt, "+", loops)
                return
            made = value is not None and _comprehension_kind(value) is not None
            binding = _Binding(target.id, _end(stmt), stmt, loops, _container_kind(value), made)
            self.bindings.append(binding)
        elif isinstance(target, ast.Tuple | ast.List):
            values: Sequence[ast.expr | None] = [None] * len(target.elts)
            if isinstance(value, ast.Tuple | ast.List) and len(value.elts) == len(target.elts):
                values = value.elts
            for elt, elt_value in zip(target.elts, values, strict=True):
                self._bind(elt, elt_value, stmt, loops)
        elif isinstance(target, ast.Starred):
            self._bind(target.value, None, stmt, loops)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            self._grow(target.value, stmt, "item assignment", loops)
            self.visit(target.slice, loops)
        else:
            self.visit(target, loops)

    def _grow(self, name: ast.Name, node: ast.AST, op: str, loops: tuple[Loop, ...]) -> None:
        self.receivers.add(id(name))
        self.growth.append(_Growth(name.id, node, op, loops))

    def _note_call(self, node: ast.Call, loops: tuple[Loop, ...]) -> None:
        name = _call_name(node.func)
        base = getattr(node.func, "value", None)
        if isinstance(base, ast.Subscript) and name in _GROW_METHODS:  # d[k].append(v)
            base, name = base.value, f"[...].{name}"
        if isinstance(base, ast.Name) and name.rpartition(".")[2] in _GROW_METHODS:
            self._grow(base, node, name, loops)
        elif isinstance(base, ast.Name) and name == "clear":  # a reset, like re-assigning
            self.bindings.append(_Binding(base.id, _end(node), node, loops))
        if name in _PUSH_FUNCTIONS and node.args and isinstance(node.args[0], ast.Name):
            self._grow(node.args[0], node, name, loops)
        for arg in [*node.args, *(kw.value for kw in node.keywords)] if name in WRITE_SINKS else []:
            arg = arg.value if isinstance(arg, ast.Starred) else arg
            if isinstance(arg, ast.Name):
                self.sink_args[id(arg)] = name
            elif kind := _comprehension_kind(arg):
                self.inline.append((arg, kind, name, loops))

    def events_after(self, name: str, after: Pos) -> list[tuple[Pos, ast.Name | None]]:
        """Reads (the Name) and rebindings (None) of ``name`` after ``after``, in order."""
        events: list[tuple[Pos, ast.Name | None]] = [
            (pos, node) for n, pos, node in self.reads if n == name and pos > after
        ]
        events += [(b.pos, None) for b in self.bindings if b.name == name and b.pos > after]
        return sorted(events, key=lambda event: event[0])


def _markers(source: str, path: Path, findings: list[Finding]) -> set[int]:
    """Lines carrying a valid ``# bounded: <reason>``; reason-less markers become findings."""
    valid: set[int] = set()  # bounded: one entry per marker comment in one file
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        match = _MARKER.search(token.string) if token.type == tokenize.COMMENT else None
        if match and any(ch.isalnum() for ch in match.group("reason")):
            valid.add(token.start[0])
        elif match:
            line, col = token.start
            findings.append(Finding(path, line, col + 1, "bounded marker needs a reason"))
    return valid


def _check_scope(path: Path, facts: _ScopeFacts, marked: set[int]) -> Iterator[Finding]:
    def is_marked(*nodes: ast.AST) -> bool:
        return any(_pos(n)[0] <= line <= _end(n)[0] for n in nodes for line in marked)

    def finding(node: ast.AST, message: str) -> Finding:
        return Finding(path, _pos(node)[0], _pos(node)[1] + 1, f"{message}; {FIX_HINT}")

    reported: set[int] = set()
    for grow in sorted(facts.growth, key=lambda g: _pos(g.node)):
        outer = next((loop for loop in grow.loops if _is_unbounded(loop)), None)
        made = max(
            (b for b in facts.bindings if b.name == grow.name and b.pos < _pos(grow.node)),
            key=lambda b: b.pos,
            default=None,
        )
        if outer is None or made is None or id(made.node) in reported:
            continue
        kind = made.kind or (grow.operand_kind if grow.op in ("+=", "|=") else None)
        if kind is None or _in_unbounded_loop(made.loops):
            continue  # not a known container, or created afresh in every iteration
        if grow.op == "item assignment" and kind not in _DICT_KINDS:
            continue  # lst[i] = v replaces, it does not grow
        if any(b.name == grow.name and outer in b.loops for b in facts.bindings):
            continue  # re-assigned or cleared inside the loop: a per-item batch
        events = facts.events_after(grow.name, _end(outer.body[-1]))
        if not events or events[0][1] is None or is_marked(made.node, grow.node):
            continue  # not read after the loop (or rebound first), or marked bounded
        reported.add(id(made.node))
        yield finding(
            grow.node,
            f"{kind} '{grow.name}' grows inside the loop at line {outer.lineno} ({grow.op})"
            f" and is passed on after it at line {events[0][0][0]}",
        )
    for made in facts.bindings:
        if not made.comprehension or _in_unbounded_loop(made.loops) or is_marked(made.node):
            continue
        for pos, node in facts.events_after(made.name, made.pos):
            if node is None:
                break  # rebound before reaching a sink
            if sink := facts.sink_args.get(id(node)):
                yield finding(
                    made.node,
                    f"{made.kind} '{made.name}' is built from a comprehension over an unbounded"
                    f" iterable and passed to {sink}() at line {pos[0]}",
                )
                break
    for arg, kind, sink, loops in facts.inline:
        if not _in_unbounded_loop(loops) and not is_marked(arg):
            yield finding(
                arg,
                f"{kind} comprehension over an unbounded iterable is materialised in full"
                f" for {sink}()",
            )


def lint_source(source: str, path: Path) -> list[Finding]:
    """Lint one module's source text; ``path`` is only used in the findings."""
    findings: list[Finding] = []  # bounded: the findings of one module
    try:
        tree = ast.parse(source, filename=str(path))
        marked = _markers(source, path, findings) if "bounded" in source.lower() else set()
    except (SyntaxError, tokenize.TokenError) as exc:
        line = getattr(exc, "lineno", None) or 1
        return [Finding(path, line, 1, f"cannot parse: {exc.args[0] if exc.args else exc}")]
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, _SCOPES))]:
        findings += _check_scope(path, _ScopeFacts(scope), marked)
    return sorted(set(findings), key=lambda f: (f.line, f.col, f.message))


def _python_files(path: Path) -> Iterator[Path]:
    if not path.is_dir():
        yield path
        return
    for file in sorted(path.rglob("*.py")):
        if not any(p.startswith(".") or p == "__pycache__" for p in file.relative_to(path).parts):
            yield file


def lint_paths(paths: Sequence[Path]) -> list[Finding]:
    """Lint files and directories (recursively, ``*.py``, skipping hidden directories)."""
    findings: list[Finding] = []  # bounded: findings only, a few per file
    for file in (file for path in paths for file in _python_files(Path(path))):
        try:
            with tokenize.open(file) as handle:  # honours PEP 263 encoding cookies
                source = handle.read()
        except (OSError, SyntaxError, UnicodeDecodeError) as exc:
            findings.append(Finding(file, 1, 1, f"cannot read: {exc}"))
        else:
            findings += lint_source(source, file)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    """``mlruns-assets lint PATH...``: 0 when clean, 1 with findings, 2 for a missing path."""
    parser = argparse.ArgumentParser(
        prog="mlruns-assets lint",
        description="Report containers that accumulate across unbounded loops (incident 003).",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="Python files or directories")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    if missing := [path for path in args.paths if not path.exists()]:
        sys.stderr.writelines(
            f"mlruns-assets lint: no such file or directory: {p}\n" for p in missing
        )
        return 2
    files = sum(1 for path in args.paths for _ in _python_files(path))
    findings = lint_paths(args.paths)
    sys.stdout.writelines(f"{finding}\n" for finding in findings)
    if findings:
        sys.stdout.write(f"{len(findings)} accumulation finding(s) in {files} file(s)\n")
        return 1
    sys.stdout.write(f"no accumulation findings in {files} file(s)\n")
    return 0
