"""Adversarial training as in the reference (aA2E, aA2B2E).

Every batch takes the clean step of :class:`~mer_lib.objectives.Supervised`. In an
adversarial epoch (``epoch % config.adv_every == 0``: epochs 5, 10, 15, ... as in the
reference) the whole batch is then attacked at once by :func:`mer_lib.attacks.attack` with
``config.adv_attack`` (reference mode, eps 0.001, Adam lr 0.002, 50 forward passes) under
frozen normalisation (BatchNorm uses and keeps its running statistics, no dropout), and the
model takes one more optimiser step with the task loss on the adversarial batch, chosen by
``config.adv_input`` (:func:`mer_lib.training.adversarial_input`: the original's kept
perturbation by default).

Components: ``train_loss`` (clean steps) and ``adv_loss`` (adversarial steps; absent in
clean epochs, so the history shows NaN there).

It stacks: :meth:`Adversarial.stack_step` takes the clean step of all K members in one pass,
attacks them in one pass (:func:`mer_lib.attacks.stacked.stacked_attack`, per-member
per-example stopping) and takes the adversarial step of all of them.

Example:
    >>> import torch
    >>> from mer_lib.models import build_model, get_variant
    >>> from mer_lib.objectives import Adversarial, StepContext
    >>> from mer_lib.training import TrainConfig
    >>> torch.manual_seed(0) and None
    >>> model = build_model("aa2e", width=0.0625)
    >>> cfg = TrainConfig("aa2e", seed=0, adv_every=1)
    >>> ctx = StepContext(model, get_variant("aa2e"), torch.optim.Adam(model.parameters()), cfg)
    >>> sorted(Adversarial().step(ctx, torch.randn(2, 1, 16, 16), torch.rand(2, 8), None))
    ['adv_loss', 'train_loss']
"""
from __future__ import annotations

import torch

from ..attacks import engine   # engine.attack is looked up at call time (tests spy on it)
from ..attacks.config import AttackConfig
from ..attacks.stacked import stacked_attack
from ..models import frozen_normalisation
from .adversarial_batch import adversarial_input
from .base import Objective, StepContext, register_objective, task_loss, task_losses


@register_objective
class Adversarial(Objective):
    """Clean step, then (in adversarial epochs) a step on the attacked batch."""

    name = "adversarial"
    components = ("train_loss", "adv_loss")
    stackable = True

    def step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
             midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        with ctx.autocast(x):
            clean = task_loss(ctx.model, ctx.variant, x, emotions, midlevel)
        parts = {"train_loss": self.descend(ctx, clean)}
        if not ctx.config.is_adversarial_epoch(ctx.epoch):
            return parts
        if not torch.isfinite(parts["train_loss"]):
            return parts   # the trainer reports it; attacking a broken model is wasted time
        with frozen_normalisation(ctx.model):
            result = engine.attack(ctx.model, x, emotions, AttackConfig.from_dict(ctx.config.adv_attack))
        x_adv = adversarial_input(result, ctx.config.adv_input)
        with ctx.autocast(x):
            adv = task_loss(ctx.model, ctx.variant, x_adv, emotions, midlevel)
        parts["adv_loss"] = self.descend(ctx, adv)
        return parts

    def stack_step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
                   midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        with ctx.autocast(x):
            clean = task_losses(ctx.model, ctx.variant, x, emotions, midlevel)
        parts = {"train_loss": self.descend_stack(ctx, clean)}
        if not ctx.config.is_adversarial_epoch(ctx.epoch):
            return parts
        with frozen_normalisation(ctx.model):
            results = stacked_attack(ctx.model, x, emotions, AttackConfig.from_dict(ctx.config.adv_attack))
        x_adv = torch.stack([adversarial_input(r, ctx.config.adv_input) for r in results]).view_as(x)
        with ctx.autocast(x):
            adv = task_losses(ctx.model, ctx.variant, x_adv, emotions, midlevel)
        parts["adv_loss"] = self.descend_stack(ctx, adv)
        return parts
