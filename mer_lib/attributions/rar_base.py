"""What RAR's training objectives and inner maximisation share: :class:`RarConfig` and the IG of the loss.

:mod:`.rar` (the objectives) and :mod:`.rar_inner` (the inner maximisation) both build on
this module; :mod:`.rar` re-exports everything here, so ``mer_lib.attributions.rar`` stays
the one import for RAR.

**IG of the loss.** For the per-example loss ``l`` (default :func:`emotion_mse`: the MSE over
the eight emotions) and a perturbed input ``x'``, with ``d = x' - x`` and ``m`` steps of the
right Riemann sum::

    IG(x, x') = d * G,   G = (1/m) sum_{k=1..m} g_k,   g_k = grad_x l(x + (k/m) d).

Completeness: ``sum IG = l(x') - l(x)`` up to the Riemann error (``O(1/m)``; exactly
``d^T H d / (2m)`` for a quadratic loss). :func:`loss_integrated_gradients` computes it,
differentiably with ``create_graph=True`` (double backprop; captum cannot differentiate
through its attributions). It equals captum's IG of the loss with baseline ``x``, input
``x'`` and ``method="riemann_right"``. The path gradients are evaluated ``chunk_size`` steps
at a time (one batch through the model per chunk), with BatchNorm and dropout frozen
(:func:`mer_lib.models.frozen_normalisation`).

**Normalisation of the L1 norm** (``RarConfig.normalisation``, :func:`ig_l1_norm`). Each
example's norm is taken over that example's input elements, and the batch objective is the
*mean* over examples (as for the MSE), so the weight does not depend on the batch size.
Within an example the default ``"sum"`` is the plain L1 norm ``sum_i |IG_i|``: by
completeness it is measured in *loss units* (it is at least ``|l(x') - l(x)|``, with equality
when no attributions cancel), so ``w = 1`` weighs a unit of attribution like a unit of loss,
as in Chen et al.; and for this fully convolutional, globally pooled network it changes
little with the number of frames, since each input's gradient shrinks as the map grows (an
untrained A2E, width 0.125, eps 0.1: +18 % for 252 instead of 126 frames). ``"mean"`` divides
by the number of input elements instead (a per-bin average: 1/18774 of ``"sum"`` for
126 x 149 inputs), which would make a good weight depend on the excerpt length.

**Defaults.** :class:`RarConfig`'s field defaults are the project's RAR defaults, the one
place they are set: the training objectives' option defaults
(:data:`mer_lib.objectives.rar_training.RAR_DEFAULTS`) are derived from them. They are the
values the stored RAR models were trained with (epsilon 0.03, m = 50, k = 10, approx_factor 5,
chunk_size 10, ...); the module docstring of :mod:`mer_lib.objectives.rar_training` gives the
reasons.

Example:
    >>> import torch
    >>> from mer_lib.attributions.rar_base import RarConfig, emotion_mse, loss_integrated_gradients
    >>> cfg = RarConfig()
    >>> cfg.epsilon, cfg.riemann_steps, cfg.attack_riemann_steps, cfg.chunk_size
    (0.03, 50, 10, 10)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 1))
    >>> x, x_adv, y = torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2), torch.zeros(1, 1)
    >>> ig = loss_integrated_gradients(net, x, x_adv, y, steps=1000, chunk_size=100)
    >>> l = lambda v: emotion_mse(net, v, y)
    >>> bool(abs(ig.sum() - (l(x_adv) - l(x)).sum()) < 1e-2)    # completeness
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import ParameterError, check_choice, check_int, check_positive
from ..models import frozen_normalisation

OBJECTIVES = ("ig_norm", "ig_sum_norm")
NORMALISATIONS = ("sum", "mean")
#: The weight's name per objective, as the paper writes it (and as errors name it).
WEIGHT_NAMES = {"ig_norm": "lambda", "ig_sum_norm": "beta"}

#: ``loss_fn(model, x, y) -> (B,)`` per-example loss; examples must not interact.
PerExampleLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def emotion_mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example MSE over the outputs: ``mean_j (model(x)_j - y_j)^2``, shape ``(B,)``."""
    pred = model(x)
    if pred.shape != y.shape:
        raise ParameterError(f"model output shape {tuple(pred.shape)} does not match y {tuple(y.shape)}")
    return ((pred - y) ** 2).flatten(1).mean(dim=1)


