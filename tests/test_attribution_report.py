"""Stored attribution-robustness tables, their summary, and the example maps the chapter draws."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.attributions.report import (AttributionConfig, attribution_identity, attribution_summary,
                                         attribution_table, example_maps)
from mer_lib.data import MerTensors, split_indices
from mer_lib.datasets import EMOTIONS
from mer_lib.errors import ParameterError
from mer_lib.store import identity_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Linear(torch.nn.Module):
    """f(x) = W vec(x) (plus a ReLU module that adds 0, so the surrogate has one to replace).

    Its IG with the zeros baseline is x * W_j exactly, whatever the steps; every attack step
    moves some output (W has no zero row), so with tolerance 0 no step counts and every clip
    keeps its clean maps: intersection 1, tau 1, step 0, output change 0.
    """

    def __init__(self, n_in: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, n_in, generator=torch.Generator().manual_seed(3),
                                                dtype=torch.float64))
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        return x.flatten(1) @ self.w.T + 0 * self.relu(x.flatten(1)[:, :1])


class Small(torch.nn.Module):
    """A small ReLU network whose IG maps do move under the attack."""

    def __init__(self, n_in: int):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_in, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 8))
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5
        self.net.double()

    def forward(self, x):
        return self.net(x)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    n = 40
    return MerTensors(x=torch.randn(n, 1, 4, 5, generator=g, dtype=torch.float64),
                      emotions=torch.rand(n, 8, generator=g), midlevel=None, split=split_indices(n),
                      ids=[f"{i:03d}" for i in range(n)], mean=1.0, std=2.0, identity="attr-test")


def trained(model, key="k", variant="a2e", seed=6):
    return SimpleNamespace(model=model, key=key, config=SimpleNamespace(variant=variant, seed=seed))


CFG = AttributionConfig(ig_steps=4, epsilon=0.3, iterations=3, k=0.2, attack_ig_steps=3, n_examples=3)


def test_unchanged_maps_give_intersection_one_and_tau_one_and_the_table_reloads(data, tmp_path, monkeypatch):
    strict = dataclasses.replace(CFG, tolerance=0.0)
    table = attribution_table(trained(Linear(20)), data, strict, run_dir=tmp_path, device="cpu")
    assert len(table) == 3 * 8 and table.emotion.tolist()[:8] == list(EMOTIONS)
    assert table.example.unique().tolist() == [data.ids[i] for i in data.split["test"][:3]]
    assert (table.topk_intersection == 1.0).all() and np.allclose(table.kendall_tau, 1.0)
    assert (table.step == 0).all() and (table.output_change == 0).all()
    import mer_lib.attributions.report as report

    monkeypatch.setattr(report, "topk_attack", lambda *a, **k: 1 / 0)     # stored: not recomputed
    again = attribution_table(trained(Linear(20)), data, strict, run_dir=tmp_path, device="cpu")
    pd.testing.assert_frame_equal(again, table)
    assert list((tmp_path / "attributions" / "k").iterdir())


def test_attacked_maps_change_within_tolerance_and_chunks_do_not_matter(data, tmp_path):
    model, cfg = Small(20), dataclasses.replace(CFG, epsilon=0.1, tolerance=0.5)
    whole = attribution_table(trained(model), data, cfg, run_dir=tmp_path / "a", device="cpu", batch_size=16)
    parts = attribution_table(trained(model), data, cfg, run_dir=tmp_path / "b", device="cpu", batch_size=2)
    pd.testing.assert_frame_equal(whole, parts)
    assert (whole.output_change <= cfg.tolerance + 1e-12).all()
    assert whole.kendall_tau.min() < 1 and (whole.step > 0).any()
    assert whole.topk_intersection.between(0, 1).all() and whole.kendall_tau.between(-1, 1).all()


def test_a_changed_config_split_or_model_changes_the_key():
    base = identity_key(attribution_identity("k", CFG, "test", "d"))

    for changed in (dataclasses.replace(CFG, ig_steps=5), dataclasses.replace(CFG, baseline="silence"),
                    dataclasses.replace(CFG, k=0.1), dataclasses.replace(CFG, epsilon=0.2)):
        assert identity_key(attribution_identity("k", changed, "test", "d")) != base
    assert identity_key(attribution_identity("k", CFG, "valid", "d")) != base
    assert identity_key(attribution_identity("k2", CFG, "test", "d")) != base
    # the default step size is stored resolved: spelling it out is the same configuration
    assert dataclasses.replace(CFG, step_size=2.5 * 0.3 / 3) == CFG
    assert hash(dataclasses.replace(CFG)) == hash(CFG)


@pytest.mark.parametrize("field, value, message", [
    ("ig_steps", 0, "ig_steps must be an integer >= 2"),
    ("ig_steps", 1, "ig_steps must be an integer >= 2"),
    ("k", 0.0, "k must be a fraction of the bins in \\(0, 1\\]"),
    ("k", 1.5, "k must be a fraction"),
    ("baseline", "noise", "baseline must be one of"),
    ("epsilon", -0.1, "epsilon must be a finite number > 0"),
    ("iterations", 0, "iterations must be an integer >= 1"),
    ("tolerance", -1.0, "tolerance must be a finite number >= 0"),
    ("method", "simpson", "method must be one of"),
    ("n_examples", 0, "n_examples must be an integer >= 1"),
])
def test_bad_configs_name_the_field(field, value, message):
    with pytest.raises(ParameterError, match=message):
        AttributionConfig(**{field: value})


def test_bad_calls_are_parameter_errors(data, tmp_path):
    with pytest.raises(ParameterError, match="AttributionConfig"):
        attribution_table(trained(Linear(20)), data, {"ig_steps": 4}, run_dir=tmp_path)
    with pytest.raises(ParameterError, match="split must be one of"):
        attribution_table(trained(Linear(20)), data, CFG, split="dev", run_dir=tmp_path, device="cpu")
    with pytest.raises(ParameterError, match="lack column"):
        attribution_summary(pd.DataFrame({"variant": ["a2e"], "seed": [6]}))
    with pytest.raises(ParameterError, match="one clip"):
        example_maps({"a": Linear(20)}, data.x[:2], CFG, mean=0.0, std=1.0)


def test_summary_means_per_model_then_mean_and_std_over_seeds():
    rows = [{"variant": v, "seed": s, "model_key": f"{v}{s}", "topk_intersection": t, "kendall_tau": k}
            for v, s, t, k in (("a2e", 6, 1.0, 0.9), ("a2e", 6, 0.5, 0.7), ("a2e", 21, 0.25, np.nan),
                               ("a2e", 21, 0.25, 0.4), ("aa2e", 6, 0.75, 0.6))]
    s = attribution_summary(pd.DataFrame(rows))
    assert s.index.tolist() == ["a2e", "aa2e"] and s.system.tolist() == ["A2E", "aA2E"]
    assert s.loc["a2e", "topk_intersection_mean"] == pytest.approx((0.75 + 0.25) / 2)
    assert s.loc["a2e", "topk_intersection_std"] == pytest.approx(np.std([0.75, 0.25], ddof=1))
    assert s.loc["a2e", "kendall_tau_mean"] == pytest.approx((0.8 + 0.4) / 2)     # the NaN clip left out
    assert s.loc["a2e", "seeds"] == 2 and np.isnan(s.loc["aa2e", "kendall_tau_std"])


def test_example_maps_are_the_exact_ig_of_a_linear_model(data):
    x = data.x[:1]
    lin = Linear(20)
    maps = example_maps({"lin": lin, "small": Small(20)}, x, dataclasses.replace(CFG, tolerance=0.0), emotion="tension", mean=data.mean,
                        std=data.std)
    assert maps.emotion == "tension" and list(maps.clean) == ["lin", "small"]
    expected = (x[0, 0] * lin.w[2].detach().view(4, 5)).numpy()             # IG = (x - 0) * W_j
    np.testing.assert_allclose(maps.clean["lin"], expected, atol=1e-12)
    np.testing.assert_allclose(maps.attacked["lin"], expected, atol=1e-12)     # no step within tolerance 0
    assert maps.kendall_tau["lin"] == pytest.approx(1.0) and maps.topk_intersection["lin"] == 1.0
    assert maps.clean["small"].shape == (4, 5) and maps.output_change["small"] == 0.0
    # the silence baseline: IG = (x - b) * W_j with b = (0 - mean) / std = -0.5
    silent = example_maps({"lin": lin}, x, AttributionConfig(ig_steps=4, baseline="silence", iterations=1),
                          emotion=2, mean=data.mean, std=data.std)
    np.testing.assert_allclose(silent.clean["lin"], ((x[0, 0] + 0.5) * lin.w[2].detach().view(4, 5)).numpy(),
                               atol=1e-12)
