"""Chapter parameters from papermill's command line and API: parsed as documented, and every bad
one stops the chapter in its first code cell, before any corpus is generated or model trained."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from mer_lib.errors import ParameterError
from mer_lib.experiments import Experiment

ROOT = Path(__file__).resolve().parents[1]
PAPERMILL = str(Path(sys.executable).with_name("papermill"))
pytestmark = pytest.mark.slow


def _namespace_after_injection(tmp_path, *args: str) -> dict:
    """Run papermill's CLI without executing (--prepare-only) and evaluate the parameters and
    injected-parameters cells, i.e. exactly the names the chapter's first code cell sees."""
    out = tmp_path / "prepared.ipynb"
    proc = subprocess.run([PAPERMILL, str(ROOT / "book" / "robustness.ipynb"), str(out), "--prepare-only",
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = json.loads(out.read_text())
    ns: dict = {}
    for cell in nb["cells"]:
        tags = cell["metadata"].get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec("".join(cell["source"]), ns)
    ns.pop("__builtins__")
    return ns


@pytest.mark.parametrize("args", [
    ["-p", "epsilons", "[0.0005, 0.002]", "-p", "seeds", "[6, 21]"],
    ["-y", "epsilons: [0.0005, 0.002]\nseeds: [6, 21]"],
])
def test_lists_from_papermill_cli_reach_the_spec(tmp_path, args):
    ns = _namespace_after_injection(tmp_path, "-p", "profile", "smoke", *args)
    exp = Experiment.from_namespace(ns)
    assert exp.epsilons == (0.0005, 0.002) and exp.seeds == (6, 21) and exp.profile == "smoke"


@pytest.mark.parametrize("args, name", [
    (["-p", "seeds", "[6, 21"], "seeds"),
    (["-p", "seeds", "[6, -21]"], "seeds"),
    (["-p", "epsilons", "0.0005, x"], "epsilons"),
    (["-p", "epsilon_s", "[0.1]"], "epsilon_s"),
])
def test_malformed_cli_parameters_are_named(tmp_path, args, name):
    ns = _namespace_after_injection(tmp_path, *args)
    with pytest.raises(ParameterError, match=name):
        Experiment.from_namespace(ns)


@pytest.mark.parametrize("chapter, params, name", [     # (every check: tests/test_experiments.py)
    ("robustness", {"epsilons": "0.01"}, "epsilons"),
    ("robustness", {"seeds": "[6, 21"}, "seeds"),
    ("training", {"seeds": [6, -1]}, "seeds"),
    ("data", {"n_clips": 5}, "n_clips"),
])
def test_chapters_reject_bad_parameters_before_any_work(tmp_path, monkeypatch, chapter, params, name):
    monkeypatch.setenv("MER_HOME", str(tmp_path / "runs"))
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(ROOT / "book" / f"{chapter}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"device": "cpu", **params}, cwd=str(ROOT / "book"),
                                   progress_bar=False, kernel_name="python3")
    assert info.value.ename == "ParameterError"
    assert name in info.value.evalue and "\n" not in info.value.evalue.strip()
    assert not (tmp_path / "runs").exists(), "work started before the parameters were checked"


def test_bookbuild_rejects_a_parameter_no_chapter_declares(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mer_lib.bookbuild", "--profile", "smoke",
                           "--build-dir", str(tmp_path / "b"), "-p", "epsilon_s", "[0.1]"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"MER_HOME": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "epsilon_s" in lines[0] and "no chapter declares" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "b" / "source" / "robustness.ipynb").exists()
