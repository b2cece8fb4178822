"""No import cycle anywhere in ``videozoo/``: every import of a videozoo module, wherever it is written, counts.

Counted: ``import`` statements at module level, inside functions and methods, and under ``if TYPE_CHECKING:``.
A function-level import is how a cycle is usually hidden (it runs later, so Python never complains), but a reader
still has to hold both modules in mind to follow either; an annotation-only import is a dependency the reader
follows too (and in ``videozoo/__init__.py`` it names what the lazy public attributes load). Not counted: the
implicit import of a module's parent packages (every submodule runs its package's ``__init__`` first; counting that
would make each package that re-exports its submodules a cycle), and imports by string (the registry's builder
paths, the CLI's ``"module:function"`` arguments), which are data, resolved on use.

An edge goes to the most specific module named: ``from videozoo.hub import card`` is an edge to
``videozoo.hub.card``, ``from videozoo.hub import parse_repo_id`` one to ``videozoo.hub`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
Edge = tuple[str, str, str]  # (importer, imported, "file:line")


def module_names(package: Path) -> dict[str, Path]:
    """``{"videozoo.hub.card": path, "videozoo.hub": path/__init__.py, ...}`` for every module of ``package``."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The dotted names an import statement reads, relative imports made absolute."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # from . import x / from ..a import b
        anchor = importer.split(".")[: len(importer.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names]


def import_edges(package: Path) -> list[Edge]:
    """Every import of one of ``package``'s modules by another, with where it is written."""
    modules = module_names(package)
    top = package.name
    edges = []
    for importer, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):  # every statement, however deeply nested
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(node, importer, path.name == "__init__.py"):
                if name != top and not name.startswith(top + "."):
                    continue
                while name not in modules:  # "videozoo.hub.parse_repo_id" -> "videozoo.hub"
                    name = name.rpartition(".")[0]
                if name != importer:
                    edges.append((importer, name, f"{path.relative_to(package.parent)}:{node.lineno}"))
    return edges


def find_cycle(edges: list[Edge]) -> list[Edge] | None:
    """One cycle of the graph as its edges in order, or None (depth-first search, three colours)."""
    graph: dict[str, list[Edge]] = {}
    for edge in sorted(edges):
        graph.setdefault(edge[0], []).append(edge)
    state: dict[str, str] = {}  # "open" while on the current path, "done" once every path from it was searched
    path: list[Edge] = []

    def visit(module: str) -> list[Edge] | None:
        state[module] = "open"
        for edge in graph.get(module, ()):
            target = edge[1]
            if state.get(target) == "open":  # back to a module on the current path: the cycle is its tail
                return [*path[next(i for i, e in enumerate(path) if e[0] == target) :], edge]
            if target not in state:
                path.append(edge)
                found = visit(target)
                if found:
                    return found
                path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def describe(cycle: list[Edge]) -> str:
    return "\n".join(f"  {a} -> {b}  ({where})" for a, b, where in cycle)


def test_videozoo_has_no_import_cycle() -> None:
    cycle = find_cycle(import_edges(ROOT / "videozoo"))
    assert cycle is None, "import cycle (break it by moving the shared piece below both):\n" + describe(cycle or [])


def test_function_level_and_annotation_imports_are_edges() -> None:
    """The walk sees the imports a cycle hides behind: a known function-level one and the package's lazy API."""
    edges = {(a, b) for a, b, _ in import_edges(ROOT / "videozoo")}
    assert ("videozoo.eval.finetune", "videozoo.api") in edges  # inside finetune(): `from videozoo.api import ...`
    assert ("videozoo", "videozoo.api") in edges  # videozoo/__init__.py, under `if TYPE_CHECKING:`
    assert ("videozoo.hub.weights", "videozoo.hub.card") in edges  # `from videozoo.hub import card as ...`


@pytest.mark.parametrize("where", ["module", "function", "type_checking", "relative"])
def test_a_cycle_is_found_and_named(tmp_path: Path, where: str) -> None:
    """A two-module cycle in a scratch package, the second import written each way the walk must see."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub.b import g\n\ndef f():\n    return g\n")
    back = {
        "module": "import pkg.a\n",
        "function": "def g():\n    from pkg.a import f\n    return f\n",
        "type_checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
        "relative": "def g():\n    from .. import a\n    return a\n",
    }[where]
    (pkg / "sub" / "b.py").write_text(back)
    cycle = find_cycle(import_edges(pkg))
    assert cycle is not None and {(a, b) for a, b, _ in cycle} == {("pkg.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.a")}
    assert "pkg/sub/b.py:" in describe(cycle)
    (pkg / "sub" / "b.py").write_text("def g():\n    return 1\n")  # the cycle broken: none reported
    assert find_cycle(import_edges(pkg)) is None
