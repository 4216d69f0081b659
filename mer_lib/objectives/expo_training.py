"""ExpO-regularised training (Plumb et al. 2020): the objectives and the variants that use them.

Both objectives minimise ``task loss + weight * R`` where R is an ExpO regulariser of
:mod:`mer_lib.objectives.expo` evaluated at the first ``reg_batch`` examples of each batch
(the batch is already a random draw, so that is a random *regularisation batch*), and
``weight = c * L(init) / R(init)`` is fixed before the first step from the freshly
initialised model on the first batch (kept in the objective state, so a resumed run uses the
same weight). ``c`` is therefore the regulariser's weight relative to the loss at the start.

- ``"expo_fidelity"``: R = the mean squared residual of closed-form local linear fits on
  ``n_neighbours`` Gaussian neighbours (``sigma``, per patch of a ``bands x segments`` grid;
  ``n_neighbours=None``: ``2(K+1)``), backpropagated through one graph when all neighbours
  of the regularisation batch fit in ``chunk_size``, else in chunks of ``chunk_size``
  neighbours (bounded memory, one more forward pass).
  Components: ``train_loss`` (the total), ``task_loss``, ``expo_fidelity`` (R).
- ``"expo_stability"``: R = ``||f(x) - f(x + u)||^2`` with u uniform in a box of half-width
  ``radius`` per patch. Components: ``train_loss``, ``task_loss``, ``expo_stability``.

Both stack (:meth:`_ExpoObjective.stack_step`, :mod:`mer_lib.objectives.expo_stacked`): K
seeds train as one model stack, each member with its own weight and its own noise, all
members' neighbours in the same stacked passes.

Cost: ExpO-Fidelity costs about ``reg_batch * (N + 1) / batch_size`` extra forward and
backward passes per step (ExpO's regularisation batch of 16 with K = 32 patches is ~130x a
plain step at batch 8), so the quick profile regularises fewer examples on a coarser grid
(see :mod:`mer_lib.experiments`); every option is part of the model's key.

Registered variants (``python -m mer_lib list-variants``): ``expof_a2e``, ``expof_a2b2e``
(ExpO-Fidelity on the A2E and the bottleneck architecture) and ``expos_a2e``, ``expos_a2b2e``
(ExpO-Stability).

Example:
    >>> from mer_lib.training import TrainConfig
    >>> cfg = TrainConfig("expof_a2e", seed=0, objective_options={"c": 0.5, "reg_batch": 2})
    >>> cfg.objective_options["c"], cfg.objective_options["sigma"], cfg.objective_options["bands"]
    (0.5, 0.5, 4)
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import ParameterError
from ..explain.local_linear import default_fit_neighbours
from ..explain.patches import PatchGrid
from ..models import Variant, register_variant
from .base import Objective, StepContext, check_finite_option, register_objective, task_loss, task_losses
from .expo import (SIGMA_REG, STABILITY_RADIUS, fidelity_regulariser, fidelity_regulariser_backward,
                   regulariser_weight, stability_regulariser)
from .expo_stacked import (stacked_fidelity_regulariser, stacked_fidelity_regulariser_backward,
                           stacked_stability_regulariser)

#: ExpO's regularisation batch (examples regularised per step).
REG_BATCH = 16


def _check_count(objective: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"objective {objective!r}: option {name} must be an integer >= {minimum}, got {value!r}")


class _ExpoObjective(Objective):
    """What the two ExpO objectives share: weight at initialisation, regularisation batch."""

    reg_name = ""

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        check_finite_option(cls.name, "c", options["c"])
        for name in ("reg_batch", "bands", "segments"):
            _check_count(cls.name, name, options[name], 1)

    @property
    def grid(self) -> PatchGrid:
        return PatchGrid(bands=self.options["bands"], segments=self.options["segments"])

    def regulariser(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """R on the regularisation batch ``x`` (differentiable)."""
        raise TypeError(f"{type(self).__name__} must define regulariser()")

    def add_regulariser_gradient(self, model: torch.nn.Module, x: torch.Tensor, weight: float) -> torch.Tensor:
        """Accumulate ``weight * dR`` into the parameters' grads; return R (detached)."""
        reg = self.regulariser(model, x)
        (weight * reg).backward()
        return reg.detach()

    def step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
             midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        xr = x[: self.options["reg_batch"]]
        with ctx.autocast(x):
            task = task_loss(ctx.model, ctx.variant, x, emotions, midlevel)
        if "weight" not in ctx.state:   # c * L(init) / R(init), once, before the first step
            with torch.no_grad():
                reg_init = self.regulariser(ctx.model, xr)
            ctx.state["weight"] = regulariser_weight(self.options["c"], task.detach(), reg_init)
        weight = float(ctx.state["weight"])
        ctx.optimizer.zero_grad(set_to_none=True)
        task.backward()
        reg = self.add_regulariser_gradient(ctx.model, xr, weight)
        ctx.optimizer.step()
        task = task.detach()
        return {"train_loss": task + weight * reg, "task_loss": task, self.reg_name: reg}

    def stack_regulariser(self, stack: torch.nn.Module, x: torch.Tensor, generators) -> torch.Tensor:
        """R of every member of a stack on its regularisation batch ``x`` (K, B, ...): ``(K,)``."""
        raise TypeError(f"objective {self.name!r} has no stacked regulariser")

    def add_stack_regulariser_gradient(self, stack: torch.nn.Module, x: torch.Tensor, generators,
                                       weights: torch.Tensor) -> torch.Tensor:
        """Accumulate ``sum_k weights[k] * dR_k`` into the stack's grads; return ``R`` ``(K,)``, detached."""
        regs = self.stack_regulariser(stack, x, generators)
        (weights * regs).sum().backward()
        return regs.detach()

    def stack_step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
                   midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """:meth:`step` for K members at once: each member's weight in its own state, its
        noise from its own generator (the stack's dropout generator: a single run's global one)."""
        xr = x[:, : self.options["reg_batch"]]
        gens = getattr(ctx.model, "generators", None)
        with ctx.autocast(x):
            tasks = task_losses(ctx.model, ctx.variant, x, emotions, midlevel)
        if any("weight" not in state for state in ctx.states):
            with torch.no_grad():
                reg_init = self.stack_regulariser(ctx.model, xr, gens)
            for k, state in enumerate(ctx.states):
                state["weight"] = regulariser_weight(self.options["c"], tasks[k].detach(), reg_init[k])
        weights = torch.tensor([float(state["weight"]) for state in ctx.states], dtype=tasks.dtype,
                               device=tasks.device)
        ctx.optimizer.zero_grad(set_to_none=True)
        tasks.sum().backward()
        regs = self.add_stack_regulariser_gradient(ctx.model, xr, gens, weights)
        ctx.optimizer.step()
        tasks = tasks.detach()
        return {"train_loss": tasks + weights * regs, "task_loss": tasks, self.reg_name: regs}


