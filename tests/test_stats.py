"""The paired hierarchical bootstrap of :mod:`mer_lib.stats`: known answers, scipy agreement, coverage."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mer_lib.errors import ParameterError
from mer_lib.stats import PairedDifference, hierarchical_means, mean_interval, paired_difference, seeds_needed


def tidy(a: np.ndarray, b: np.ndarray, *, metric: str = "m", names=("a", "b"), seeds=None) -> pd.DataFrame:
    """A tidy table from two ``(seeds, clips)`` arrays measured on the same clips of the same seeds."""
    n_seeds, n_clips = a.shape
    seeds = np.arange(n_seeds) if seeds is None else np.asarray(seeds)
    s, c = np.repeat(seeds, n_clips), np.tile(np.arange(n_clips), n_seeds)
    return pd.DataFrame({"system": [names[0]] * s.size + [names[1]] * s.size, "seed": np.r_[s, s],
                         "clip": np.r_[c, c], metric: np.r_[a.ravel(), b.ravel()]})


def simulate(rng, *, n_seeds=5, n_clips=20, delta=0.3, sd_seed=1.0, sd_seed_diff=0.15, sd_clip=0.5,
             sd_noise=0.3) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical data: b = 1 + seed effect + clip effect + noise; a = b + delta + per-seed effect + noise.

    The clips are shared by both systems (and the seeds); the true mean difference a - b is ``delta``.
    """
    clip = rng.normal(0, sd_clip, n_clips)
    b = 1.0 + rng.normal(0, sd_seed, (n_seeds, 1)) + clip + rng.normal(0, sd_noise, (n_seeds, n_clips))
    a = b + delta + rng.normal(0, sd_seed_diff, (n_seeds, 1)) + rng.normal(0, sd_noise, (n_seeds, n_clips))
    return a, b


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return tidy(*simulate(np.random.default_rng(7)))


# --- 1. coverage -----------------------------------------------------------------------------------------

def test_interval_covers_the_true_mean_difference_about_95_percent():
    # 200 datasets of 5 seeds x 20 shared clips, per-seed random difference (sd 0.15) + clip noise.
    # Measured: these 200 datasets cover 0.925; 2000 from the same generator 0.907 (sd 0.1: 0.93,
    # sd 0.2: 0.89, sd 0.5: 0.85). With 5 seeds the percentile bootstrap under-covers somewhat
    # (the seed-level resample variance is (n-1)/n of the plug-in one and its tails are normal,
    # not t(4)). Binomial SE at 200 datasets is 0.02, so [0.85, 0.99] is the honest band. It
    # fails the wrong intervals: a one-level clip bootstrap ignoring the seeds covers 0.66 on
    # these datasets, an interval twice as wide 1.0.
    rng = np.random.default_rng(2024)
    n, hits, widths = 200, 0, []
    for i in range(n):
        d = paired_difference(tidy(*simulate(rng)), "m", "a", "b", n_boot=1000, seed=i)
        assert d.computable
        hits += d.low <= 0.3 <= d.high
        widths.append(d.high - d.low)
    coverage = hits / n
    assert 0.85 <= coverage <= 0.99, coverage
    assert 0.1 < np.median(widths) < 1.0                     # sanity: a real interval, not degenerate


# --- 2. one level = scipy.stats.bootstrap ---------------------------------------------------------------

def test_one_seed_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(3)
    b = rng.normal(2.0, 1.0, (1, 60))
    a = b + rng.gamma(2.0, 0.3, (1, 60))                      # skewed differences
    d_values = (a - b)[0]
    ours = paired_difference(tidy(a, b), "m", "a", "b", min_seeds=1, n_boot=20000, seed=1)
    ref = stats.bootstrap((d_values,), np.mean, method="percentile", n_resamples=20000, confidence_level=0.95,
                          random_state=np.random.default_rng(11)).confidence_interval
    width = ref.high - ref.low
    # Monte-Carlo SE of a 2.5 % quantile of 20000 resamples is about 0.5 % of the width, of the
    # difference of two independent estimates about 0.7 %: 5 % is ~7 SE and still catches a
    # wrong level (0.90 would move each end by ~8 %) or a wrong scale.
    assert ours.n_seeds == 1 and ours.computable
    assert ours.low == pytest.approx(ref.low, abs=0.05 * width)
    assert ours.high == pytest.approx(ref.high, abs=0.05 * width)
    assert ours.estimate == pytest.approx(d_values.mean(), abs=1e-12)


