"""Attribution robustness of trained models as stored tables, and the IG maps the chapters draw.

:func:`attribution_table` runs the top-k attribution attack
(:func:`mer_lib.attributions.surrogate.topk_attack`: captum IG maps of all eight emotions,
PGD on the softplus surrogate's differentiable IG within an L-infinity ball, every step kept
only while no emotion output moves by more than the tolerance) on the first ``n_examples``
clips of a split, all clips of a chunk together, and records per clip and emotion the
**top-k intersection** and **Kendall's tau-b** between the clean IG map and the map at the
kept step (:mod:`mer_lib.attributions.metrics`). The table is stored in the run store
(``<run_dir>/attributions/<model key>/<key>/``, keyed by the model, the
:class:`AttributionConfig`, the split, the data identity and :data:`ATTRIBUTION_VERSION`;
locked and written as one unit with :func:`mer_lib.store.get_table`, like attack and
explanation tables). :func:`attribution_summary` turns the tables of many models into
per-system means over clips and emotions, then mean ± std over seeds.

:func:`example_maps` gives one clip's IG maps of one emotion for several models, clean and
after the attack, as ``(frames, bins)`` arrays for :func:`mer_lib.plots.show_spectrogram`.

Example:
    >>> cfg = AttributionConfig(ig_steps=8, epsilon=0.1, iterations=4, n_examples=2)
    >>> cfg.step_size, cfg.attack_config().k
    (0.0625, 0.05)
    >>> AttributionConfig(k=1.5)
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: k must be a fraction of the bins in (0, 1], got 1.5
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..datasets import EMOTIONS
from ..errors import ParameterError, check_choice, check_int
from ..explain.report import _clips    # the first clips of a split, as the explanation tables take them
from ..runtime import resolve_device
from ..store import get_table, table_dir
from ..summaries import per_system
from .ig import BASELINES
from .metrics import DEFAULT_K
from .surrogate import DEFAULT_BETA, TopkAttackConfig, topk_attack

#: Bumped when the tables' meaning changes (part of every key).
ATTRIBUTION_VERSION = 1
#: The per-clip metrics of a table (higher = the explanation survived the attack better).
METRICS = ("topk_intersection", "kendall_tau")


@dataclass(frozen=True)
class AttributionConfig:
    """How attribution robustness is measured (frozen, validated, hashable).

    Attributes:
        ig_steps: quadrature points of the evaluation IG maps (captum), >= 2.
        method: their quadrature (:data:`mer_lib.attributions.ig.METHODS`).
        baseline: ``"zeros"`` (the data's mean) or ``"silence"`` (silent audio through the
            front end), :data:`mer_lib.attributions.ig.BASELINES`.
        epsilon: L-infinity radius of the attack in standardised units, > 0.
        iterations: attack steps, >= 1.
        step_size: the attack's step; ``None`` gives ``2.5 * epsilon / iterations`` (stored
            resolved, so both spellings are the same configuration).
        k: the top set as a fraction of the bins, in (0, 1].
        tolerance: largest allowed change of any emotion output (ratings / 10), >= 0.
        beta: softplus sharpness of the surrogate, > 0.
        attack_ig_steps: right-Riemann steps of the surrogate's differentiable IG, >= 1.
        n_examples: the first ``n_examples`` clips of the split (None: all of them).
    """

    ig_steps: int = 50
    method: str = "riemann_right"
    baseline: str = "zeros"
    epsilon: float = 0.1
    iterations: int = 10
    step_size: float | None = None
    k: float = DEFAULT_K
    tolerance: float = 0.05
    beta: float = DEFAULT_BETA
    attack_ig_steps: int = 10
    n_examples: int | None = None

    def __post_init__(self) -> None:
        check_choice("baseline", self.baseline, BASELINES)
        if self.n_examples is not None:
            check_int("n_examples", self.n_examples)
        resolved = self.attack_config()              # validates the attack's fields by name
        for name in ("epsilon", "step_size", "k", "tolerance", "beta"):
            object.__setattr__(self, name, getattr(resolved, name))

    def attack_config(self) -> TopkAttackConfig:
        """The :class:`~mer_lib.attributions.surrogate.TopkAttackConfig` of all eight emotions."""
        return TopkAttackConfig(epsilon=self.epsilon, iterations=self.iterations, step_size=self.step_size,
                                k=self.k, tolerance=self.tolerance, beta=self.beta, emotion=None,
                                ig_steps=self.ig_steps, method=self.method,
                                attack_ig_steps=self.attack_ig_steps)

    def to_dict(self) -> dict:
        """Plain dict of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)


