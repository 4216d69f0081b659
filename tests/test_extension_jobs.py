"""Extension models (ExpO, RAR) are runner jobs: planned, run after their base model, skipped when it
fails, and exactly the models the chapters read afterwards."""
from __future__ import annotations

import pytest

import mer_lib.store as store
import mer_lib.training as training
from mer_lib.comparison import explanation_tables
from mer_lib.experiments import Experiment
from mer_lib.extensions import extension_model, extension_models, quality_config
from mer_lib.jobs import JobError
from mer_lib.runner import Runner
from mer_lib.verdicts import book_tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = dict(log=lambda message: None)
#: A small grid with every kind of extension model: ExpO, the c-sweep (one c), the c = 0 control, RAR.
SPEC = dict(profile="smoke", device="cpu", variants=["a2e"], expo_variants=["expos_a2e"],
            rar_variants=["ignorm_a2e"], c_values=[0.5])


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    runner = Runner(Experiment.from_parameters(**SPEC), tmp_path_factory.mktemp("ext"), **QUIET)
    before = runner.plan()
    report = runner.run()
    return runner, before, report


def test_the_plan_lists_each_extension_model_once_after_its_base(ran):
    runner, before, _ = ran
    ext = before[before.kind == "extension"]
    assert ext.job.tolist() == ["expos_a2e seed 6", "expof_a2e seed 6 (c=0.5)", "expos_a2e seed 6 (c=0)",
                                "ignorm_a2e seed 6"]
    assert ext.chapter.tolist() == ["explanations"] * 3 + ["attributions"]
    base_key = before[before.kind == "train"].key.iloc[0]
    assert (ext.needs == f"model {base_key} (to train)").all()        # smoke fine-tunes from A2E
    assert before.kind.tolist().index("extension") > before.kind.tolist().index("train")
    assert runner.plan_text().splitlines()[-1] == (
        "train: 0 of 1 model to do; extension: 0 of 4 extension models to do; "
        f"attack: 0 of {len(runner.attack_jobs())} attacks to do; table: 0 of {len(runner.table_jobs())} tables to do; "
        "cost: 0 of 3 step timings to do")
    # explanations of A2E and the three ExpO models, then of the RAR model; attributions of A2E, ExpO-S, IG-NORM
    assert [(t.product, t.model.variant, t.chapter) for t in runner.table_jobs()] == [
        ("realisability", "a2e", "listening"), ("realisability", "a2e", "listening"),    # reference, projected
        ("explanations", "a2e", "explanations"), ("explanations", "expos_a2e", "explanations"),
        ("explanations", "expof_a2e", "explanations"), ("explanations", "expos_a2e", "explanations"),
        ("explanations", "ignorm_a2e", "attributions"), ("attributions", "a2e", "attributions"),
        ("attributions", "expos_a2e", "attributions"), ("attributions", "ignorm_a2e", "attributions")]


def test_after_the_run_the_chapters_read_every_extension_model_without_training(ran, monkeypatch):
    runner, _, report = ran
    assert len(report.trained) == 5                            # the base model and 4 extension models

    def fail(*args, **kwargs):
        raise AssertionError("a chapter trained a model or computed a table the runner had planned")

    monkeypatch.setattr(training, "train", fail)
    monkeypatch.setattr(store, "write_table", fail)
    fresh = Runner(runner.exp, runner.run_dir, data=runner.data, **QUIET)
    assert fresh.missing(("train", "extension")) == []
    exp = fresh.exp
    models = {**extension_models(fresh), **extension_models(fresh, exp.rar_variants)}   # as the chapters call them
    models["sweep"] = extension_model(fresh, "expof_a2e", 6, c=0.5)
    models["control"] = extension_model(fresh, "expos_a2e", 6, c=0.0)
    assert not any(m.trained_now for m in models.values())
    planned = {j.key for j in fresh.extension_jobs()}
    assert {m.key for m in models.values()} == planned
    tables = book_tables(fresh)                # every attack, explanation and attribution table of the book
    assert set(tables.attributions.variant) == {"a2e", "expos_a2e", "ignorm_a2e"}
    sweep = explanation_tables([models["sweep"], models["control"]], fresh.data, quality_config(exp),
                               split=exp.split, run_dir=fresh.run_dir)
    assert len(sweep) and fresh.missing() == []


def test_a_failed_base_model_skips_its_extension_models_and_names_it(tmp_path, ran, fail_training):
    runner = ran[0]
    fail_training("a2e")
    other = Runner(Experiment.from_parameters(**SPEC), tmp_path, data=runner.data, **QUIET)
    with pytest.raises(JobError, match="1 job\\(s\\) failed: train a2e seed 6: TrainingError.*; "
                                       "4 job\\(s\\) skipped because their model failed"):
        other.run(kinds=("train", "extension"))
    report = other.run(raise_on_failure=False)            # tables and attacks of the skipped models: skipped too
    assert not report.failed.keys() - {"train a2e seed 6"} and len(report.skipped) == len(other.missing()) - 1
    report = other.run(kinds=("train", "extension"), raise_on_failure=False)
    assert set(report.skipped) == {"expos_a2e seed 6", "expof_a2e seed 6 (c=0.5)", "expos_a2e seed 6 (c=0)",
                                   "ignorm_a2e seed 6"}
    assert all(why.startswith("its model failed (train a2e seed 6: TrainingError") for why in report.skipped.values())


def test_unknown_kinds_are_refused_by_name():
    from mer_lib.errors import ParameterError
    from mer_lib.jobs import check_kinds

    with pytest.raises(ParameterError, match="kinds must be a non-empty subset of \\('train', 'extension', 'attack', 'table', 'cost'\\)"):
        check_kinds(["train", "models"])
