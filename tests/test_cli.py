"""``python -m mer_lib``: plan, run, attack and train on the smoke profile; bad input is one line."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import mer_lib.runner as runner_module
from mer_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
GRID = ["--profile", "smoke", "--device", "cpu", "--variants", "a2e,a2m2e", "--modes", "projected",
        "--epsilons", "0.01"]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MER_HOME", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_plan_run_plan_attack(home, capsys):
    assert main(["plan", *GRID]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1] == ("train: 2 of 2 models to do; extension: 7 of 7 extension models to do; "
                         "attack: 14 of 14 attacks to do; table: 17 of 17 tables to do; "
                         "cost: 6 of 6 step timings to do")
    jobs = [line.split()[0] for line in lines if line.split()[0] in ("train", "extension", "attack", "table", "cost")]
    # 2 spectrogram + 3 waveform attacks per model, 4 of extension models; 2 realisability, 9 explanation,
    # 6 attribution tables; one step timing per system (2 paper, 2 ExpO, 2 RAR)
    assert jobs == ["train"] * 2 + ["extension"] * 7 + ["attack"] * 14 + ["table"] * 17 + ["cost"] * 6
    assert "a2m2e seed 6, projected eps=0.01" in out
    assert not (home / "models").exists(), "plan must not train"

    assert main(["run", *GRID, "--only", "train"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("trained 2 model(s), ran 0 attack(s)")
    assert main(["run", *GRID]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("trained 7 model(s), ran 14 attack(s), computed 17 table(s), "
                                                   "timed 6 training step(s)")
    assert captured.out.splitlines()[-1] == ("train: 0 of 2 models to do; extension: 0 of 7 extension models to do; "
                                             "attack: 0 of 14 attacks to do; table: 0 of 17 tables to do; "
                                             "cost: 0 of 6 step timings to do")
    assert "[job 11/44] attack a2m2e seed 6, projected eps=0.01: done" in captured.err      # progress

    assert main(["attack", *GRID[:4], "--variant", "a2e", "--seed", "6", "--epsilon", "0.01",
                 "--max-iterations", "5"]) == 0
    out = capsys.readouterr().out
    assert "(stored)" in out.splitlines()[0] and "(stored)" in out.splitlines()[2]   # model and table
    assert re.search(r"max L-inf\s+0\.0\d+", out)
    assert main(["attack", *GRID[:4], "--variant", "a2e", "--seed", "6", "--mode", "projected",
                 "--epsilon", "0.003"]) == 0
    assert "computed now" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["plan", "--profile", "smoke", "--seeds", "6,-1"], "seeds"),
    (["plan", "--profile", "smoke", "--epsilons", "[0.1,"], "not a list"),
    (["plan", "--profile", "smoke", "--variants", "a2x"], "a2x"),
    (["run", "--profile", "smoke", "--epochs", "0"], "epochs"),
    (["attack", "--profile", "smoke", "--variant", "a2e", "--seed", "6", "--epsilon", "-1"], "epsilon"),
    (["train", "--profile", "smoke", "--variant", "a2e", "--seed", "-3"], "seeds"),
    (["plan", "--data", "/no/such/folder"], "does not exist"),
])
def test_bad_options_are_one_line_with_status_2(home, capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]
    assert not home.exists() or not (home / "models").exists()


def test_run_with_a_failing_job_exits_1_with_one_line(home, capsys, monkeypatch):
    from mer_lib.errors import TrainingError

    def failing(*args, **kwargs):
        raise TrainingError("the loss became nan at epoch 1")

    monkeypatch.setattr(runner_module, "get_trained", failing)   # where the runner looks it up
    assert main(["run", *GRID, "--variants", "a2e"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: 1 job(s) failed: train a2e seed 6: TrainingError: the loss became nan")


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_every_command_documents_the_experiment_options(capsys):
    out = _help("run", capsys)
    for option in ("--epsilons", "--seeds", "--variants", "--data", "--n-clips", "--corpus-seed",
                   "--engine", "--address", "--run-dir"):
        assert option in out
    train = _help("train", capsys)
    assert "--data" in train and "--excerpt-seconds" in train and "--epsilons" not in train


def test_ray_engine_without_ray_says_how_to_install(home, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["run", *GRID, "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the ray engine needs Ray") and "pip install -e '.[cluster]'" in err[-1]
