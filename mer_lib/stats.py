"""Paired comparisons with uncertainty: a hierarchical bootstrap over seeds, then clips.

The unit of replication of this study is the training seed, and within a seed the attacked
(or explained) clip. Two systems are compared on the **same** clips of the **same** seeds:
for a per-clip metric (ΔMAE, adversarial MAE, SNR, top-k intersection, Kendall τ, NF, S,
clean MAE; a per-model metric such as avg r is a table with one "clip" per seed),
:func:`paired_difference` gives

- ``estimate``: the plain mean of the paired differences a − b over every (seed, clip);
- ``low``, ``high``: its ``level`` percentile interval from a **paired, hierarchical
  bootstrap** — resample the seeds with replacement, then the clips within each drawn seed
  (the same clips for both systems, so the pairing survives every resample);
- ``ratio`` (mean a / mean b) with its interval, and ``prob_improvement``: the share of
  paired clips on which ``a`` is better than ``b`` (ties count one half), with its interval;
- ``p_boot``: the two-sided bootstrap p-value of "no difference" (the smallest level at
  which the interval would touch 0), which the decision rules of :mod:`mer_lib.findings`
  correct for the number of comparisons;
- ``t``, ``p``: the paper's paired t-test over every (seed, clip) pair
  (:func:`scipy.stats.ttest_rel`), and ``t_seeds``, ``p_seeds``: the same test over the
  per-seed means (the seeds as the unit);
- ``computable`` and ``reason``: a comparison that cannot be made — systems measured on
  different clips, NaN values, fewer than ``min_seeds`` common seeds — is returned marked,
  with the reason in words, never dropped or raised.

:func:`mean_interval` is the one-sample version (a system's own mean with its interval), and
:func:`seeds_needed` the power note: how many seeds the run's own variance says would make an
interval narrow enough to resolve the observed difference.

Why this is written here: ``scipy.stats.bootstrap`` resamples one level (its ``paired=True``
keeps pairs, but it cannot resample seeds and then clips within a seed), and ``rliable``'s
stratified bootstrap resamples runs within tasks for aggregate scores of independent runs,
not paired differences of two systems on shared clips. The one-level case of this module
agrees with ``scipy.stats.bootstrap`` and the t-tests are scipy's (see the tests).

Example:
    >>> import pandas as pd
    >>> rows = [{"system": s, "seed": seed, "clip": c, "dmae": base + 0.1 * c + seed + gap * c * seed}
    ...         for s, base, gap in (("A2E", 1.0, 0.0), ("A2M2E", 0.5, 0.01))
    ...         for seed in (1, 2, 3) for c in range(4)]
    >>> d = paired_difference(pd.DataFrame(rows), "dmae", "A2M2E", "A2E")
    >>> round(d.estimate, 3), d.low < d.estimate < d.high < 0, d["prob_improvement"]
    (-0.47, True, 1.0)
    >>> d.computable, d.n_seeds, d.n_pairs, round(d.ratio, 3)
    (True, 3, 12, 0.851)
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .errors import ParameterError
from .words import count

#: Bootstrap resamples by default: enough for the 0.05 / 8 tail of a corrected comparison.
N_BOOT = 10_000
#: Elements per block of the vectorised resampling (bounds the memory of one block).
_BLOCK = 4_000_000
NAN = float("nan")


@dataclass(frozen=True)
class PairedDifference:
    """The comparison of ``a`` and ``b`` on one metric (fields: module doc). ``d["key"]`` works too."""

    metric: str
    a: str
    b: str
    estimate: float = NAN
    low: float = NAN
    high: float = NAN
    level: float = 0.95
    ratio: float = NAN
    ratio_low: float = NAN
    ratio_high: float = NAN
    prob_improvement: float = NAN
    prob_low: float = NAN
    prob_high: float = NAN
    p_boot: float = NAN
    t: float = NAN
    p: float = NAN
    t_seeds: float = NAN
    p_seeds: float = NAN
    mean_a: float = NAN
    mean_b: float = NAN
    n_seeds: int = 0
    n_pairs: int = 0
    seeds: tuple = ()
    higher_is_better: bool = False
    computable: bool = True
    reason: str = ""
    note: str = ""

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return (self.high - self.low) / 2

    def __getitem__(self, key: str):
        if key == "half_width":
            return self.half_width
        return getattr(self, key)

    def to_dict(self) -> dict:
        """The fields (and ``half_width``) as a plain dict."""
        return {**dataclasses.asdict(self), "half_width": self.half_width}


def _check_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ParameterError(f"level must be a number in (0, 1), got {level!r}")
    return float(level)


def _check_table(table: pd.DataFrame, metric: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in ("system", "seed", "clip", metric) if c not in table.columns]
    if missing:
        raise ParameterError(f"table lacks column(s) {missing}; expected the columns system, seed, clip "
                             f"and the metric {metric!r} (one row per system, seed and clip)")


def hierarchical_means(groups: Sequence[np.ndarray], *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Bootstrap means of per-clip values grouped by seed: seeds resampled, then clips within each.

    ``groups`` holds one ``(clips, k)`` array per seed (``k`` statistics of each clip, resampled
    together). One resample draws ``len(groups)`` seeds with replacement and, for each drawn
    seed, as many of its clips with replacement as it has; its value is the mean over every
    drawn clip (a seed weighs by its clips, like the plain mean). Returns ``(n_boot, k)``.

    Example:
        >>> g = [np.array([[1.0], [3.0]]), np.array([[5.0], [7.0]])]
        >>> m = hierarchical_means(g, n_boot=20000, seed=1)
        >>> m.shape, round(float(m.mean()), 1)
        ((20000, 1), 4.0)
    """
    if not groups:
        raise ParameterError("hierarchical_means needs at least one seed's values")
    sizes = np.array([len(g) for g in groups])
    if (sizes < 1).any():
        raise ParameterError("every seed needs at least one clip")
    k = groups[0].shape[1]
    n_seeds, width = len(groups), int(sizes.max())
    padded = np.zeros((n_seeds, width, k))
    for i, g in enumerate(groups):
        padded[i, : len(g)] = g
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, k))
    block = max(1, _BLOCK // max(1, n_seeds * width * k))
    positions = np.arange(width)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        drawn = rng.integers(0, n_seeds, size=(b, n_seeds))                       # seeds
        n = sizes[drawn]                                                          # their clip counts
        clip = np.floor(rng.random((b, n_seeds, width)) * n[..., None]).astype(np.int64)
        valid = positions[None, None, :] < n[..., None]
        values = padded[drawn[..., None], clip]                                   # (b, seeds, width, k)
        sums = np.where(valid[..., None], values, 0.0).sum(axis=(1, 2))
        out[start:start + b] = sums / n.sum(axis=1)[:, None]
    return out


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if len(finite) < len(samples) * 0.99 or not len(finite):
        return NAN, NAN
    tail = (1 - level) / 2
    lo, hi = np.quantile(finite, [tail, 1 - tail])
    return float(lo), float(hi)


def _p_two_sided(samples: np.ndarray) -> float:
    """The bootstrap p-value of 0: twice the smaller tail beyond 0 (with the +1 rule)."""
    n = len(samples)
    below, above = int((samples <= 0).sum()), int((samples >= 0).sum())
    return float(min(1.0, 2 * min(below + 1, above + 1) / (n + 1)))


def _varies(x: np.ndarray) -> bool:
    """Whether the differences are not all equal (up to rounding): a t statistic exists."""
    return bool(np.ptp(x) > 1e-12 * max(1.0, float(np.abs(x).max())))


def _not_computable(metric, a, b, level, higher_is_better, reason, **known) -> PairedDifference:
    return PairedDifference(metric=metric, a=a, b=b, level=level, higher_is_better=higher_is_better,
                            computable=False, reason=reason, **known)


def _paired_values(table: pd.DataFrame, metric: str, a: str, b: str):
    """``(seeds, {seed: (a values, b values)}, reason, note)`` on the common seeds, clip-aligned."""
    systems = set(table.system)
    absent = [s for s in (a, b) if s not in systems]
    if absent:
        return None, None, f"no rows for {' and '.join(map(repr, absent))}", ""
    part = {s: table[table.system == s] for s in (a, b)}
    seeds_of = {s: set(p.seed) for s, p in part.items()}
    common = sorted(seeds_of[a] & seeds_of[b])
    only = {s: sorted(seeds_of[s] - set(common)) for s in (a, b)}
    note = "; ".join(f"seeds {v} of {s} have no partner" for s, v in only.items() if v)
    if not common:
        return None, None, f"{a} and {b} share no seed", note
    pairs = {}
    for s in common:
        pa = part[a][part[a].seed == s].set_index("clip")[metric]
        pb = part[b][part[b].seed == s].set_index("clip")[metric]
        if pa.index.has_duplicates or pb.index.has_duplicates:
            return None, None, f"seed {s}: a clip appears more than once for one system", note
        if set(pa.index) != set(pb.index):
            diff = len(set(pa.index) ^ set(pb.index))
            return None, None, (f"measured on different clips: seed {s} has {count(diff, 'clip')} that only "
                                f"one of {a}, {b} has"), note
        pa = pa.sort_index()            # the clips in one order, whatever the rows' order
        pb = pb.loc[pa.index]
        bad = int(pa.isna().sum() + pb.isna().sum())
        if bad:
            return None, None, (f"{count(bad, 'NaN value')} of {metric} (seed {s}: {int(pa.isna().sum())} of {a}, "
                                f"{int(pb.isna().sum())} of {b})"), note
        pairs[s] = (pa.to_numpy(float), pb.to_numpy(float))
    return common, pairs, "", note


def paired_difference(table: pd.DataFrame, metric: str, a: str, b: str, *, level: float = 0.95,
                      seed: int = 0, n_boot: int = N_BOOT, higher_is_better: bool = False,
                      min_seeds: int = 2) -> PairedDifference:
    """The difference a − b of ``metric`` on paired clips, with its hierarchical bootstrap interval.

    ``table`` is tidy: columns ``system``, ``seed``, ``clip`` and ``metric``, one row per
    system, seed and clip. Pairs are the (seed, clip) rows both systems have on the seeds they
    share (seeds only one has are named in ``note``); within a shared seed both must have the
    same clips. ``higher_is_better`` says which way ``prob_improvement`` counts. Fewer than
    ``min_seeds`` shared seeds (the seeds are the unit of replication), clips that differ, or
    NaN values give a result with ``computable=False`` and the reason. Module doc for the fields.
    """
    _check_table(table, metric)
    level = _check_level(level)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ParameterError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 1:
        raise ParameterError(f"min_seeds must be an integer >= 1, got {min_seeds!r}")
    seeds, pairs, reason, note = _paired_values(table, metric, a, b)
    if reason:
        return _not_computable(metric, a, b, level, higher_is_better, reason, note=note)
    all_a = np.concatenate([pairs[s][0] for s in seeds])
    all_b = np.concatenate([pairs[s][1] for s in seeds])
    known = dict(mean_a=float(all_a.mean()), mean_b=float(all_b.mean()), n_seeds=len(seeds),
                 n_pairs=len(all_a), seeds=tuple(s.item() if isinstance(s, np.generic) else s for s in seeds), note=note,
                 estimate=float((all_a - all_b).mean()))
    if len(seeds) < min_seeds:
        return _not_computable(metric, a, b, level, higher_is_better,
                               f"{count(len(seeds), 'seed')} in common; an interval over seeds needs at least {min_seeds}",
                               **known)
    sign = 1.0 if higher_is_better else -1.0
    groups = []
    for s in seeds:
        va, vb = pairs[s]
        better = 0.5 * (1 + np.sign(sign * (va - vb)))                 # 1 better, 0.5 tie, 0 worse
        groups.append(np.column_stack([va - vb, va, vb, better]))
    boot = hierarchical_means(groups, n_boot=n_boot, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = boot[:, 1] / boot[:, 2]
    t = p = t_s = p_s = NAN
    if len(all_a) >= 2 and _varies(all_a - all_b):
        res = stats.ttest_rel(all_a, all_b)
        t, p = float(res.statistic), float(res.pvalue)
    means = np.array([[pairs[s][0].mean(), pairs[s][1].mean()] for s in seeds])
    if len(seeds) >= 2 and _varies(means[:, 0] - means[:, 1]):
        res = stats.ttest_rel(means[:, 0], means[:, 1])
        t_s, p_s = float(res.statistic), float(res.pvalue)
    low, high = _interval(boot[:, 0], level)
    r_low, r_high = _interval(ratios, level) if abs(known["mean_b"]) > 0 else (NAN, NAN)
    prob_low, prob_high = _interval(boot[:, 3], level)
    return PairedDifference(
        metric=metric, a=a, b=b, level=level, higher_is_better=higher_is_better, low=low, high=high,
        ratio=known["mean_a"] / known["mean_b"] if known["mean_b"] else NAN, ratio_low=r_low, ratio_high=r_high,
        prob_improvement=float(np.concatenate([g[:, 3] for g in groups]).mean()),
        prob_low=prob_low, prob_high=prob_high, p_boot=_p_two_sided(boot[:, 0]),
        t=t, p=p, t_seeds=t_s, p_seeds=p_s, **known)


def mean_interval(table: pd.DataFrame, metric: str, system: str, *, level: float = 0.95, seed: int = 0,
                  n_boot: int = N_BOOT) -> dict:
    """One system's mean of ``metric`` with its hierarchical bootstrap interval.

    Returns ``{"system", "estimate", "low", "high", "n_seeds", "n_clips", "computable", "reason"}``;
    NaN values or a missing system make it not computable (with the reason); one seed gives
    an interval over its clips only, and ``reason`` says so.

    Example:
        >>> t = pd.DataFrame({"system": "A2E", "seed": [1, 1, 2, 2], "clip": [0, 1, 0, 1],
        ...                   "tau": [0.5, 0.7, 0.6, 0.6]})
        >>> r = mean_interval(t, "tau", "A2E")
        >>> r["estimate"], r["n_seeds"], r["low"] <= 0.6 <= r["high"]
        (0.6, 2, True)
    """
    _check_table(table, metric)
    level = _check_level(level)
    part = table[table.system == system]
    out = {"system": system, "estimate": NAN, "low": NAN, "high": NAN, "n_seeds": int(part.seed.nunique()),
           "n_clips": len(part), "computable": False, "reason": ""}
    if not len(part):
        return {**out, "reason": f"no rows for {system!r}"}
    if part[metric].isna().any():
        return {**out, "reason": f"{count(int(part[metric].isna().sum()), 'NaN value')} of {metric}"}
    groups = [g[metric].to_numpy(float)[:, None] for _, g in part.groupby("seed", sort=True)]
    boot = hierarchical_means(groups, n_boot=n_boot, seed=seed)[:, 0]
    low, high = _interval(boot, level)
    note = "one seed: the interval is over its clips only" if len(groups) == 1 else ""
    return {**out, "estimate": float(part[metric].mean()), "low": low, "high": high, "computable": True,
            "reason": note}


def seeds_needed(estimate: float, half_width: float, n_seeds: int, *, level: float = 0.95,
                 power: float = 0.8) -> float:
    """Seeds that would resolve a difference of ``estimate`` with probability ``power``.

    The interval's half-width shrinks as 1/√seeds (seed-to-seed variance dominates a study like
    this one); a normal approximation asks for a half-width of |estimate| · z_level /
    (z_level + z_power). Returns a whole number of seeds (at least 2), ``inf`` for a zero
    difference and NaN when the inputs are not finite.

    Example:
        >>> seeds_needed(0.1, 0.2, 3)   # half-width 0.2 must become 0.1 x 1.96 / 2.80 = 0.07: (0.2/0.07)^2 x 3
        25.0
        >>> seeds_needed(0.5, 0.1, 10)
        2.0
    """
    level, power = _check_level(level), _check_level(power)
    if not (np.isfinite(estimate) and np.isfinite(half_width) and np.isfinite(n_seeds)) or n_seeds < 1:
        return NAN
    if estimate == 0:
        return math.inf
    z = stats.norm.ppf(1 - (1 - level) / 2)
    target = abs(estimate) * z / (z + stats.norm.ppf(power))
    return float(max(2, math.ceil(n_seeds * (half_width / target) ** 2)))



def independent_difference(x, y, *, level: float = 0.95, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """mean(x) − mean(y) of two independent samples with its percentile bootstrap interval
    (:func:`scipy.stats.bootstrap`, which does this one-level case; nothing is paired here).

    Returns ``{"estimate", "low", "high", "level", "n_x", "n_y"}``.

    Example:
        >>> r = independent_difference([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        >>> r["estimate"], r["low"] < -1 < r["high"] < 1.5
        (-1.0, True)
    """
    level = _check_level(level)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or len(y) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ParameterError(f"independent_difference needs two samples of at least 2 finite values, "
                             f"got {len(x)} and {len(y)}")
    res = stats.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis=axis) - b.mean(axis=axis),
                          n_resamples=n_boot, confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed), vectorized=True)
    return {"estimate": float(x.mean() - y.mean()), "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high), "level": level, "n_x": len(x), "n_y": len(y)}
