"""What one training step does: the :class:`Objective` API and its registry.

An objective owns a whole optimiser step on one minibatch: the forward pass, any extra
passes (attacks, neighbours, attributions), the backward pass (in chunks if it wants to
bound memory) and ``optimizer.step()``. It returns its *named components* — detached
scalars such as ``train_loss`` or ``expo_fidelity`` — which the trainer averages per epoch
into the history (one column per component) and the chapters plot.

- Every objective returns ``train_loss``: the total it minimised on the batch (the trainer
  stops with a clear error when it is not finite).
- An objective's options (``c``, ``sigma``, ``n_neighbours``, ...) are declared in
  :attr:`Objective.defaults`; a variant may set its own defaults (``Variant.options``) and a
  training configuration may override them (``TrainConfig.objective_options``). The
  resolved options are part of the model's cache key, so a sweep over ``c`` needs no new
  variant per value.
- Extra passes run under :func:`mer_lib.models.frozen_normalisation` (BatchNorm statistics
  untouched, no dropout); the step's own forward pass runs in the model's train mode.
- ``ctx.state`` persists across batches and epochs and is saved with the resume state (for
  values fixed at initialisation, like ExpO's weight ``c * L(init) / R(init)``).
- **Stacking.** An objective that sets :attr:`Objective.stackable` also has
  :meth:`Objective.stack_step`: the same step for K models of one
  :class:`~mer_lib.stack.ModelStack` at once (``ctx.model`` is the stack, the batch is
  ``(K, B, ...)``: member k's own examples), returning ``(K,)`` components. Each member's
  loss is its own mean (:func:`task_losses`) and the step backpropagates their *sum*, so
  member k gets exactly the gradient a single run would (the trainer checks this in float64:
  a K = 3 stack equals three single runs, for every stackable objective of the registry).
  ``ctx.states`` then holds each member's persistent state. The one trainer
  (:mod:`mer_lib.trainer`) stacks seeds of a variant only when its objective is stackable.

Objectives register themselves with :func:`register_objective` in the package, so a stored
model's objective is known in any process that imports :mod:`mer_lib`.

Example:
    >>> import torch
    >>> from mer_lib.models import build_model, get_variant
    >>> from mer_lib.objectives import StepContext, make_objective
    >>> torch.manual_seed(0) and None
    >>> model = build_model("a2e", width=0.0625)
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    >>> objective = make_objective("mse")
    >>> ctx = StepContext(model, get_variant("a2e"), opt)
    >>> parts = objective.step(ctx, torch.randn(4, 1, 16, 16), torch.rand(4, 8), None)
    >>> sorted(parts), objective.components
    (['train_loss'], ('train_loss',))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F

from ..errors import ParameterError
from ..models import MerNet, Variant, get_variant


@dataclass
class StepContext:
    """What an objective may use besides the batch.

    Attributes:
        model: the model being trained (train mode on entry; leave it so).
        variant: its :class:`~mer_lib.models.Variant`.
        optimizer: the optimiser to step.
        config: the :class:`~mer_lib.training.TrainConfig` (None in hand-made contexts).
        epoch, batch: counted from 1.
        state: the objective's persistent state (tensors, numbers, strings, containers).
        bf16: run forward passes under bf16 autocast (CUDA only).
        states: in a stacked step (:meth:`Objective.stack_step`), each member's persistent
            state, in the stack's order (``state`` is then unused); None otherwise.
        configs: in a stacked step, each member's training configuration (its seed), in order.
    """

    model: MerNet
    variant: Variant
    optimizer: torch.optim.Optimizer
    config: Any = None
    epoch: int = 1
    batch: int = 1
    state: dict = field(default_factory=dict)
    bf16: bool = False
    states: list | None = None
    configs: list | None = None

    def autocast(self, x: torch.Tensor):
        """The autocast context of this step's forward passes."""
        return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def task_loss(model: MerNet, variant: Variant, x: torch.Tensor, emotions: torch.Tensor,
              midlevel: torch.Tensor | None) -> torch.Tensor:
    """The supervised loss ``(1 - w) * MSE(emotions) + w * MSE(concepts, mid-level)``.

    ``w = variant.concept_weight`` (A2M2E: 0.5; 0 for every other variant: emotion MSE only).
    """
    pred, concepts = model.forward_all(x)
    loss = F.mse_loss(pred.float(), emotions)
    w = variant.concept_weight
    if w > 0:
        if midlevel is None:
            raise ParameterError(f"variant {variant.name} needs mid-level ratings for its loss")
        loss = (1.0 - w) * loss + w * F.mse_loss(concepts.float(), midlevel)
    return loss


class _Outputs:
    """Precomputed outputs that look like a model to :func:`task_loss`."""

    def __init__(self, emotions: torch.Tensor, concepts: torch.Tensor | None) -> None:
        self.outputs = (emotions, concepts)

    def forward_all(self, x: torch.Tensor):
        return self.outputs


