"""Robust Attribution Regularization (Chen et al. 2019): loss IG, IG-NORM / IG-SUM-NORM, inner max.

**IG of the loss.** For the per-example loss ``l`` (default :func:`emotion_mse`: the MSE over
the eight emotions) and a perturbed input ``x'``, with ``d = x' - x`` and ``m`` steps of the
right Riemann sum::

    IG(x, x') = d * G,   G = (1/m) sum_{k=1..m} g_k,   g_k = grad_x l(x + (k/m) d).

Completeness: ``sum IG = l(x') - l(x)`` up to the Riemann error (``O(1/m)``; exactly
``d^T H d / (2m)`` for a quadratic loss). :func:`loss_integrated_gradients` computes it,
differentiably with ``create_graph=True`` (double backprop; captum cannot differentiate
through its attributions). It equals captum's IG of the loss with baseline ``x``, input
``x'`` and ``method="riemann_right"``.

**Objectives** (``w`` is lambda for IG-NORM and beta for IG-SUM-NORM, :class:`RarConfig`)::

    IG-NORM:      mean_b [ l(x_b)  + w * |IG(x_b, x'_b)|_1 ]
    IG-SUM-NORM:  mean_b [ l(x'_b) + w * |IG(x_b, x'_b)|_1 ]

with ``x'`` from the inner maximisation (:func:`rar_attack`) treated as a constant
(Danskin's theorem: the gradient of a max is the gradient at the maximiser).

**Normalisation of the L1 norm** (``RarConfig.normalisation``). Each example's norm is
taken over that example's input elements, and the batch objective is the *mean* over
examples (as for the MSE), so the weight does not depend on the batch size. Within an
example the default ``"sum"`` is the plain L1 norm ``sum_i |IG_i|``: by completeness it is
measured in *loss units* (it is at least ``|l(x') - l(x)|``, with equality when no
attributions cancel), so ``w = 1`` weighs a unit of attribution like a unit of loss, as in
Chen et al.; and for this fully convolutional, globally pooled network it changes little with
the number of frames, since each input's gradient shrinks as the map grows (an untrained A2E,
width 0.125, eps 0.1: +18 % for 252 instead of 126 frames). ``"mean"`` divides by the number
of input elements instead (a per-bin average: 1/18774 of ``"sum"`` for 126 x 149 inputs),
which would make a good weight depend on the excerpt length.

**Memory-bounded backward** (:func:`rar_backward`). The textbook double backprop keeps the
graphs of all ``m`` gradient evaluations until the end, so memory grows with ``m``. The
L1 term depends on the parameters only through ``G``, and ``d`` is a constant, so with
``s = w / (B n) * sign(d * G) * d`` (detached; ``n`` = 1 or the number of input elements)::

    d(w mean_b |IG_b|_1 / n)/d theta = (1/m) sum_k <s, d g_k / d theta>.

Pass 1 computes ``G`` without a graph (chunks of ``chunk_size`` steps); pass 2 recomputes
each chunk's ``g_k`` with ``create_graph=True`` and backpropagates ``<s, g_k> / m`` at once,
freeing the chunk's graph. Peak memory is that of ``chunk_size`` steps whatever ``m``; the
price is one extra forward/backward per step (pass 1). When all steps fit in one chunk
(``chunk_size >= m`` or ``None``) the single-pass textbook graph is used. The inner
maximisation's gradient with respect to ``x'`` is chunked the same way, plus the direct term
``sign(IG) * G`` (``x'`` enters ``IG`` through ``d`` as well).

Attribution passes (every evaluation of ``g_k``, the whole inner maximisation) run with
BatchNorm and dropout frozen (:func:`mer_lib.models.frozen_normalisation`); the task term
``l(x)`` / ``l(x')`` runs in the model's own mode (training: batch statistics, dropout),
and is computed first. The inner maximisation never touches the parameters' ``.grad``.

:func:`rar_attack` is the generic attack engine (:mod:`mer_lib.attacks.generic`) with the
objective :class:`RarAttackObjective`, a sign step into the L-infinity ball from a uniform
random start, and the run-all-steps stop rule.

Example:
    >>> import torch
    >>> from mer_lib.attributions.rar import RarConfig, rar_attack, rar_backward
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Tanh())
    >>> x, y = torch.randn(4, 1, 2, 3), torch.rand(4, 8)
    >>> cfg = RarConfig(weight=1.0, epsilon=0.1, riemann_steps=8, attack_steps=3, chunk_size=2)
    >>> x_adv = rar_attack(model, x, y, cfg)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    >>> terms = rar_backward(model, x, x_adv, y, cfg)     # accumulates into .grad
    >>> sorted(terms.as_dict()), model[1].weight.grad is not None
    (['ig_norm', 'loss', 'task'], True)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..attacks.generic import Evaluation, run_engine
from ..attacks.steps import LinfBall, SignStep
from ..attacks.stopping import RunAll
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
    epsilon: float = 0.1
    riemann_steps: int = 50
    attack_steps: int = 10
    step_size: float | None = None
    approx_factor: int = 5
    chunk_size: int | None = 5
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


@dataclass
class RarTerms:
    """Values of a RAR objective on a batch (scalars are batch means).

    ``loss = task + weight * ig_norm``; ``task`` is ``l(x)`` (IG-NORM) or ``l(x')``
    (IG-SUM-NORM); ``ig_norm`` is the mean over examples of the normalised L1 norm of
    ``IG(x, x')``, ``ig_norm_per_example`` its ``(B,)`` values. From :func:`rar_loss` the
    ``loss`` is attached to the graph; from :func:`rar_backward` everything is detached.
    """

    loss: torch.Tensor
    task: torch.Tensor
    ig_norm: torch.Tensor
    ig_norm_per_example: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        """``{"loss", "task", "ig_norm"}`` as Python floats (for logs and history tables)."""
        return {k: float(getattr(self, k).detach()) for k in ("loss", "task", "ig_norm")}


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
    return 1 if normalisation == "sum" else x[0].numel()


def _trainable(model: nn.Module) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ParameterError("the model has no parameters that require grad: nothing to train")
    return params


def _check_config(config: Any) -> RarConfig:
    if not isinstance(config, RarConfig):
        raise ParameterError(f"config must be a RarConfig, got {type(config).__name__}")
    return config


# --------------------------------------------------------------------------------------
# Training objectives
# --------------------------------------------------------------------------------------

def rar_loss(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
             config: RarConfig, *, loss_fn: PerExampleLoss = emotion_mse) -> RarTerms:
    """The RAR objective with its full graph (textbook double backprop; memory grows with m).

    ``terms.loss.backward()`` gives the exact gradient; :func:`rar_backward` gives the same
    gradient with bounded memory. ``x_adv`` is detached (a constant, Danskin).
    """
    cfg = _check_config(config)
    _check_batch(x, x_adv, y)
    x, x_adv, y = x.detach(), x_adv.detach(), y.detach()
    task = loss_fn(model, x if cfg.objective == "ig_norm" else x_adv, y).mean()
    ig = loss_integrated_gradients(model, x, x_adv, y, steps=cfg.riemann_steps, loss_fn=loss_fn,
                                   create_graph=cfg.weight > 0)
    per = ig_l1_norm(ig, cfg.normalisation)
    ig_norm = per.mean()
    return RarTerms(task + cfg.weight * ig_norm, task, ig_norm, per.detach())


def rar_backward(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                 config: RarConfig, *, loss_fn: PerExampleLoss = emotion_mse) -> RarTerms:
    """Accumulate the gradient of the RAR objective into the parameters' ``.grad``, memory-bounded.

    Computes the same gradient as ``rar_loss(...).loss.backward()`` (see the module
    docstring for the two passes), ``config.chunk_size`` Riemann steps at a time, and
    returns the detached :class:`RarTerms`. Call ``optimizer.zero_grad()`` before and
    ``optimizer.step()`` after, as around ``loss.backward()``.
    """
    cfg = _check_config(config)
    _check_batch(x, x_adv, y)
    params = _trainable(model)
    x, x_adv, y = x.detach(), x_adv.detach(), y.detach()
    m = cfg.riemann_steps
    if cfg.chunk_size is None or cfg.chunk_size >= m:
        terms = rar_loss(model, x, x_adv, y, cfg, loss_fn=loss_fn)
        torch.autograd.backward(terms.loss, inputs=params)
        return RarTerms(terms.loss.detach(), terms.task.detach(), terms.ig_norm.detach(),
                        terms.ig_norm_per_example)

    with torch.enable_grad():
        task = loss_fn(model, x if cfg.objective == "ig_norm" else x_adv, y).mean()
        torch.autograd.backward(task, inputs=params)
    per = ig_norm_backward(model, x, x_adv, y, cfg, loss_fn=loss_fn)
    ig_norm = per.mean()
    return RarTerms((task + cfg.weight * ig_norm).detach(), task.detach(), ig_norm, per)


def ig_norm_backward(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                     config: RarConfig, *, loss_fn: PerExampleLoss = emotion_mse) -> torch.Tensor:
    """The regulariser alone: accumulate the gradient of ``weight * mean_b |IG(x_b, x'_b)|_1``.

    The memory-bounded two passes of the module docstring when ``config.chunk_size`` < m,
    else one double-backprop graph; the model runs frozen. Returns the per-example
    (normalised) L1 norms ``(B,)``, detached. :func:`rar_backward` is the task term's
    backward followed by this; an objective that regularises only part of its batch calls
    it on that part (:mod:`mer_lib.objectives.rar_training`).
    """
    cfg = _check_config(config)
    _check_batch(x, x_adv, y)
    params = _trainable(model)
    x, x_adv, y = x.detach(), x_adv.detach(), y.detach()
    m = cfg.riemann_steps
    with torch.enable_grad(), frozen_normalisation(model):
        if cfg.chunk_size is None or cfg.chunk_size >= m:
            ig = loss_integrated_gradients(model, x, x_adv, y, steps=m, loss_fn=loss_fn,
                                           create_graph=cfg.weight > 0)
            per = ig_l1_norm(ig, cfg.normalisation)
            if cfg.weight > 0:
                torch.autograd.backward(cfg.weight * per.mean(), inputs=params)
            return per.detach()
        d = x_adv - x
        ig = d * _mean_path_gradient(model, x, x_adv, y, m, cfg.chunk_size, loss_fn)
        per = ig_l1_norm(ig, cfg.normalisation)
        if cfg.weight > 0:
            s = (cfg.weight / (x.shape[0] * _elements(x, cfg.normalisation))) * torch.sign(ig) * d
            for alphas in _step_chunks(m, cfg.chunk_size, x):
                g = _path_gradients(model, x, x_adv, y, alphas, loss_fn, True)
                torch.autograd.backward((g * s).sum() / m, inputs=params)
    return per


# --------------------------------------------------------------------------------------
# Inner maximisation
# --------------------------------------------------------------------------------------

def _objective_weights(cfg: RarConfig) -> tuple[float, bool]:
    """(weight of the L1 term, whether l(x') is part of the inner objective)."""
    if cfg.objective == "ig_norm":
        return 1.0, False
    return cfg.weight, True


def rar_attack_objective(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                         config: RarConfig, *, steps: int | None = None,
                         loss_fn: PerExampleLoss = emotion_mse) -> torch.Tensor:
    """The inner maximisation's objective per example ``(B,)``, detached, model frozen.

    IG-NORM: ``|IG(x, x')|_1``; IG-SUM-NORM: ``l(x') + beta |IG(x, x')|_1`` (normalised as
    configured; ``steps`` defaults to :attr:`RarConfig.attack_riemann_steps`).
    """
    cfg = _check_config(config)
    steps = cfg.attack_riemann_steps if steps is None else steps
    c, with_loss = _objective_weights(cfg)
    ig = loss_integrated_gradients(model, x, x_adv, y, steps=steps, loss_fn=loss_fn,
                                   chunk_size=cfg.chunk_size)
    value = c * ig_l1_norm(ig, cfg.normalisation)
    if with_loss:
        with frozen_normalisation(model), torch.no_grad():
            value = value + loss_fn(model, x_adv.detach(), y.detach())
    return value.detach()


def attack_objective_gradient(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                              y: torch.Tensor, config: RarConfig, *, steps: int | None = None,
                              loss_fn: PerExampleLoss = emotion_mse) -> torch.Tensor:
    """Gradient of the summed :func:`rar_attack_objective` with respect to ``x_adv``.

    Memory-bounded like :func:`rar_backward` when ``config.chunk_size`` < steps (the two
    passes, plus the direct term ``sign(IG) * G`` through ``d = x' - x``); otherwise one
    double-backprop graph. Never touches the parameters' ``.grad``; the model runs frozen.
    """
    cfg = _check_config(config)
    _check_batch(x, x_adv, y)
    m = cfg.attack_riemann_steps if steps is None else check_int("steps (m)", steps, minimum=1)
    c, with_loss = _objective_weights(cfg)
    n = _elements(x, cfg.normalisation)
    x, y = x.detach(), y.detach()
    with frozen_normalisation(model), torch.enable_grad():
        xa = x_adv.detach().requires_grad_(True)
        grad = torch.zeros_like(x)
        if with_loss:
            grad += torch.autograd.grad(loss_fn(model, xa, y).sum(), xa)[0]
        if c == 0:
            return grad
        if cfg.chunk_size is None or cfg.chunk_size >= m:
            ig = loss_integrated_gradients(model, x, xa, y, steps=m, loss_fn=loss_fn, create_graph=True)
            return grad + torch.autograd.grad(c * ig_l1_norm(ig, cfg.normalisation).sum(), xa)[0]
        mean_g = _mean_path_gradient(model, x, xa.detach(), y, m, cfg.chunk_size, loss_fn)
        d = xa.detach() - x
        sign = torch.sign(d * mean_g)
        grad += (c / n) * sign * mean_g            # through d = x' - x
        s = (c / n) * sign * d                     # through G (each g_k depends on x')
        for alphas in _step_chunks(m, cfg.chunk_size, x):
            g = _path_gradients(model, x, xa, y, alphas, loss_fn, True)
            grad += torch.autograd.grad((g * s).sum() / m, xa)[0]
    return grad


def uniform_linf_start(x: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform random points of the L-infinity ball of radius ``epsilon`` around 0, shaped like ``x``.

    Drawn on the CPU in float64 from ``generator`` (so CPU and GPU runs start alike), then
    moved to ``x``'s device and dtype.
    """
    return LinfBall(epsilon).sample(tuple(x.shape), generator, torch.float64).to(device=x.device, dtype=x.dtype)


class RarAttackObjective:
    """The inner maximisation's objective for the generic attack engine (:func:`~mer_lib.attacks.generic.run_engine`).

    At ``x' = x + delta`` its value is :func:`rar_attack_objective` and its gradient
    :func:`attack_objective_gradient` (memory-bounded), both computed on demand; it gives no
    model output (the run-all stop rule needs none).
    """

    def __init__(self, config: RarConfig, loss_fn: PerExampleLoss = emotion_mse) -> None:
        self.config, self.loss_fn = _check_config(config), loss_fn

    def __call__(self, model, x, delta, y, *, grad):
        x_adv = x + delta
        cfg, loss_fn = self.config, self.loss_fn
        return Evaluation(
            value=lambda: rar_attack_objective(model, x, x_adv, y, cfg, loss_fn=loss_fn),
            gradient=(lambda: attack_objective_gradient(model, x, x_adv, y, cfg, loss_fn=loss_fn)) if grad else None)


def rar_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: RarConfig, *,
               generator: torch.Generator | None = None,
               loss_fn: PerExampleLoss = emotion_mse) -> torch.Tensor:
    """The inner maximisation: PGD on :func:`rar_attack_objective` over ``x'`` in B_inf(x, eps).

    The generic attack engine with :class:`RarAttackObjective`, a
    :class:`~mer_lib.attacks.steps.SignStep` of ``config.step_size`` into the
    :class:`~mer_lib.attacks.steps.LinfBall` of ``config.epsilon`` and the
    :class:`~mer_lib.attacks.stopping.RunAll` stop rule: from a uniform random point of the
    ball (from ``generator``, default one seeded with ``config.seed``) it takes
    ``config.attack_steps`` steps ``delta <- clamp(delta + alpha * sign(grad), -eps, eps)``,
    :attr:`RarConfig.attack_riemann_steps` Riemann steps inside, all examples together, and
    returns ``x + delta`` after the last step (detached; the last point is not evaluated).
    Model frozen inside, its modes restored, ``.grad`` untouched.
    """
    cfg = _check_config(config)
    _check_batch(x, None, y)
    gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
    x, y = x.detach(), y.detach()
    res = run_engine(model, x, y, objective=RarAttackObjective(cfg, loss_fn), update=SignStep(cfg.step_size),
                     projection=LinfBall(cfg.epsilon), stop=RunAll(), start=uniform_linf_start(x, cfg.epsilon, gen),
                     steps=cfg.attack_steps, evaluate_last=False)
    return (x + res.final_delta).detach()


__all__ = ["OBJECTIVES", "NORMALISATIONS", "RarConfig", "RarTerms", "emotion_mse",
           "loss_integrated_gradients", "ig_l1_norm", "rar_loss", "rar_backward", "ig_norm_backward",
           "rar_attack_objective", "attack_objective_gradient", "uniform_linf_start", "RarAttackObjective",
           "rar_attack"]