# --- 3. t-tests are scipy's ------------------------------------------------------------------------------

def test_t_tests_equal_scipy_ttest_rel(table):
    a = table[table.system == "a"].m.to_numpy()
    b = table[table.system == "b"].m.to_numpy()
    d = paired_difference(table, "m", "a", "b", n_boot=200)
    ref = stats.ttest_rel(a, b)
    assert d.t == pytest.approx(ref.statistic, rel=0, abs=1e-12)
    assert d.p == pytest.approx(ref.pvalue, rel=0, abs=1e-12)
    seed_means = table.groupby(["system", "seed"]).m.mean()
    ref_s = stats.ttest_rel(seed_means["a"].to_numpy(), seed_means["b"].to_numpy())
    assert d.t_seeds == pytest.approx(ref_s.statistic, rel=0, abs=1e-12)
    assert d.p_seeds == pytest.approx(ref_s.pvalue, rel=0, abs=1e-12)
    assert d.t != pytest.approx(d.t_seeds)                    # two different tests, not one copied


def test_t_is_nan_when_the_differences_are_constant():
    a = np.arange(12.0).reshape(3, 4)
    d = paired_difference(tidy(a + 0.5, a), "m", "a", "b", n_boot=200)
    assert d.estimate == pytest.approx(0.5) and math.isnan(d.t) and math.isnan(d.t_seeds)
    assert d.low == pytest.approx(0.5) and d.high == pytest.approx(0.5)


# --- 4. estimate, ratio, prob_improvement on a hand-made table ------------------------------------------

HAND_A = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
HAND_B = np.array([[2.0, 2.0, 1.0], [5.0, 8.0, 6.0]])        # a - b = -1, 0, 2 | -1, -3, 0


def test_estimate_ratio_and_prob_improvement_known_values():
    t = tidy(HAND_A, HAND_B)
    low = paired_difference(t, "m", "a", "b", n_boot=500)
    assert low.estimate == pytest.approx(-0.5, abs=1e-15)   # (-1 + 0 + 2 - 1 - 3 + 0) / 6
    assert (low.mean_a, low.mean_b) == (pytest.approx(3.5), pytest.approx(4.0))
    assert low.ratio == pytest.approx(0.875)                  # 21 / 24
    assert (low.n_seeds, low.n_pairs, low.seeds) == (2, 6, (0, 1))
    # lower is better: a wins on 3 clips, 2 ties count 1/2 -> (3 + 1) / 6
    assert low.prob_improvement == pytest.approx(4 / 6)
    assert 0 <= low.prob_low <= low.prob_improvement <= low.prob_high <= 1
    high = paired_difference(t, "m", "a", "b", n_boot=500, higher_is_better=True)
    assert high.prob_improvement == pytest.approx(2 / 6)      # 1 win + 2 ties / 2
    assert high.estimate == low.estimate and high.higher_is_better
    swapped = paired_difference(t, "m", "b", "a", n_boot=500)
    assert swapped.estimate == pytest.approx(0.5) and swapped.ratio == pytest.approx(24 / 21)
    assert swapped.prob_improvement == pytest.approx(2 / 6)
    assert low["half_width"] == low.half_width == pytest.approx((low.high - low.low) / 2)
    assert low.to_dict()["ratio"] == low.ratio and isinstance(low, PairedDifference)


