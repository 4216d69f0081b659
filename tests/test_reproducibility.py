"""The reproducibility statement every page ends with, and the project's citation."""
from __future__ import annotations

import subprocess

import pytest

from mer_lib.errors import DataLayoutError
from mer_lib.experiments import Experiment
from mer_lib.reproducibility import ChapterRun, changed_parameters, citation_bibtex, git_state


def test_the_statement_names_what_ran_and_how_to_run_it_again():
    run = ChapterRun.start("attributions", {"profile": "quick", "device": "cpu", "epsilon": 0.001,
                                            "seeds": [6, 21], "data": "/home/someone/datasets"})
    text = run.statement(now=run.started + 61.4)
    for what in ("profile\n: `quick`, real data", "device\n: CPU", "torch ", "numpy ", "git commit",
                 "wall time of this page\n: 61 s", "papermill book/attributions.ipynb _build/source/attributions.ipynb"):
        assert what in text, what
    # defaults are left out, changed values are spelled out, a machine path becomes a placeholder
    assert "-p epsilon" not in text and "-p seeds '[6, 21]'" in text
    assert "/home/someone" not in text and "-p data /path/to/datasets" in text


def test_changed_parameters_keep_profile_and_device_and_drop_defaults():
    assert changed_parameters({"profile": "smoke", "device": "auto", "variants": ["a2e", "a2b2e", "a2m2e", "aa2e",
                                                                                 "aa2b2e"], "rar_steps": 4,
                               "not_a_parameter": 1}) == {"profile": "smoke", "device": "auto", "rar_steps": 4}


def test_git_state_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) == "not a git checkout"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    clean = git_state(tmp_path)
    assert len(clean) == 12 and "uncommitted" not in clean
    (tmp_path / "f").write_text("2")
    assert git_state(tmp_path) == f"{clean} + uncommitted changes"


def test_a_chapter_object_in_the_namespace_is_not_a_parameter_but_a_misspelt_name_is():
    run = ChapterRun.start("data", {"profile": "smoke"})
    assert Experiment.from_namespace({"profile": "smoke", "chapter_run": run}).profile == "smoke"
    with pytest.raises(Exception, match="epsilom"):
        Experiment.from_namespace({"profile": "smoke", "epsilom": 0.1})


def test_citation_from_the_project_file_and_a_clear_error_for_a_bad_one(tmp_path):
    from pathlib import Path

    text = citation_bibtex(Path(__file__).resolve().parents[1] / "CITATION.cff")
    assert "@software{mer_robustness," in text and "version   = {0.1.0}" in text
    assert "author    = {Hoedt, Katharina and Flexer, Arthur and Widmer, Gerhard}" in text
    bad = tmp_path / "CITATION.cff"
    bad.write_text("title: [unclosed\n")
    with pytest.raises(DataLayoutError, match="cannot read the citation file CITATION.cff"):
        citation_bibtex(bad)
