"""Explanation quality of trained models as stored tables, and the maps the chapters draw.

:func:`explanation_table` computes ExpO's neighbourhood fidelity NF and stability S
(:func:`mer_lib.explain.explanation_quality`, refitted at every neighbour) of one trained
model on the first ``n_examples`` clips of a split, per clip and emotion, and stores the
table in the run store (``<run_dir>/explanations/<model key>/<key>/``, keyed by the model,
the :class:`QualityConfig`, the split, the data identity and :data:`EXPLAIN_VERSION`;
locked and written as one unit, like attack results). :func:`quality_summary` turns the
tables of many models into per-system means over clips and mean ± std over seeds.

:func:`patch_explanation` gives the local linear explanation of one clip as patch weights
and as a (frames, bins) map for plotting; :func:`two_level_explanation` explains a
bottleneck model through its concepts (patches -> 7 concepts, then the linear 7 -> 8 head).

Example:
    >>> cfg = QualityConfig(bands=2, segments=4, n_examples=8)
    >>> cfg.grid.n_patches, cfg.to_dict()["sigma"]
    (8, 0.1)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..datasets import EMOTIONS, MIDLEVEL
from ..errors import ParameterError, check_choice, check_int, check_positive
from ..runtime import resolve_device
from ..store import get_table, table_dir
from ..summaries import per_system
from .local_linear import SIGMA_EVAL, explain_local_linear
from .metrics import N_EVAL, explanation_quality
from .patches import PatchGrid

#: Bumped when the tables' meaning changes (part of every key).
EXPLAIN_VERSION = 1


@dataclass(frozen=True)
class QualityConfig:
    """How explanation quality is measured (frozen, validated, hashable).

    Attributes:
        bands, segments: the patch grid (interpretable space).
        sigma, n_neighbours: the evaluation neighbourhood (ExpO: 0.1 and 5).
        n_examples: the first ``n_examples`` clips of the split (None: all of them).
        seed: seed of every neighbour.
    """

    bands: int = 4
    segments: int = 8
    sigma: float = SIGMA_EVAL
    n_neighbours: int = N_EVAL
    n_examples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("bands", self.bands)
        check_int("segments", self.segments)
        object.__setattr__(self, "sigma", float(check_positive("sigma", self.sigma)))
        check_int("n_neighbours", self.n_neighbours)
        if self.n_examples is not None:
            check_int("n_examples", self.n_examples)
        check_int("seed", self.seed, minimum=0)

    @property
    def grid(self) -> PatchGrid:
        return PatchGrid(bands=self.bands, segments=self.segments)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def quality_identity(model_key: str, config: QualityConfig, split: str, data_identity: str) -> dict:
    """What a stored explanation table is keyed by."""
    return {"version": EXPLAIN_VERSION, "model": str(model_key), "quality": config.to_dict(),
            "split": split, "data": str(data_identity)}


def _clips(data, split: str, n_examples: int | None) -> tuple[torch.Tensor, list[str]]:
    if split not in data.split:
        raise ParameterError(f"split must be one of {list(data.split)}, got {split!r}")
    idx = data.split[split] if n_examples is None else data.split[split][:n_examples]
    return data.x[torch.as_tensor(idx, dtype=torch.long)], [data.ids[i] for i in idx]


def explanation_table(trained, data, config: QualityConfig = QualityConfig(), *, split: str = "test",
                      run_dir: str | Path, device: str | torch.device | None = None,
                      batch_size: int = 256) -> pd.DataFrame:
    """NF and S per clip and emotion of one trained model (stored; computed when missing).

    Columns: ``example, variant, seed, model_key, emotion, nf, stability``.
    """
    if not isinstance(config, QualityConfig):
        raise ParameterError(f"config must be a QualityConfig, got {type(config).__name__}")
    identity = quality_identity(trained.key, config, split, data.identity)
    folder = table_dir(run_dir, "explanations", trained.key, identity)

    def compute() -> pd.DataFrame:
        x, ids = _clips(data, split, config.n_examples)
        dev = resolve_device(device)
        model = trained.model
        home = next(model.parameters()).device
        try:
            model.to(dev)
            q = explanation_quality(model, x.to(dev), config.grid, config.sigma, config.n_neighbours,
                                    seed=config.seed, batch_size=batch_size)
        finally:
            model.to(home)
        n, o = q.nf.shape
        return pd.DataFrame({
            "example": np.repeat(ids, o), "variant": trained.config.variant, "seed": int(trained.config.seed),
            "model_key": str(trained.key), "emotion": np.tile(EMOTIONS[:o], n),
            "nf": q.nf.cpu().numpy().reshape(-1), "stability": q.stability.cpu().numpy().reshape(-1)})

    what = f"explanations {trained.config.variant} seed {trained.config.seed} ({folder.name})"
    return get_table(folder, identity, compute, what=what,
                     meta={"variant": trained.config.variant, "seed": int(trained.config.seed)}).table


def quality_summary(tables: pd.DataFrame | list[pd.DataFrame]) -> pd.DataFrame:
    """Per system: NF and S averaged over clips and emotions per model, then mean/std over seeds.

    Returns one row per variant with ``system, nf_mean, nf_std, stability_mean,
    stability_std, seeds`` (:func:`mer_lib.summaries.per_system`: std with ddof 1, NaN for a
    single seed). Models are told apart by ``model_key`` when the tables have it, so two models
    of one variant and seed (an ExpO c-sweep) are refused, never averaged into one.
    """
    table = pd.concat(tables) if isinstance(tables, list) else tables
    keys = ["variant", "seed"] + (["model_key"] if "model_key" in table else [])
    per_model = table.groupby(keys, sort=False)[["nf", "stability"]].mean().reset_index()
    return per_system(per_model, ["nf", "stability"])


@dataclass
class PatchExplanation:
    """One clip's local linear explanation: ``weights`` (outputs, K), ``intercept`` (outputs,),
    and ``maps`` (outputs, frames, bins), each patch's weight painted over its area."""

    weights: np.ndarray
    intercept: np.ndarray
    maps: np.ndarray
    outputs: tuple[str, ...]


