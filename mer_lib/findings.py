"""The book's comparative statements, decided by intervals: tidy tables, decision rules, words.

Every comparison a chapter states ("A2M2E's ΔMAE is lower than A2E's") comes from this module,
never from two means: :func:`decide` runs :func:`mer_lib.stats.paired_difference` for each pair
of systems and **resolves** a comparison only when its interval excludes 0 at the level
corrected for the number of comparisons of that table (Bonferroni: ``1 - (1 - level) / m``,
so a table of 8 comparisons uses 99.375 % intervals). Otherwise the run *does not resolve* it,
and the text says so with the interval; a comparison that cannot be made (different clips,
NaN values, too few seeds) says why. :func:`sentence`, :func:`word` and :func:`summary` turn
decisions into words and :func:`power_note` into the chapter's power statement
(:mod:`mer_lib.claims` answers the paper's three claims with them).

The per-clip tidy tables (columns ``system, variant, seed, clip`` and metrics) are built from
the stored tables by :func:`attack_clips` (ΔMAE, relative ΔMAE, adversarial and clean MAE),
:func:`quality_clips` (explanation and attribution tables: means over emotions per clip) and
:func:`model_rows` (per-model values such as avg r or epoch time: one "clip" per model).

Example:
    >>> rows = [{"system": s, "variant": s.lower(), "seed": seed, "clip": c,
    ...          "delta_mae": base + 0.01 * c + 0.1 * seed}
    ...         for s, base in (("A2E", 1.0), ("A2M2E", 0.5), ("A2B2E", 1.0))
    ...         for seed in (1, 2, 3) for c in range(5)]
    >>> d = decide(pd.DataFrame(rows), "delta_mae", [("A2M2E", "A2E"), ("A2B2E", "A2E")])
    >>> d[["a", "b", "outcome", "m"]].values.tolist()
    [['A2M2E', 'A2E', 'lower', 2], ['A2B2E', 'A2E', 'unresolved', 2]]
    >>> sentence(d.iloc[0]).split(" (")[0]
    "A2M2E's ΔMAE is lower than A2E's: more robust"
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ParameterError
from .models import get_variant
from .layout import page_figure
from .plots import show_intervals
from .stats import N_BOOT, independent_difference, mean_interval, paired_difference, seeds_needed


@dataclass(frozen=True)
class Metric:
    """How a metric reads: its label, which direction is better, and the words for each side."""

    label: str
    higher_is_better: bool
    better: str
    worse: str


METRICS = {
    "delta_mae": Metric("ΔMAE", False, "more robust", "less robust"),
    "rel_delta_mae": Metric("ΔMAE / MAE", False, "more robust", "less robust"),
    "mae_final": Metric("adversarial MAE", False, "more robust", "less robust"),
    "mae": Metric("clean MAE", False, "more accurate", "less accurate"),
    "avg_r": Metric("avg r", True, "more accurate", "less accurate"),
    "nf": Metric("NF", False, "more faithful", "less faithful"),
    "stability": Metric("S", False, "more stable", "less stable"),
    "topk_intersection": Metric("top-k intersection", True, "more robust attributions", "less robust attributions"),
    "kendall_tau": Metric("Kendall τ", True, "more robust attributions", "less robust attributions"),
    "epoch_seconds": Metric("epoch time", False, "cheaper to train", "costlier to train"),
}


def metric(name: str) -> Metric:
    """The :class:`Metric` of ``name`` (a plain one, lower is better, for names it does not know)."""
    return METRICS.get(name, Metric(name, False, "better", "worse"))


def label(variant: str) -> str:
    """The display name of a variant; an unknown name (a published run) is kept as it is."""
    try:
        return get_variant(variant).label
    except ParameterError:
        return str(variant)


def _with_system(table: pd.DataFrame) -> pd.DataFrame:
    if "system" not in table:
        table = table.assign(system=table.variant.map(label))
    return table


def attack_clips(table: pd.DataFrame) -> pd.DataFrame:
    """Per clip of an attack table (this library's or the published logs): ``delta_mae``
    (final-prediction MAE − clean MAE), ``rel_delta_mae`` (the same over the model's mean clean
    MAE, so its mean is the model's ΔMAE / MAE), ``mae_final`` and ``mae`` (clean)."""
    _require(table, "attack table", ["variant", "seed", "example", "mae_clean", "mae_final"])
    out = _with_system(table)[["system", "variant", "seed", "example", "mae_clean", "mae_final"]]
    out = out.rename(columns={"example": "clip", "mae_clean": "mae"})
    out["delta_mae"] = out.mae_final - out.mae
    model_mae = out.groupby(["variant", "seed"]).mae.transform("mean")
    out["rel_delta_mae"] = out.delta_mae / model_mae
    return out.reset_index(drop=True)


def quality_clips(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per clip of explanation or attribution tables: each metric's mean over the emotions."""
    _require(table, "table", ["variant", "seed", "example", *metrics])
    keys = ["model_key"] if "model_key" in table else []
    out = (_with_system(table).groupby(["system", "variant", "seed", *keys, "example"], sort=False)[list(metrics)]
           .mean().reset_index().rename(columns={"example": "clip"}))
    return out


def model_rows(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per-model values (a :func:`mer_lib.comparison.per_model` table) as a tidy table with one
    ``clip`` ("model") per seed, so that the seeds alone are resampled."""
    _require(table, "table", ["variant", "seed", *metrics])
    return _with_system(table)[["system", "variant", "seed", *metrics]].assign(clip="model")


def cost_rows(models) -> pd.DataFrame:
    """Per trained model (a ``{key: model}`` mapping or models): its recorded mean epoch time, as a
    tidy table with one "clip" per model (``system, variant, seed, clip, epoch_seconds``)."""
    items = list(models.values()) if isinstance(models, dict) else list(models)
    rows = [{"variant": m.config.variant, "seed": int(m.config.seed),
             "epoch_seconds": float(m.history["seconds"].mean()) if len(m.history) else np.nan}
            for m in items]
    return model_rows(pd.DataFrame(rows, columns=["variant", "seed", "epoch_seconds"]), ["epoch_seconds"])


def decide(table: pd.DataFrame, metric_name: str, pairs: Iterable[tuple[str, str]], *, level: float = 0.95,
           family: int | None = None, seed: int = 0, n_boot: int = N_BOOT, min_seeds: int = 2) -> pd.DataFrame:
    """One row per pair ``(a, b)``: the paired difference a − b and what the run says of it.

    The interval (``low``, ``high``) is at the corrected level ``1 - (1 - level) / family``
    (``family`` defaults to the number of pairs: pass the size of the whole table when it
    holds several metrics). ``outcome`` is ``"lower"`` / ``"higher"`` (a's value against b's,
    resolved), ``"unresolved"`` or ``"not computable"``; ``better`` is True when a is on the
    metric's better side. Also: ``estimate``, ``ratio``, ``prob_improvement``, ``t``/``p`` (the
    paper's paired t-test over clips), ``p_seeds``, ``n_seeds``, ``n_pairs``, ``half_width``,
    ``seeds_needed`` (:func:`mer_lib.stats.seeds_needed` at the corrected level), ``reason``.
    """
    pairs = [tuple(p) for p in pairs]
    m = len(pairs) if family is None else family
    if not pairs or isinstance(m, bool) or not isinstance(m, int) or m < len(pairs):
        raise ParameterError(f"decide needs at least one pair and family >= the number of pairs, "
                             f"got {len(pairs)} pair(s) and family={family!r}")
    spec = metric(metric_name)
    corrected = 1 - (1 - level) / m
    rows = []
    for a, b in pairs:
        d = paired_difference(table, metric_name, a, b, level=corrected, seed=seed, n_boot=n_boot,
                              higher_is_better=spec.higher_is_better, min_seeds=min_seeds)
        if not d.computable:
            outcome = "not computable"
        elif d.low > 0:
            outcome = "higher"
        elif d.high < 0:
            outcome = "lower"
        else:
            outcome = "unresolved"
        better = None if outcome in ("not computable", "unresolved") else (outcome == "higher") == spec.higher_is_better
        needed = seeds_needed(d.estimate, d.half_width, d.n_seeds, level=corrected) if d.computable else np.nan
        rows.append({**d.to_dict(), "outcome": outcome, "better": better, "resolved": better is not None,
                     "m": m, "seeds_needed": needed, "label": spec.label})
    out = pd.DataFrame(rows)
    out["better"] = pd.Series([r["better"] for r in rows], dtype=object)    # True / False / None, never numpy
    return out


def system_intervals(table: pd.DataFrame, metric_name: str, systems: Sequence[str] | None = None, *,
                     level: float = 0.95, seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Each system's mean of a metric with its hierarchical bootstrap interval (one row each,
    columns of :func:`mer_lib.stats.mean_interval` plus ``label``, the system's name)."""
    systems = list(dict.fromkeys(table.system)) if systems is None else list(systems)
    rows = [mean_interval(table, metric_name, s, level=level, seed=seed, n_boot=n_boot) for s in systems]
    return pd.DataFrame(rows).assign(label=systems, metric=metric_name)


def interval_figure(table: pd.DataFrame, metric_name: str, decisions: pd.DataFrame, *,
                    systems: Sequence[str] | None = None, unit: str = ""):
    """Two panels: each system's mean with its 95 % interval, and each decision's difference a − b
    with its corrected interval (blue: resolved better, red: resolved worse, grey:
    unresolved). Returns the figure."""

    spec = metric(metric_name)
    means = system_intervals(table, metric_name, systems)
    diffs = decisions.assign(label=[f"{a} − {b}" for a, b in zip(decisions.a, decisions.b)],
                             outcome=["unresolved" if r.better is None else "better" if r.better else "worse"
                                      for r in decisions.itertuples()])
    # one panel above the other, each as wide as the page: long labels ("ExpO-F-A2E − A2E") fit
    fig, axes = page_figure(2, 1, height=1.5 + 0.3 * (len(means) + len(diffs)),
                            gridspec_kw={"height_ratios": [max(1, len(means)), max(1, len(diffs))]})
    show_intervals(axes[0], means, xlabel=f"{spec.label}{unit}",
                   title=f"{spec.label}: mean over seeds and clips, 95 % interval")
    level = 100 * decisions.level.iloc[0] if len(decisions) else 95
    show_intervals(axes[1], diffs, zero=True, xlabel=f"difference of {spec.label}{unit}",
                   title=f"differences, {level:.3g} % interval (corrected)")
    return fig


def split_balance(values: pd.DataFrame, first, second, *, level: float = 0.95, seed: int = 0,
                  n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per column of ``values`` (rows: clips): mean over the rows ``first`` − mean over ``second``
    (independent samples, :func:`mer_lib.stats.independent_difference`), at the level corrected
    over the columns; ``outcome`` ``"higher"``/``"lower"`` when the interval excludes 0, else
    ``"unresolved"``. For the Data chapter's question: do the splits differ in their ratings?"""
    corrected = 1 - (1 - level) / max(1, values.shape[1])
    rows = []
    for col in values.columns:
        r = independent_difference(values[col].to_numpy()[first], values[col].to_numpy()[second],
                                   level=corrected, seed=seed, n_boot=n_boot)
        outcome = "higher" if r["low"] > 0 else "lower" if r["high"] < 0 else "unresolved"
        rows.append({"label": col, **r, "outcome": outcome, "m": values.shape[1]})
    return pd.DataFrame(rows)


def fmt(v: float, digits: int = 2) -> str:
    """A number for prose: ``digits`` significant digits, "–" for NaN."""
    return "–" if not np.isfinite(v) else f"{v:.{digits}g}"


def interval_text(row) -> str:
    """``"difference −0.21, 99.4 % CI [−0.3, −0.12]"`` of a :func:`decide` row."""
    return (f"difference {fmt(row['estimate'])}, {100 * row['level']:.3g} % CI "
            f"[{fmt(row['low'])}, {fmt(row['high'])}]")


def word(row) -> str:
    """The decision as a predicate for prose ("its explanations are ___ (compared with A2E's)"):
    the metric's better/worse word with the interval, "not resolvably different in this run
    (…)", or "not comparable in this run (reason)"."""
    spec = metric(row["metric"])
    if row["outcome"] == "not computable":
        return f"not comparable in this run ({row['reason']})"
    if row["outcome"] == "unresolved":
        return f"not resolvably different in this run ({interval_text(row)}, which includes 0)"
    return f"{spec.better if row['better'] else spec.worse} ({interval_text(row)})"


def pick(decisions: pd.DataFrame, a: str, b: str, metric_name: str):
    """The row of ``decisions`` for (a, b, metric), or a not-computable row when it is absent."""
    hit = decisions[(decisions.a == a) & (decisions.b == b) & (decisions.metric == metric_name)]
    if len(hit):
        return hit.iloc[0]
    return pd.Series({"metric": metric_name, "a": a, "b": b, "outcome": "not computable", "better": None,
                      "reason": f"{a} or {b} is not part of this run", "estimate": np.nan, "low": np.nan,
                      "high": np.nan, "level": np.nan, "m": 0, "seeds_needed": np.nan})


def sentence(row) -> str:
    """One comparison as a sentence of the book (the decision of :func:`decide`, in words)."""
    spec = metric(row["metric"])
    a, b, what = row["a"], row["b"], spec.label
    if row["outcome"] == "not computable":
        return f"{a}'s and {b}'s {what} cannot be compared in this run: {row['reason']}."
    if row["outcome"] == "unresolved":
        need = row["seeds_needed"]
        more = (f"; about {int(need)} seeds would be needed to resolve a difference this large"
                if np.isfinite(need) else "")
        return (f"This run does not resolve whether {a}'s {what} differs from {b}'s ({interval_text(row)}, "
                f"which includes 0{more}).")
    side = spec.better if row["better"] else spec.worse
    return (f"{a}'s {what} is {row['outcome']} than {b}'s: {side} ({interval_text(row)}, corrected over "
            f"{row['m']} comparisons).")


def summary(decisions: pd.DataFrame) -> str:
    """A table's decisions as prose: each resolved comparison as a :func:`sentence`, the
    unresolved ones in one list with their intervals, the not computable ones with the reason."""
    parts = [sentence(r) for _, r in decisions.iterrows() if r["resolved"]]
    open_ = decisions[decisions.outcome == "unresolved"]
    if len(open_):
        items = "; ".join(f"{r.a} − {r.b} on {r.label}: {fmt(r.estimate)} [{fmt(r.low)}, {fmt(r.high)}]"
                          for r in open_.itertuples())
        parts.append(f"Not resolved by this run (difference and {100 * open_.level.iloc[0]:.3g} % interval, "
                     f"each including 0): {items}.")
    blocked = decisions[decisions.outcome == "not computable"]
    for reason, group in blocked.groupby("reason", sort=False):     # one sentence per reason
        if len(group) == 1:
            parts.append(sentence(group.iloc[0]))
        else:
            items = ", ".join(f"{r.a} vs {r.b} on {r.label}" for r in group.itertuples())
            parts.append(f"These comparisons cannot be made in this run: {items} ({reason}).")
    return " ".join(parts)


def list_systems(decisions: pd.DataFrame, *, better: bool = True) -> list[str]:
    """The ``a`` systems resolved on the better (or worse) side of their ``b``."""
    return [r.a for r in decisions.itertuples() if r.better is not None and bool(r.better) == better]


def power_note(decisions: pd.DataFrame) -> str:
    """The chapter's power statement: interval half-widths achieved, seeds and clips, and how many
    seeds the run's own variance says the largest unresolved difference would need."""
    ok = decisions[decisions.outcome != "not computable"]
    if not len(ok):
        return "No comparison of this table could be computed, so it has no power statement."
    seeds = sorted(set(ok.n_seeds))
    text = (f"The intervals here rest on {' or '.join(map(str, seeds))} seeds and {int(ok.n_pairs.min())}–"
            f"{int(ok.n_pairs.max())} paired values per comparison; their half-widths are "
            f"{fmt(ok.half_width.min())}–{fmt(ok.half_width.max())} (corrected level "
            f"{100 * ok.level.iloc[0]:.3g} %).")
    open_ = ok[ok.outcome == "unresolved"]
    if len(open_):
        biggest = open_.loc[open_.estimate.abs().idxmax()]
        text += (f" {len(open_)} of {len(ok)} comparisons are not resolved; the largest of them "
                 f"({biggest.a} vs {biggest.b} on {biggest.label}, difference {fmt(biggest.estimate)}) would need "
                 f"about {fmt(biggest.seeds_needed, 3)} seeds for an 80 % chance of resolving it, if the "
                 f"seed-to-seed spread stays as in this run.")
    else:
        text += f" All {len(ok)} computable comparisons are resolved."
    return text


def flips(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """The comparisons resolved in opposite directions by two runs (rows matched by metric, a, b)."""
    keys = ["metric", "a", "b"]
    both = first[keys + ["outcome"]].merge(second[keys + ["outcome"]], on=keys, suffixes=("_1", "_2"))
    resolved = both.outcome_1.isin(["lower", "higher"]) & both.outcome_2.isin(["lower", "higher"])
    return both[resolved & (both.outcome_1 != both.outcome_2)].reset_index(drop=True)


def _require(table: pd.DataFrame, name: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ParameterError(f"{name} lacks column(s) {missing}")
