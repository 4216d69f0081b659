"""The plain supervised objective of A2E, A2B2E and A2M2E.

One forward pass, the task loss ``(1 - w) * emotion MSE + w * concept MSE`` (``w`` is the
variant's ``concept_weight``: 0.5 for A2M2E, 0 otherwise), one optimiser step. It stacks:
:meth:`Supervised.stack_step` is the same step for K models of a stack in one pass.

Example:
    >>> import torch
    >>> from mer_lib.models import build_model, get_variant
    >>> from mer_lib.objectives import StepContext, Supervised
    >>> torch.manual_seed(0) and None
    >>> model = build_model("a2m2e", width=0.0625)
    >>> ctx = StepContext(model, get_variant("a2m2e"), torch.optim.SGD(model.parameters(), lr=0.1))
    >>> x, y, m = torch.randn(4, 1, 16, 16), torch.rand(4, 8), torch.rand(4, 7)
    >>> float(Supervised().step(ctx, x, y, m)["train_loss"]) > 0
    True
"""
from __future__ import annotations

import torch

from .base import Objective, StepContext, register_objective, task_loss, task_losses


@register_objective
class Supervised(Objective):
    """``train_loss`` = the task loss on the clean batch."""

    name = "mse"
    components = ("train_loss",)
    stackable = True

    def step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
             midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        with ctx.autocast(x):
            loss = task_loss(ctx.model, ctx.variant, x, emotions, midlevel)
        return {"train_loss": self.descend(ctx, loss)}

    def stack_step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
                   midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        with ctx.autocast(x):
            losses = task_losses(ctx.model, ctx.variant, x, emotions, midlevel)
        return {"train_loss": self.descend_stack(ctx, losses)}
