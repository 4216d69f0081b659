"""The building blocks of the epoch loop, shared by :func:`mer_lib.training.train` and
:func:`mer_lib.stack_training.train_stack` (so a stack is trained exactly as single runs).

- ``_deterministic``: deterministic algorithms while training (CPU), deterministic cuDNN (CUDA).
- ``_rng_states`` / ``_set_rng_states``: the torch, CUDA, numpy, Python and batch-order
  random states saved in ``state.pt`` and restored on resume.
- ``_prepare_data``: the train and valid splits checked and moved to the device as tensors.
- ``_batch_order``: one epoch's permutation from the seed's batch generator.
- ``_epoch_means``: each objective component's mean over the epoch (TrainingError naming the
  first non-finite batch); ``_score``: the validation score (see :mod:`mer_lib.training`);
  ``_history_row``: one row of ``history.csv``.

Everything here is re-exported by :mod:`mer_lib.training`.

Example:
    >>> import torch
    >>> from mer_lib.train_config import TrainConfig
    >>> from mer_lib.train_loop import _batch_order, _epoch_means
    >>> gen = torch.Generator().manual_seed(6)
    >>> sorted(_batch_order(gen, 5, torch.device("cpu")).tolist())
    [0, 1, 2, 3, 4]
    >>> parts = {"train_loss": [(1, torch.tensor(1.0)), (2, torch.tensor(2.0))], "adv_loss": []}
    >>> _epoch_means(parts, TrainConfig("a2e", seed=6), epoch=1, n_batches=2)
    {'train_loss': 1.5, 'adv_loss': nan}
"""
from __future__ import annotations

import math
import random
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from .data import MerTensors
from .errors import DataLayoutError, TrainingError
from .metrics import ConstantColumnWarning, evaluate
from .models import Variant
from .train_config import TrainConfig


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]


def _rng_states(gen: torch.Generator, device: torch.device) -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
        "batches": gen.get_state(),
    }


def _set_rng_states(states: dict, gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(tuple(s) if isinstance(s, list) else s for s in states["python"]))
    gen.set_state(states["batches"])


def _prepare_data(data: MerTensors, spec: Variant, device: torch.device):
    if data.x.dim() != 4 or data.x.shape[1] != 1:
        raise DataLayoutError(f"data.x must have shape (N, 1, frames, bands), got {tuple(data.x.shape)}")
    if spec.needs_midlevel and data.midlevel is None:
        raise DataLayoutError(
            f"variant {spec.name} trains its 7 bottleneck units on mid-level ratings, but this "
            f"dataset ({data.identity}) has none (MerTensors.midlevel is None); add the Mid-level "
            f"Perceptual Features annotations (midlevel/annotations.csv) or train a2b2e instead")
    out = []
    for name, minimum in (("train", 1), ("valid", 2)):
        if name not in data.split or len(data.split[name]) < minimum:
            raise DataLayoutError(f"the {name} split needs at least {minimum} examples, "
                                  f"got {len(data.split.get(name, ()))}")
        x, y, m = data.subset(name)
        dtype = torch.get_default_dtype()   # float32 unless a test asks for float64
        out.append((x.to(device, dtype).contiguous(), y.to(device, dtype),
                    None if m is None else m.to(device, dtype)))
    return out


def _batch_order(gen: torch.Generator, n: int, device: torch.device) -> torch.Tensor:
    """One epoch's order of the ``n`` training examples, drawn from the seed's batch generator."""
    return torch.randperm(n, generator=gen).to(device)


def _history_row(epoch: int, means: dict, score: float, metrics: dict, adversarial: bool,
                 improved: bool, seconds: float) -> dict:
    """One row of ``history.csv``."""
    return {"epoch": epoch, **means,
            "valid_score": score, "valid_r": metrics["avg_r"], "valid_mae": metrics["mae"],
            "valid_concept_r": metrics.get("concept_avg_r", math.nan),
            "adversarial": adversarial, "improved": improved, "seconds": seconds}


def _score(spec: Variant, e, c, y: torch.Tensor, m: torch.Tensor | None) -> tuple[float, dict]:
    """Validation score and metrics of predictions ``e`` (and concepts ``c``) (see the module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantColumnWarning)
        metrics = evaluate(e, y.cpu(), c, None if (c is None or m is None) else m.cpu())
    score = metrics["avg_r"]
    if spec.concept_weight > 0:
        score = 0.5 * (score + metrics.get("concept_avg_r", float("nan")))
    return score, metrics


def _epoch_means(parts: dict[str, list[tuple[int, torch.Tensor]]], config: TrainConfig, epoch: int,
                 n_batches: int) -> dict[str, float]:
    """Mean of each component over the epoch's batches (NaN when it never occurred).

    ``parts[name]`` holds ``(batch, value)`` pairs. Raises TrainingError naming the first
    batch whose component was not finite: one device sync per component and epoch, not
    per batch.
    """
    means = {}
    for name, pairs in parts.items():
        if not pairs:
            means[name] = math.nan
            continue
        stacked = torch.stack([v for _, v in pairs]).double().cpu()
        bad = torch.nonzero(~torch.isfinite(stacked)).flatten()
        if len(bad):
            raise TrainingError(
                f"training {config.variant} seed {config.seed}: {name} became "
                f"{float(stacked[bad[0]])} at epoch {epoch}, batch {pairs[int(bad[0])][0]} of "
                f"{n_batches} (both counted from 1); check the data for nan/inf values or lower "
                f"the learning rate (lr={config.lr})")
        means[name] = float(stacked.mean())
    return means

