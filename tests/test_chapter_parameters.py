"""Bad papermill parameters stop a chapter at once with an error that names the parameter."""
from __future__ import annotations

from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("params, name", [
    ({"epsilons": [-0.001]}, "epsilons"),
    ({"epsilons": "0.01"}, "epsilons"),
    ({"epsilons": [float("nan")]}, "epsilons"),
    ({"step_size": 0}, "step_size"),
    ({"max_iterations": 0}, "max_iterations"),
    ({"modes": ["fgsm"]}, "modes"),
])
def test_robustness_chapter_rejects_bad_parameters(tmp_path, monkeypatch, params, name):
    monkeypatch.setenv("MER_HOME", str(tmp_path / "runs"))
    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(ROOT / "book" / "robustness.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"device": "cpu", **params}, cwd=str(ROOT / "book"),
                                   progress_bar=False, kernel_name="python3")
    assert info.value.ename == "ParameterError"
    assert name in info.value.evalue
    assert not (tmp_path / "runs" / "models").exists(), "work started before the parameters were checked"
