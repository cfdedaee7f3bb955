"""The import picture of proxy/: no cycles, and the request path's layers point one way
(network -> http -> upstream -> model -> codec; issue 16). Every import counts: at module
level, under TYPE_CHECKING and inside functions, since each is a dependency someone has to
understand. Read from the source with `ast`: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A package may not import the packages named after it (the layers above it).
LAYERS_ABOVE = {
    "proxy.codec": ("proxy.model", "proxy.upstream", "proxy.http", "proxy.network"),
    "proxy.model": ("proxy.upstream", "proxy.http", "proxy.network"),
    "proxy.upstream": ("proxy.http", "proxy.network"),
    "proxy.http": ("proxy.network",),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "proxy").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {imported for imported in out if imported in modules and imported != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_proxy_has_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert _cycles(graph) == []


@pytest.mark.parametrize("layer", sorted(LAYERS_ABOVE))
def test_a_layer_imports_nothing_above_it(graph: dict[str, set[str]], layer: str) -> None:
    upward = sorted(
        f"{name} -> {imported}"
        for name, imports in graph.items() if name == layer or name.startswith(layer + ".")
        for imported in imports
        if any(imported == above or imported.startswith(above + ".")
               for above in LAYERS_ABOVE[layer]))
    assert upward == []
