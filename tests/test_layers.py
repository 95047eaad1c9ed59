"""The layers of the repository, read from the source with ``ast`` (no import is executed).

    utils/     infrastructure: imports nothing from models/, geodesic/, train/, report/
    geodesic/  the research algorithm: may import utils/, nothing from models/, train/, report/
    models/    modules and quantizers: may import geodesic/ and utils/, never train/ or report/
    train/     scripts and runners: anything but report/ and benchmarks/
    report/    reads results: nothing from models/ or geodesic/; from train/ only the
               functions its sections need (none today)

and no import cycle between the project's modules, counting imports inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("utils", "geodesic", "models", "train", "report", "benchmarks")
FORBIDDEN = {
    "utils": {"models", "geodesic", "train", "report", "benchmarks"},
    "geodesic": {"models", "train", "report", "benchmarks"},
    "models": {"train", "report", "benchmarks"},
    "train": {"report", "benchmarks"},
    "report": {"models", "geodesic", "train", "benchmarks"},
    "benchmarks": {"report"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).glob("*.py"))}


def imports_of(path: Path, modules) -> set[str]:
    """The project modules ``path`` imports (``from pkg import mod`` resolved to pkg.mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_the_scan_sees_the_project(graph):
    """Guards the test itself: the scan finds known edges, so an empty graph cannot pass."""
    assert "geodesic.kmedoids" in graph["models.geodesic_kmedoids"]
    assert "models.geodesic_kmedoids" in graph["models.geodesic_vq"]
    assert "geodesic.kernels" in graph["geodesic.graph"]
    assert "utils.methods" in graph["train.run_comparison"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(graph, layer):
    bad = sorted(f"{m} imports {d}" for m, deps in graph.items() if m.split(".")[0] == layer
                 for d in deps if d.split(".")[0] in FORBIDDEN[layer])
    assert not bad, "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules, or None (iterative DFS)."""
    state: dict[str, int] = {}
    for start in graph:
        if state.get(start):
            continue
        stack, path = [(start, iter(sorted(graph[start])))], [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
