"""How much an attribution map changed: top-k intersection and Kendall's tau-b.

Maps are compared as ``(B, E, *bins)`` tensors: ``B`` examples, ``E`` maps per example (the
eight emotions of ``integrated_gradients(...)`` shaped ``(B, 8, 1, F, K)``, or ``E = 1``
for a single emotion's ``(B, 1, F, K)``), and the remaining dimensions are the bins. Bins
are ranked by ``|attribution|`` (``absolute=True``, the default: how much a bin matters,
whatever the sign, as in Ghorbani et al. and Chen et al.) or by the signed value.

- :func:`topk_intersection` — the fraction of the ``k`` most important bins of map ``a``
  that are also among the ``k`` most important of ``b``; ``k`` is a fraction of the bins
  (default :data:`DEFAULT_K` = 5 %), rounded half up, at least one bin. 1 = same top set.
  Ties are broken by bin index (``torch.topk``), identically for both maps.
- :func:`kendall_tau` — Kendall's tau-b of the two rankings (``scipy.stats.kendalltau``,
  ties handled by tau-b): 1 = same order, -1 = reversed. A constant map has no rank
  order: its tau is nan.
- :func:`attribution_robustness` — both, averaged over examples, per map and overall.

Results are ``(B, E)`` float64 CPU tensors (one value per example and map), computed for
all maps at once (tau: one scipy call per map, the only per-map loop).

Example:
    >>> import torch
    >>> from mer_lib.attributions import topk_intersection, kendall_tau
    >>> a = torch.arange(1.0, 11.0).view(1, 1, 10)        # bins 1..10
    >>> topk_intersection(a, a.flip(-1), k=0.3).item(), round(kendall_tau(a, a.flip(-1)).item(), 6)
    (0.0, -1.0)
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau

from ..errors import ParameterError

#: Default size of the top set: 5 % of the bins.
DEFAULT_K = 0.05


def check_fraction(name: str, k) -> float:
    """Return ``k`` as a float if it is a number in (0, 1], else raise ParameterError."""
    ok = not isinstance(k, bool) and isinstance(k, (int, float)) and math.isfinite(k) and 0 < k <= 1
    if not ok:
        raise ParameterError(f"{name} must be a fraction of the bins in (0, 1], got {k!r}")
    return float(k)


def topk_count(n_bins: int, k: float = DEFAULT_K) -> int:
    """Number of bins in the top set: ``k * n_bins`` rounded half up, at least 1.

    Example:
        >>> topk_count(18774), topk_count(10, 0.3), topk_count(10, 0.01)
        (939, 3, 1)
    """
    k = check_fraction("k", k)
    return max(1, int(math.floor(k * n_bins + 0.5)))


def _rows(name: str, maps: torch.Tensor) -> torch.Tensor:
    """``(B, E, *bins) -> (B, E, n_bins)``."""
    if not isinstance(maps, torch.Tensor) or maps.dim() < 3:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ParameterError(f"{name} must be attribution maps shaped (examples, maps, *bins), got {shape}")
    return maps.detach().flatten(2)


def _pair(a: torch.Tensor, b: torch.Tensor, absolute: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ra, rb = _rows("a", a), _rows("b", b)
    if ra.shape != rb.shape:
        raise ParameterError(f"attribution maps a and b must have the same shape, got "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
    rb = rb.to(ra.device)
    return (ra.abs(), rb.abs()) if absolute else (ra, rb)


def topk_mask(maps: torch.Tensor, k: float = DEFAULT_K, *, absolute: bool = True) -> torch.Tensor:
    """Boolean ``(B, E, n_bins)``: True on each map's top-k bins (maps flattened per map)."""
    rows = _rows("maps", maps)
    rows = rows.abs() if absolute else rows
    count = topk_count(rows.shape[-1], k)
    idx = rows.topk(count, dim=-1).indices
    return torch.zeros_like(rows, dtype=torch.bool).scatter_(-1, idx, True)


def topk_intersection(a: torch.Tensor, b: torch.Tensor, k: float = DEFAULT_K, *,
                      absolute: bool = True) -> torch.Tensor:
    """Fraction of shared top-k bins of maps ``a`` and ``b``, ``(B, E)`` in [0, 1]."""
    ra, rb = _pair(a, b, absolute)
    count = topk_count(ra.shape[-1], k)
    both = topk_mask(ra, k, absolute=False) & topk_mask(rb, k, absolute=False)
    return (both.sum(dim=-1).double() / count).cpu()


def kendall_tau(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = True) -> torch.Tensor:
    """Kendall's tau-b between the bin rankings of ``a`` and ``b``, ``(B, E)`` (nan if constant)."""
    ra, rb = _pair(a, b, absolute)
    na = ra.double().cpu().numpy().reshape(-1, ra.shape[-1])
    nb = rb.double().cpu().numpy().reshape(-1, rb.shape[-1])
    taus = np.full(na.shape[0], np.nan)
    for i in range(na.shape[0]):
        if np.ptp(na[i]) > 0 and np.ptp(nb[i]) > 0:
            taus[i] = kendalltau(na[i], nb[i], variant="b").statistic
    return torch.from_numpy(taus).view(ra.shape[0], ra.shape[1])


def attribution_robustness(a: torch.Tensor, b: torch.Tensor, k: float = DEFAULT_K, *,
                           names: Sequence[str] | None = None, absolute: bool = True) -> pd.DataFrame:
    """Mean top-k intersection and Kendall tau over the examples, per map and averaged.

    Rows: one per map (``names``, e.g. :data:`mer_lib.datasets.EMOTIONS`; default
    ``0, 1, ...``) and ``"mean"`` (the mean over maps of the per-map means; nan taus skipped);
    columns ``topk_intersection``, ``kendall_tau``.

    Example:
        >>> a = torch.arange(1.0, 5.0).view(1, 1, 4)
        >>> attribution_robustness(a, a, k=0.5, names=["valence"]).loc["mean"].tolist()
        [1.0, 1.0]
    """
    inter = topk_intersection(a, b, k, absolute=absolute).numpy()
    tau = kendall_tau(a, b, absolute=absolute).numpy()
    n_maps = inter.shape[1]
    names = list(range(n_maps)) if names is None else list(names)
    if len(names) != n_maps:
        raise ParameterError(f"names must have one entry per map ({n_maps}), got {len(names)}")
    with warnings.catch_warnings():   # an all-nan column (constant maps) stays nan, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        table = pd.DataFrame({"topk_intersection": inter.mean(axis=0),
                              "kendall_tau": np.nanmean(tau, axis=0)}, index=names)
        table.loc["mean"] = [table["topk_intersection"].mean(), np.nanmean(table["kendall_tau"])]
    return table


__all__ = ["DEFAULT_K", "check_fraction", "topk_count", "topk_mask", "topk_intersection",
           "kendall_tau", "attribution_robustness"]