def attribution_config(exp) -> AttributionConfig:
    """The :class:`AttributionConfig` of an experiment (:class:`mer_lib.experiments.Experiment`).

    Its IG steps, baseline, attack epsilon/steps/tolerance, k and clips; the surrogate's
    differentiable IG inside the attack takes half the evaluation steps (at least one).

    Example:
        >>> from mer_lib.experiments import Experiment
        >>> cfg = attribution_config(Experiment.from_parameters(profile="quick"))
        >>> cfg.ig_steps, cfg.attack_ig_steps, cfg.iterations, cfg.n_examples, cfg.epsilon
        (8, 4, 3, 12, 0.03)
    """
    return AttributionConfig(ig_steps=exp.ig_steps, baseline=exp.ig_baseline, epsilon=exp.attr_epsilon,
                             iterations=exp.attr_steps, k=exp.topk_fraction, tolerance=exp.attr_tolerance,
                             attack_ig_steps=max(1, exp.ig_steps // 2), n_examples=exp.attr_examples)


def attribution_identity(model_key: str, config: AttributionConfig, split: str, data_identity: str) -> dict:
    """What a stored attribution table is keyed by."""
    return {"version": ATTRIBUTION_VERSION, "model": str(model_key), "attribution": config.to_dict(),
            "split": split, "data": str(data_identity)}


def _on_device(model: torch.nn.Module, device):
    """``(model on device, its home device)``; the caller moves it back."""
    home = next(model.parameters()).device
    return model.to(resolve_device(device)), home


def attribution_table(trained, data, config: AttributionConfig = AttributionConfig(), *,
                      split: str = "test", run_dir: str | Path, device: str | torch.device | None = None,
                      batch_size: int = 16) -> pd.DataFrame:
    """Top-k intersection and Kendall's tau per clip and emotion of one model (stored; computed when missing).

    ``batch_size`` clips are attacked together (it bounds memory; the numbers do not depend
    on it). Columns: ``example, variant, seed, model_key, emotion, topk_intersection,
    kendall_tau, output_change, step`` (``output_change``: the largest change of any emotion
    output at the kept step; ``step``: the kept attack step, 0 = none lowered tau within the
    tolerance; both per clip).
    """
    if not isinstance(config, AttributionConfig):
        raise ParameterError(f"config must be an AttributionConfig, got {type(config).__name__}")
    check_int("batch_size", batch_size)
    identity = attribution_identity(trained.key, config, split, data.identity)
    folder = table_dir(run_dir, "attributions", trained.key, identity)

    def compute() -> pd.DataFrame:
        x, ids = _clips(data, split, config.n_examples)
        model, home = _on_device(trained.model, device)
        try:
            dev = next(model.parameters()).device
            res = topk_attack(model, x.to(device=dev, dtype=next(model.parameters()).dtype),
                              config.attack_config(), baseline=config.baseline,
                              mean=float(data.mean), std=float(data.std), batch_size=batch_size)
        finally:
            trained.model.to(home)
        n, e = res.kendall_tau.shape
        return pd.DataFrame({
            "example": np.repeat(ids, e), "variant": trained.config.variant, "seed": int(trained.config.seed),
            "model_key": str(trained.key), "emotion": np.tile(EMOTIONS[:e], n),
            "topk_intersection": res.topk_intersection.numpy().reshape(-1),
            "kendall_tau": res.kendall_tau.numpy().reshape(-1),
            "output_change": np.repeat(res.output_change.double().cpu().numpy(), e),
            "step": np.repeat(res.step.cpu().numpy(), e)})

    what = f"attributions {trained.config.variant} seed {trained.config.seed} ({folder.name})"
    return get_table(folder, identity, compute, what=what,
                     meta={"variant": trained.config.variant, "seed": int(trained.config.seed)}).table


def attribution_summary(tables: pd.DataFrame | list[pd.DataFrame]) -> pd.DataFrame:
    """Per system: the metrics averaged over clips and emotions per model, then mean/std over seeds.

    One row per variant (first-seen order) with ``system``, ``topk_intersection_mean/_std``,
    ``kendall_tau_mean/_std`` and ``seeds`` (std with ddof 1; NaN for a single seed; a
    clip's NaN tau, from a constant map, is left out of its model's mean).

    Example:
        >>> t = pd.DataFrame({"variant": ["a2e"] * 4, "seed": [6, 6, 21, 21], "model_key": list("aabb"),
        ...                   "topk_intersection": [1.0, 0.5, 0.5, 0.0], "kendall_tau": [1, 0.5, 0.2, 0.2]})
        >>> s = attribution_summary(t)
        >>> [float(s.loc["a2e", c]) for c in ("topk_intersection_mean", "kendall_tau_mean", "seeds")]
        [0.5, 0.475, 2.0]
    """
    table = pd.concat(tables, ignore_index=True) if isinstance(tables, list) else tables
    missing = [c for c in ("variant", "seed", "model_key", *METRICS) if c not in table]
    if missing:
        raise ParameterError(f"attribution tables lack column(s) {missing}; expected those of attribution_table")
    per_model = table.groupby(["variant", "seed", "model_key"], sort=False)[list(METRICS)].mean().reset_index()
    return per_system(per_model, list(METRICS))


@dataclass
class ExampleMaps:
    """One clip's IG maps of one emotion, per model label: ``clean[label]`` and
    ``attacked[label]`` ``(frames, bins)`` arrays, and per label the attack's ``kendall_tau``,
    ``topk_intersection`` (of that emotion) and ``output_change``."""

    emotion: str
    clean: dict[str, np.ndarray]
    attacked: dict[str, np.ndarray]
    kendall_tau: dict[str, float]
    topk_intersection: dict[str, float]
    output_change: dict[str, float]


def example_maps(models: Mapping[str, torch.nn.Module], x: torch.Tensor, config: AttributionConfig, *,
                 emotion: int | str = 0, mean: float, std: float,
                 device: str | torch.device | None = None) -> ExampleMaps:
    """The IG maps of one emotion at one clip ``x (1, 1, frames, bins)`` for several models.

    ``models`` maps a label (e.g. a system's name) to a network; each is attacked with
    ``config`` on that clip alone (only the chosen emotion's map: the attack pushes down
    that map's top-k mass), so the maps before and after are those the metrics compare.
    ``mean``/``std`` are the data's standardisation scalars (for the ``"silence"`` baseline).
    """
    if isinstance(emotion, str):
        emotion = EMOTIONS.index(check_choice("emotion", emotion, EMOTIONS))
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1:
        raise ParameterError(f"x must be one clip of shape (1, 1, frames, bins), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(models, Mapping) or not models:
        raise ParameterError("models must be a non-empty mapping {label: model}")
    cfg = dataclasses.replace(config.attack_config(), emotion=emotion)
    out = ExampleMaps(EMOTIONS[emotion], {}, {}, {}, {}, {})
    for label, net in models.items():
        model, home = _on_device(net, device)
        try:
            p = next(model.parameters())
            res = topk_attack(model, x.to(device=p.device, dtype=p.dtype), cfg, baseline=config.baseline,
                              mean=float(mean), std=float(std))
        finally:
            net.to(home)
        out.clean[label] = res.clean_maps[0, 0, 0].double().cpu().numpy()
        out.attacked[label] = res.adv_maps[0, 0, 0].double().cpu().numpy()
        out.kendall_tau[label] = float(res.kendall_tau[0, 0])
        out.topk_intersection[label] = float(res.topk_intersection[0, 0])
        out.output_change[label] = float(res.output_change[0])
    return out


__all__ = ["ATTRIBUTION_VERSION", "METRICS", "AttributionConfig", "attribution_config", "attribution_identity",
           "attribution_table", "attribution_summary", "ExampleMaps", "example_maps"]
