"""Package layering: imports of ``src/inversion_audit`` only go down the layers, never in a cycle.

Every ``import`` and ``from ... import`` counts, also those inside functions and under
``TYPE_CHECKING``. The layers are those of docs/architecture.md ("Layers").
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import inversion_audit

PACKAGE = "inversion_audit"
ROOT = Path(inversion_audit.__file__).resolve().parent

#: packages (and top-level modules) from the bottom up; a package may import only from a
#: lower layer (or itself). ``<root>`` is ``inversion_audit/__init__.py`` (the version).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("<root>", "errors", "progress", "devices", "stats"),
    ("io",),
    ("children",),
    ("sample_data",),
    ("data",),
    ("models",),
    ("training",),
    ("attack", "defences"),
    ("checkpoints", "checkpoint_sidecar", "attack_pair"),
    ("metrics",),
    ("matching",),
    ("study",),
    ("report",),
    ("reader_study",),
    ("gui", "cli"),
)

Edges = dict[str, set[tuple[str, int]]]


def _module_name(path: Path, root: Path) -> tuple[str, list[str]]:
    """Dotted name of a source file and the package its relative imports start from."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), parts
    return ".".join(parts), parts[:-1]


def module_imports(root: Path) -> Edges:
    """``{module: {(imported module, line)}}`` for every ``.py`` under ``root`` (symlinks followed)."""
    edges: Edges = {}
    for folder, _, files in os.walk(root, followlinks=True):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = Path(folder) / name
            module, package = _module_name(path, root)
            found = edges.setdefault(module, set())
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    found.update((a.name, node.lineno) for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package[: len(package) - node.level + 1]
                        target = ".".join([*base, *([node.module] if node.module else [])])
                    else:
                        target = node.module or ""
                    found.add((target, node.lineno))
    return {m: {(t, ln) for t, ln in ts if t.split(".")[0] == PACKAGE} for m, ts in edges.items()}


def package_of(module: str) -> str:
    """``inversion_audit.data.cohort`` -> ``data``; ``inversion_audit`` -> ``<root>``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def violations(edges: Edges, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Upward imports, packages missing from ``layers``, and cycles between packages."""
    rank = {p: k for k, group in enumerate(layers) for p in group}
    out: list[str] = []
    graph: dict[str, set[str]] = {}
    for module, targets in sorted(edges.items()):
        src = package_of(module)
        if src not in rank:
            out.append(f"{module}: package {src!r} is in no layer")
            continue
        for target, line in sorted(targets):
            dst = package_of(target)
            if dst == src:
                continue
            graph.setdefault(src, set()).add(dst)
            if dst not in rank:
                out.append(f"{module}:{line} imports {target}: package {dst!r} is in no layer")
            elif rank[dst] > rank[src]:
                out.append(f"{module}:{line} imports {target}: upward ({src} -> {dst})")
    out.extend(f"cycle between packages: {' -> '.join(c)}" for c in _cycles(graph))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_cycle_path(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first package (breadth-first)."""
    start = min(component)
    parents: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ()) & component):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if w not in parents:
                parents[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component has one


def test_imports_follow_the_layers():
    edges = module_imports(ROOT)
    assert "inversion_audit.sample_data.synthetic" in edges  # the symlinked package is read
    assert "inversion_audit.gui._compute" in edges
    assert violations(edges) == []


def test_every_package_has_a_layer():
    packages = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()}
    packages = {p for p in packages if not p.startswith(("_", ".")) and p != "napari"}
    placed = {p for group in LAYERS for p in group}
    assert packages - placed == set()


def test_the_old_attack_checkpoints_cycle_fails():
    """Before this test, ``attack.inversion`` imported ``state_hash`` from ``checkpoints``, which
    imports ``attack.decoder``: an upward import and a cycle."""
    edges: Edges = {
        "inversion_audit.attack.inversion": {("inversion_audit.checkpoints", 12)},
        "inversion_audit.checkpoints": {("inversion_audit.attack.decoder", 308)},
    }
    found = violations(edges)
    assert any("attack.inversion:12" in v and "upward (attack -> checkpoints)" in v for v in found)
    assert "cycle between packages: attack -> checkpoints -> attack" in found
    # the same two packages without the upward edge are fine
    del edges["inversion_audit.attack.inversion"]
    assert violations(edges) == []


def test_function_local_and_relative_imports_count(tmp_path):
    """An import inside a function (``metrics`` reaching ``data``) is found and resolved."""
    pkg = tmp_path / PACKAGE
    (pkg / "metrics").mkdir(parents=True)
    (pkg / "data").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "metrics" / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "metrics" / "deformation.py").write_text(
        "def path():\n    from ..data.preprocess import cache_dir\n    return cache_dir()\n"
    )
    (pkg / "data" / "preprocess.py").write_text("from ..metrics import deformation\n")
    edges = module_imports(pkg)
    assert edges[f"{PACKAGE}.metrics.deformation"] == {(f"{PACKAGE}.data.preprocess", 2)}
    assert edges[f"{PACKAGE}.data.preprocess"] == {(f"{PACKAGE}.metrics", 1)}
    found = violations(edges)
    assert any("upward (data -> metrics)" in v for v in found)
    assert "cycle between packages: data -> metrics -> data" in found
