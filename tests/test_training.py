"""The cached, resumable trainer, the metrics and the CLI, on a tiny synthetic dataset.

The dataset has a learnable signal: three latent values per clip raise the spectrogram in
three band ranges, and emotions and mid-level ratings are linear in them.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib import trainer, training
from mer_lib.attacks import AttackConfig
from mer_lib.attacks.precision import full_float32
from mer_lib.data import MerTensors, split_indices
from mer_lib.errors import CheckpointError, DataLayoutError, ParameterError, TrainingError
from mer_lib.metrics import ConstantColumnWarning, evaluate, pearson_per_column, predict
from mer_lib.models import build_model, get_variant
from mer_lib.objectives import task_loss
from mer_lib.training import TrainConfig, get_trained, load_trained, run_identity, train

TINY = dict(width=0.0625, epochs=2, patience=5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> MerTensors:
    g = torch.Generator().manual_seed(0)
    n = 40
    z = torch.rand(n, 3, generator=g)
    x = torch.randn(n, 1, 63, 149, generator=g)
    for k, (lo, hi) in enumerate(((0, 50), (50, 100), (100, 149))):
        x[:, :, :, lo:hi] += 2 * z[:, k, None, None, None]
    emotions = z @ torch.rand(3, 8, generator=g) / 3
    midlevel = z @ torch.rand(3, 7, generator=g) / 3
    return MerTensors(x, emotions, midlevel, split_indices(n), [f"{i:03d}" for i in range(n)],
                      0.0, 1.0, "tiny-test-data")


def _cfg(variant="a2e", seed=6, **kw) -> TrainConfig:
    return TrainConfig(variant, seed, **{**TINY, **kw})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ configuration

@pytest.mark.parametrize("field,value", [
    ("epochs", 0), ("patience", 0), ("batch_size", 0), ("lr", 0.0), ("lr", -1e-3),
    ("lr", float("nan")), ("lr", 2.0), ("width", 0.0), ("seed", -1), ("adv_every", 0),
    ("bf16", "yes"), ("epochs", 2.5), ("adv_input", "final"),
])
def test_out_of_range_hyper_parameters(field, value):
    with pytest.raises(ParameterError, match=field):
        TrainConfig(**{"variant": "a2e", "seed": 6, field: value})


def test_config_from_profile_and_identity():
    cfg = TrainConfig.from_profile("smoke", "A2M2E", 6, epochs=3, patience=None)
    assert (cfg.variant, cfg.width, cfg.epochs, cfg.patience, cfg.batch_size, cfg.lr) == \
        ("a2m2e", 0.125, 3, 2, 8, 5e-4)
    assert cfg.adv_attack is None and "adv_attack" not in cfg.identity()
    adv = TrainConfig.from_profile("smoke", "aa2e", 6)
    assert AttackConfig.from_dict(adv.adv_attack).mode == "reference"
    assert adv.adv_attack["max_iterations"] == 2 and adv.identity()["adv_every"] == 1
    assert TrainConfig.from_dict(adv.to_dict()) == adv
    assert [adv.is_adversarial_epoch(e) for e in (1, 2)] == [True, True]
    five = dataclasses.replace(adv, adv_every=5)
    assert [e for e in range(1, 16) if five.is_adversarial_epoch(e)] == [5, 10, 15]
    with pytest.raises(ParameterError, match="unknown training override"):
        TrainConfig.from_profile("smoke", "a2e", 6, epoch=3)
    with pytest.raises(ParameterError, match="known variants"):
        TrainConfig.from_profile("smoke", "a3e", 6)


def test_adv_input_is_keyed_for_adversarial_variants_only():
    from mer_lib.attacks.engine import ENGINE_VERSION

    adv = TrainConfig.from_profile("smoke", "aa2e", 6)
    other = dataclasses.replace(adv, adv_input="kept_or_final")
    assert adv.adv_input == "kept" and adv.identity()["adv_input"] == "kept"
    assert adv.identity()["attack_engine"] == ENGINE_VERSION
    assert training.run_key(adv.identity()) != training.run_key(other.identity())
    plain = TrainConfig.from_profile("smoke", "a2e", 6)
    assert not {"adv_input", "attack_engine"} & set(plain.identity())
    assert plain.identity() == dataclasses.replace(plain, adv_input="kept_or_final").identity()


# ------------------------------------------------------------------ metrics

def test_pearson_and_evaluate():
    rng = np.random.default_rng(0)
    true = rng.random((20, 8))
    pred = true * 2 + rng.normal(0, 0.1, (20, 8))
    expected = [np.corrcoef(pred[:, k], true[:, k])[0, 1] for k in range(8)]
    assert np.allclose(pearson_per_column(pred, true), expected)
    m = evaluate(pred, true, pred[:, :7], true[:, :7])
    assert m["avg_r"] == pytest.approx(np.mean(expected))
    assert m["mae"] == pytest.approx(np.abs(pred - true).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((pred - true) ** 2).mean()))
    assert m["r_valence"] == pytest.approx(expected[0]) and "concept_r_minorness" in m
    assert m["concept_avg_r"] == pytest.approx(np.mean(expected[:7]))
    assert evaluate(true, true)["r2"] == pytest.approx(1.0)
    const = pred.copy()
    const[:, 2] = 0.5
    with pytest.warns(ConstantColumnWarning, match="tension"):
        m = evaluate(const, true)
    assert math.isnan(m["r_tension"]) and math.isfinite(m["avg_r"])


def test_predict_is_batched_and_restores_mode(data):
    model = build_model("a2m2e", 0.0625).train()
    e1, c1 = predict(model, data.x[:10], batch_size=3)
    e2, c2 = predict(model, data.x[:10], batch_size=64)
    assert model.training and e1.shape == (10, 8) and c1.shape == (10, 7)
    assert np.allclose(e1, e2, atol=1e-6) and np.allclose(c1, c2, atol=1e-6)
    assert predict(build_model("a2e", 0.0625), data.x[:4])[1] is None


# ------------------------------------------------------------------ losses

def test_a2m2e_loss_weighting(data):
    model = build_model("a2m2e", 0.0625).eval()  # eval: no dropout, so two calls agree
    x, y, m = data.subset("train")
    xb, yb, mb = x[:8], y[:8], m[:8]
    with torch.no_grad():
        e, c = model.forward_all(xb)
        by_hand = 0.5 * ((e - yb) ** 2).mean() + 0.5 * ((c - mb) ** 2).mean()
        loss = task_loss(model, get_variant("a2m2e"), xb, yb, mb)
        plain = task_loss(model, get_variant("a2b2e"), xb, yb, mb)
    assert torch.allclose(loss, by_hand, rtol=1e-6)
    assert torch.allclose(plain, ((e - yb) ** 2).mean(), rtol=1e-6)


# ------------------------------------------------------------------ training

def test_training_learns_and_is_deterministic(data, tmp_path):
    cfg = _cfg("a2m2e", epochs=3, lr=3e-3)
    a = train(cfg, data, tmp_path / "a", progress=False)
    b = train(cfg, data, tmp_path / "b", progress=False)
    assert _same_weights(a.model, b.model)
    h = a.history
    assert list(h.columns[:3]) == ["epoch", "train_loss", "valid_score"] and list(h.epoch) == [1, 2, 3]
    assert h.train_loss.iloc[-1] < 0.7 * h.train_loss.iloc[0]
    assert h.valid_concept_r.notna().all() and not h.adversarial.any()
    assert a.trained_now and not a.model.training
    assert a.path == tmp_path / "a" / "models" / "a2m2e" / a.key
    assert {p.name for p in a.path.iterdir()} == {"config.json", "history.csv", "model.pt"}
    other = train(_cfg("a2m2e", seed=7, epochs=1), data, tmp_path / "a", progress=False)
    assert other.key != a.key and not _same_weights(a.model, other.model)


def _interrupt_after(k: int):
    """An on_epoch_end hook that interrupts training (like a kill) after epoch ``k``."""
    def hook(epoch, row):
        if epoch == k:
            raise KeyboardInterrupt
    return hook


def test_resume_after_kill_equals_uninterrupted(data, tmp_path):
    cfg = _cfg("a2b2e", epochs=4)
    full = train(cfg, data, tmp_path / "full", progress=False)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "cut", progress=False, on_epoch_end=_interrupt_after(2))
    folder = tmp_path / "cut" / "models" / "a2b2e" / full.key
    assert (folder / "state.pt").is_file() and not (folder / "model.pt").exists()
    resumed_epochs = []
    tm = get_trained("a2b2e", 6, data, "smoke", tmp_path / "cut", progress=False,
                     on_epoch_end=lambda e, r: resumed_epochs.append(e), **{**TINY, "epochs": 4})
    assert resumed_epochs == [3, 4] and tm.trained_now
    assert _same_weights(tm.model, full.model)
    cols = ["epoch", "train_loss", "valid_r", "valid_score", "improved"]
    assert tm.history[cols].equals(full.history[cols])
    assert not (folder / "state.pt").exists()


def test_resume_after_kill_mid_epoch(data, tmp_path, monkeypatch):
    cfg = _cfg("a2b2e", epochs=3)
    full = train(cfg, data, tmp_path / "full", progress=False)
    from mer_lib.objectives import Supervised

    real_step, calls = Supervised.step, []

    def dying_step(*args, **kwargs):  # 4 batches per epoch: call 6 = epoch 2, batch 2
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(Supervised, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    tm = train(cfg, data, tmp_path / "cut", progress=False)
    assert list(tm.history.epoch) == [1, 2, 3] and _same_weights(tm.model, full.model)


def test_early_stopping_restores_best(data, tmp_path, monkeypatch):
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1])

    def fake_validate(model, spec, x, y, m):
        s = next(scores)
        return s, {"avg_r": s, "mae": 0.1}

    monkeypatch.setattr(trainer, "_validate", fake_validate)
    tm = train(_cfg(epochs=5, patience=2), data, tmp_path, progress=False)
    assert list(tm.history.epoch) == [1, 2, 3] and list(tm.history.improved) == [True, False, False]
    monkeypatch.undo()
    one = train(_cfg(epochs=1, patience=2), data, tmp_path, progress=False)
    assert _same_weights(tm.model, one.model)  # the epoch-1 weights


def test_keep_last_keeps_the_final_epoch_whatever_the_scores(data, tmp_path, monkeypatch):
    scores = iter([0.5, 0.4, 0.3])

    def fake_validate(model, spec, x, y, m):
        s = next(scores)
        return s, {"avg_r": s, "mae": 0.1}

    monkeypatch.setattr(trainer, "_validate", fake_validate)
    last = train(_cfg(epochs=3, patience=3, keep="last"), data, tmp_path, progress=False)
    assert list(last.history.epoch) == [1, 2, 3] and list(last.history.improved) == [True, False, False]
    scores = iter([0.1, 0.2, 0.3])                         # rising: "best" keeps epoch 3 too
    three = train(_cfg(epochs=3, patience=3), data, tmp_path / "best", progress=False)
    monkeypatch.undo()
    assert _same_weights(last.model, three.model)          # epoch 3's weights, not epoch 1's
    assert last.key != three.key                           # the rule is part of the key
    assert torch.load(last.path / "model.pt", weights_only=False)["best_epoch"] == 3
    with pytest.raises(ParameterError, match="keep must be one of"):
        _cfg(keep="first")


def test_stored_model_reloads_and_get_trained_does_not_retrain(data, tmp_path, monkeypatch):
    first = get_trained("a2e", 6, data, "smoke", tmp_path, progress=False, **TINY)
    assert first.trained_now

    def no_training(*args, **kwargs):
        raise AssertionError("get_trained retrained a stored model")

    monkeypatch.setattr(training, "train", no_training)
    again = get_trained("a2e", 6, data, "smoke", tmp_path, progress=False, **TINY)
    assert not again.trained_now and again.key == first.key and again.config == first.config
    direct = load_trained(first.path, device="cpu")
    x = data.subset("test")[0]
    # the same weights on the same device give bit-identical predictions
    assert next(again.model.parameters()).device == next(first.model.parameters()).device
    assert np.array_equal(predict(again.model, x)[0], predict(first.model, x)[0])
    first_on_cpu = copy.deepcopy(first.model).cpu()
    assert np.array_equal(predict(direct.model, x)[0], predict(first_on_cpu, x)[0])
    for tm in (again, direct):
        pd.testing.assert_frame_equal(tm.history, first.history, check_dtype=False)
    if torch.cuda.is_available():
        # CPU vs GPU: float32 on both (no TF32, whose ~1e-3 error this tolerance would catch);
        # different kernels still sum in different orders, hence 1e-4 and not equality
        with full_float32():
            on_gpu = predict(copy.deepcopy(first.model).cuda(), x)[0]
        np.testing.assert_allclose(predict(direct.model, x)[0], on_gpu, rtol=0, atol=1e-4)
    assert set(first.evaluate(data)) >= {"avg_r", "mae", "rmse", "r2"}


def test_config_mismatch_in_stored_folder(data, tmp_path):
    tm = train(_cfg(epochs=1), data, tmp_path, progress=False)
    doc = json.loads((tm.path / "config.json").read_text())
    doc["identity"]["config"]["lr"] = 0.1
    (tm.path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="lr"):
        get_trained("a2e", 6, data, "smoke", tmp_path, progress=False, **{**TINY, "epochs": 1})
    with pytest.raises(CheckpointError, match="another configuration"):
        load_trained(tm.path)  # model.pt no longer matches config.json
    (tm.path / "model.pt").write_bytes(b"not a checkpoint")
    (tm.path / "config.json").write_text(json.dumps({**doc, "identity": run_identity(tm.config, data)}))
    with pytest.raises(CheckpointError, match="cannot load"):
        load_trained(tm.path)
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_trained(tmp_path)


def test_corrupt_state_is_ignored_with_warning(data, tmp_path):
    cfg = _cfg(epochs=1)
    ref = train(cfg, data, tmp_path / "ref", progress=False)
    folder = tmp_path / "x" / "models" / "a2e" / ref.key
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.warns(RuntimeWarning, match="state.pt.corrupt"):
        tm = train(cfg, data, tmp_path / "x", progress=False)
    assert _same_weights(tm.model, ref.model) and (folder / "state.pt.corrupt").is_file()


def test_writes_are_atomic(data, tmp_path, monkeypatch):
    cfg = _cfg(epochs=2)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path, progress=False, on_epoch_end=_interrupt_after(1))
    folder = next((tmp_path / "models" / "a2e").iterdir())
    before = (folder / "state.pt").read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *a, **k):  # half a file, then "kill"
        real_save(obj, f, *a, **k)
        f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path, progress=False)
    monkeypatch.undo()
    assert (folder / "state.pt").read_bytes() == before  # old state intact, no temp files left
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.csv", "state.pt"]


def test_a2m2e_needs_midlevel(data, tmp_path):
    no_mid = dataclasses.replace(data, midlevel=None, identity="no-mid")
    with pytest.raises(DataLayoutError, match="mid-level"):
        get_trained("a2m2e", 6, no_mid, "smoke", tmp_path, progress=False)


def test_unknown_variant(data, tmp_path):
    with pytest.raises(ParameterError, match="a2m2e"):
        get_trained("a2x2e", 6, data, "smoke", tmp_path, progress=False)


def test_nan_loss_names_epoch_and_batch(data, tmp_path):
    emotions = data.emotions.clone()
    bad = int(data.split["train"][17])
    emotions[bad, 3] = float("nan")
    broken = dataclasses.replace(data, emotions=emotions, identity="nan-data")
    perm = torch.randperm(len(data.split["train"]), generator=torch.Generator().manual_seed(6))
    batch = int(torch.nonzero(perm == 17)) // 8 + 1
    with pytest.raises(TrainingError, match=rf"epoch 1, batch {batch} of 4"):
        train(_cfg(), broken, tmp_path, progress=False)


def test_bf16_flag_is_ignored_on_cpu(data, tmp_path):
    with pytest.warns(RuntimeWarning, match="CUDA-only"):
        tm = train(_cfg(epochs=1, bf16=True), data, tmp_path, progress=False, device="cpu")
    assert tm.model.to_emotions.weight.dtype == torch.float32


def test_channels_last_is_deterministic_and_keyed(data, tmp_path):
    a = train(_cfg(epochs=1, channels_last=True), data, tmp_path / "a", progress=False)
    b = train(_cfg(epochs=1, channels_last=True), data, tmp_path / "b", progress=False)
    plain = train(_cfg(epochs=1), data, tmp_path / "a", progress=False)
    assert _same_weights(a.model, b.model) and a.key != plain.key
    x = data.subset("test")[0]
    assert np.allclose(predict(a.model, x)[0], predict(plain.model, x)[0], atol=0.05)


# ------------------------------------------------------------------ adversarial training

def test_adversarial_training_attacks_with_frozen_normalisation(data, tmp_path, monkeypatch):
    import mer_lib.attacks.engine as attacks
    from mer_lib.models import FROZEN_MODULE_TYPES

    real_attack, modes = attacks.attack, []

    def spy(model, x, y, cfg, **kw):
        modes.append(any(m.training for m in model.modules() if isinstance(m, FROZEN_MODULE_TYPES)))
        return real_attack(model, x, y, cfg, **kw)

    monkeypatch.setattr(attacks, "attack", spy)
    adv = AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=2).to_dict()
    tm = train(_cfg("aa2b2e", adv_every=2, adv_attack=adv), data, tmp_path, progress=False)
    assert list(tm.history.adversarial) == [False, True]
    assert math.isnan(tm.history.adv_loss[0]) and math.isfinite(tm.history.adv_loss[1])
    assert modes == [False] * 4  # 32 training examples = 4 batches, all attacked with BN/dropout frozen


@pytest.mark.parametrize("how", ["kept", "kept_or_final"])
def test_adversarial_training_trains_on_the_kept_perturbation(data, tmp_path, monkeypatch, how):
    """As the original: x + kept perturbation, i.e. the clean x where no new rung was reached."""
    import mer_lib.attacks.engine as attacks

    import mer_lib.objectives.adversarial as adversarial

    real_attack, real_loss, results, inputs = attacks.attack, adversarial.task_loss, [], []

    def spy_attack(model, x, y, cfg, **kw):
        results.append(real_attack(model, x, y, cfg, **kw))
        return results[-1]

    def spy_loss(model, variant, x, *args):
        inputs.append(x.detach().clone())
        return real_loss(model, variant, x, *args)

    monkeypatch.setattr(attacks, "attack", spy_attack)
    monkeypatch.setattr(adversarial, "task_loss", spy_loss)
    adv = AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=3).to_dict()
    train(_cfg("aa2e", epochs=1, adv_every=1, adv_attack=adv, adv_input=how), data, tmp_path,
          progress=False)
    inputs = inputs[1::2]                                # clean, adversarial, clean, ...
    assert len(results) == len(inputs) == 4              # 32 training examples, batches of 8
    no_rung = 0
    for res, used in zip(results, inputs):
        none = res.delta_iteration == 0                  # the ladder reached no new rung
        no_rung += int(none.sum())
        assert torch.equal(used[~none], res.x_adv[~none])
        if how == "kept":
            assert torch.equal(used[none], res.x[none])  # the clean input
            assert torch.equal(res.delta[none], torch.zeros_like(res.delta[none]))
        else:
            assert torch.equal(used[none], (res.x + res.final_delta)[none])
            assert not torch.equal(used[none], res.x[none])
    assert no_rung > 0


def test_training_runs_in_full_float32(data, tmp_path, monkeypatch):
    from mer_lib.objectives import Supervised

    seen = []
    real_step = Supervised.step

    def spy_step(*args):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real_step(*args)

    monkeypatch.setattr(Supervised, "step", spy_step)
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = True         # as a user with TF32 on would have it
    try:
        train(_cfg(epochs=1), data, tmp_path, progress=False)
        after = (matmul.allow_tf32, cudnn.allow_tf32)
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before
    assert seen and set(seen) == {(False, False)}       # off inside training
    assert after == (True, True)                         # restored afterwards


def test_adversarial_training_resumes_exactly(data, tmp_path):
    adv = AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=2).to_dict()
    cfg = _cfg("aa2e", epochs=2, adv_every=1, adv_attack=adv)
    full = train(cfg, data, tmp_path / "full", progress=False)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "cut", progress=False, on_epoch_end=_interrupt_after(1))
    tm = train(cfg, data, tmp_path / "cut", progress=False)
    assert _same_weights(tm.model, full.model) and tm.history.adversarial.all()


# ------------------------------------------------------------------ CLI

def test_cli_error_exit_and_list_variants():
    run = [sys.executable, "-m", "mer_lib"]
    err = subprocess.run(run + ["train", "--variant", "a9e", "--seed", "6", "--epochs", "0"],
                         capture_output=True, text=True, timeout=120)
    assert err.returncode == 2 and err.stdout == ""
    lines = err.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model variant 'a9e'")
    listed = subprocess.run(run + ["list-variants"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    for name in ("a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e"):
        assert f"\n{name} " in listed.stdout


def test_cli_train_and_help(data, tmp_path, monkeypatch, capsys):
    from mer_lib import cli
    import mer_lib.data

    monkeypatch.setattr(mer_lib.data, "load_dataset", lambda *args, **kwargs: data)
    monkeypatch.setenv("MER_HOME", str(tmp_path))  # default run directory = mer_home()
    args = ["train", "--variant", "a2m2e", "--seed", "6", "--profile", "smoke",
            "--epochs", "1", "--width", "0.0625", "--no-progress"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "model folder: " + str(tmp_path / "models" / "a2m2e") in out
    assert "trained now" in out and "avg_r" in out and "concept_avg_r" in out
    assert cli.main(args) == 0 and "loaded from cache" in capsys.readouterr().out
    assert cli.main(["train", "--variant", "a2e", "--seed", "6", "--lr", "-1"]) == 2
    assert capsys.readouterr().err.startswith("error: lr must be")
    if not torch.cuda.is_available():
        assert cli.main(["train", "--variant", "a2e", "--seed", "6", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--variant", "--seed", "--profile", "--data", "--run-dir", "--device",
                 "--epochs", "--patience"):
        assert flag in help_text