def test_estimate_is_the_plain_mean_with_unequal_clip_counts():
    # seed 0 has 2 clips, seed 1 has 4: the estimate weighs every pair alike (not the seed means)
    rows = [("a", 0, 0, 1.0), ("a", 0, 1, 1.0), ("b", 0, 0, 0.0), ("b", 0, 1, 0.0)]
    rows += [(s, 1, c, v) for c in range(4) for s, v in (("a", 3.0), ("b", 0.0))]
    t = pd.DataFrame(rows, columns=["system", "seed", "clip", "m"])
    d = paired_difference(t, "m", "a", "b", n_boot=500)
    assert d.estimate == pytest.approx((2 * 1 + 4 * 3) / 6) and d.n_pairs == 6
    assert 1.0 <= d.low <= d.high <= 3.0


# --- 5. determinism ----------------------------------------------------------------------------------------

def test_same_seed_same_result_other_seed_slightly_different(table):
    d1 = paired_difference(table, "m", "a", "b", n_boot=2000, seed=5)
    d2 = paired_difference(table, "m", "a", "b", n_boot=2000, seed=5)
    assert d1.to_dict() == d2.to_dict()
    d3 = paired_difference(table, "m", "a", "b", n_boot=2000, seed=6)
    assert (d3.low, d3.high) != (d1.low, d1.high)
    width = d1.high - d1.low
    assert d3.low == pytest.approx(d1.low, abs=0.15 * width) and d3.high == pytest.approx(d1.high, abs=0.15 * width)
    assert d3.estimate == d1.estimate and d3.t == d1.t


def _shuffled(table, *, within_seed: bool, seed=0):
    """Rows shuffled; ``within_seed=False`` keeps each (system, seed)'s clip order, moves the blocks."""
    if within_seed:
        return table.sample(frac=1, random_state=seed).reset_index(drop=True)
    blocks = [g for _, g in table.groupby(["system", "seed"])]
    order = np.random.default_rng(seed).permutation(len(blocks))
    return pd.concat([blocks[i] for i in order], ignore_index=True)


def _same(d1, d2):
    for key in ("estimate", "low", "high", "ratio", "ratio_low", "ratio_high", "prob_improvement", "prob_low",
                "prob_high", "p_boot", "t", "p", "t_seeds", "p_seeds", "mean_a", "mean_b"):
        assert d1[key] == pytest.approx(d2[key], rel=1e-12, abs=1e-12), key
    assert (d1.n_seeds, d1.n_pairs, d1.seeds) == (d2.n_seeds, d2.n_pairs, d2.seeds)


def test_result_independent_of_the_order_of_systems_and_seeds(table):
    _same(paired_difference(table, "m", "a", "b", n_boot=2000),
          paired_difference(_shuffled(table, within_seed=False), "m", "a", "b", n_boot=2000))


def test_b_clip_order_does_not_matter(table):
    # b's rows are aligned to a's clips: reversing b's rows changes nothing
    t = pd.concat([table[table.system == "a"], table[table.system == "b"].iloc[::-1]], ignore_index=True)
    _same(paired_difference(table, "m", "a", "b", n_boot=2000), paired_difference(t, "m", "a", "b", n_boot=2000))


def test_result_independent_of_row_order(table):
    _same(paired_difference(table, "m", "a", "b", n_boot=2000),
          paired_difference(_shuffled(table, within_seed=True), "m", "a", "b", n_boot=2000))


# --- 6. pairing ------------------------------------------------------------------------------------------------

def test_common_component_leaves_the_interval_unchanged(table):
    base = paired_difference(table, "m", "a", "b", n_boot=2000)
    rng = np.random.default_rng(1)
    shared = table[["seed", "clip"]].drop_duplicates().assign(w=lambda f: rng.normal(0, 5.0, len(f)))
    shifted = table.merge(shared, on=["seed", "clip"]).assign(m=lambda f: f.m + f.w)
    d = paired_difference(shifted, "m", "a", "b", n_boot=2000)
    assert d.low == pytest.approx(base.low, abs=1e-9) and d.high == pytest.approx(base.high, abs=1e-9)
    assert d.estimate == pytest.approx(base.estimate, abs=1e-12)
    assert d.prob_improvement == base.prob_improvement and d.p_boot == base.p_boot


