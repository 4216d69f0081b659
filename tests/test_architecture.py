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
            # "from pkg import mod" imports the module; "from pkg import name" the package's name
            candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
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


#: The layers, bottom first, and their modules (a name covers its submodules; the longest name
#: decides; "=name" is the package's ``__init__`` alone). ARCHITECTURE.md draws the same table.
LAYERS = {
    "core utilities": "errors paths locks store checksums runtime params versions allocator words",
    "data": "data spectrogram_cache split wave_excerpts datasets audio frontend spectral_ops profiles reference_data",
    "models": "models stack",
    "algorithms": "attacks explain attributions metrics",
    "training": "trainer training stack_training train_loop train_config checkpoints stack_members objectives",
    "measurements": "=attacks attacks.results attacks.wave_results attacks.realisability_table explain.report "
                    "attributions.report =explain =attributions comparison step_costs summaries stats published",
    "experiment / runner": "cli __main__ runner runner_stacks ray_engine planning jobs experiments parameters "
                           "extensions products",
    "book helpers": "bookbuild layout plots reproducibility verdicts claims findings listening model_tables =",
}


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module`` (a dotted name), or None when it has none."""
    rel = module.partition(".")[2]
    best = None
    for i, names in enumerate(LAYERS.values()):
        for name in names.split():
            exact = name.startswith("=")
            name = name.lstrip("=")
            hit = rel == name if exact else (rel == name or rel.startswith(name + "."))
            weight = len(name) + (0.5 if exact else 0)
            if hit and (best is None or weight > best[1]):
                best = (i, weight)
    return None if best is None else best[0]


def test_every_module_has_a_layer():
    assert [m for m in module_names(PACKAGE) if layer_of(m) is None] == []


def test_imports_only_point_down_the_layers():
    """A module imports from its own layer or from the layers below (hidden imports counted)."""
    modules = module_names(PACKAGE)
    names = list(LAYERS)
    upward = [f"{m} ({names[layer_of(m)]}) imports {t} ({names[layer_of(t)]})"
              for m, p in sorted(modules.items()) for t in sorted(imports_of(m, p, modules))
              if layer_of(t) > layer_of(m)]
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("mer_lib.attacks.engine") < layer_of("mer_lib.attacks.results") < layer_of("mer_lib.runner")
    assert layer_of("mer_lib.datasets.synthetic") == list(LAYERS).index("data")
    assert layer_of("mer_lib") == len(LAYERS) - 1             # the package's front door re-exports the top
