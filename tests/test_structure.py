"""The package's shape: no import cycles between modules, a small top level, the app above the core.

Reads the source with `ast` (nothing is imported), so a cycle hidden behind a function-level import
counts as well: such imports only postpone the loop, they do not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "sdpose_core"
# The vocabulary every package may use; everything else lives in a package.
TOP_LEVEL = {"__init__", "__main__", "errors", "keypoints", "paths", "hub", "heatmaps", "losses", "precision"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """Modules of this project that `path` imports anywhere in its body (top level or inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import module` imports the module; `from module import name` the module itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = [*CORE.rglob("*.py"), *(ROOT / "app").rglob("*.py")]
    known = {_module_name(p) for p in files}
    graph = {_module_name(p): _imports(p, known) for p in files}
    # importing `a.b.c` runs `a/__init__` and `a/b/__init__` first, but a package's own __init__ importing its
    # children is how packages re-export; only count edges between modules, not module -> its parent package
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles (each list imports itself through the others): {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_top_level_holds_the_vocabulary_only() -> None:
    modules = {p.stem for p in CORE.glob("*.py")}
    assert modules <= TOP_LEVEL, f"move these into a package: {sorted(modules - TOP_LEVEL)}"


def test_the_core_never_imports_the_app() -> None:
    graph = _graph()
    offenders = {m: sorted(d for d in deps if d == "app" or d.startswith("app."))
                 for m, deps in graph.items() if m.startswith("sdpose_core")}
    assert not {m: d for m, d in offenders.items() if d}, offenders
