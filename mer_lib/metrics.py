"""Evaluation: Pearson r per output, MAE, RMSE, R², and batched prediction.

All metrics are vectorised over the columns (the 8 emotions or the 7 mid-level features).
A column whose predictions or labels are constant has no Pearson r: it is reported as
``nan`` with a :class:`ConstantColumnWarning` naming the column, and averages skip it.

Example:
    >>> import numpy as np
    >>> from mer_lib.metrics import pearson_per_column, evaluate
    >>> true = np.array([[0.1, 0.5], [0.2, 0.4], [0.3, 0.2]])
    >>> pearson_per_column(true, true).round(3).tolist()
    [1.0, 1.0]
    >>> pred = np.tile(np.linspace(0.2, 0.6, 8), (3, 1)) + np.arange(3)[:, None] * 0.1
    >>> round(evaluate(pred, pred)["avg_r"], 3), evaluate(pred, pred)["mae"]
    (1.0, 0.0)
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch

from .datasets import EMOTIONS, MIDLEVEL
from .attacks.precision import full_float32
from .errors import ParameterError


class ConstantColumnWarning(RuntimeWarning):
    """A column is constant, so its Pearson r is undefined (reported as nan)."""


def _as_2d(name: str, a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array (examples, outputs), got shape {a.shape}")
    return a


def pearson_per_column(pred, true, names: Sequence[str] | None = None) -> np.ndarray:
    """Pearson r between ``pred[:, k]`` and ``true[:, k]`` for every column k.

    Constant columns give ``nan`` and a :class:`ConstantColumnWarning` (no crash).
    """
    p, t = _as_2d("pred", pred), _as_2d("true", true)
    if p.shape != t.shape:
        raise ParameterError(f"pred and true must have the same shape, got {p.shape} and {t.shape}")
    if p.shape[0] < 2:
        raise ParameterError(f"Pearson r needs at least 2 examples, got {p.shape[0]}")
    pc, tc = p - p.mean(axis=0), t - t.mean(axis=0)
    denom = np.sqrt((pc ** 2).sum(axis=0) * (tc ** 2).sum(axis=0))
    # a column is constant when its spread is at rounding level of its magnitude
    scale = np.maximum(np.abs(p).max(axis=0), np.abs(t).max(axis=0)) + 1e-30
    constant = (pc.std(axis=0) <= 1e-12 * scale) | (tc.std(axis=0) <= 1e-12 * scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (pc * tc).sum(axis=0) / denom
    r = np.clip(r, -1.0, 1.0)
    r[constant] = np.nan
    if constant.any():
        cols = [names[i] if names is not None else i for i in np.flatnonzero(constant)]
        warnings.warn(f"Pearson r undefined for constant column(s) {cols}: reported as nan "
                      f"and left out of averages", ConstantColumnWarning, stacklevel=2)
    return r


def _nanmean(a: np.ndarray) -> float:
    return float(np.nanmean(a)) if np.isfinite(a).any() else float("nan")


def evaluate(pred_emotions, true_emotions, pred_concepts=None, true_concepts=None) -> dict:
    """Metrics of one model on one split, as a flat dict (one table row).

    Keys: ``avg_r`` (mean Pearson r over the 8 emotions, nan columns skipped), ``mae``,
    ``rmse`` (over all emotion values), ``r2`` (coefficient of determination per emotion,
    averaged), ``r_<emotion>`` for each emotion, and, when concepts are given,
    ``concept_avg_r`` and ``concept_r_<feature>`` for the 7 mid-level features.
    """
    p, t = _as_2d("pred_emotions", pred_emotions), _as_2d("true_emotions", true_emotions)
    names = list(EMOTIONS) if p.shape[1] == len(EMOTIONS) else [f"out{i}" for i in range(p.shape[1])]
    r = pearson_per_column(p, t, names)
    err = p - t
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - (err ** 2).sum(axis=0) / ss_tot
    r2[ss_tot == 0] = np.nan
    out = {"avg_r": _nanmean(r), "mae": float(np.abs(err).mean()),
           "rmse": float(np.sqrt((err ** 2).mean())), "r2": _nanmean(r2)}
    out.update({f"r_{n}": float(v) for n, v in zip(names, r)})
    if pred_concepts is not None and true_concepts is not None:
        pc, tc = _as_2d("pred_concepts", pred_concepts), _as_2d("true_concepts", true_concepts)
        cnames = list(MIDLEVEL) if pc.shape[1] == len(MIDLEVEL) else [f"c{i}" for i in range(pc.shape[1])]
        rc = pearson_per_column(pc, tc, cnames)
        out["concept_avg_r"] = _nanmean(rc)
        out.update({f"concept_r_{n}": float(v) for n, v in zip(cnames, rc)})
    return out


@torch.no_grad()
@full_float32()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 64,
            device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Emotions ``(N, 8)`` and concepts ``(N, 7)`` (None for direct heads) as float32 numpy.

    Runs in eval mode under ``no_grad`` and in full float32 (no TF32 on CUDA) in batches of
    ``batch_size``, on ``device`` (default: the model's device); the model's train/eval mode
    is restored afterwards.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    emotions, concepts = [], []
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            if hasattr(model, "forward_all"):
                e, c = model.forward_all(xb)
            else:
                e, c = model(xb), None
            emotions.append(e.float().cpu())
            if c is not None:
                concepts.append(c.float().cpu())
    finally:
        model.train(was_training)
    emo = torch.cat(emotions).numpy() if emotions else np.zeros((0, 8), np.float32)
    con = torch.cat(concepts).numpy() if concepts else None
    return emo, con