def test_large_shared_clip_effect_does_not_widen_the_interval():
    rng = np.random.default_rng(4)
    a, b = simulate(rng, sd_clip=0.0)
    clip_effect = rng.normal(0, 100.0, a.shape[1])          # huge, shared by both systems on every seed
    plain = paired_difference(tidy(a, b), "m", "a", "b", n_boot=2000)
    big = tidy(a + clip_effect, b + clip_effect)
    paired = paired_difference(big, "m", "a", "b", n_boot=2000)
    assert paired.half_width == pytest.approx(plain.half_width, rel=1e-6)
    # an unpaired interval (a's own mean) is dominated by the clip effect: far wider
    alone = mean_interval(big, "m", "a", n_boot=2000)
    assert (alone["high"] - alone["low"]) / 2 > 20 * paired.half_width


# --- 7. not computable, bad arguments ------------------------------------------------------------------------

def test_different_clips_within_a_seed_are_not_computable(table):
    t = table.copy()
    t.loc[(t.system == "b") & (t.seed == 2) & (t["clip"] == 3), "clip"] = 99
    d = paired_difference(t, "m", "a", "b", n_boot=200)
    assert not d.computable and "different clips" in d.reason and "seed 2" in d.reason
    assert math.isnan(d.low) and math.isnan(d.estimate)


def test_nan_values_are_not_computable(table):
    t = table.copy()
    t.loc[(t.system == "a") & (t.seed == 1) & (t["clip"].isin([0, 5])), "m"] = np.nan
    d = paired_difference(t, "m", "a", "b", n_boot=200)
    assert not d.computable and "2 NaN" in d.reason and "seed 1" in d.reason and math.isnan(d.high)


def test_fewer_than_two_common_seeds_are_not_computable():
    a, b = simulate(np.random.default_rng(0), n_seeds=1)
    d = paired_difference(tidy(a, b), "m", "a", "b", n_boot=200)
    assert not d.computable and "1 seed in common" in d.reason and "at least 2" in d.reason
    assert d.estimate == pytest.approx((a - b).mean()) and d.n_seeds == 1 and math.isnan(d.low)
    t = pd.concat([tidy(a, b, seeds=[0]).query("system == 'a'"), tidy(a, b, seeds=[1]).query("system == 'b'")])
    none = paired_difference(t, "m", "a", "b", n_boot=200)
    assert not none.computable and "share no seed" in none.reason


def test_missing_system_is_not_computable(table):
    d = paired_difference(table, "m", "a", "nope", n_boot=200)
    assert not d.computable and "'nope'" in d.reason and "no rows" in d.reason
    assert (d.a, d.b, d.metric) == ("a", "nope", "m")


def test_seeds_only_one_system_has_are_noted_and_ignored():
    rng = np.random.default_rng(9)
    a, b = simulate(rng, n_seeds=5)
    t = tidy(a, b)
    t = t[~((t.system == "b") & t.seed.isin([3, 4]))]
    d = paired_difference(t, "m", "a", "b", n_boot=500)
    assert d.computable and d.n_seeds == 3 and d.seeds == (0, 1, 2) and d.n_pairs == 60
    assert "[3, 4]" in d.note and "a" in d.note
    assert d.estimate == pytest.approx((a[:3] - b[:3]).mean(), abs=1e-12)
    _same(d, paired_difference(tidy(a[:3], b[:3]), "m", "a", "b", n_boot=500))


@pytest.mark.parametrize("level", [0, 1, -0.1, 1.5, True, "0.95", float("nan")])
def test_bad_level_raises(table, level):
    with pytest.raises(ParameterError, match="level"):
        paired_difference(table, "m", "a", "b", level=level)
    with pytest.raises(ParameterError, match="level"):
        mean_interval(table, "m", "a", level=level)


@pytest.mark.parametrize("n_boot", [99, 0, 1000.0, True])
def test_bad_n_boot_raises(table, n_boot):
    with pytest.raises(ParameterError, match="n_boot"):
        paired_difference(table, "m", "a", "b", n_boot=n_boot)


