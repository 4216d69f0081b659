"""The run store and the runner: stored results as units, plans, engines, concurrency, portability."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import mer_lib.attacks.results as results
import mer_lib.store as store
from mer_lib.attacks import AttackConfig
from mer_lib.data import MerTensors
from mer_lib.errors import CheckpointError
from mer_lib.experiments import Experiment
from mer_lib.runner import JobError, Runner
from mer_lib.step_costs import step_costs
from mer_lib.store import LAYOUT_VERSION, open_store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = dict(log=lambda message: None)


# ----------------------------------------------------------------------------- stored attack results

class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(20, 8))
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


def _tiny(identity="data123"):
    g = torch.Generator().manual_seed(0)
    data = MerTensors(x=torch.randn(6, 1, 4, 5, generator=g), emotions=torch.rand(6, 8, generator=g),
                      midlevel=None, ids=[f"{i:03d}" for i in range(1, 7)],
                      split={"train": np.array([0, 1, 2]), "valid": np.array([3]), "test": np.array([4, 5])},
                      mean=0.5, std=0.25, identity=identity)
    torch.manual_seed(0)
    model = ModeRecorder().train()
    trained = SimpleNamespace(model=model, key="a2e-6-abc", config=SimpleNamespace(variant="a2e", seed=6))
    return data, trained


def test_get_attack_stores_one_unit_and_reuses_it(tmp_path, monkeypatch):
    data, trained = _tiny()
    cfg = AttackConfig(epsilon=0.01, step_size=0.005, max_iterations=3)
    first = results.get_attack(trained, data, cfg, run_dir=tmp_path, progress=False)
    folder = results.result_dir(tmp_path, "a2e-6-abc", cfg, "test", "data123")
    assert first.computed_now and first.path == folder
    assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "table.csv"]
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name, folder.name + ".lock"]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["identity"] == results.result_identity("a2e-6-abc", cfg, "test", "data123")
    table = first.table
    assert table.example.tolist() == ["005", "006"] and len(table) == meta["rows"]
    for column, value in [("variant", "a2e"), ("seed", 6), ("model_key", "a2e-6-abc"), ("mode", "projected"),
                          ("epsilon", 0.01), ("norm", "linf"), ("step_size", 0.005)]:
        assert table[column].unique().tolist() == [value]
    assert trained.model.modes and not any(trained.model.modes)      # attacked in eval mode
    assert trained.model.training                                    # mode restored

    def fail(*args, **kwargs):
        raise AssertionError("the stored table should have been reused")

    monkeypatch.setattr(results, "attack", fail)
    second = results.get_attack(trained, data, cfg, run_dir=tmp_path, progress=False)
    assert not second.computed_now
    pd.testing.assert_frame_equal(first.table, second.table)
    with pytest.raises(AssertionError, match="reused"):             # another configuration computes
        results.run_attack(trained, data, AttackConfig(epsilon=0.02, step_size=0.005, max_iterations=3),
                           run_dir=tmp_path, progress=False)


def test_result_key_covers_model_attack_split_data_and_engine(monkeypatch):
    cfg = AttackConfig(epsilon=0.01)
    base = results.result_key(results.result_identity("m", cfg, "test", "d"))
    others = [results.result_identity("m2", cfg, "test", "d"),
              results.result_identity("m", AttackConfig(epsilon=0.02), "test", "d"),
              results.result_identity("m", cfg, "valid", "d"),
              results.result_identity("m", cfg, "test", "d2")]
    assert len({base, *map(results.result_key, others)}) == 5
    monkeypatch.setattr(results, "ENGINE_VERSION", results.ENGINE_VERSION + 1)
    assert results.result_key(results.result_identity("m", cfg, "test", "d")) != base


def test_a_kill_while_writing_leaves_no_result(tmp_path, monkeypatch):
    data, trained = _tiny()
    cfg = AttackConfig(epsilon=0.01, step_size=0.005, max_iterations=2)
    real_dumps = json.dumps

    def killed(obj, *args, **kwargs):                     # dies after table.csv, before meta.json
        if isinstance(obj, dict) and "identity" in obj:
            raise KeyboardInterrupt
        return real_dumps(obj, *args, **kwargs)

    monkeypatch.setattr(store.json, "dumps", killed)
    with pytest.raises(KeyboardInterrupt):
        results.get_attack(trained, data, cfg, run_dir=tmp_path, progress=False)
    folder = results.result_dir(tmp_path, "a2e-6-abc", cfg, "test", "data123")
    assert not folder.exists() and not results.is_stored(folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name + ".lock"]   # no temporaries
    monkeypatch.setattr(store.json, "dumps", real_dumps)
    assert results.get_attack(trained, data, cfg, run_dir=tmp_path, progress=False).computed_now


def test_a_tampered_result_is_a_clear_error(tmp_path):
    data, trained = _tiny()
    cfg = AttackConfig(epsilon=0.01, step_size=0.005, max_iterations=2)
    folder = results.get_attack(trained, data, cfg, run_dir=tmp_path, progress=False).path
    meta = json.loads((folder / "meta.json").read_text())
    meta["identity"]["engine"] = -1
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="delete the folder"):
        results.run_attack(trained, data, cfg, run_dir=tmp_path, progress=False)


def test_a_store_of_another_layout_is_refused(tmp_path):
    open_store(tmp_path)
    assert json.loads((tmp_path / "store.json").read_text())["layout"] == LAYOUT_VERSION
    (tmp_path / "store.json").write_text(json.dumps({"layout": LAYOUT_VERSION - 1}))
    with pytest.raises(CheckpointError, match="layout version 1.*new folder"):
        open_store(tmp_path)


# ----------------------------------------------------------------------------- the smoke grid

SMOKE = dict(profile="smoke", device="cpu")


def _tables(runner: Runner) -> pd.DataFrame:
    tables = runner.attack_tables()
    return pd.concat(tables.values(), ignore_index=True).sort_values(
        ["mode", "epsilon", "variant", "seed", "example"], ignore_index=True)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, one_torch_thread):
    """The smoke grid run once in-process into its own store."""
    home = tmp_path_factory.mktemp("baseline")
    runner = Runner(Experiment.from_parameters(**SMOKE), home, **QUIET)
    before = runner.plan()
    report = runner.run()
    return SimpleNamespace(home=home, runner=runner, before=before, report=report, tables=_tables(runner))


def test_plan_lists_every_job_then_nothing_after_a_run(baseline):
    exp = baseline.runner.exp
    plan = baseline.before
    n_models, n_attacks = len(exp.models()), len(exp.models()) * (len(exp.attack_grid()) + len(exp.wave_grid()))
    n_ext, n_tables = len(baseline.runner.extension_jobs()), len(baseline.runner.table_jobs())
    n_costs = len(baseline.runner.cost_jobs())
    n_attacks += 4                                      # the projected attack of the 4 ExpO and RAR systems
    # 3 + 3 waveform attacks per paper model; 10 realisability, 12 explanation, 9 attribution tables;
    # one step timing per system (5 paper, 2 ExpO, 2 RAR)
    assert (n_models, n_ext, n_attacks, n_tables, n_costs) == (5, 7, 34, 31, 9)
    assert plan.kind.tolist() == (["train"] * n_models + ["extension"] * n_ext + ["attack"] * n_attacks
                                  + ["table"] * n_tables + ["cost"] * n_costs)
    costs = plan[plan.kind == "cost"]                  # each beside the first A2E model
    a2e_key = plan[(plan.kind == "train") & plan.job.str.startswith("a2e ")].key.iloc[0]
    assert costs.needs.str.contains(f"model {a2e_key}").all()
    assert (plan.status == "to do").all() and plan.key.is_unique
    assert plan[plan.kind != "train"].needs.str.endswith("(to train)").all()
    assert set(plan.chapter) == {"training", "explanations", "attributions", "robustness", "listening"}
    assert len(baseline.report.trained) == n_models + n_ext and len(baseline.report.attacked) == n_attacks
    assert len(baseline.report.tables) == n_tables and len(baseline.report.timed) == n_costs
    assert (baseline.runner.plan().status == "stored").all()
    text = baseline.runner.plan_text()
    assert text.splitlines()[-1] == ("train: 0 of 5 models to do; extension: 0 of 7 extension models to do; "
                                     "attack: 0 of 34 attacks to do; table: 0 of 31 tables to do; "
                                     "cost: 0 of 9 step timings to do")


def test_a_second_runner_computes_nothing(baseline, monkeypatch):
    import mer_lib.training as training

    def fail(*args, **kwargs):
        raise AssertionError("a stored model was trained again")

    monkeypatch.setattr(training, "train", fail)
    monkeypatch.setattr(results, "attack", fail)
    runner = Runner(Experiment.from_parameters(**SMOKE), baseline.home, **QUIET)
    assert runner.missing() == []
    models = runner.models()
    assert len(models) == 5 and runner.trained_now == 0
    pd.testing.assert_frame_equal(_tables(runner), baseline.tables)


def test_tables_hold_every_model_and_clip(baseline):
    t = baseline.tables
    n_test = len(baseline.runner.data.split["test"])
    assert len(t) == 15 * n_test
    assert set(t.variant) == {"a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e"}
    projected = t[t["mode"] == "projected"]
    assert (projected.linf <= projected.epsilon * (1 + 1e-5)).all()


def test_a_failed_model_fails_its_job_and_skips_its_attacks(tmp_path, baseline, fail_training):
    fail_training("a2m2e")
    exp = Experiment.from_parameters(**SMOKE, variants=["a2e", "a2m2e"], modes=["projected"], epsilons=[0.01])
    runner = Runner(exp, tmp_path, data=baseline.runner.data, **QUIET)
    with pytest.raises(JobError) as info:
        runner.run()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("1 job(s) failed: train a2m2e seed 6: TrainingError: training a2m2e seed 6")
    assert "9 job(s) skipped because their model failed" in message     # 5 attacks, 3 tables, its step timing
    plan = runner.plan()
    assert plan[plan.status == "to do"].job.tolist() == [
        "a2m2e seed 6", "a2m2e seed 6, projected eps=0.001", "a2m2e seed 6, projected eps=0.01",
        "a2m2e seed 6, waveform SNR >= 40 dB", "a2m2e seed 6, waveform SNR >= 20 dB", "a2m2e seed 6, waveform |d| <= 0.001",
        "realisability of a2m2e seed 6, projected eps=0.001", "explanations of a2m2e seed 6", "attributions of a2m2e seed 6",
        "step cost of a2m2e seed 6"]


def test_a_step_timing_without_a2e_is_stored_where_it_was_planned(tmp_path, baseline):
    """No A2E in the experiment: the timing has no reference (its cost ratio is NaN), and the
    job stores it in the folder the plan names, so it is done afterwards and a chapter reads it."""
    exp = Experiment.from_parameters(**SMOKE, variants=["a2m2e"], modes=["projected"], epsilons=[0.01])
    runner = Runner(exp, tmp_path, data=baseline.runner.data, **QUIET)
    job = next(j for j in runner.cost_jobs() if j.model.variant == "a2m2e")
    assert job.reference is None and job.needs == (job.model,)
    assert runner.execute(job) and runner.is_done(job)
    assert not runner.execute(job)                                   # found in the store
    costs = step_costs([runner.model_of(job.model)], runner.data, run_dir=runner.run_dir)
    assert costs.loc["a2m2e", "step_seconds"] > 0 and np.isnan(costs.loc["a2m2e", "epoch_cost"])


def test_a_failed_reference_model_skips_every_step_timing_and_names_it(tmp_path, baseline, fail_training):
    """A step timing needs two models, its own and A2E's: when A2E fails, every timing is skipped
    with A2E named, and the jobs that need only the other model still run."""
    fail_training("a2e")
    exp = Experiment.from_parameters(**SMOKE, variants=["a2e", "a2m2e"], modes=["projected"], epsilons=[0.01])
    runner = Runner(exp, tmp_path, data=baseline.runner.data, **QUIET)
    report = runner.run(kinds=("train", "cost"), raise_on_failure=False)
    assert list(report.failed) == ["train a2e seed 6"]
    assert report.skipped["step cost of a2m2e seed 6"].startswith("its model failed (train a2e seed 6: TrainingError")
    assert report.trained == ["a2m2e seed 6"] and report.timed == []


def test_a_copied_store_and_data_find_every_result(baseline, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "home"
    shutil.copytree(baseline.home, copy, copy_function=shutil.copy)     # new paths, new mtimes
    for path in copy.rglob("*.mp3"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    runner = Runner(Experiment.from_parameters(**SMOKE), copy, **QUIET)
    assert runner.data.identity == baseline.runner.data.identity
    assert runner.missing() == []
    assert all(not m.trained_now for m in runner.models().values())


def test_two_processes_on_one_store_train_each_model_once(tmp_path, baseline):
    home = tmp_path / "shared"
    script = (
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from mer_lib.experiments import Experiment\n"
        "from mer_lib.runner import Runner\n"
        "import pandas as pd\n"
        "r = Runner(Experiment.from_parameters(profile='smoke', device='cpu'), sys.argv[1])\n"
        "rep = r.run()\n"
        "t = pd.concat(r.attack_tables().values(), ignore_index=True)\n"
        "t.to_csv(sys.argv[2], index=False)\n"
        "json.dump({k: getattr(rep, k) for k in ('trained', 'found_trained', 'attacked', 'found_attacked')},"
        " open(sys.argv[3], 'w'))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(home), str(tmp_path / f"t{i}.csv"),
                               str(tmp_path / f"r{i}.json")], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    trained = reports[0]["trained"] + reports[1]["trained"]
    attacked = reports[0]["attacked"] + reports[1]["attacked"]
    extension = [job.name for job in baseline.runner.extension_jobs()]          # 7 ExpO and RAR models
    assert sorted(trained) == sorted([f"{v} seed 6" for v in ("a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e")] + extension)
    assert len(attacked) == len(set(attacked)) == 34      # 15 spectrogram, 15 waveform, 4 of extension models
    for i in range(2):         # what one process did not compute, it found computed by the other
        assert len(reports[i]["trained"]) + len(reports[i]["found_trained"]) + \
            len(reports[1 - i]["trained"]) >= 12
    histories = sorted(p.parent.name for p in (home / "models").rglob("history.csv"))
    assert len(histories) == 12
    read = [pd.read_csv(tmp_path / f"t{i}.csv", dtype={"example": str, "model_key": str}) for i in range(2)]
    pd.testing.assert_frame_equal(read[0], read[1])
    ours = read[0].sort_values(["mode", "epsilon", "variant", "seed", "example"], ignore_index=True)
    assert ours.model_key.tolist() == baseline.tables.model_key.tolist()
    pd.testing.assert_frame_equal(ours, baseline.tables, check_exact=False, rtol=1e-12, atol=0)


def test_the_grid_on_ray_gives_the_tables_of_the_inprocess_engine(tmp_path, baseline):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        runner = Runner(Experiment.from_parameters(**SMOKE), tmp_path, data=baseline.runner.data, **QUIET)
        report = runner.run("ray")
    finally:
        ray.shutdown()
    assert report.engine == "ray" and len(report.trained) == 12 and len(report.attacked) == 34   # 5 + 7 extension models
    assert len(report.tables) == 31
    pd.testing.assert_frame_equal(_tables(runner), baseline.tables, check_exact=False, rtol=1e-12, atol=0)


def test_a_model_stack_is_one_ray_task(tmp_path, baseline):
    """With stack_size 2 the two seeds of each variant train in one Ray task, stored as the
    in-process stacks store them (the same keys, weights equal to float32 rounding)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[cluster]')")
    exp = Experiment.from_parameters(profile="smoke", device="cpu", variants=["a2e", "aa2e"], seeds=[6, 21],
                                     modes=["projected"], epsilons=[0.01])
    lines: list[str] = []
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        runner = Runner(exp, tmp_path / "ray", data=baseline.runner.data, stack_size=2, log=lines.append)
        report = runner.run("ray", kinds=("train",))
    finally:
        ray.shutdown()
    assert sorted(report.trained) == ["a2e seed 21", "a2e seed 6", "aa2e seed 21", "aa2e seed 6"]
    assert sum("train stack of a2e seeds 6, 21: done" in line for line in lines) == 1
    local = Runner(exp, tmp_path / "local", data=baseline.runner.data, stack_size=2, **QUIET)
    local.run(kinds=("train",))
    for key, tm in runner.models().items():
        other = local.models()[key]
        assert tm.key == other.key
        assert torch.allclose(tm.model.to_emotions.weight, other.model.to_emotions.weight, atol=1e-5)