@register_objective
class ExpoFidelity(_ExpoObjective):
    """Task loss + weight * ExpO-Fidelity (closed-form local-linear residual)."""

    name = "expo_fidelity"
    reg_name = "expo_fidelity"
    components = ("train_loss", "task_loss", "expo_fidelity")
    stackable = True
    defaults = {"c": 1.0, "sigma": SIGMA_REG, "n_neighbours": None, "reg_batch": REG_BATCH,
                "bands": 4, "segments": 8, "chunk_size": 64}

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        super().validate(options)
        check_finite_option(cls.name, "sigma", options["sigma"], strict=True)
        _check_count(cls.name, "chunk_size", options["chunk_size"], 1)
        k = options["bands"] * options["segments"] if isinstance(options["bands"], int) \
            and isinstance(options["segments"], int) else 0
        if options["n_neighbours"] is not None:
            _check_count(cls.name, "n_neighbours", options["n_neighbours"], k + 2)

    def regulariser(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        o = self.options
        return fidelity_regulariser(model, x, self.grid, o["sigma"], o["n_neighbours"],
                                    batch_size=o["chunk_size"])

    def add_regulariser_gradient(self, model: torch.nn.Module, x: torch.Tensor, weight: float) -> torch.Tensor:
        """One graph when all neighbours fit in one chunk (one forward pass fewer), else chunked."""
        o = self.options
        n = default_fit_neighbours(self.grid) if o["n_neighbours"] is None else o["n_neighbours"]
        if x.shape[0] * n <= o["chunk_size"]:
            return super().add_regulariser_gradient(model, x, weight)
        return fidelity_regulariser_backward(model, x, self.grid, weight, o["sigma"], o["n_neighbours"],
                                             chunk_size=o["chunk_size"])

    def stack_regulariser(self, stack: torch.nn.Module, x: torch.Tensor, generators) -> torch.Tensor:
        o = self.options
        return stacked_fidelity_regulariser(stack, x, self.grid, o["sigma"], o["n_neighbours"], generators,
                                            chunk_size=o["chunk_size"])

    def add_stack_regulariser_gradient(self, stack: torch.nn.Module, x: torch.Tensor, generators,
                                       weights: torch.Tensor) -> torch.Tensor:
        """As :meth:`add_regulariser_gradient`: one graph when a member's neighbours fit in one chunk."""
        o = self.options
        n = default_fit_neighbours(self.grid) if o["n_neighbours"] is None else o["n_neighbours"]
        if x.shape[1] * n <= o["chunk_size"]:
            return super().add_stack_regulariser_gradient(stack, x, generators, weights)
        return stacked_fidelity_regulariser_backward(stack, x, self.grid, weights, o["sigma"], o["n_neighbours"],
                                                     generators, chunk_size=o["chunk_size"])


@register_objective
class ExpoStability(_ExpoObjective):
    """Task loss + weight * ExpO-Stability (output change under small patch noise)."""

    name = "expo_stability"
    reg_name = "expo_stability"
    components = ("train_loss", "task_loss", "expo_stability")
    stackable = True
    defaults = {"c": 1.0, "radius": STABILITY_RADIUS, "reg_batch": REG_BATCH, "bands": 4, "segments": 8}

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        super().validate(options)
        check_finite_option(cls.name, "radius", options["radius"], strict=True)

    def regulariser(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return stability_regulariser(model, x, self.options["radius"], grid=self.grid)

    def stack_regulariser(self, stack: torch.nn.Module, x: torch.Tensor, generators) -> torch.Tensor:
        return stacked_stability_regulariser(stack, x, self.options["radius"], generators, grid=self.grid)


for _v in (
    Variant("expof_a2e", "direct", objective="expo_fidelity", label="ExpO-F-A2E",
            description="A2E with the ExpO-Fidelity regulariser (faithful local linear explanations)"),
    Variant("expof_a2b2e", "bottleneck", objective="expo_fidelity", label="ExpO-F-A2B2E",
            description="A2B2E with the ExpO-Fidelity regulariser"),
    Variant("expos_a2e", "direct", objective="expo_stability", label="ExpO-S-A2E",
            description="A2E with the ExpO-Stability regulariser (stable explanations)"),
    Variant("expos_a2b2e", "bottleneck", objective="expo_stability", label="ExpO-S-A2B2E",
            description="A2B2E with the ExpO-Stability regulariser"),
):
    register_variant(_v)
