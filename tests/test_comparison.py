"""The per-model / per-system comparison table: clean accuracy, ΔMAE, NF/S and epoch cost."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.comparison import explanation_tables, per_model, per_system, spread_text
from mer_lib import step_costs as step_costs_module
from mer_lib.step_costs import step_costs
from mer_lib.data import MerTensors, split_indices
from mer_lib.datasets import EMOTIONS
from mer_lib.errors import ParameterError
from mer_lib.explain import PatchGrid
from mer_lib.explain.report import QualityConfig
from mer_lib.models import build_model
from mer_lib.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fake(variant, seed, key, *, seconds, r=0.5, mae=0.1, c=None, init_from=None, model=None):
    """A trained model as per_model sees it: evaluate(), history, key and config."""
    opts = {} if c is None else {"c": c}
    return SimpleNamespace(
        model=model, key=key, history=pd.DataFrame({"epoch": range(1, len(seconds) + 1), "seconds": seconds}),
        config=SimpleNamespace(variant=variant, seed=seed, objective_options=opts, init_from=init_from),
        evaluate=lambda data, split: {"avg_r": r, "mae": mae})


def attack_rows(variant, seed, key, *, clean_err, final_mae, n=6, rng=np.random.default_rng(0)):
    """Clips whose clean prediction is off by ``clean_err`` everywhere and whose final MAE is given."""
    true = rng.uniform(0.2, 0.8, size=(n, 8))
    cols = {"variant": variant, "seed": seed, "model_key": key, "example": [f"{i}" for i in range(n)],
            "mae_final": final_mae}
    cols.update({f"true_{e}": true[:, j] for j, e in enumerate(EMOTIONS)})
    cols.update({f"clean_{e}": true[:, j] + clean_err for j, e in enumerate(EMOTIONS)})
    return pd.DataFrame(cols)


def test_per_model_matches_rows_by_model_key_with_known_values():
    models = {("a2e", 6): fake("a2e", 6, "k-a2e", seconds=[2.0, 2.0]),
              ("expof_a2e", 6): fake("expof_a2e", 6, "k-f1", seconds=[5.0, 7.0], c=1.0, init_from="a2e/k-a2e"),
              ("expof_a2e", 6, 10): fake("expof_a2e", 6, "k-f10", seconds=[8.0, 8.0], c=10.0, init_from="a2e/k-a2e")}
    attacks = pd.concat([attack_rows("a2e", 6, "k-a2e", clean_err=0.1, final_mae=0.35),
                         attack_rows("expof_a2e", 6, "k-f1", clean_err=-0.05, final_mae=0.15)])
    expl = pd.DataFrame({"model_key": ["k-a2e", "k-a2e", "k-f1", "k-f10"], "nf": [1.0, 3.0, 0.5, 0.25],
                         "stability": [4.0, 6.0, 1.0, 2.0]})
    t = per_model(models, None, attacks=attacks, explanations=expl).set_index("model_key")
    # ΔMAE = final MAE - clean MAE (the clean MAE is |clean_err|)
    assert t.loc["k-a2e", "delta_mae"] == pytest.approx(0.25)
    assert t.loc["k-f1", "delta_mae"] == pytest.approx(0.10)
    assert np.isnan(t.loc["k-f10", "delta_mae"])                     # not attacked
    # NF/S are per-model means, the two c values of the same variant and seed stay apart
    assert (t.loc["k-a2e", "nf"], t.loc["k-a2e", "stability"]) == (2.0, 5.0)
    assert (t.loc["k-f1", "nf"], t.loc["k-f10", "nf"]) == (0.5, 0.25)
    # recorded epoch time: the mean over the history
    assert t.epoch_seconds.tolist() == [2.0, 6.0, 8.0] and t.epochs.tolist() == [2, 2, 2]
    assert t.c.isna().tolist() == [True, False, False] and t.fine_tuned.tolist() == [False, True, True]
    assert t.system.tolist() == ["A2E", "ExpO-F-A2E", "ExpO-F-A2E"]


def test_per_system_means_and_spreads_over_seeds():
    models = [fake("a2e", s, f"k{s}", seconds=[1.0], r=r) for s, r in ((6, 0.6), (21, 0.8))]
    s = per_system(per_model(models, None))
    assert s.loc["a2e", "avg_r_mean"] == pytest.approx(0.7)
    assert s.loc["a2e", "avg_r_std"] == pytest.approx(np.sqrt(0.02))   # ddof 1
    assert s.loc["a2e", "seeds"] == 2 and np.isnan(s.loc["a2e", "nf_mean"])
    assert spread_text(s, "avg_r", digits=2).tolist() == ["0.7 ± 0.14"]


class PatchLinear(torch.nn.Module):
    """Linear in patch space: its explanations are exact (NF = 0)."""

    def __init__(self, grid):
        super().__init__()
        self.grid = grid
        self.a = torch.nn.Parameter(torch.randn(8, grid.n_patches, generator=torch.Generator().manual_seed(2),
                                                dtype=torch.float64))

    def forward(self, x):
        return self.grid.reduce(x) @ self.a.T


class PatchSquare(PatchLinear):
    """Quadratic in patch space: NF > 0."""

    def forward(self, x):
        return (self.grid.reduce(x) ** 2) @ self.a.T


def test_explanation_tables_feed_per_model(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = MerTensors(x=torch.randn(20, 1, 8, 8, generator=g, dtype=torch.float64),
                      emotions=torch.rand(20, 8, generator=g), midlevel=None, split=split_indices(20),
                      ids=[f"{i:03d}" for i in range(20)], mean=0.0, std=1.0, identity="cmp-test")
    grid = PatchGrid(2, 2)
    models = [fake("a2e", 6, "lin", seconds=[1.0], model=PatchLinear(grid)),
              fake("a2b2e", 6, "sq", seconds=[1.0], model=PatchSquare(grid))]
    cfg = QualityConfig(bands=2, segments=2, n_examples=2)
    expl = explanation_tables(models, data, cfg, run_dir=tmp_path, device="cpu")
    assert len(expl) == 2 * 2 * 8 and set(expl.model_key) == {"lin", "sq"}
    t = per_model(models, data, explanations=expl).set_index("model_key")
    assert t.loc["lin", "nf"] < 1e-20 and t.loc["sq", "nf"] > 1e-8


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ParameterError, match="trained models"):
        per_model([object()], None)
    with pytest.raises(ParameterError, match="lacks column"):
        per_model([fake("a2e", 6, "k", seconds=[1.0])], None, explanations=pd.DataFrame({"model_key": ["k"]}))
    with pytest.raises(ParameterError, match="lacks column"):
        per_system(pd.DataFrame({"variant": ["a2e"], "seed": [6]}), ["nf"])


def test_step_costs_time_each_objective_on_a_copy():
    g = torch.Generator().manual_seed(0)
    n = 20
    data = MerTensors(x=torch.randn(n, 1, 32, 24, generator=g), emotions=torch.rand(n, 8, generator=g),
                      midlevel=None, split=split_indices(n), ids=[f"{i}" for i in range(n)], mean=0.0, std=1.0,
                      identity="steps")
    models = []
    for variant, opts in (("a2e", None), ("expof_a2e", {"reg_batch": 4, "bands": 2, "segments": 2}),
                          ("aa2e", None)):
        cfg = TrainConfig(variant, seed=0, batch_size=4, width=0.0625, objective_options=opts)
        torch.manual_seed(0)
        models.append(SimpleNamespace(model=build_model(variant, 0.0625).eval(), key=variant, config=cfg))
    before = [p.detach().clone() for p in models[1].model.parameters()]
    costs = step_costs(models + [models[0]], data, repeats=3)
    assert list(costs.index) == ["a2e", "expof_a2e", "aa2e"]          # one row per variant
    assert costs.loc["a2e", "epoch_cost"] == 1.0
    # ExpO-Fidelity adds (N + 1) = 11 passes of 4 regularised clips to a step on 4 clips
    assert costs.loc["expof_a2e", "epoch_cost"] > 1.5
    assert np.isnan(costs.loc["a2e", "adversarial_step_seconds"])
    adv = costs.loc["aa2e"]
    every = models[2].config.adv_every
    assert adv.adversarial_step_seconds > adv.step_seconds
    assert adv.mean_step_seconds == pytest.approx(((every - 1) * adv.step_seconds + adv.adversarial_step_seconds) / every)
    assert all(torch.equal(a, b) for a, b in zip(before, models[1].model.parameters()))   # stored model untouched
    assert not models[1].model.training
    with pytest.raises(ParameterError, match="repeats"):
        step_costs(models, data, repeats=0)


def test_stored_step_costs_are_measured_once_and_read_by_every_page(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    n = 12
    data = MerTensors(x=torch.randn(n, 1, 32, 24, generator=g), emotions=torch.rand(n, 8, generator=g),
                      midlevel=None, split=split_indices(n), ids=[f"{i}" for i in range(n)], mean=0.0, std=1.0,
                      identity="steps")
    models = {}
    for variant, opts in (("a2e", None), ("expos_a2e", {"reg_batch": 2, "bands": 2, "segments": 2}),
                          ("a2b2e", None)):
        cfg = TrainConfig(variant, seed=0, batch_size=4, width=0.0625, objective_options=opts)
        torch.manual_seed(0)
        models[variant] = SimpleNamespace(model=build_model(variant, 0.0625).eval(), key=f"k-{variant}", config=cfg)
    calls = []
    real = step_costs_module._time_steps
    monkeypatch.setattr(step_costs_module, "_time_steps",
                        lambda first, *a: calls.append(sorted(first)) or real(first, *a))
    page_one = step_costs([models["a2e"], models["expos_a2e"]], data, repeats=2, run_dir=tmp_path)
    page_two = step_costs(list(models.values()), data, repeats=2, run_dir=tmp_path)
    # the second page times only the model it adds (beside the reference, for its ratio); the
    # shared systems show the first page's numbers
    assert calls == [["a2e", "expos_a2e"], ["a2b2e", "a2e"]]
    for v in ("a2e", "expos_a2e"):
        assert page_two.loc[v, "step_seconds"] == page_one.loc[v, "step_seconds"]
        assert page_two.loc[v, "epoch_cost"] == page_one.loc[v, "epoch_cost"]
    again = step_costs(list(models.values()), data, repeats=2, run_dir=tmp_path)
    assert calls == [["a2e", "expos_a2e"], ["a2b2e", "a2e"]]          # nothing timed a third time
    assert page_two.loc["a2e", "epoch_cost"] == 1.0
    pd.testing.assert_frame_equal(again, page_two)
    # another number of repeats is another measurement
    step_costs([models["a2e"]], data, repeats=3, run_dir=tmp_path)
    assert calls[-1] == ["a2e"]


def test_attribution_tables_feed_per_model_and_the_grand_table(tmp_path):
    from mer_lib.attributions.report import AttributionConfig
    from mer_lib.comparison import attribution_tables, grand_table

    class Linear(torch.nn.Module):
        """IG = x * W_j; with tolerance 0 no attack step counts: intersection and tau are 1."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(8, 12, generator=torch.Generator().manual_seed(5),
                                                    dtype=torch.float64))
            self.relu = torch.nn.ReLU()

        def forward(self, x):
            return x.flatten(1) @ self.w.T + 0 * self.relu(x.flatten(1)[:, :1])

    g = torch.Generator().manual_seed(0)
    data = MerTensors(x=torch.randn(40, 1, 3, 4, generator=g, dtype=torch.float64),
                      emotions=torch.rand(40, 8, generator=g), midlevel=None, split=split_indices(40),
                      ids=[f"{i:03d}" for i in range(40)], mean=0.0, std=1.0, identity="cmp-attr")
    cfg = AttributionConfig(ig_steps=2, iterations=1, attack_ig_steps=1, tolerance=0.0, k=0.25, n_examples=2)
    models = [fake("a2e", 6, "lin", seconds=[1.0], model=Linear())]
    attr = attribution_tables(models, data, cfg, run_dir=tmp_path, device="cpu")
    assert len(attr) == 2 * 8 and set(attr.model_key) == {"lin"}
    t = per_model(models, data, attributions=attr).set_index("model_key")
    assert t.loc["lin", "topk_intersection"] == 1.0 and t.loc["lin", "kendall_tau"] == pytest.approx(1.0)
    # the grand table: hand-made per-model rows (two seeds of A2E, one of aA2E) and costs
    rows = pd.DataFrame({"variant": ["a2e", "a2e", "aa2e"], "seed": [6, 21, 6],
                         "avg_r": [0.6, 0.8, 0.5], "mae": [0.1, 0.1, 0.2], "delta_mae": [0.02, 0.04, 0.01],
                         "topk_intersection": [0.5, 0.7, 0.9], "kendall_tau": [0.25, 0.75, 0.5],
                         "nf": [1.0, 1.0, 2.0], "stability": [np.nan, np.nan, np.nan]})
    costs = pd.DataFrame({"epoch_cost": [1.0, 2.5]}, index=["a2e", "aa2e"])
    g = grand_table(per_system(rows), costs)
    assert g.index.tolist() == ["A2E", "aA2E"] and g.seeds.tolist() == [2, 1]
    assert g.columns.tolist() == ["seeds", "avg r", "MAE", "ΔMAE (projected)", "top-k ∩", "Kendall τ", "NF", "S",
                                  "epoch cost (× A2E)"]
    assert g.loc["A2E", "top-k ∩"] == "0.6 ± 0.14" and g.loc["A2E", "Kendall τ"] == "0.5 ± 0.35"
    assert g.loc["aA2E", "ΔMAE (projected)"] == "0.01" and g.loc["aA2E", "epoch cost (× A2E)"] == "2.50"
    # a system the costs lack shows a dash; columns absent from the summary are left out
    g2 = grand_table(per_system(rows, ["avg_r"]), costs.loc[["a2e"]])
    assert g2.columns.tolist() == ["seeds", "avg r", "epoch cost (× A2E)"]
    assert g2.loc["aA2E", "epoch cost (× A2E)"] == "–"
    with pytest.raises(ParameterError, match="lacks column"):
        grand_table(pd.DataFrame({"x": [1]}))
