"""Per-system summaries of per-model values: the mean and the spread over seeds, written once.

Every table of the book that shows "mean ± std over seeds" gets its numbers here: one row per
system (variant, in first-seen order), ``<col>_mean`` and ``<col>_std`` with the sample
standard deviation (ddof 1: NaN for a single seed), and ``seeds``. Both
:mod:`mer_lib.comparison` and the attribution report build on it, so neither imports the other.

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"variant": ["a2e", "a2e", "expof_a2e"], "seed": [6, 21, 6], "nf": [1.0, 3.0, 0.5]})
    >>> s = per_system(rows, ["nf"])
    >>> s.loc["a2e", "system"], float(s.loc["a2e", "nf_mean"]), round(float(s.loc["a2e", "nf_std"]), 4)
    ('A2E', 2.0, 1.4142)
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .errors import ParameterError
from .models import get_variant

#: The spread of every per-system summary: the sample standard deviation over seeds.
DDOF = 1


def per_system(table: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Per system (index: variant, in first-seen order): ``system``, ``<col>_mean``, ``<col>_std``
    (over seeds, ddof :data:`DDOF`; NaN for one seed) for each of ``columns``, and ``seeds``."""
    columns = list(columns)
    missing = [c for c in ["variant", "seed", *columns] if c not in table.columns]
    if missing:
        raise ParameterError(f"table lacks column(s) {missing}; expected one row per model with "
                             f"variant, seed and {columns}")
    repeated = table[table.duplicated(["variant", "seed"], keep=False)]
    if len(repeated):
        v, s = repeated.iloc[0][["variant", "seed"]]
        raise ParameterError(f"more than one model of {v} seed {s} in one summary (e.g. two ExpO c values); "
                             f"summarise each setting separately, one row per (variant, seed)")
    g = table.groupby("variant", sort=False)
    out = pd.DataFrame({"system": [get_variant(v).label for v in g.size().index]}, index=g.size().index)
    for col in columns:
        out[f"{col}_mean"] = g[col].mean()
        out[f"{col}_std"] = g[col].std(ddof=DDOF)
    out["seeds"] = g.seed.nunique()
    return out
