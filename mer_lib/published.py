"""The paper's own numbers: read off the paper, and recomputed from its published attack logs.

Hoedt, Flexer & Widmer (SMC 2025) published the 50 attack logs behind their Table 1,
Figure 3 and t-tests (10 seeds x 5 systems, 36 test clips each). They ship with mer_lib as
package data (``mer_lib/reference_data/``, MIT, with the source and its licence), so the
chapters can show the paper's numbers per system *from the data* beside this run's.

The statistics are computed the way the reference's ``analysis/compute_performance.py``
does, by functions that take any tidy attack table — the shipped logs
(:func:`published_logs`) or this library's (:func:`mer_lib.attacks.run_attack`) — with the
columns ``variant, seed, example, true_<e>, clean_<e>, mae_clean, mae_final``:

- :func:`per_run`: per model (variant, seed): clean ``avg_r`` (mean over the 8 emotions of
  the Pearson r across the clips) and ``mae``, the final-prediction ``mae_final`` and
  ``delta_mae = mae_final - mae``;
- :func:`table1`: per system, mean and std over seeds (population std, as numpy's default)
  of ``avg_r`` and ``mae``, and the median over seeds of ``delta_mae`` (Figure 3);
- :func:`paired_ttests`: paired t-tests on the per-clip final-prediction MAE, pairs matched
  by (seed, clip): A2E vs A2M2E and A2B2E vs A2M2E.

Example:
    >>> TABLE1["a2e"]["avg_r"]
    (0.73, 0.02)
    >>> t = table1(published_logs())
    >>> round(float(t.loc["a2e", "avg_r_mean"]), 4), round(float(t.loc["a2e", "delta_mae_median"]), 3)
    (0.7324, 1.618)
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
from scipy import stats

from .datasets import EMOTIONS
from .errors import DataLayoutError
from .metrics import ConstantColumnWarning, evaluate
from .attacks.reference_logs import read_reference_logs

#: Table 1: clean test set, mean and std over 10 seeds; (mean, std) pairs, as printed.
TABLE1 = {
    "a2e": {"avg_r": (0.73, 0.02), "mae": (0.10, 0.01)},
    "a2b2e": {"avg_r": (0.70, 0.02), "mae": (0.11, 0.01)},
    "a2m2e": {"avg_r": (0.67, 0.02), "mae": (0.11, 0.01)},
    "aa2e": {"avg_r": (0.67, 0.03), "mae": (0.10, 0.00)},
    "aa2b2e": {"avg_r": (0.66, 0.03), "mae": (0.10, 0.00)},
}

#: Table 1's rows of the original models of Chowdhury et al. (2019): average r only.
TABLE1_ORIGINAL = {"a2e": 0.76, "a2m2e": 0.75}

#: Fig. 3: medians of ΔMAE = MAE(adversarial) − MAE(clean) over seeds, read off the plot
#: (reference attack: its ε-clip was a no-op). :func:`table1` recomputes them from the logs.
FIG3_DELTA_MAE_MEDIAN = {"a2e": 1.6, "a2b2e": 1.5, "aa2e": 1.0, "aa2b2e": 1.0, "a2m2e": 1.0}

#: Display names of the variants as the paper writes them.
DISPLAY_NAMES = {"a2e": "A2E", "a2b2e": "A2B2E", "a2m2e": "A2M2E", "aa2e": "aA2E", "aa2b2e": "aA2B2E"}


def table1_text(variant: str, column: str) -> str:
    """Table 1's cell as the paper prints it (``"0.73 ± 0.02"``); ``"–"`` for a system it does not have.

    >>> table1_text("a2e", "avg_r"), table1_text("expof_a2e", "mae")
    ('0.73 ± 0.02', '–')
    """
    return "{:.2f} ± {:.2f}".format(*TABLE1[variant][column]) if variant in TABLE1 else "–"


#: The paper's t-tests: black boxes against the interpretable A2M2E.
TTEST_PAIRS = (("a2e", "a2m2e"), ("a2b2e", "a2m2e"))

#: The shipped data: the published logs, the run -> system map, their licence and source.
REFERENCE_DATA = Path(__file__).resolve().parent / "reference_data"
PUBLISHED_LOGS = REFERENCE_DATA / "published_logs"
EXPERIMENTS_MAP = REFERENCE_DATA / "experiments_map.json"


def experiments_map(path: str | Path = EXPERIMENTS_MAP) -> dict[str, list[str]]:
    """``{system: [run-name prefix, ...]}`` from a JSON file (default: the paper's)."""
    path = Path(path)
    try:
        mapping = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataLayoutError(f"experiments map not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataLayoutError(f"{path}: not a JSON file ({err})") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(r, str) for r in v)
            for k, v in mapping.items()):
        raise DataLayoutError(f"{path}: expected a JSON object {{system: [run prefix, ...]}}")
    return mapping


def system_of_runs(runs, mapping: dict[str, list[str]]) -> dict[str, str | None]:
    """Map run folder names to systems: a run belongs to the system whose prefix starts it.

    A prefix that matches no run or several runs is an error (it would silently drop or
    double-count a seed); runs no prefix matches get None.
    """
    runs = sorted(set(runs))
    out: dict[str, str | None] = {r: None for r in runs}
    for system, prefixes in mapping.items():
        for prefix in prefixes:
            hits = [r for r in runs if r.startswith(prefix)]
            if len(hits) != 1:
                raise DataLayoutError(
                    f"experiments map: run prefix {prefix!r} of system {system!r} matches "
                    f"{len(hits)} run folders ({hits[:3]}), expected exactly one")
            out[hits[0]] = system
    return out


def published_logs(folder: str | Path | None = None,
                   mapping: dict[str, list[str]] | str | Path | None = None) -> pd.DataFrame:
    """The attack logs of ``folder`` (default: the paper's, shipped) as one tidy table.

    Columns of :func:`mer_lib.attacks.read_reference_logs` (``run, seed, example, ...``)
    plus ``variant`` from ``mapping`` (a dict or a JSON file; default: ``folder``'s
    ``../experiments_map.json`` if it exists, else the paper's map for the shipped logs and
    no map otherwise, which leaves ``variant`` as None).
    """
    folder = PUBLISHED_LOGS if folder is None else Path(folder)
    logs = read_reference_logs(folder)
    if mapping is None:
        beside = folder.parent / "experiments_map.json"
        mapping = beside if beside.is_file() else None
    if isinstance(mapping, (str, Path)):
        mapping = experiments_map(mapping)
    systems = system_of_runs(logs.run, mapping) if mapping else {r: None for r in logs.run}
    logs.insert(2, "variant", logs.run.map(systems))
    return logs


def _per_model_row(part: pd.DataFrame) -> dict:
    true = part[[f"true_{e}" for e in EMOTIONS]].to_numpy()
    clean = part[[f"clean_{e}" for e in EMOTIONS]].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantColumnWarning)
        m = evaluate(clean, true)
    return {"avg_r": m["avg_r"], "mae": m["mae"], "mae_final": float(part.mae_final.mean()),
            "n_clips": len(part)}


