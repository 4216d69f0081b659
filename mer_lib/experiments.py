"""Grids of models for the chapters: train (or load) every variant x seed, evaluate them.

Both the Training and the Robustness chapter get their models through :func:`model_grid`,
which goes through the one cached trainer (:func:`mer_lib.training.get_trained`): stored
models are loaded, missing ones trained with a progress bar. So chapters run in any order and
a re-run with new parameters computes only what is new.

Example:
    >>> grid = model_grid(["a2e", "a2m2e"], [6, 21], data, "quick")     # doctest: +SKIP
    >>> table = evaluate_grid(grid, data, "test")                       # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .data import MerTensors
from .errors import ParameterError
from .metrics import evaluate, predict
from .models import get_variant
from .paths import mer_home
from .profiles import Profile, get_profile
from .training import TrainedModel, get_trained


def check_variants(variants) -> list[str]:
    """Validate a list of variant names (a papermill parameter) and return it as a list."""
    if isinstance(variants, str) or not isinstance(variants, (list, tuple)) or not variants:
        raise ParameterError(f"variants must be a non-empty list of variant names, got {variants!r}")
    return [get_variant(v).name for v in variants]


def check_seeds(seeds) -> list[int]:
    """Validate a list of integer seeds (a papermill parameter) and return it as a list."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)) or not seeds \
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ParameterError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    return list(seeds)


def model_grid(variants: Iterable[str], seeds: Iterable[int], data: MerTensors,
               profile: Profile | str, run_dir: str | Path | None = None, *,
               device: str = "auto", progress: bool = True, **overrides) -> dict[tuple[str, int], TrainedModel]:
    """Every (variant, seed) model, loaded when stored, trained otherwise."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    run_dir = Path(run_dir) if run_dir is not None else mer_home()
    grid = {}
    for variant in check_variants(list(variants)):
        for seed in check_seeds(list(seeds)):
            grid[(variant, seed)] = get_trained(variant, seed, data, profile, run_dir,
                                                device=device, progress=progress, **overrides)
    return grid


def evaluate_grid(grid: dict[tuple[str, int], TrainedModel], data: MerTensors,
                  split: str = "test") -> pd.DataFrame:
    """One row per model with every metric of :func:`mer_lib.metrics.evaluate` on ``split``."""
    x, emotions, midlevel = data.subset(split)
    rows = []
    for (variant, seed), trained in grid.items():
        pred, concepts = predict(trained.model, x)
        true_c = None if midlevel is None or concepts is None else midlevel.numpy()
        metrics = evaluate(pred, emotions.numpy(), concepts, true_c)
        rows.append({"variant": variant, "seed": seed, "epochs": len(trained.history), **metrics})
    return pd.DataFrame(rows)


def mean_std(table: pd.DataFrame, columns: list[str], by: str = "variant") -> pd.DataFrame:
    """``mean ± std`` strings per group (std with ddof=1; '–' where a group has one row)."""
    agg = table.groupby(by, sort=False)[columns].agg(["mean", "std", "count"])
    out = {}
    for col in columns:
        m, s, n = agg[(col, "mean")], agg[(col, "std")], agg[(col, "count")]
        out[col] = [f"{a:.2f} ± {b:.2f}" if c > 1 and np.isfinite(b) else f"{a:.2f}"
                    for a, b, c in zip(m, s, n)]
    return pd.DataFrame(out, index=agg.index)