def task_losses(stack: torch.nn.Module, variant: Variant, x: torch.Tensor, emotions: torch.Tensor,
                midlevel: torch.Tensor | None) -> torch.Tensor:
    """Each member's :func:`task_loss` on its own batch: ``(K,)``, from one stacked forward pass.

    ``stack`` is a :class:`~mer_lib.stack.ModelStack`; ``x`` is ``(K, B, 1, frames, bands)``
    and ``emotions`` / ``midlevel`` are ``(K, B, ...)``.
    """
    e, c = stack.forward_all(x)
    return torch.stack([
        task_loss(_Outputs(e[k], None if c is None else c[k]), variant, x[k], emotions[k],
                  None if midlevel is None else midlevel[k])
        for k in range(e.shape[0])])


class Objective:
    """Base class: subclasses set :attr:`name`, :attr:`components`, :attr:`defaults`, :meth:`step`.

    ``options`` (validated by :meth:`check_options`) are available as ``self.options``.
    """

    name: ClassVar[str] = ""
    #: History columns this objective fills (``train_loss`` first).
    components: ClassVar[tuple[str, ...]] = ("train_loss",)
    #: Option names and their defaults.
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when :meth:`stack_step` trains K models of a stack at once.
    stackable: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = self.check_options(options or {})

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, unknown names rejected, values validated by :meth:`validate`."""
        if not isinstance(options, Mapping):
            raise ParameterError(f"objective {cls.name!r}: options must be a dict, got {options!r}")
        unknown = sorted(set(options) - set(cls.defaults))
        if unknown:
            known = sorted(cls.defaults) or "none"
            raise ParameterError(f"objective {cls.name!r} has no option(s) {unknown}; known: {known}")
        resolved = {**cls.defaults, **dict(options)}
        cls.validate(resolved)
        return resolved

    @classmethod
    def validate(cls, options: dict[str, Any]) -> None:
        """Raise :class:`ParameterError` for an out-of-range option (default: accept all)."""

    def step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
             midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """One optimiser step on the batch; return the detached components."""
        raise TypeError(f"{type(self).__name__} must define step()")

    def stack_step(self, ctx: StepContext, x: torch.Tensor, emotions: torch.Tensor,
                   midlevel: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """One optimiser step of a stack on ``(K, B, ...)`` batches; ``(K,)`` detached components."""
        raise TypeError(f"objective {self.name!r} has no stacked step (stackable=False)")

    # helpers for subclasses ------------------------------------------------------------
    @staticmethod
    def descend(ctx: StepContext, loss: torch.Tensor) -> torch.Tensor:
        """``zero_grad``, ``loss.backward()``, ``optimizer.step()``; return the detached loss."""
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ctx.optimizer.step()
        return loss.detach()

    @staticmethod
    def descend_stack(ctx: StepContext, losses: torch.Tensor) -> torch.Tensor:
        """:meth:`descend` for a stack: one backward pass of the members' ``(K,)`` losses' sum."""
        ctx.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        ctx.optimizer.step()
        return losses.detach()


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make an objective known by its ``name`` (names are unique)."""
    if not (isinstance(cls, type) and issubclass(cls, Objective)) or not cls.name:
        raise ParameterError(f"register_objective expects an Objective subclass with a name, got {cls!r}")
    if cls.name in OBJECTIVES and OBJECTIVES[cls.name] is not cls:
        raise ParameterError(f"objective {cls.name!r} is already registered")
    if "train_loss" not in cls.components:
        raise ParameterError(f"objective {cls.name!r} must report a 'train_loss' component")
    OBJECTIVES[cls.name] = cls
    return cls


def stackable_objectives() -> list[str]:
    """The names of the registered objectives with a stacked step."""
    return sorted(name for name, cls in OBJECTIVES.items() if cls.stackable)


def get_objective(name: str) -> type[Objective]:
    """The registered objective class called ``name``."""
    if name not in OBJECTIVES:
        raise ParameterError(f"unknown training objective {name!r}; known objectives: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def resolve_options(variant: Variant | str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options a variant trains with: objective defaults < variant options < overrides."""
    spec = get_variant(variant)
    cls = get_objective(spec.objective)
    return cls.check_options({**dict(spec.options), **dict(overrides or {})})


def make_objective(variant_or_name: Variant | str, overrides: Mapping[str, Any] | None = None) -> Objective:
    """An objective instance for a variant (or an objective name) with resolved options."""
    if isinstance(variant_or_name, str) and variant_or_name in OBJECTIVES:
        return OBJECTIVES[variant_or_name](overrides)
    spec = get_variant(variant_or_name)
    return get_objective(spec.objective)(resolve_options(spec, overrides))


def check_finite_option(objective: str, name: str, value: Any, *, minimum: float = 0.0,
                        strict: bool = False) -> float:
    """A finite number ``>= minimum`` (``> minimum`` when ``strict``), else ParameterError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ParameterError(f"objective {objective!r}: option {name} must be a finite number {bound}, got {value!r}")
    return float(value)
