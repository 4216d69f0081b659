"""The book's decision rules: corrected intervals decide, words follow the decision, the paper's
claims are answered from its own logs, and two corpora never flip a resolved conclusion."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer_lib import findings as F
from mer_lib.claims import CLAIMS, paper_claims
from mer_lib.experiments import Experiment
from mer_lib.published import per_run, published_logs
from mer_lib.runner import Runner


def _table(effects: dict, *, seeds=(1, 2, 3, 4), clips=30, noise=0.1, seed=0, metric="delta_mae"):
    """Tidy rows: each system's value = its effect + a shared seed and clip component + noise."""
    rng = np.random.default_rng(seed)
    shared = {(s, c): rng.normal() for s in seeds for c in range(clips)}
    return pd.DataFrame([{"system": name, "variant": name.lower(), "seed": s, "clip": c,
                          metric: effect + shared[(s, c)] + noise * rng.normal()}
                         for name, effect in effects.items() for s in seeds for c in range(clips)])


def test_a_large_difference_is_resolved_and_none_is_not():
    t = _table({"A2E": 1.0, "A2M2E": 0.5, "A2B2E": 1.0})
    d = F.decide(t, "delta_mae", [("A2M2E", "A2E"), ("A2B2E", "A2E")])
    assert d.outcome.tolist() == ["lower", "unresolved"]
    assert d.better.tolist() == [True, None] and d.resolved.tolist() == [True, False]
    assert d.estimate.iloc[0] == pytest.approx(-0.5, abs=0.05)


def test_the_interval_is_corrected_for_the_size_of_the_family():
    t = _table({"A2E": 1.0, "A2M2E": 0.97}, noise=0.05)
    one = F.decide(t, "delta_mae", [("A2M2E", "A2E")]).iloc[0]
    eight = F.decide(t, "delta_mae", [("A2M2E", "A2E")], family=8).iloc[0]
    assert one.level == pytest.approx(0.95) and eight.level == pytest.approx(1 - 0.05 / 8)
    assert eight.low < one.low and eight.high > one.high        # wider, around the same estimate
    assert eight.estimate == one.estimate
    with pytest.raises(Exception, match="family"):
        F.decide(t, "delta_mae", [("A2M2E", "A2E"), ("A2E", "A2M2E")], family=1)


def test_direction_follows_the_metric():
    t = _table({"A2E": 0.5, "A2M2E": 0.8}, metric="kendall_tau")
    row = F.decide(t, "kendall_tau", [("A2M2E", "A2E")]).iloc[0]
    assert row.outcome == "higher" and row.better is True              # higher tau: more robust attributions
    assert F.word(row).startswith("more robust attributions")
    assert "Kendall τ is higher than A2E's" in F.sentence(row)


def test_words_for_unresolved_and_not_computable_comparisons():
    t = _table({"A2E": 1.0, "A2M2E": 1.0}, metric="nf")
    row = F.decide(t, "nf", [("A2M2E", "A2E")]).iloc[0]
    assert row.outcome == "unresolved"
    assert F.sentence(row).startswith("This run does not resolve whether A2M2E's NF differs from A2E's")
    assert "includes 0" in F.word(row)
    broken = t.copy()
    broken.loc[(broken.system == "A2M2E") & (broken["clip"] == 3), "nf"] = np.nan
    bad = F.decide(broken, "nf", [("A2M2E", "A2E")]).iloc[0]
    assert bad.outcome == "not computable" and "NaN" in F.sentence(bad)
    assert F.pick(bad.to_frame().T, "ExpO-F-A2E", "A2E", "nf").outcome == "not computable"
    assert "cannot" not in F.summary(F.decide(t, "nf", [("A2M2E", "A2E")]))


def test_power_note_names_the_largest_unresolved_difference():
    t = _table({"A2E": 1.0, "A2M2E": 0.99, "A2B2E": 0.5})
    d = F.decide(t, "delta_mae", [("A2M2E", "A2E"), ("A2B2E", "A2E")])
    note = F.power_note(d)
    assert "1 of 2 comparisons are not resolved" in note and "A2M2E vs A2E" in note
    assert "seeds for an 80 % chance" in note


def test_flips_are_only_opposite_resolved_outcomes():
    a = pd.DataFrame({"metric": ["m"] * 3, "a": ["X", "Y", "Z"], "b": ["A"] * 3,
                      "outcome": ["lower", "lower", "higher"]})
    b = a.assign(outcome=["higher", "unresolved", "higher"])
    assert F.flips(a, b)[["a", "outcome_1", "outcome_2"]].values.tolist() == [["X", "lower", "higher"]]


def test_per_clip_delta_mae_averages_to_the_figure_3_value():
    logs = published_logs()
    logs["variant"] = logs.variant.fillna(logs.run)
    clips = F.attack_clips(logs)
    means = clips.groupby(["variant", "seed"]).delta_mae.mean()
    runs = per_run(logs).set_index(["variant", "seed"]).delta_mae
    assert np.allclose(means.loc[runs.index].to_numpy(), runs.to_numpy())
    rel = clips.groupby(["variant", "seed"]).rel_delta_mae.mean()
    mae = per_run(logs).set_index(["variant", "seed"]).mae
    assert np.allclose(rel.loc[runs.index].to_numpy(), (runs / mae).to_numpy())


def test_the_paper_logs_support_the_first_claim_and_cannot_price_the_third():
    logs = published_logs()
    logs["variant"] = logs.variant.fillna(logs.run)
    claims = paper_claims(F.attack_clips(logs), n_boot=2000)
    assert claims.claim.tolist() == list(CLAIMS)
    assert claims.verdict.iloc[0] == "supported"        # A2M2E's ΔMAE resolved lower than A2E's and A2B2E's
    assert claims.verdict.iloc[2] == "not computable"
    decisions = claims.attrs["decisions"]
    assert (decisions.m == 4).all() and decisions.n_seeds.eq(10).all()


@pytest.mark.slow
def test_two_synthetic_corpora_never_flip_a_resolved_comparison(tmp_path, one_torch_thread):
    """Smoke-size runs on two corpus seeds (2 training seeds each): every comparison the book
    decides on ΔMAE, adversarial MAE and clean MAE may be resolved in one and not the other, but
    never resolved in opposite directions."""
    decided = []
    for corpus_seed in (0, 1):
        exp = Experiment.from_parameters(profile="smoke", device="cpu", seeds=[6, 21], corpus_seed=corpus_seed,
                                         variants=["a2e", "a2m2e", "aa2e"], modes=["projected"], epsilons=[0.001])
        runner = Runner(exp, tmp_path / f"corpus{corpus_seed}", log=lambda message: None)
        clips = F.attack_clips(runner.attack_table(exp.attack_config("projected", exp.epsilon)))
        pairs = [("A2M2E", "A2E"), ("A2M2E", "aA2E"), ("aA2E", "A2E")]
        decided.append(pd.concat([F.decide(clips, m, pairs, family=3 * len(pairs), n_boot=2000)
                                  for m in ("delta_mae", "mae_final", "mae")], ignore_index=True))
    assert len(decided[0]) == len(decided[1]) == 9
    assert (decided[0].outcome != "not computable").all()
    assert F.flips(*decided).empty, F.flips(*decided)
