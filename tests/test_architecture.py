"""The library's layout: imports point down the layers (no circles, hidden imports counted too),
modules stay readable, every stored component's version lives in one place."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mer_lib
from mer_lib import versions

PACKAGE = Path(mer_lib.__file__).resolve().parent
#: The largest module we accept (the guide's "~400 lines", with a small tolerance).
MAX_LINES = 450


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module under the package folder ``root``."""
    out = {}
    for path in root.rglob("*.py"):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (also inside functions)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for cand in candidates:
            while cand and cand not in modules:
                cand = cand.rpartition(".")[0]
            if cand and cand != name:
                found.add(cand)
    return found


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected groups of more than one module in the import graph under ``root``."""
    modules = module_names(root)
    graph = {m: imports_of(m, p, modules) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:                      # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return cycles


def test_the_cycle_finder_finds_a_hidden_circle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from .high import g   # hidden inside a function\n")
    (pkg / "high.py").write_text("from .low import f\n")
    (pkg / "side.py").write_text("from pkg import low\n")
    assert import_cycles(pkg) == [["pkg.high", "pkg.low"]]


def test_mer_lib_has_no_import_circles():
    assert import_cycles(PACKAGE) == []


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("module, name", [
    ("mer_lib.data", "FRONTEND_VERSION"), ("mer_lib.datasets.synthetic", "GENERATOR_VERSION"),
    ("mer_lib.train_config", "FORMAT_VERSION"), ("mer_lib.training", "FORMAT_VERSION"),
    ("mer_lib.attacks.engine", "ENGINE_VERSION"), ("mer_lib.attacks.wave_config", "WAVE_ENGINE_VERSION")])
def test_every_component_version_is_the_one_in_mer_lib_versions(module, name):
    import importlib

    assert getattr(importlib.import_module(module), name) is getattr(versions, name)
    source = Path(importlib.import_module(module).__file__).read_text()
    assert f"\n{name} = " not in source                   # re-exported, never defined twice


def test_the_store_reports_every_component_version():
    from mer_lib.store import component_versions

    assert component_versions() == {"frontend": versions.FRONTEND_VERSION, "generator": versions.GENERATOR_VERSION,
                                    "trainer": versions.FORMAT_VERSION, "attack_engine": versions.ENGINE_VERSION}
