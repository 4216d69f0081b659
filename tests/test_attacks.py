"""Tests of mer_lib.attacks: the attack engine, the ladder, SNR, reference logs, caching."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mer_lib.attacks import (AttackConfig, attack, read_reference_log, read_reference_logs,
                             run_attack, spectrogram_snr_db)
from mer_lib.attacks import results as results_module
from mer_lib.attacks.ladder import RUNGS, CorrelationLadder
from mer_lib.data import MerTensors
from mer_lib.datasets import EMOTIONS
from mer_lib.errors import DataLayoutError, ParameterError

FIXTURE_LOGS = Path(__file__).parent / "fixtures" / "reference_log"


# ----------------------------------------------------------------------------- helpers

def tiny_conv(seed: int = 0, frames: int = 6, bands: int = 5) -> nn.Module:
    """A small smooth conv net (tanh: no exactly-zero gradients) mapping (B,1,T,F) -> (B,8)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(2 * frames * bands, 8)).eval()


def linear_model(seed: int = 0, n_in: int = 12, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 8, bias=bias)).eval()


class MeanTimesPattern(nn.Module):
    """f(x) = mean(x) * u + v: one scalar of the input steers the whole prediction."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("u", u)
        self.register_buffer("v", torch.zeros_like(u) if v is None else v)

    def forward(self, x):
        a = x.flatten(1).mean(dim=1, keepdim=True)
        return a * self.u + self.v


U = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.4, 0.6])


def data(n: int = 4, seed: int = 1, frames: int = 6, bands: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, frames, bands, generator=g), torch.rand(n, 8, generator=g)


# ----------------------------------------------------------------------------- projected mode

@pytest.mark.parametrize("random_start", [False, True])
def test_projected_linf_bound_always_holds(random_start):
    x, y = data()
    cfg = AttackConfig(epsilon=0.01, step_size=0.004, max_iterations=7, random_start=random_start,
                       early_stop=False, seed=3)
    res = attack(tiny_conv(), x, y, cfg)
    assert float(res.delta.abs().max()) <= 0.01 + 1e-7
    assert torch.allclose(res.x_adv, x + res.delta)


def test_projected_l2_bound():
    x, y = data()
    cfg = AttackConfig(norm="l2", epsilon=0.05, step_size=0.02, max_iterations=6,
                       random_start=True, early_stop=False)
    res = attack(tiny_conv(), x, y, cfg)
    norms = res.delta.flatten(1).norm(dim=1)
    assert bool((norms <= 0.05 * (1 + 1e-5)).all())
    assert bool((norms >= 0.05 * (1 - 1e-4)).all())   # 6 steps of 0.02 reach the sphere


def test_projected_linf_bound_is_tight_for_linear_model():
    x, y = data(n=3, frames=3, bands=4)
    cfg = AttackConfig(epsilon=0.01, step_size=0.0025, max_iterations=12, early_stop=False)
    res = attack(linear_model(), x, y, cfg)
    per_example = res.delta.flatten(1).abs().amax(dim=1)
    eps32 = torch.tensor(0.01, dtype=torch.float32)
    assert torch.equal(per_example, eps32.expand(3))


def test_one_sign_step_matches_hand_computed_gradient():
    model = linear_model(bias=False)
    x, y = data(n=2, frames=3, bands=4)
    w = model[1].weight.detach().double().numpy()                     # (8, 12)
    xf = x.flatten(1).double().numpy()
    residual = xf @ w.T - y.double().numpy()                          # (2, 8)
    grad = 2.0 / 8.0 * residual @ w                                   # d MSE / d x, (2, 12)
    alpha = 0.003
    cfg = AttackConfig(epsilon=0.01, step_size=alpha, max_iterations=1, early_stop=False)
    res = attack(model, x, y, cfg)
    np.testing.assert_allclose(res.delta.flatten(1).double().numpy(), alpha * np.sign(grad),
                               atol=1e-9)


def test_engine_leaves_model_mode_and_parameter_grads_alone():
    model = tiny_conv().train()
    x, y = data()
    attack(model, x, y, AttackConfig(epsilon=0.01, step_size=0.01, max_iterations=2))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_captum_pgd_gives_the_same_perturbation():
    from captum.robust import PGD

    model = tiny_conv(seed=4)
    x, y = data(n=3, seed=5)
    eps, alpha, steps = 0.02, 0.006, 6

    def per_example_mse(out, target):   # captum sums the per-example losses (unbind)
        return ((out - target) ** 2).mean(dim=1)

    pgd = PGD(model, loss_func=per_example_mse, lower_bound=-math.inf, upper_bound=math.inf)
    x_captum = pgd.perturb(x, radius=eps, step_size=alpha, step_num=steps, target=y,
                           targeted=False, norm="Linf", random_start=False)
    cfg = AttackConfig(epsilon=eps, step_size=alpha, max_iterations=steps, early_stop=False)
    res = attack(model, x, y, cfg)
    assert float((res.delta - (x_captum - x)).abs().max()) <= 1e-6
    assert float(res.delta.abs().max()) > 0.5 * eps   # the attack actually moved


# ----------------------------------------------------------------------------- reference mode

def test_reference_mode_exceeds_epsilon():
    x, y = data()
    lr, n = 0.002, 20
    cfg = AttackConfig(mode="reference", epsilon=0.001, step_size=lr, max_iterations=n,
                       early_stop=False)
    res = attack(tiny_conv(), x, y, cfg)
    linf = float(res.delta.abs().max())
    assert linf > 10 * cfg.epsilon                        # the reference's clip is a no-op
    assert linf <= 3.2 * lr * n                           # bounded only by step x iterations


def test_reference_mode_equals_plain_adam_loop():
    """The reference update, written with torch.optim.Adam for one example at a time.

    ``max_iterations`` counts forward passes in reference mode: 8 passes evaluate the
    perturbations after 0 .. 7 Adam steps, and the final one has 7 steps.
    """
    model = tiny_conv(seed=2)
    x, y = data(n=3, seed=7)
    lr, n = 0.01, 8
    cfg = AttackConfig(mode="reference", epsilon=0.001, step_size=lr, max_iterations=n,
                       early_stop=False)
    res = attack(model, x, y, cfg)
    assert res.iterations.tolist() == [n - 1] * 3 and res.forward_passes.tolist() == [n] * 3
    assert torch.equal(res.delta, res.final_delta)
    for i in range(3):
        delta = torch.zeros_like(x[i:i + 1], requires_grad=True)
        opt = torch.optim.Adam([delta], lr=lr)
        for _ in range(n - 1):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[i:i + 1] + delta), y[i:i + 1])
            loss.backward()
            delta.grad = -torch.sign(delta.grad)          # ascent with the gradient's sign
            opt.step()
        assert float((res.delta[i] - delta.detach()[0]).abs().max()) <= 1e-6


# ----------------------------------------------------------------------------- batching

@pytest.mark.parametrize("mode", ["projected", "reference"])
def test_batched_equals_per_example(mode):
    model = tiny_conv(seed=3)
    x, y = data(n=4, seed=9)
    cfg = AttackConfig(mode=mode, epsilon=0.02, step_size=0.005, max_iterations=6)
    full = attack(model, x, y, cfg)
    chunked = attack(model, x, y, cfg, batch_size=3)
    for i in range(4):
        single = attack(model, x[i:i + 1], y[i:i + 1], cfg)
        for other in (full, chunked):
            assert float((single.delta - other.delta[i:i + 1]).abs().max()) <= 1e-5
            assert torch.equal(single.iterations, other.iterations[i:i + 1])
            assert float((single.adv_pred - other.adv_pred[i:i + 1]).abs().max()) <= 1e-5


def test_batched_equals_per_example_with_random_start():
    """Random starts are drawn for all examples at once, so chunking does not change them."""
    model = tiny_conv(seed=3)
    x, y = data(n=5, seed=9)
    cfg = AttackConfig(epsilon=0.02, step_size=0.005, max_iterations=5, random_start=True,
                       early_stop=False, seed=11)
    full = attack(model, x, y, cfg)
    ones = attack(model, x, y, cfg, batch_size=1)
    twos = attack(model, x, y, cfg, batch_size=2)
    assert float((full.delta - ones.delta).abs().max()) <= 1e-5
    assert float((full.delta - twos.delta).abs().max()) <= 1e-5


# ----------------------------------------------------------------------------- early stopping

@pytest.mark.parametrize("mode", ["projected"])
def test_converged_example_is_frozen(mode):
    # y = u: example 0 starts at mean(x) = 0.5 < 1 (the MSE minimum), so ascent drives the
    # mean down through 0 and r from +1 to -1 (converges); example 1 starts at 2.0 > 1,
    # ascent drives the mean up and r stays +1 (never converges).
    model = MeanTimesPattern(U)
    x = torch.stack([torch.full((1, 2, 3), 0.5), torch.full((1, 2, 3), 2.0)])
    y = torch.stack([U, U])
    cfg_short = AttackConfig(mode=mode, epsilon=100.0, step_size=0.1, max_iterations=12)
    cfg_long = AttackConfig(mode=mode, epsilon=100.0, step_size=0.1, max_iterations=40)
    short, long_ = attack(model, x, y, cfg_short), attack(model, x, y, cfg_long)
    assert short.converged.tolist() == [True, False]
    assert short.iterations[0] < 12 and short.iterations[1] == 12
    assert long_.iterations[0] == short.iterations[0] and long_.iterations[1] == 40
    assert torch.equal(long_.delta[0], short.delta[0])              # frozen after convergence
    assert not torch.equal(long_.delta[1], short.delta[1])          # the other one went on
    k = int(short.iterations[0])                                    # delta at convergence:
    at_k = attack(model, x[:1], y[:1], AttackConfig(mode=mode, epsilon=100.0, step_size=0.1,
                                                    max_iterations=k, early_stop=False))
    assert k >= 1 and torch.equal(at_k.delta[0], short.delta[0])
    # the converged example's perturbation and prediction are those at convergence
    r_adv = torch.corrcoef(torch.stack([short.adv_pred[0], U]))[0, 1]
    assert float(r_adv) <= -0.9
    assert short.delta_iteration[0] == short.iterations[0]
    # example 1 never reached a rung below its start: its final perturbation is returned
    assert short.delta_iteration[1] == 12
    assert torch.equal(short.adv_pred[1], short.final_pred[1])


def test_best_perturbation_is_the_last_rung_reached():
    # f = U + a * V with y = U: the MSE a^2 |V|^2 / 8 grows with |a|, while r(f, U) falls from
    # ~0.94 towards corr(V, U) = 0.06 — it reaches rung 0.2 after ~14 steps, then stalls.
    v = torch.tensor([2.0, -1.0, 3.0, 1.0, -2.0, 0.5, -3.0, 1.5])
    model = MeanTimesPattern(v, U)
    x = torch.full((1, 1, 2, 3), 0.05)
    cfg = AttackConfig(mode="projected", epsilon=100.0, step_size=0.05, max_iterations=30)
    res = attack(model, x, U[None], cfg)
    assert not bool(res.converged[0]) and int(res.iterations[0]) == 30
    assert 1 <= int(res.delta_iteration[0]) < 30                     # an earlier, best delta
    lowest = min(RUNGS[j] for j in range(len(RUNGS)) if res.rung_iterations[0, j] >= 0)
    assert lowest == pytest.approx(0.2)
    assert int(res.delta_iteration[0]) == int(res.rung_iterations[0, RUNGS.index(lowest)])
    r_adv = float(torch.corrcoef(torch.stack([res.adv_pred[0], U]))[0, 1])
    assert lowest - 0.1 < r_adv <= lowest + 1e-6
    assert torch.allclose(model(res.x_adv), res.adv_pred, atol=1e-6)
    assert not torch.allclose(res.adv_pred, res.final_pred)


# ----------------------------------------------------------------------------- ladder

def run_ladder(seq):
    ladder = CorrelationLadder(1)
    news = [bool(ladder.update(torch.tensor([r], dtype=torch.float64), t)[0])
            for t, r in enumerate(seq)]
    return ladder, news


def rung_map(ladder, row=0):
    return {RUNGS[j]: int(it) for j, it in enumerate(ladder.rung_iterations[row]) if it >= 0}


def test_ladder_on_a_hand_made_sequence():
    ladder, news = run_ladder([0.34, 0.25, 0.31, 0.05, -0.5, -0.91, -0.2])
    assert news == [True, True, False, True, True, True, False]
    expected = {k / 10: 0 for k in range(10, 3, -1)}                  # start rung 0.4 and above
    expected.update({0.3: 1, 0.2: 3, 0.1: 3})
    expected.update({k / 10: 4 for k in range(0, -6, -1)})
    expected.update({k / 10: 5 for k in range(-6, -10, -1)})
    assert rung_map(ladder) == expected
    assert bool(ladder.converged[0]) and int(ladder.best_iteration[0]) == 5


@pytest.mark.parametrize("r0", [0.3, 0.1 * 3, float(np.float32(0.3)), 0.3 - 1e-12])
def test_ladder_start_rung_is_robust_to_rounding(r0):
    ladder, _ = run_ladder([r0])
    assert max(k for k in rung_map(ladder)) == 1.0
    assert min(rung_map(ladder)) == pytest.approx(0.3)               # not 0.4


def test_ladder_edge_cases():
    ladder, news = run_ladder([-0.95])                                # already below -0.9
    assert news == [True] and bool(ladder.converged[0])
    ladder, _ = run_ladder([0.2, -0.9])                               # exactly -0.9 converges
    assert bool(ladder.converged[0])
    ladder, _ = run_ladder([0.2, -0.8999999999999998])                # reference-style rounding
    assert bool(ladder.converged[0])
    ladder, news = run_ladder([float("nan"), float("nan"), 0.55])     # constant predictions
    assert news == [False, False, True]
    assert rung_map(ladder) == {k / 10: 2 for k in range(10, 5, -1)}
    assert not bool(ladder.converged[0])


def test_ladder_updates_subsets_by_index():
    ladder = CorrelationLadder(3)
    ladder.update(torch.tensor([0.5, 0.5, 0.5]), 0)
    new = ladder.update(torch.tensor([0.35, -0.95]), 1, index=torch.tensor([2, 0]))
    assert new.tolist() == [True, True]
    assert ladder.converged.tolist() == [True, False, False]
    assert rung_map(ladder, 1) == {k / 10: 0 for k in range(10, 4, -1)}
    assert rung_map(ladder, 2)[0.4] == 1 and 0.3 not in rung_map(ladder, 2)


# ----------------------------------------------------------------------------- SNR

def test_snr_known_answers():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(3, 1, 4, 5, generator=g, dtype=torch.float64) * 5 + 0.1
    mean, std = 0.4, 0.3
    to_x = lambda mags: (torch.log10(1 + mags) - mean) / std
    x = to_x(s)
    assert torch.isinf(spectrogram_snr_db(x, x.clone(), mean, std)).all()
    snr = spectrogram_snr_db(x, to_x(1.1 * s), mean, std)             # noise = 0.1 * signal
    np.testing.assert_allclose(snr.numpy(), 20.0, atol=1e-6)
    snr = spectrogram_snr_db(x, to_x(2.0 * s), mean, std)             # noise = signal
    np.testing.assert_allclose(snr.numpy(), 0.0, atol=1e-6)


def test_result_table_columns():
    x, y = data(n=2)
    res = attack(tiny_conv(), x, y, AttackConfig(epsilon=0.01, step_size=0.01, max_iterations=2))
    table = res.to_frame(["001", "002"], mean=0.3, std=0.2)
    expected = ["example", "iterations", "forward_passes", "delta_iteration", "converged",
                "threshold", "snr_db", "l2", "linf", "mae_clean", "mae_adv", "mae_final",
                "r_clean", "r_adv", "r_final"]
    expected += [f"{p}_{e}" for p in ("true", "clean", "adv", "final") for e in EMOTIONS]
    assert list(table.columns[:len(expected)]) == expected
    assert "rung_+1.0" in table and "rung_-0.9" in table
    assert table.example.tolist() == ["001", "002"]
    np.testing.assert_allclose(table.linf, res.delta.flatten(1).abs().amax(dim=1), atol=1e-9)
    with pytest.raises(ParameterError, match="ids"):
        res.to_frame(["001"], mean=0.3, std=0.2)


# ----------------------------------------------------------------------------- reference logs

def test_read_reference_log_fixture():
    log = read_reference_log(FIXTURE_LOGS / "6_abc123_a2e" / "log.csv")
    assert log.example.tolist() == ["012", "207", "088"]
    # the log's epoch counts forward passes; iterations = steps of the last perturbation
    # evaluated, as in this library's tables
    assert log.forward_passes.tolist() == [1000, 312, 1000]
    assert log.iterations.tolist() == [999, 311, 999]
    assert log.converged.dtype == bool and log.converged.tolist() == [False, True, False]
    assert log.snr_db.tolist() == [41.25377, 28.90412, 37.01156]
    assert log.l2[0] == pytest.approx(12.504182815551758)
    # wrapped, quoted cells: the values after the line break
    assert log.clean_sad[0] == pytest.approx(0.17719302)
    assert log.final_sad[0] == pytest.approx(3.14)                    # new-pred: final
    assert log.final_tender[1] == pytest.approx(-2.3041987)
    assert log.final_sad[2] == pytest.approx(1.23456e-3)              # scientific notation
    assert log.true_happy[2] == pytest.approx(0.1)
    true = log[[f"true_{e}" for e in EMOTIONS]].to_numpy()
    final = log[[f"final_{e}" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(log.mae_final, np.abs(final - true).mean(axis=1))
    # the kept perturbation's prediction was not logged
    assert log.adv_sad.isna().all() and log.mae_adv.isna().all() and log.r_adv.isna().all()
    assert log.threshold[0] == pytest.approx(-0.8) and math.isnan(log.threshold[2])


def test_reference_log_has_the_columns_of_our_tables():
    log = read_reference_log(FIXTURE_LOGS / "6_abc123_a2e" / "log.csv")
    x, y = data(n=2)
    ours = attack(tiny_conv(), x, y, AttackConfig(mode="reference", max_iterations=2))
    ours = ours.to_frame(["001", "002"], mean=0.3, std=0.2)
    shared = [c for c in ours.columns if not c.startswith("rung_") and c != "delta_iteration"]
    assert [c for c in log.columns if c in shared] == shared


def test_read_reference_logs_folder():
    logs = read_reference_logs(FIXTURE_LOGS)
    assert list(logs.columns[:3]) == ["run", "seed", "example"]
    assert set(logs.run) == {"6_abc123_a2e"} and set(logs.seed) == {6}
    with pytest.raises(DataLayoutError, match="log.csv"):
        read_reference_logs(FIXTURE_LOGS / "6_abc123_a2e")


def write_bad_log(tmp_path: Path, old: str, new: str) -> Path:
    text = (FIXTURE_LOGS / "6_abc123_a2e" / "log.csv").read_text()
    assert old in text
    path = tmp_path / "log.csv"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, column, row", [
    ("0.17719302 0.2403391 ]]", "... 0.2403391 ]]", "orig-pred", 1),     # summarised
    ("0.8135602 -2.3041987]]", "0.8135602]]", "new-pred", 2),             # 7 values
    ("312,28.90412,57.11830520629883,True", "312,28.90412,57.11830520629883,yes",
     "converged", 2),
    ("[[0.6  0.28", "[0.6  0.28", "true-label", 2),                       # unbalanced
    ("1000,37.01156", "many,37.01156", "epoch", 3),
])
def test_malformed_log_names_file_row_and_column(tmp_path, old, new, column, row):
    path = write_bad_log(tmp_path, old, new)
    with pytest.raises(DataLayoutError) as info:
        read_reference_log(path)
    message = str(info.value)
    assert str(path) in message and f"data row {row}" in message and repr(column) in message


def test_log_missing_column_or_file(tmp_path):
    path = write_bad_log(tmp_path, "adv-target", "target")
    with pytest.raises(DataLayoutError, match="adv-target"):
        read_reference_log(path)
    with pytest.raises(DataLayoutError, match="not found"):
        read_reference_log(tmp_path / "nope.csv")
    bad = tmp_path / "logs" / "run_without_seed"
    bad.mkdir(parents=True)
    (bad / "log.csv").write_text((FIXTURE_LOGS / "6_abc123_a2e" / "log.csv").read_text())
    with pytest.raises(DataLayoutError, match="seed"):
        read_reference_logs(tmp_path / "logs")


# ----------------------------------------------------------------------------- run_attack

class ModeRecorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_conv(frames=4, bands=5)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


def test_run_attack_caches_the_table(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    tensors = MerTensors(x=torch.randn(6, 1, 4, 5, generator=g), emotions=torch.rand(6, 8, generator=g),
                         midlevel=None, ids=[f"{i:03d}" for i in range(1, 7)],
                         split={"train": np.array([0, 1, 2]), "valid": np.array([3]),
                                "test": np.array([4, 5])},
                         mean=0.5, std=0.25, identity="data123")
    model = ModeRecorder().train()
    trained = SimpleNamespace(model=model, key="a2e-6-abc",
                              config=SimpleNamespace(variant="a2e", seed=6))
    cfg = AttackConfig(epsilon=0.01, step_size=0.005, max_iterations=3)
    first = run_attack(trained, tensors, cfg, run_dir=tmp_path, progress=False)
    folder = results_module.result_dir(tmp_path, "a2e-6-abc", cfg, "test", tensors.identity)
    assert (folder / "table.csv").is_file() and (folder / "meta.json").is_file()
    assert not [p for p in folder.parent.iterdir() if ".tmp" in p.name]
    assert first.example.tolist() == ["005", "006"]
    assert first.variant.unique().tolist() == ["a2e"] and first.seed.unique().tolist() == [6]
    for column, value in [("model_key", "a2e-6-abc"), ("mode", "projected"), ("epsilon", 0.01),
                          ("norm", "linf"), ("step_size", 0.005)]:
        assert first[column].unique().tolist() == [value]
    assert model.modes and not any(model.modes)                        # attacked in eval mode
    assert model.training                                              # mode restored

    def fail(*args, **kwargs):
        raise AssertionError("the cached table should have been reused")

    monkeypatch.setattr(results_module, "attack", fail)
    second = run_attack(trained, tensors, cfg, run_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, second)
    with pytest.raises(AssertionError, match="reused"):                # a new config recomputes
        run_attack(trained, tensors, AttackConfig(epsilon=0.02, step_size=0.005, max_iterations=3),
                   run_dir=tmp_path, progress=False)


# ----------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("kwargs, name", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": -0.1}, "epsilon"),
    ({"epsilon": float("nan")}, "epsilon"), ({"epsilon": float("inf")}, "epsilon"),
    ({"epsilon": "0.001"}, "epsilon"), ({"epsilon": [0.001]}, "epsilon"),
    ({"epsilon": None}, "epsilon"), ({"epsilon": True}, "epsilon"),
    ({"step_size": 0}, "step_size"), ({"step_size": -0.002}, "step_size"),
    ({"step_size": float("nan")}, "step_size"),
    ({"max_iterations": 0}, "max_iterations"), ({"max_iterations": 2.5}, "max_iterations"),
    ({"mode": "fgsm"}, "mode"), ({"norm": "l1"}, "norm"),
    ({"mode": "reference", "norm": "l2"}, "norm"),
    ({"random_start": "yes"}, "random_start"), ({"early_stop": 1}, "early_stop"),
    ({"seed": -1}, "seed"), ({"max_iterations": 100_001}, "max_iterations"),
    ({"max_iterations": True}, "max_iterations"),
])
def test_bad_config_raises_parameter_error(kwargs, name):
    with pytest.raises(ParameterError, match=name):
        AttackConfig(**kwargs)


def test_config_dict_roundtrip_and_key():
    cfg = AttackConfig(mode="reference", epsilon=0.001, step_size=0.002, max_iterations=1000)
    assert AttackConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.key() == AttackConfig.from_dict(cfg.to_dict()).key()
    assert AttackConfig(epsilon=1).key() == AttackConfig(epsilon=1.0).key()
    assert AttackConfig(epsilon=0.001).key() != AttackConfig(epsilon=0.002).key()
    with pytest.raises(ParameterError, match="unknown"):
        AttackConfig.from_dict({"epsilon": 0.1, "radius": 2})


def test_max_iterations_upper_bound_message():
    assert AttackConfig(max_iterations=100_000).max_iterations == 100_000
    with pytest.raises(ParameterError, match=r"max_iterations must be an integer in \[1, 100000\], got 1000000"):
        AttackConfig(max_iterations=1_000_000)


class FlagRecorder(nn.Module):
    """Records the TF32 flags at every forward pass."""

    def __init__(self):
        super().__init__()
        self.net = linear_model()
        self.flags = []

    def forward(self, x):
        self.flags.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return self.net(x)


@pytest.mark.parametrize("mode", ["projected", "reference"])
def test_attack_runs_in_full_float32_and_restores_the_flags(mode):
    model = FlagRecorder()
    x, y = data(n=2, frames=3, bands=4)
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = cudnn.allow_tf32 = True            # as a user with TF32 on would have it
    try:
        attack(model, x, y, AttackConfig(mode=mode, max_iterations=3))
        after = (matmul.allow_tf32, cudnn.allow_tf32)
        with pytest.raises(ParameterError):                 # restored after an error, too
            attack(model, x, y[:, :7], AttackConfig(mode=mode, max_iterations=3))
        after_error = (matmul.allow_tf32, cudnn.allow_tf32)
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before
    assert model.flags and set(model.flags) == {(False, False)}
    assert after == after_error == (True, True)


def test_attack_rejects_bad_inputs():
    x, y = data(n=2)
    cfg = AttackConfig(max_iterations=1)
    with pytest.raises(ParameterError, match="same N"):
        attack(tiny_conv(), x, y[:1], cfg)
    with pytest.raises(ParameterError, match="batch_size"):
        attack(tiny_conv(), x, y, cfg, batch_size=0)
    with pytest.raises(ParameterError, match="config"):
        attack(tiny_conv(), x, y, {"epsilon": 0.1})
