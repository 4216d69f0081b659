"""Systems side by side: one row per trained model, then mean and spread over seeds per system.

The extension chapters (Explanations, Attributions) compare every system they train with the
paper's on the same footing. :func:`per_model` gives one row per trained model:

- ``avg_r``, ``mae``: clean accuracy on a split (:meth:`mer_lib.training.TrainedModel.evaluate`);
- ``delta_mae``, ``mae_final``: from an attack table, as the Robustness chapter and the paper's
  Figure 3 compute it (:func:`mer_lib.published.per_run`: the mean final-prediction MAE of the
  attacked clips minus the clean MAE);
- ``nf``, ``stability``: from explanation tables (:func:`mer_lib.explain.report.explanation_table`),
  means over clips and emotions;
- ``topk_intersection``, ``kendall_tau``: from attribution tables
  (:func:`mer_lib.attributions.report.attribution_table`: IG maps before and after the top-k
  attribution attack), means over clips and emotions;
- ``epochs`` and ``epoch_seconds``: the mean wall time of a training epoch, validation
  included, *as recorded when the model was trained* (whatever else the machine was doing);
- ``system`` (the variant's display label), ``seed``, ``model_key``, ``c`` (the objective's
  ``c`` option, NaN when it has none) and ``fine_tuned`` (trained from a stored model).

Rows are matched to attack and explanation tables by ``model_key``, so two models of the same
variant and seed (a sweep over ``c``) stay apart. :func:`per_system` averages per system
(mean, std over seeds with ddof 1) and :func:`spread_text` formats ``mean ± std`` for tables.
:func:`attack_tables`, :func:`explanation_tables` and :func:`attribution_tables` compute (or read
from the store) the tables of any set of models. :func:`grand_table` is the study's overview:
one row per system with every column above as ``mean ± std`` and the training cost per epoch.

Training cost is better compared in one process than from recorded histories (models trained
at different times share the machine with different neighbours): :func:`mer_lib.step_costs.step_costs`
times each system's own training step beside a reference system's, and :func:`grand_table` shows
the cost of an average epoch's step relative to it.

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"variant": ["a2e", "a2e", "expof_a2e"], "seed": [6, 21, 6],
    ...                      "nf": [1.0, 3.0, 0.5]})
    >>> s = per_system(rows, ["nf"])
    >>> s.loc["a2e", "system"], float(s.loc["a2e", "nf_mean"]), round(float(s.loc["a2e", "nf_std"]), 4)
    ('A2E', 2.0, 1.4142)
    >>> s.seeds.tolist()
    [2, 1]
    >>> spread_text(s, "nf", digits=2).tolist()
    ['2 ± 1.4', '0.5']
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import summaries
from .errors import ParameterError
from .models import get_variant
from .attacks.results import get_attack
from .explain.report import explanation_table
from .attributions.report import attribution_table
from .published import per_run

#: The columns :func:`per_model` can fill, in table order.
COLUMNS = ("avg_r", "mae", "delta_mae", "mae_final", "nf", "stability", "topk_intersection", "kendall_tau",
           "epochs", "epoch_seconds")
#: The columns of :func:`grand_table` and their headers, in order.
GRAND_COLUMNS = {"avg_r": "avg r", "mae": "MAE", "delta_mae": "ΔMAE (projected)",
                 "topk_intersection": "top-k ∩", "kendall_tau": "Kendall τ", "nf": "NF", "stability": "S"}


def system_label(variant: str) -> str:
    """The display name of a variant (``"aa2e"`` -> ``"aA2E"``, ``"expof_a2e"`` -> ``"ExpO-F-A2E"``)."""
    return get_variant(variant).label


def model_list(models) -> list:
    """Trained models from a ``{(variant, seed): model}`` mapping or an iterable of models."""
    items = list(models.values()) if isinstance(models, Mapping) else list(models)
    for m in items:
        if not (hasattr(m, "model") and hasattr(m, "key") and hasattr(m, "config")):
            raise ParameterError(f"models must be trained models (with .model, .key, .config), "
                                 f"got {type(m).__name__}")
    return items


def attack_tables(models, data, config, *, split: str = "test", run_dir: str | Path,
                  device: str | torch.device | None = None) -> pd.DataFrame:
    """The per-clip attack tables of ``models`` under one attack configuration, concatenated.

    Each table is read from the store or computed and stored
    (:func:`mer_lib.attacks.results.get_attack`).
    """
    items = model_list(models)
    if not items:
        raise ParameterError("attack_tables needs at least one model")
    return pd.concat([get_attack(m, data, config, split=split, run_dir=run_dir, device=device,
                                 progress=False).table for m in items], ignore_index=True)


def explanation_tables(models, data, config, *, split: str = "test", run_dir: str | Path,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """The NF/S tables (:func:`mer_lib.explain.report.explanation_table`) of ``models``, concatenated."""
    items = model_list(models)
    if not items:
        raise ParameterError("explanation_tables needs at least one model")
    return pd.concat([explanation_table(m, data, config, split=split, run_dir=run_dir, device=device)
                      for m in items], ignore_index=True)


def attribution_tables(models, data, config, *, split: str = "test", run_dir: str | Path,
                       device: str | torch.device | None = None) -> pd.DataFrame:
    """The attribution-robustness tables (:func:`mer_lib.attributions.report.attribution_table`)
    of ``models`` under one :class:`~mer_lib.attributions.report.AttributionConfig`, concatenated."""
    items = model_list(models)
    if not items:
        raise ParameterError("attribution_tables needs at least one model")
    return pd.concat([attribution_table(m, data, config, split=split, run_dir=run_dir, device=device)
                      for m in items], ignore_index=True)


def per_model(models, data, *, split: str = "test", attacks: pd.DataFrame | None = None,
              explanations: pd.DataFrame | None = None,
              attributions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trained model: clean accuracy, ΔMAE, NF/S, top-k intersection/tau and
    recorded epoch time (module doc).

    ``attacks``/``explanations``/``attributions`` are tables with a ``model_key`` column
    (those of :func:`attack_tables` / :func:`explanation_tables` / :func:`attribution_tables`);
    without them, or for a model they lack, the columns are NaN.
    """
    items = model_list(models)
    rows = []
    for m in items:
        metrics = m.evaluate(data, split)
        hist = m.history
        seconds = float(hist["seconds"].mean()) if len(hist) and "seconds" in hist else float("nan")
        c = (m.config.objective_options or {}).get("c", float("nan"))
        rows.append({"variant": m.config.variant, "system": system_label(m.config.variant),
                     "seed": int(m.config.seed), "model_key": str(m.key), "c": float(c),
                     "fine_tuned": getattr(m.config, "init_from", None) is not None,
                     "avg_r": float(metrics["avg_r"]), "mae": float(metrics["mae"]),
                     "epochs": len(hist), "epoch_seconds": seconds})
    out = pd.DataFrame(rows)
    out["delta_mae"] = out["mae_final"] = np.nan
    if attacks is not None and len(attacks):
        _require(attacks, "attacks", ["model_key"])
        for key, part in attacks.groupby("model_key", sort=False):
            run = per_run(part).iloc[0]
            out.loc[out.model_key == key, ["delta_mae", "mae_final"]] = [run.delta_mae, run.mae_final]
    _fill_means(out, explanations, "explanations", ["nf", "stability"])
    _fill_means(out, attributions, "attributions", ["topk_intersection", "kendall_tau"])
    fixed = ["variant", "system", "seed", "model_key", "c", "fine_tuned"]
    return out[fixed + list(COLUMNS)]


