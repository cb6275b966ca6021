"""The import graph of ``arcuate/``: no cycles, no upward edges, lazy imports included.

Every ``import`` in every module is an edge: at the top, inside functions, and under
``TYPE_CHECKING`` (those are kept apart: a type-only edge is checked for direction, but it
cannot make an import cycle). Edges into the root package ``arcuate`` are ignored (every
submodule import runs it anyway). ``python -m tests.test_layers`` prints the figures.

The layers, and what each may import (besides itself):

* bottom: ``errors``, ``config``, ``workers``, ``owners``, ``format.limits`` (bounds, standard
  library only), ``plan.capabilities`` (plain data: what backends can do, declared in their
  plug-in records and read by the planner) and ``backends.registry`` (the only list of
  backend names, which settings check names against): nothing above them;
* ``format`` (the shared table format): the bottom;
* ``syntax`` (parser, AST): the bottom;
* ``plan``: ``syntax``, ``format``, the bottom. It knows backends only through the plain data
  of ``plan.capabilities``, built at the edge;
* ``backends``: ``format``, the bottom (never ``plan``, ``syntax`` or ``engine``);
* ``engine``: everything above but the edge and the front ends;
* the edge (``api``, ``demo``): the engine and below;
* ``frontends``, the root package and ``__main__``: anything.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "arcuate"

LAYERS: dict[str, set[str]] = {
    "bottom": set(),
    "format": {"bottom"},
    "syntax": {"bottom"},
    "plan": {"bottom", "format", "syntax"},
    "backends": {"bottom", "format"},
    "engine": {"bottom", "format", "syntax", "plan", "backends"},
    "edge": {"bottom", "format", "syntax", "plan", "backends", "engine"},
    "top": {"bottom", "format", "syntax", "plan", "backends", "engine", "edge"},
}
_BOTTOM = {
    "arcuate.errors",
    "arcuate.config",
    "arcuate.workers",
    "arcuate.owners",
    "arcuate.format.limits",  # the bounds every layer checks (standard library only)
    "arcuate.plan.capabilities",  # plain data: backends declare it, the planner reads it
    "arcuate.backends.registry",  # the names, which settings check
}
_EDGE = {"arcuate.api", "arcuate.demo"}
_TOP = {"arcuate", "arcuate.__main__"}

#: Known violations, each named with the reason it is tolerated (none today). Every entry must
#: still be a violation: a stale entry fails the test too.
ALLOWED: dict[str, set[tuple[str, str]]] = {"upward": set(), "cycle": set()}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    lazy: bool  # inside a function
    typing: bool  # under ``if TYPE_CHECKING``


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def layer(module: str) -> str:
    if module in _TOP or module.startswith("arcuate.frontends"):
        return "top"
    if module in _BOTTOM:
        return "bottom"
    if module in _EDGE:
        return "edge"
    return module.split(".")[1]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(node: ast.Import | ast.ImportFrom, module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The arcuate modules an import statement runs (a name imported from a package may be
    a submodule)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _resolve(module, path.name == "__init__.py", node)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    for name in names:
        while name and name not in known:  # import a.b.c where a.b.c is an attribute
            name = name.rpartition(".")[0]
        if name.startswith("arcuate.") or name == "arcuate":
            yield name


def edges(mods: dict[str, Path] | None = None) -> list[Edge]:
    mods = mods or modules()
    known = set(mods)
    out: list[Edge] = []

    def walk(node: ast.AST, module: str, path: Path, lazy: bool, typing: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(child, module, path, known):
                    if target not in (module, "arcuate"):
                        out.append(Edge(module, target, child.lineno, lazy, typing))
            inner_lazy = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            inner_typing = typing or (isinstance(child, ast.If) and _is_type_checking(child.test))
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk(ast.Module(body=[stmt], type_ignores=[]), module, path, lazy, True)
                for stmt in child.orelse:
                    walk(ast.Module(body=[stmt], type_ignores=[]), module, path, lazy, typing)
                continue
            walk(child, module, path, inner_lazy, inner_typing)

    for module, path in mods.items():
        walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), module, path, False, False)
    return out


def upward(all_edges: list[Edge]) -> list[Edge]:
    """Edges into a layer their module may not import."""
    return [
        e
        for e in all_edges
        if layer(e.source) != layer(e.target) and layer(e.target) not in LAYERS[layer(e.source)]
    ]


def cycles(all_edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), run-time edges only."""
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        if not e.typing:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _pair(component: list[str]) -> tuple[str, str]:
    return (component[0], component[-1]) if len(component) == 2 else ("", "")


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "arcuate"
    (pkg / "plan").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plan" / "__init__.py").write_text("")
    (pkg / "plan" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import arcuate.errors\n"
        "from arcuate.engine import context\n"
        "if TYPE_CHECKING:\n    from arcuate.backends.protocols import TableStore\n"
        "def f():\n    from . import b\n    import arcuate.engine.runner as r\n"
    )
    for name in ("errors", "engine/__init__", "engine/context", "engine/runner",
                 "backends/__init__", "backends/protocols", "plan/b"):
        (pkg / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
        (pkg / f"{name}.py").write_text("")
    found = {(e.target, e.lazy, e.typing) for e in edges(modules(pkg)) if e.source == "arcuate.plan.a"}
    assert found == {
        ("arcuate.errors", False, False),
        ("arcuate.engine.context", False, False),
        ("arcuate.backends.protocols", False, True),
        ("arcuate.plan.b", True, False),
        ("arcuate.engine.runner", True, False),
    }


def test_no_upward_imports() -> None:
    bad = {(e.source, e.target) for e in upward(edges())}
    allowed = ALLOWED["upward"]
    shown = sorted(
        f"{e.source}:{e.line} -> {e.target}{' (lazy)' if e.lazy else ''}"
        f"{' (TYPE_CHECKING)' if e.typing else ''}"
        for e in upward(edges())
        if (e.source, e.target) not in allowed
    )
    assert shown == [], "imports that go up a layer:\n" + "\n".join(shown)
    assert allowed <= bad, f"allowed upward edges that are gone (remove them): {allowed - bad}"


def test_no_import_cycles() -> None:
    found = cycles(edges())
    allowed = ALLOWED["cycle"]
    unexpected = [c for c in found if _pair(c) not in allowed]
    assert unexpected == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in unexpected)
    stale = allowed - {_pair(c) for c in found}
    assert not stale, f"allowed cycles that are gone (remove them): {stale}"


if __name__ == "__main__":  # pragma: no cover - prints the figures for the report
    every = edges()
    ups = upward(every)
    print(f"modules: {len(modules())}, import edges: {len(every)}")
    print(f"cycles: {len(cycles(every))}")
    for c in cycles(every):
        print("  " + " <-> ".join(c))
    shown = sorted(
        {
            f"  {e.source}:{e.line} -> {e.target}"
            + (" (lazy)" if e.lazy else "")
            + (" (TYPE_CHECKING)" if e.typing else "")
            for e in ups
        }
    )
    print(f"upward edges: {len(shown)} ({len({(e.source, e.target) for e in ups})} module pairs)")
    print("\n".join(shown))
    if "-v" in sys.argv:
        pytest.main([__file__, "-q"])
