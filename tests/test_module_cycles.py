"""No import cycle between two modules of ``src/inversion_audit``.

``tests/test_layering.py`` keeps the packages in layers without a cycle between packages;
this test looks one level down: every ``import`` and ``from ... import`` of a module (also
inside functions and under ``TYPE_CHECKING``) is an edge to the module it loads, and no
module may reach itself again. ``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, else to ``pkg`` (its ``__init__``); a module's own ancestor packages are loaded
before it anyway and are not counted.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from test_layering import PACKAGE, ROOT, _cycles, _module_name

Graph = dict[str, set[str]]

#: cycles still to be broken in modules other work owns; one that is gone must be struck off
#: here, and no other may appear
KNOWN: set[str] = set()  # no cycle between two modules is tolerated


def module_graph(root: Path) -> Graph:
    """``{module: {imported module}}`` within ``root``'s package (symlinks followed)."""
    files: dict[str, tuple[Path, list[str]]] = {}
    for folder, _, names in os.walk(root, followlinks=True):
        for name in sorted(names):
            if name.endswith(".py"):
                path = Path(folder) / name
                module, package = _module_name(path, root)
                files[module] = (path, package)

    def resolve(target: str, name: str | None = None) -> str | None:
        for candidate in ([f"{target}.{name}"] if name else []) + [target]:
            if candidate in files:
                return candidate
        return None

    graph: Graph = {}
    for module, (path, package) in files.items():
        found = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(t for a in node.names if (t := resolve(a.name)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                found.update(t for a in node.names if (t := resolve(target, a.name)))
        ancestors = {".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 1)}
        found -= ancestors | {module}
    return graph


def module_cycles(graph: Graph) -> list[list[str]]:
    """One shortest cycle per group of modules that import each other (Tarjan)."""
    return _cycles(graph)


def _short(cycle: list[str]) -> str:
    return " -> ".join(m.removeprefix(f"{PACKAGE}.") for m in cycle)


def test_no_module_imports_itself_through_others():
    graph = module_graph(ROOT)
    assert f"{PACKAGE}.study.runner" in graph and f"{PACKAGE}.gui._compute" in graph
    found = {_short(c) for c in module_cycles(graph)}
    assert found - KNOWN == set(), "new import cycles between modules"
    assert KNOWN - found == set(), "cycles gone: strike them off KNOWN"


def test_a_cycle_between_two_modules_is_found(tmp_path):
    """Two modules importing each other, one of them inside a function and one under
    ``TYPE_CHECKING`` through ``from . import``, are one cycle."""
    pkg = tmp_path / PACKAGE
    (pkg / "study").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "study" / "__init__.py").write_text("")
    (pkg / "study" / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "study" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    (pkg / "study" / "c.py").write_text("from .a import f\nfrom .. import study\n")
    graph = module_graph(pkg)
    assert graph[f"{PACKAGE}.study.c"] == {f"{PACKAGE}.study.a"}  # its own package not counted
    assert module_cycles(graph) == [
        [f"{PACKAGE}.study.a", f"{PACKAGE}.study.b", f"{PACKAGE}.study.a"]
    ]
    (pkg / "study" / "b.py").write_text("")
    assert module_cycles(module_graph(pkg)) == []