@dataclass(frozen=True)
class RarConfig:
    """One RAR training objective and its inner maximisation (frozen, validated, hashable).

    The field defaults are the project's RAR defaults (see the module docstring); the
    training objectives' options default to them.

    Attributes:
        objective: ``"ig_norm"`` or ``"ig_sum_norm"``.
        weight: lambda (IG-NORM) or beta (IG-SUM-NORM), >= 0.
        epsilon: radius of the L-infinity ball of ``x'`` in standardised units, > 0.
        riemann_steps: m, Riemann steps of the IG in the training objective, >= 1.
        attack_steps: k, PGD steps of the inner maximisation, >= 1.
        step_size: alpha, the PGD step; ``None`` gives ``2.5 * epsilon / attack_steps``.
        approx_factor: the inner maximisation uses ``max(1, m // approx_factor)`` Riemann
            steps (:attr:`attack_riemann_steps`), as in Chen et al.
        chunk_size: Riemann steps per pass of the memory-bounded backward; ``None``: all
            at once (single pass, memory grows with m).
        normalisation: per-example L1 norm ``"sum"`` (plain) or ``"mean"`` (per input
            element); see the module docstring.
        seed: seed of the inner maximisation's random start (when no generator is given).

    Example:
        >>> cfg = RarConfig(objective="ig_sum_norm", weight=0.1, epsilon=0.2, attack_steps=5)
        >>> cfg.step_size, cfg.attack_riemann_steps, len(cfg.key())
        (0.1, 10, 10)
        >>> RarConfig(objective="ig_sum_norm", weight=-1)
        Traceback (most recent call last):
        ...
        mer_lib.errors.ParameterError: beta (the IG-SUM-NORM weight) must be a finite number >= 0, got -1
    """

    objective: str = "ig_norm"
    weight: float = 1.0
    epsilon: float = 0.03
    riemann_steps: int = 50
    attack_steps: int = 10
    step_size: float | None = None
    approx_factor: int = 5
    chunk_size: int | None = 10
    normalisation: str = "sum"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, OBJECTIVES)
        label = self.objective.upper().replace("_", "-")
        w = check_positive(f"{WEIGHT_NAMES[self.objective]} (the {label} weight)", self.weight,
                           allow_zero=True)
        object.__setattr__(self, "weight", float(w))
        object.__setattr__(self, "epsilon", float(check_positive("epsilon", self.epsilon)))
        check_int("riemann_steps (m)", self.riemann_steps, minimum=1)
        check_int("attack_steps (k)", self.attack_steps, minimum=1)
        check_int("approx_factor", self.approx_factor, minimum=1)
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, minimum=1)
        check_choice("normalisation", self.normalisation, NORMALISATIONS)
        check_int("seed", self.seed, minimum=0)
        alpha = 2.5 * self.epsilon / self.attack_steps if self.step_size is None else self.step_size
        object.__setattr__(self, "step_size", float(check_positive("step_size", alpha)))

    @property
    def attack_riemann_steps(self) -> int:
        """Riemann steps inside the inner maximisation: ``max(1, m // approx_factor)``."""
        return max(1, self.riemann_steps // self.approx_factor)

    @property
    def weight_name(self) -> str:
        """``"lambda"`` or ``"beta"``."""
        return WEIGHT_NAMES[self.objective]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RarConfig":
        """Inverse of :meth:`to_dict`; unknown fields are an error."""
        if not isinstance(d, dict):
            raise ParameterError(f"RAR configuration must be a dict, got {d!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(f"unknown RAR configuration field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def key(self) -> str:
        """Short stable hash of the configuration (10 hex digits)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def _check_config(config: Any) -> RarConfig:
    if not isinstance(config, RarConfig):
        raise ParameterError(f"config must be a RarConfig, got {type(config).__name__}")
    return config


# --------------------------------------------------------------------------------------
# Gradients along the path
# --------------------------------------------------------------------------------------

def _check_batch(x: torch.Tensor, x_adv: torch.Tensor | None, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ParameterError(f"x must be a tensor (batch >= 1, ...), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x_adv is not None and (not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape):
        raise ParameterError(f"x_adv must have x's shape {tuple(x.shape)}, got "
                             f"{tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__}")
    if not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]:
        raise ParameterError(f"y must be a tensor with x's batch size {x.shape[0]}, got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")


def _step_chunks(steps: int, chunk_size: int | None, like: torch.Tensor) -> Iterator[torch.Tensor]:
    """The right-Riemann points ``k/m``, ``k = 1..m``, in groups of ``chunk_size``."""
    alphas = torch.arange(1, steps + 1, device=like.device, dtype=like.dtype) / steps
    size = steps if chunk_size is None else chunk_size
    yield from alphas.split(size)


def _path_gradients(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                    alphas: torch.Tensor, loss_fn: PerExampleLoss, create_graph: bool) -> torch.Tensor:
    """``grad l`` at ``x + a (x_adv - x)`` for each ``a`` in ``alphas``: ``(len(alphas), B, ...)``.

    All points of the chunk go through the model as one batch (step-major); the gradient of
    the summed per-example losses is each point's own gradient (examples do not interact in
    eval mode). The caller freezes the model and enables grad.
    """
    c = len(alphas)
    z = (x.unsqueeze(0) + alphas.view(-1, *[1] * x.dim()) * (x_adv - x).unsqueeze(0)).flatten(0, 1)
    if not z.requires_grad:
        z.requires_grad_(True)
    per = loss_fn(model, z, y.repeat(c, *[1] * (y.dim() - 1)))
    if per.shape != (z.shape[0],):
        raise ParameterError(f"loss_fn must return one loss per example, shape ({z.shape[0]},), "
                             f"got {tuple(per.shape)}")
    (g,) = torch.autograd.grad(per.sum(), z, create_graph=create_graph)
    return g.view(c, *x.shape)


def _mean_path_gradient(model, x, x_adv, y, steps, chunk_size, loss_fn) -> torch.Tensor:
    """Pass 1: ``G = mean_k g_k`` without a graph, ``chunk_size`` steps at a time."""
    total = torch.zeros_like(x)
    for alphas in _step_chunks(steps, chunk_size, x):
        total += _path_gradients(model, x, x_adv, y, alphas, loss_fn, False).sum(dim=0)
    return total / steps


def loss_integrated_gradients(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                              y: torch.Tensor, *, steps: int, loss_fn: PerExampleLoss = emotion_mse,
                              create_graph: bool = False, chunk_size: int | None = None) -> torch.Tensor:
    """IG of the per-example loss from ``x`` to ``x_adv`` (right Riemann sum, ``steps`` = m).

    Returns ``(x_adv - x) * mean_k grad l(x + k/m (x_adv - x))`` with ``x``'s shape. With
    ``create_graph=True`` it is differentiable with respect to the parameters and to
    ``x``/``x_adv`` (whichever require grad), and every step's graph is kept; otherwise it is
    detached and ``chunk_size`` bounds the steps evaluated per pass. The model runs frozen.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 1))
        >>> x, x_adv, y = torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2), torch.zeros(1, 1)
        >>> ig = loss_integrated_gradients(net, x, x_adv, y, steps=1000)
        >>> l = lambda v: emotion_mse(net, v, y)
        >>> bool(abs(ig.sum() - (l(x_adv) - l(x)).sum()) < 1e-2)    # completeness
        True
    """
    _check_batch(x, x_adv, y)
    check_int("steps (m)", steps, minimum=1)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    with frozen_normalisation(model), torch.enable_grad():
        if not create_graph:
            xd, xa = x.detach(), x_adv.detach()
            return (xa - xd) * _mean_path_gradient(model, xd, xa, y.detach(), steps, chunk_size, loss_fn)
        total = 0
        for alphas in _step_chunks(steps, chunk_size, x):
            total = total + _path_gradients(model, x, x_adv, y, alphas, loss_fn, True).sum(dim=0)
        return (x_adv - x) * total / steps


def ig_l1_norm(ig: torch.Tensor, normalisation: str = "sum") -> torch.Tensor:
    """Per-example L1 norm of attributions ``(B, ...) -> (B,)``; ``"mean"`` divides by the size.

    Example:
        >>> ig_l1_norm(torch.tensor([[1.0, -3.0], [0.5, 0.5]])).tolist()
        [4.0, 1.0]
        >>> ig_l1_norm(torch.tensor([[1.0, -3.0]]), "mean").tolist()
        [2.0]
    """
    check_choice("normalisation", normalisation, NORMALISATIONS)
    flat = ig.flatten(1).abs()
    return flat.sum(dim=1) if normalisation == "sum" else flat.mean(dim=1)


def _elements(x: torch.Tensor, normalisation: str) -> int:
    """``n`` of the normalised L1 norm: 1 for ``"sum"``, the input elements per example for ``"mean"``."""
    return 1 if normalisation == "sum" else x[0].numel()


__all__ = ["OBJECTIVES", "NORMALISATIONS", "WEIGHT_NAMES", "PerExampleLoss", "RarConfig", "emotion_mse",
           "loss_integrated_gradients", "ig_l1_norm"]