def patch_explanation(model, x: torch.Tensor, grid: PatchGrid, *, target: str = "emotions",
                      sigma: float = SIGMA_EVAL, seed: int = 0) -> PatchExplanation:
    """The explanation of ``model`` at one clip ``x`` (1, 1, frames, bins) in patch space.

    ``target="concepts"`` explains a bottleneck model's 7 concept units instead of the emotions.
    """
    check_choice("target", target, ("emotions", "concepts"))
    if x.dim() != 4 or x.shape[0] != 1:
        raise ParameterError(f"x must be one clip of shape (1, 1, frames, bins), got {tuple(x.shape)}")
    fit = explain_local_linear(model, x, grid, sigma=sigma, seed=seed, target=target)
    coef = fit.coef[0].detach().double().cpu()                  # (outputs, K + 1)
    frames, bins = x.shape[-2:]
    maps = grid.expand(coef[:, 1:], frames, bins)[:, 0].numpy()  # (outputs, frames, bins)
    names = EMOTIONS if target == "emotions" else MIDLEVEL
    return PatchExplanation(coef[:, 1:].numpy(), coef[:, 0].numpy(), maps, tuple(names[:coef.shape[0]]))


def two_level_explanation(model, x: torch.Tensor, grid: PatchGrid, *, sigma: float = SIGMA_EVAL,
                          seed: int = 0) -> tuple[PatchExplanation, np.ndarray]:
    """A bottleneck model explained in two steps: patches -> concepts, concepts -> emotions.

    Returns the patch explanation of the 7 concept units and the model's own (8, 7) head
    weights (exact, no fit needed: the head is linear). Their product is the patch
    explanation of the emotions through the concepts.
    """
    if getattr(model, "head", None) != "bottleneck":
        raise ParameterError("two_level_explanation needs a bottleneck model (A2B2E, A2M2E, ...)")
    concepts = patch_explanation(model, x, grid, target="concepts", sigma=sigma, seed=seed)
    return concepts, model.emotion_head_weights().detach().double().cpu().numpy()