def test_n_boot_100_is_accepted(table):
    assert paired_difference(table, "m", "a", "b", n_boot=100).computable


def test_bad_min_seeds_raises(table):
    with pytest.raises(ParameterError, match="min_seeds"):
        paired_difference(table, "m", "a", "b", min_seeds=0)


@pytest.mark.parametrize("column", ["system", "seed", "clip", "m"])
def test_missing_column_is_named(table, column):
    with pytest.raises(ParameterError, match=f"'{column}'"):
        paired_difference(table.drop(columns=column), "m", "a", "b")
    with pytest.raises(ParameterError, match=f"'{column}'"):
        mean_interval(table.drop(columns=column), "m", "a")


def test_table_must_be_a_dataframe(table):
    with pytest.raises(ParameterError, match="table must be a pandas DataFrame, got dict"):
        paired_difference(table.to_dict("list"), "m", "a", "b")


# --- 8. hierarchical_means --------------------------------------------------------------------------------

def test_identical_seeds_add_no_seed_variance():
    x = np.random.default_rng(0).normal(0, 1, (30, 1))
    m = hierarchical_means([x] * 4, n_boot=20000, seed=3)
    # every drawn seed is the same 30 values: 120 iid draws from them, variance var(x) / 120
    # (ddof=0, the bootstrap's); the variance of 20000 means has a relative SE of 1 %.
    assert m.shape == (20000, 1)
    assert m.var() == pytest.approx(x.var() / 120, rel=0.05)
    assert m.mean() == pytest.approx(x.mean(), abs=4 * math.sqrt(x.var() / 120 / 20000))


def test_one_clip_per_seed_is_a_seed_bootstrap():
    seed_means = np.random.default_rng(1).normal(3, 2, 8)
    m = hierarchical_means([np.array([[v]]) for v in seed_means], n_boot=20000, seed=4)[:, 0]
    n = len(seed_means)
    known = seed_means.var(ddof=1) * (n - 1) / n ** 2             # plain bootstrap variance of a mean
    assert m.var() == pytest.approx(known, rel=0.05)
    assert m.mean() == pytest.approx(seed_means.mean(), abs=4 * math.sqrt(known / len(m)))
    assert np.all((m >= seed_means.min() - 1e-12) & (m <= seed_means.max() + 1e-12))


def test_unequal_clip_counts_are_weighted_by_clips():
    sizes = (10, 15, 20, 25, 30, 40)
    rng = np.random.default_rng(5)
    groups = [10.0 + v + rng.normal(0, 0.2, (n, 1)) for n, v in zip(sizes, np.linspace(0, 2, len(sizes)))]
    m = hierarchical_means(groups, n_boot=20000, seed=2)[:, 0]
    weighted = np.concatenate(groups).mean()                        # clip-weighted: 11.26
    seed_avg = np.mean([g.mean() for g in groups])                  # seed-weighted: 10.97
    # The bootstrap mean is a ratio (sum over drawn clips / their number) whose expectation is the
    # clip-weighted mean up to the ratio estimator's bias, known to second order:
    # (R Var(N) - Cov(Y, N)) / (S mean(N)^2) with Y the seed sums, N the clip counts (ddof 0).
    y, n = np.array([g.sum() for g in groups]), np.array(sizes, float)
    r = y.sum() / n.sum()
    bias = (r * n.var() - np.mean((y - y.mean()) * (n - n.mean()))) / (len(n) * n.mean() ** 2)
    assert abs(m.mean() - (r + bias)) < 4 * m.std() / math.sqrt(len(m)) + 0.005
    assert abs(m.mean() - weighted) < 0.25 * abs(weighted - seed_avg)
    # padding never leaks in as zeros: every bootstrap mean lies within the data's range
    assert m.min() > 9.0 and m.max() < 13.0


def test_hierarchical_means_rejects_empty_input():
    with pytest.raises(ParameterError):
        hierarchical_means([])
    with pytest.raises(ParameterError):
        hierarchical_means([np.ones((2, 1)), np.ones((0, 1))])