def _fill_means(out: pd.DataFrame, table: pd.DataFrame | None, name: str, columns: list[str]) -> None:
    """Set ``out[columns]`` to the per-model means of ``table`` (matched by model key; NaN elsewhere)."""
    for col in columns:
        out[col] = np.nan
    if table is None or not len(table):
        return
    _require(table, name, ["model_key", *columns])
    means = table.groupby("model_key")[columns].mean()
    known = out.model_key.isin(means.index)
    out.loc[known, columns] = means.loc[out.model_key[known], columns].to_numpy()


def per_system(table: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Per system (index: variant, in first-seen order): ``system``, ``<col>_mean``, ``<col>_std``
    (over seeds, ddof 1; NaN for one seed) for each of ``columns`` (default: those of
    :data:`COLUMNS` present), and ``seeds`` (:func:`mer_lib.summaries.per_system`)."""
    _require(table, "table", ["variant", "seed"])
    columns = [c for c in COLUMNS if c in table] if columns is None else list(columns)
    _require(table, "table", columns)
    return summaries.per_system(table, columns)


def spread_text(summary: pd.DataFrame, column: str, digits: int = 3) -> pd.Series:
    """``"mean ± std"`` strings (``digits`` significant digits; the mean alone without a spread)."""
    m, s = summary[f"{column}_mean"], summary[f"{column}_std"]
    return pd.Series([f"{a:.{digits}g} ± {b:.2g}" if np.isfinite(b) else f"{a:.{digits}g}"
                      for a, b in zip(m, s)], index=summary.index, name=column)


def grand_table(systems: pd.DataFrame, costs: pd.DataFrame | None = None, *,
                columns: Mapping[str, str] | None = None, digits: int = 3) -> pd.DataFrame:
    """The overview of every system: ``mean ± std`` over seeds of each column, and the epoch cost.

    ``systems`` is a :func:`per_system` table; ``costs`` a :func:`step_costs` table (its
    ``epoch_cost`` becomes the last column, ``"–"`` for a system it lacks). ``columns`` maps
    per-system columns to headers (default :data:`GRAND_COLUMNS`; those absent from
    ``systems`` are left out). Index: the systems' display names; first column ``seeds``.

    Example:
        >>> rows = pd.DataFrame({"variant": ["a2e", "a2e", "aa2e"], "seed": [6, 21, 6],
        ...                      "avg_r": [0.6, 0.8, 0.5], "kendall_tau": [0.2, 0.4, 0.5]})
        >>> costs = pd.DataFrame({"epoch_cost": [1.0]}, index=["a2e"])
        >>> grand_table(per_system(rows, ["avg_r", "kendall_tau"]), costs).to_dict("index")["A2E"]
        {'seeds': 2, 'avg r': '0.7 ± 0.14', 'Kendall τ': '0.3 ± 0.14', 'epoch cost (× A2E)': '1.00'}
    """
    columns = dict(GRAND_COLUMNS if columns is None else columns)
    _require(systems, "systems", ["system", "seeds"])
    out = pd.DataFrame({"seeds": systems.seeds.astype(int)}, index=systems.index)
    for col, header in columns.items():
        if f"{col}_mean" in systems:
            out[header] = spread_text(systems, col, digits)
    if costs is not None:
        _require(costs, "costs", ["epoch_cost"])
        cost = costs.epoch_cost.reindex(systems.index)
        out["epoch cost (× A2E)"] = [f"{v:.2f}" if np.isfinite(v) else "–" for v in cost]
    out.index = systems.system.tolist()
    out.index.name = "system"
    return out


def _require(table: pd.DataFrame, name: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ParameterError(f"{name} lacks column(s) {missing}; expected the tables of "
                             f"mer_lib.comparison.attack_tables / explanation_tables / per_model")
