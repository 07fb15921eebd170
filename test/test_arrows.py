"""The package's import arrows point one way (DESIGN.md §3) and no two modules import each other.

Every ``import`` of a ``ltc_controller`` module, at module level or inside a function, is read
from the source (AST). A room is the first package level (``models``, ``runtime``, ...; a
top-level module is its own room). :data:`ALLOWED` is the whole rule: which rooms each room may
import. A new upward arrow, a new room, or a new import cycle fails here with its place named.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ltc_controller"

#: Rooms each room may import (besides itself). The core (models, runtime, safety) imports no
#: transport and nothing above it; transport serves nodes and the CLI only; the offline rooms
#: (training, explain) use runtime and models, never nodes or transport; the simulator talks
#: to the nodes over the wire.
ALLOWED: dict[str, frozenset[str]] = {
    "models": frozenset({"extras"}),
    "runtime": frozenset({"models", "extras"}),
    "safety": frozenset(),
    "params": frozenset(),
    "extras": frozenset(),
    "stop": frozenset(),
    "outputs": frozenset(),  # can a file be written there: nodes check their output paths
    "interfaces": frozenset(),
    "transport": frozenset({"params", "interfaces", "stop"}),
    "sim": frozenset({"extras"}),
    "nodes": frozenset(
        {
            "runtime",
            "safety",
            "models",
            "transport",
            "params",
            "interfaces",
            "sim",
            "extras",
            "stop",
            "outputs",
        }
    ),
    # training may use explain's measurements (compare's attention stage: saliency SSIM, mass
    # on task pixels); explain never imports training, so the two offline rooms stay acyclic.
    "training": frozenset({"runtime", "models", "sim", "interfaces", "extras", "explain"}),
    "explain": frozenset({"runtime", "models", "sim", "interfaces", "extras"}),
    "supervisor": frozenset({"transport", "params", "nodes", "extras"}),
    # The entry points may use everything.
    "commands": frozenset({"*"}),
    "cli": frozenset({"*"}),
    "__main__": frozenset({"*"}),
    "__init__": frozenset(),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(f): f for f in PACKAGE.rglob("*.py")}


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (the deepest existing module of each name)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("ltc_controller"):
                    edges[name].add(t)
    return edges


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_is_in_the_table():
    rooms = {room(m) for m in modules()}
    assert rooms <= set(ALLOWED), f"rooms missing from ALLOWED: {sorted(rooms - set(ALLOWED))}"


def test_imports_point_only_where_the_table_allows():
    mods = modules()
    bad = []
    for src, targets in imports(mods).items():
        allowed = ALLOWED.get(room(src), frozenset())
        for t in targets:
            r = room(t)
            if r == room(src) or "*" in allowed or r in allowed or r == "__init__":
                continue
            bad.append(f"{src} -> {t}")
    assert not bad, "imports against DESIGN.md §3:\n" + "\n".join(sorted(bad))


def test_no_import_cycle_between_modules():
    mods = modules()
    edges = imports(mods)
    # Package __init__ re-exports are not arrows between modules.
    graph = {
        m: {t for t in edges.get(m, ()) if mods[t].name != "__init__.py"}
        for m in mods
        if mods[m].name != "__init__.py"
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    # The rule must not be blind to the imports that hid the old cycles.
    mods = modules()
    edges = imports(mods)
    assert "ltc_controller.models.policy" in edges["ltc_controller.models.policy_file"]  # relative
    assert "ltc_controller.nodes.saliency" in edges["ltc_controller.nodes.policy_node"]  # in a def