def per_run(table: pd.DataFrame) -> pd.DataFrame:
    """Per model (variant, seed): clean ``avg_r``, ``mae``; ``mae_final``; ``delta_mae``."""
    _require(table, ["variant", "seed", "mae_final"] + [f"{p}_{e}" for p in ("true", "clean")
                                                         for e in EMOTIONS])
    rows = [{"variant": v, "seed": s, **_per_model_row(part)}
            for (v, s), part in table.groupby(["variant", "seed"], sort=False)]
    out = pd.DataFrame(rows)
    out["delta_mae"] = out.mae_final - out.mae
    return out


def table1(table: pd.DataFrame) -> pd.DataFrame:
    """Per system (index: variant): ``avg_r_mean/std``, ``mae_mean/std``, ``delta_mae_median``,
    ``n_seeds`` — Table 1 and the medians of Figure 3 (std over seeds with ddof 0)."""
    runs = per_run(table)
    g = runs.groupby("variant", sort=False)
    out = pd.DataFrame({
        "avg_r_mean": g.avg_r.mean(), "avg_r_std": g.avg_r.std(ddof=0),
        "mae_mean": g.mae.mean(), "mae_std": g.mae.std(ddof=0),
        "delta_mae_median": g.delta_mae.median(), "n_seeds": g.size(),
    })
    order = [v for v in DISPLAY_NAMES if v in out.index] + [v for v in out.index if v not in DISPLAY_NAMES]
    return out.loc[order]


def paired_ttests(table: pd.DataFrame, pairs=TTEST_PAIRS) -> pd.DataFrame:
    """Paired t-tests on the per-clip final-prediction MAE, pairs matched by (seed, example).

    One row per pair ``(a, b)``: ``t`` (positive: ``a`` has the larger error), ``p``,
    ``pairs`` (matched clips) and ``mean_difference``; NaN where a system is missing.
    """
    _require(table, ["variant", "seed", "example", "mae_final"])
    wide = table.pivot_table(index=["seed", "example"], columns="variant", values="mae_final")
    rows = []
    for a, b in pairs:
        if a in wide and b in wide:
            both = wide[[a, b]].dropna()
        else:
            both = pd.DataFrame(columns=[a, b])
        if len(both) >= 2:
            res = stats.ttest_rel(both[a], both[b])
            t, p, diff = float(res.statistic), float(res.pvalue), float((both[a] - both[b]).mean())
        else:
            t = p = diff = float("nan")
        rows.append({"a": a, "b": b, "t": t, "p": p, "pairs": len(both), "mean_difference": diff})
    return pd.DataFrame(rows)


def _require(table: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataLayoutError(f"attack table lacks column(s) {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}; expected the columns of "
                              f"mer_lib.attacks.run_attack or read_reference_logs")
