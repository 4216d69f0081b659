"""Robust Attribution Regularization training (Chen et al. 2019): the objectives and their variants.

Each step takes a minibatch ``x`` (B examples) and its *regularisation batch* ``R``, the first
``reg_batch`` examples (``None``: all B; the batch is already a random draw):

1. the inner maximisation :func:`~mer_lib.attributions.rar.rar_attack` finds ``x'`` for the
   examples of ``R`` in the L-infinity ball of radius ``epsilon`` (the generic attack engine:
   uniform random start, ``attack_steps`` signed-gradient steps of ``step_size``, with
   ``riemann_steps // approx_factor`` Riemann steps inside; model frozen);
2. the task term in the model's train mode (dropout, BatchNorm batch statistics), backward;
3. the regulariser ``weight * mean_R |IG(x, x')|_1`` by
   :func:`~mer_lib.attributions.rar.ig_norm_backward` (``riemann_steps`` right-Riemann steps,
   double backprop, in chunks of ``chunk_size`` steps so that memory stays flat as m grows;
   normalisation frozen), then ``optimizer.step()``.

The objectives (``w`` = the option ``weight``):

- ``"ig_norm"`` (IG-NORM, ``w`` = lambda): ``mean_B l(x) + w * mean_R |IG(x, x')|_1`` with ``x'``
  maximising ``|IG|_1``;
- ``"ig_sum_norm"`` (IG-SUM-NORM, ``w`` = beta): ``mean_B l(x~) + w * mean_R |IG(x, x')|_1``
  with ``x'`` maximising ``l(x') + w |IG|_1``, where ``x~ = x'`` on ``R`` and ``x`` elsewhere.

With ``reg_batch=None`` (the paper profile) both are exactly Chen et al.'s objectives on the
batch. A smaller ``R`` (the quick profile, to bound the cost on a CPU) gives IG-NORM an
unbiased estimate of its regulariser, and IG-SUM-NORM a mixture of robust examples (``R``)
and clean ones, as ExpO's regularisation batch does.

The loss ``l`` is the variant's task loss (the emotion MSE for these variants); the IG is the
one of the per-example emotion MSE. The L1 norm's ``normalisation`` is ``"sum"`` (the plain
norm, in loss units) or ``"mean"`` (per input element), see :mod:`mer_lib.attributions.rar`.
The random start of each step is drawn from a generator seeded with (training seed, epoch,
batch), so training is deterministic and a resumed run draws the same starts. bf16 autocast
is not used (double backprop runs in float32).

Components: ``train_loss`` (= ``rar_task_loss + weight * rar_ig_norm``), ``rar_task_loss``,
``rar_ig_norm`` (the mean over ``R`` of the normalised ``|IG(x, x')|_1``).

Both stack (:meth:`_RarObjective.stack_step`): K seeds train as one model stack, the inner
maximisation and the regulariser of all members in the same passes, each member's random
start from its own seed.

**Defaults** (``defaults``, :data:`RAR_DEFAULTS`): the field defaults of
:class:`~mer_lib.attributions.rar.RarConfig`, the one place they are set, plus ``reg_batch``
None (all of the batch). For this project's standardised spectrograms: ``epsilon`` 0.03, the
attribution attack's radius (``attr_epsilon`` of the Attributions chapter, between the attack
chapter's quick epsilons 0.01 and 0.1), so the models are trained against the threat they are
evaluated under; ``riemann_steps`` m = 50 and ``approx_factor`` 5 (10 Riemann steps inside
the attack, DESIGN §6); ``attack_steps`` k = 10 with Madry's step ``2.5 eps / k``; weight 1 (a
unit of attribution weighs like a unit of loss); ``chunk_size`` 10 (one graph for m <= 10).
The resolved options are part of a trained model's cache key: changing a default changes the
keys of the stored RAR models (``tests/test_rar_defaults.py`` pins them). The experiment
passes the profile's sizes (:func:`mer_lib.extensions.rar_options`: quick m = 4, k = 3, one
regularised clip per batch).

Registered variants: ``ignorm_a2e``, ``ignorm_a2b2e`` (IG-NORM on the A2E and the bottleneck
architecture), ``igsumnorm_a2e``, ``igsumnorm_a2b2e`` (IG-SUM-NORM).

Example:
    >>> import torch
    >>> from mer_lib.models import build_model, get_variant
    >>> from mer_lib.objectives import StepContext, make_objective
    >>> torch.manual_seed(0) and None
    >>> model = build_model("a2e", width=0.0625)
    >>> ctx = StepContext(model, get_variant("ignorm_a2e"), torch.optim.Adam(model.parameters()))
    >>> objective = make_objective("ignorm_a2e", {"riemann_steps": 4, "attack_steps": 1, "reg_batch": 2})
    >>> parts = objective.step(ctx, torch.randn(4, 1, 16, 16), torch.rand(4, 8), None)
    >>> sorted(parts), bool(parts["rar_ig_norm"] > 0)
    (['rar_ig_norm', 'rar_task_loss', 'train_loss'], True)
    >>> make_objective("ig_sum_norm", {"weight": -1.0})
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: objective 'ig_sum_norm': option weight (beta) must be a finite number >= 0, got -1.0
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..attributions.rar import NORMALISATIONS, WEIGHT_NAMES, RarConfig, ig_norm_backward, rar_attack
from ..attributions.rar_inner import uniform_linf_start
from ..errors import ParameterError
from ..models import Variant, register_variant
from ..stack import FlatStack
from .base import Objective, StepContext, check_finite_option, register_objective, task_loss, task_losses

#: The :class:`RarConfig` fields that are options of both objectives (not ``objective``: the
#: objective's own name; not ``seed``: each step's random start comes from :func:`batch_generator`).
RAR_CONFIG_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RarConfig)
                                            if f.name not in ("objective", "seed"))
#: Options of both objectives and their defaults: :class:`RarConfig`'s field defaults (the one
#: source of the RAR defaults, see the module docstring for the choice) plus ``reg_batch``.
RAR_DEFAULTS: dict[str, Any] = {**{f.name: f.default for f in dataclasses.fields(RarConfig)
                                   if f.name in RAR_CONFIG_OPTIONS}, "reg_batch": None}


def _check_count(objective: str, name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or None" if optional else ""
        raise ParameterError(f"objective {objective!r}: option {name} must be an integer >= 1{extra}, got {value!r}")


def batch_generator(ctx: StepContext, seed: int | None = None) -> torch.Generator:
    """The random-start generator of one step, seeded with (training seed, epoch, batch).

    ``seed`` replaces the configuration's (a stack's member's own seed).

    Example:
        >>> from types import SimpleNamespace
        >>> ctx = SimpleNamespace(config=SimpleNamespace(seed=6), epoch=2, batch=3)
        >>> a, b = batch_generator(ctx), batch_generator(ctx)
        >>> bool(torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b)))
        True
    """
    if seed is None:
        seed = 0 if ctx.config is None else int(ctx.config.seed)
    state = np.random.SeedSequence([seed, int(ctx.epoch), int(ctx.batch)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


class _RarObjective(Objective):
    """What IG-NORM and IG-SUM-NORM share: options, the inner max, the chunked regulariser."""

    components = ("train_loss", "rar_task_loss", "rar_ig_norm")
    defaults = RAR_DEFAULTS
    stackable = True

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        name = cls.name
        check_finite_option(name, f"weight ({WEIGHT_NAMES[name]})", options["weight"])
        check_finite_option(name, "epsilon", options["epsilon"], strict=True)
        for key in ("riemann_steps", "attack_steps", "approx_factor"):
            _check_count(name, key, options[key])
        for key in ("chunk_size", "reg_batch"):
            _check_count(name, key, options[key], optional=True)
        if options["step_size"] is not None:
            check_finite_option(name, "step_size", options["step_size"], strict=True)
        if options["normalisation"] not in NORMALISATIONS:
            raise ParameterError(f"objective {name!r}: option normalisation must be one of "
                                 f"{list(NORMALISATIONS)}, got {options['normalisation']!r}")

    @property
    def rar_config(self) -> RarConfig:
        """The :class:`~mer_lib.attributions.rar.RarConfig` of these options."""
        return RarConfig(objective=self.name, **{k: self.options[k] for k in RAR_CONFIG_OPTIONS})

    def step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
             midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg = self.rar_config
        r = x.shape[0] if self.options["reg_batch"] is None else min(self.options["reg_batch"], x.shape[0])
        xr, yr = x[:r].detach(), emotions[:r].detach()
        x_adv = rar_attack(ctx.model, xr, yr, cfg, generator=batch_generator(ctx))
        task_input = x if self.name == "ig_norm" else torch.cat([x_adv, x[r:]])
        ctx.optimizer.zero_grad(set_to_none=True)
        task = task_loss(ctx.model, ctx.variant, task_input, emotions, midlevel)
        task.backward()
        ig_norm = ig_norm_backward(ctx.model, xr, x_adv, yr, cfg).mean()
        ctx.optimizer.step()
        task = task.detach()
        return {"train_loss": task + cfg.weight * ig_norm, "rar_task_loss": task, "rar_ig_norm": ig_norm}

    def stack_step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
                   midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """:meth:`step` for K members at once (``x`` is ``(K, B, ...)``).

        The inner maximisation and the regulariser run on the stack seen as one model of
        ``K x R`` examples (:class:`~mer_lib.stack.FlatStack`, which also routes the Riemann
        steps' point-major batches to their members): both are per example, each
        member's random start comes from its own seed's generator, and the regulariser's
        weight is scaled by K so that each member gets the gradient of its own mean.
        """
        cfg = self.rar_config
        k, b = x.shape[:2]
        r = b if self.options["reg_batch"] is None else min(self.options["reg_batch"], b)
        xr, yr = x[:, :r].detach(), emotions[:, :r].detach()
        flat = FlatStack(ctx.model, rows_per_member=r)
        if ctx.configs is None or len(ctx.configs) != k:
            raise ParameterError(f"objective {self.name!r}: a stacked step needs the {k} members' configurations "
                                 f"(StepContext.configs: their seeds give the random starts)")
        seeds = [c.seed for c in ctx.configs]
        start = torch.cat([uniform_linf_start(xr[m], cfg.epsilon, batch_generator(ctx, seeds[m])) for m in range(k)])
        x_adv = rar_attack(flat, xr.flatten(0, 1), yr.flatten(0, 1), cfg, start=start).view_as(xr)
        task_input = x if self.name == "ig_norm" else torch.cat([x_adv, x[:, r:]], dim=1)
        ctx.optimizer.zero_grad(set_to_none=True)
        tasks = task_losses(ctx.model, ctx.variant, task_input, emotions, midlevel)
        tasks.sum().backward()
        per = ig_norm_backward(flat, xr.flatten(0, 1), x_adv.flatten(0, 1), yr.flatten(0, 1),
                               dataclasses.replace(cfg, weight=cfg.weight * k))
        ig_norm = per.view(k, r).mean(dim=1)
        ctx.optimizer.step()
        tasks = tasks.detach()
        return {"train_loss": tasks + cfg.weight * ig_norm, "rar_task_loss": tasks, "rar_ig_norm": ig_norm}


@register_objective
class IgNorm(_RarObjective):
    """IG-NORM: task loss at x + lambda * max over the ball of |IG(x, x')|_1."""

    name = "ig_norm"


@register_objective
class IgSumNorm(_RarObjective):
    """IG-SUM-NORM: max over the ball of [task loss at x' + beta * |IG(x, x')|_1]."""

    name = "ig_sum_norm"


for _v in (
    Variant("ignorm_a2e", "direct", objective="ig_norm", label="IG-NORM-A2E",
            description="A2E trained with IG-NORM (robust Integrated Gradients attributions)"),
    Variant("ignorm_a2b2e", "bottleneck", objective="ig_norm", label="IG-NORM-A2B2E",
            description="A2B2E trained with IG-NORM"),
    Variant("igsumnorm_a2e", "direct", objective="ig_sum_norm", label="IG-SUM-NORM-A2E",
            description="A2E trained with IG-SUM-NORM (robust predictions and attributions)"),
    Variant("igsumnorm_a2b2e", "bottleneck", objective="ig_sum_norm", label="IG-SUM-NORM-A2B2E",
            description="A2B2E trained with IG-SUM-NORM"),
):
    register_variant(_v)
