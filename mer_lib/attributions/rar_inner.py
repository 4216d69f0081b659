"""RAR's inner maximisation: PGD over ``x'`` in the L-infinity ball on the attribution objective.

The objective per example (:func:`rar_attack_objective`; ``|.|_1`` normalised as
``RarConfig.normalisation``, see :mod:`.rar_base`)::

    IG-NORM:      |IG(x, x')|_1
    IG-SUM-NORM:  l(x') + beta * |IG(x, x')|_1

with :attr:`RarConfig.attack_riemann_steps` (``max(1, m // approx_factor)``) Riemann steps in
the IG. Its gradient with respect to ``x'`` (:func:`attack_objective_gradient`) is chunked
like the objectives' backward (:func:`mer_lib.attributions.rar.rar_backward`): pass 1 computes
``G`` without a graph, pass 2 backpropagates ``<s, g_k> / m`` chunk by chunk with
``s = (c / n) * sign(d * G) * d`` (``c`` = 1 for IG-NORM, beta for IG-SUM-NORM; ``n`` = 1 or
the number of input elements), plus the direct term ``(c / n) * sign(IG) * G`` (``x'`` enters
``IG = d * G`` through ``d = x' - x`` as well). One double-backprop graph is used when all
steps fit in one chunk.

:func:`rar_attack` is the generic attack engine (:mod:`mer_lib.attacks.generic`) with the
objective :class:`RarAttackObjective`, a sign step into the L-infinity ball from a uniform
random start (:func:`uniform_linf_start`), and the run-all-steps stop rule. The whole inner
maximisation runs with BatchNorm and dropout frozen and never touches the parameters'
``.grad``. :mod:`.rar` re-exports every name of this module.

Example:
    >>> import torch
    >>> from mer_lib.attributions.rar_inner import RarConfig, rar_attack, rar_attack_objective
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Tanh())
    >>> x, y = torch.randn(4, 1, 2, 3), torch.rand(4, 8)
    >>> cfg = RarConfig(epsilon=0.1, riemann_steps=8, attack_steps=3, chunk_size=1, seed=2)
    >>> x_adv = rar_attack(model, x, y, cfg)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6), torch.equal(x_adv, rar_attack(model, x, y, cfg))
    (True, True)
    >>> rar_attack_objective(model, x, x_adv, y, cfg).shape
    torch.Size([4])
"""
from __future__ import annotations

import torch
from torch import nn

from ..attacks.generic import Evaluation, run_engine
from ..attacks.steps import LinfBall, SignStep
from ..attacks.stopping import RunAll
from ..errors import ParameterError, check_int
from ..models import frozen_normalisation
from .rar_base import (PerExampleLoss, RarConfig, _check_batch, _check_config, _elements, _mean_path_gradient,
                       _path_gradients, _step_chunks, emotion_mse, ig_l1_norm, loss_integrated_gradients)


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

    Memory-bounded like :func:`~mer_lib.attributions.rar.rar_backward` when
    ``config.chunk_size`` < steps (the two passes, plus the direct term ``sign(IG) * G``
    through ``d = x' - x``); otherwise one double-backprop graph. Never touches the
    parameters' ``.grad``; the model runs frozen.
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
               generator: torch.Generator | None = None, start: torch.Tensor | None = None,
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
    Model frozen inside, its modes restored, ``.grad`` untouched. ``start`` (x's shape) replaces
    the random start (a model stack draws each member's from its own generator).
    """
    cfg = _check_config(config)
    _check_batch(x, None, y)
    x, y = x.detach(), y.detach()
    if start is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        start = uniform_linf_start(x, cfg.epsilon, gen)
    elif start.shape != x.shape:
        raise ParameterError(f"start must have x's shape {tuple(x.shape)}, got {tuple(start.shape)}")
    res = run_engine(model, x, y, objective=RarAttackObjective(cfg, loss_fn), update=SignStep(cfg.step_size),
                     projection=LinfBall(cfg.epsilon), stop=RunAll(), start=start,
                     steps=cfg.attack_steps, evaluate_last=False)
    return (x + res.final_delta).detach()


__all__ = ["rar_attack_objective", "attack_objective_gradient", "uniform_linf_start", "RarAttackObjective",
           "rar_attack"]