# --- 9. seeds_needed ----------------------------------------------------------------------------------------

def test_seeds_needed_known_values():
    assert seeds_needed(0.1, 0.2, 3) == 25.0        # target 0.1 x 1.960 / 2.802 = 0.0700: 3 (0.2 / 0.07)^2 = 24.5
    assert seeds_needed(-0.1, 0.2, 3) == 25.0       # the sign does not matter
    assert seeds_needed(-0.2, 0.3, 5, level=0.9) == 26.0   # 0.2 x 1.645 / 2.486 = 0.1323: 5 (0.3 / 0.1323)^2 = 25.7
    assert seeds_needed(0.5, 0.1, 10) == 2.0        # already resolved: the floor of 2
    assert seeds_needed(1.0, 1e-9, 3) == 2.0


def test_seeds_needed_monotone_in_half_width():
    values = [seeds_needed(0.1, hw, 3) for hw in (0.01, 0.05, 0.1, 0.2, 0.4, 0.8)]
    assert values == sorted(values) and values[0] < values[-1] and min(values) >= 2
    assert all(v == int(v) for v in values)


def test_seeds_needed_special_values():
    assert seeds_needed(0.0, 0.2, 3) == math.inf
    assert math.isnan(seeds_needed(float("nan"), 0.2, 3))
    assert math.isnan(seeds_needed(0.1, float("inf"), 3))
    assert math.isnan(seeds_needed(0.1, 0.2, 0))
    with pytest.raises(ParameterError, match="level"):
        seeds_needed(0.1, 0.2, 3, level=1.0)


@pytest.mark.parametrize("n_seeds", [float("nan"), math.inf])
def test_seeds_needed_non_finite_n_seeds_is_nan(n_seeds):
    assert math.isnan(seeds_needed(0.1, 0.2, n_seeds))


# --- 10. mean_interval ------------------------------------------------------------------------------------

def test_mean_interval_contains_the_mean(table):
    r = mean_interval(table, "m", "a", n_boot=2000)
    a = table[table.system == "a"].m
    assert r["computable"] and r["reason"] == "" and (r["n_seeds"], r["n_clips"]) == (5, 100)
    assert r["estimate"] == pytest.approx(a.mean(), abs=1e-12)
    assert r["low"] < r["estimate"] < r["high"]
    # the seed effect (sd 1 over 5 seeds) dominates: the interval is about +-2 sd(seed means) / sqrt(5) wide
    sd_means = a.groupby(table.seed).mean().std(ddof=0)
    assert (r["high"] - r["low"]) / 2 == pytest.approx(1.96 * sd_means / math.sqrt(5), rel=0.35)


def test_mean_interval_not_computable_with_nan_or_missing_system(table):
    t = table.copy()
    t.loc[t.index[0], "m"] = np.nan
    r = mean_interval(t, "m", "a", n_boot=500)
    assert not r["computable"] and "1 NaN" in r["reason"] and math.isnan(r["low"]) and math.isnan(r["estimate"])
    missing = mean_interval(table, "m", "zzz", n_boot=500)
    assert not missing["computable"] and "'zzz'" in missing["reason"] and missing["n_clips"] == 0


def test_mean_interval_single_seed_is_noted(table):
    one = table[table.seed == 0]
    r = mean_interval(one, "m", "b", n_boot=2000)
    assert r["computable"] and "one seed" in r["reason"] and r["n_seeds"] == 1
    assert r["low"] < r["estimate"] < r["high"]


def test_seed_labels_need_not_be_integers():
    rows = [{"system": s, "seed": f"run{k}", "clip": c, "m": v + 0.1 * c + k}
            for s, v in (("a", 1.0), ("b", 0.0)) for k in range(3) for c in range(5)]
    d = paired_difference(pd.DataFrame(rows), "m", "a", "b", n_boot=500)
    assert d.computable and d.seeds == ("run0", "run1", "run2") and d.estimate == pytest.approx(1.0)
