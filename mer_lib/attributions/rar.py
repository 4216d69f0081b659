"""Robust Attribution Regularization (Chen et al. 2019): the IG-NORM and IG-SUM-NORM objectives.

RAR lives in three modules; this one is the entry point and re-exports the other two, so
every RAR name imports from ``mer_lib.attributions.rar``:

- :mod:`.rar_base`    :class:`RarConfig` (whose field defaults are the project's RAR
  defaults), the IG of the loss from x to x' (:func:`loss_integrated_gradients`, double
  backprop) and the per-example L1 norm (:func:`ig_l1_norm`, its normalisations);
- :mod:`.rar`         (this module) the training objectives and their memory-bounded backward;
- :mod:`.rar_inner`   the inner maximisation over x' (:func:`rar_attack`).

**Objectives** (``w`` is lambda for IG-NORM and beta for IG-SUM-NORM, :class:`RarConfig`;
``l`` the per-example loss, default :func:`emotion_mse`)::

    IG-NORM:      mean_b [ l(x_b)  + w * |IG(x_b, x'_b)|_1 ]
    IG-SUM-NORM:  mean_b [ l(x'_b) + w * |IG(x_b, x'_b)|_1 ]

with ``IG(x, x') = d * G``, ``d = x' - x``, ``G = (1/m) sum_k g_k`` (:mod:`.rar_base`), the L1
norm normalised as ``RarConfig.normalisation``, and ``x'`` from the inner maximisation
(:func:`rar_attack`) treated as a constant (Danskin's theorem: the gradient of a max is the
gradient at the maximiser).

**Memory-bounded backward** (:func:`rar_backward`). The textbook double backprop
(:func:`rar_loss`) keeps the graphs of all ``m`` gradient evaluations until the end, so memory
grows with ``m``. The L1 term depends on the parameters only through ``G``, and ``d`` is a
constant, so with ``s = w / (B n) * sign(d * G) * d`` (detached; ``n`` = 1 or the number of
input elements)::

    d(w mean_b |IG_b|_1 / n)/d theta = (1/m) sum_k <s, d g_k / d theta>.

Pass 1 computes ``G`` without a graph (chunks of ``chunk_size`` steps); pass 2 recomputes
each chunk's ``g_k`` with ``create_graph=True`` and backpropagates ``<s, g_k> / m`` at once,
freeing the chunk's graph. Peak memory is that of ``chunk_size`` steps whatever ``m``; the
price is one extra forward/backward per step (pass 1). When all steps fit in one chunk
(``chunk_size >= m`` or ``None``) the single-pass textbook graph is used. The inner
maximisation's gradient with respect to ``x'`` is chunked the same way (:mod:`.rar_inner`).

Attribution passes (every evaluation of ``g_k``, the whole inner maximisation) run with
BatchNorm and dropout frozen (:func:`mer_lib.models.frozen_normalisation`); the task term
``l(x)`` / ``l(x')`` runs in the model's own mode (training: batch statistics, dropout),
and is computed first. The inner maximisation never touches the parameters' ``.grad``.

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

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ParameterError
from ..models import frozen_normalisation
from .rar_base import (NORMALISATIONS, OBJECTIVES, WEIGHT_NAMES, PerExampleLoss, RarConfig,  # noqa: F401
                       _check_batch, _check_config, _elements, _mean_path_gradient, _path_gradients,
                       _step_chunks, emotion_mse, ig_l1_norm, loss_integrated_gradients)  # (re-exported)
from .rar_inner import (RarAttackObjective, _objective_weights, attack_objective_gradient,  # noqa: F401
                        rar_attack, rar_attack_objective, uniform_linf_start)  # (re-exported)


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


def _trainable(model: nn.Module) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ParameterError("the model has no parameters that require grad: nothing to train")
    return params


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


__all__ = ["OBJECTIVES", "NORMALISATIONS", "RarConfig", "RarTerms", "emotion_mse",
           "loss_integrated_gradients", "ig_l1_norm", "rar_loss", "rar_backward", "ig_norm_backward",
           "rar_attack_objective", "attack_objective_gradient", "uniform_linf_start", "RarAttackObjective",
           "rar_attack"]
