"""The generic attack engine: an objective to ascend, an update rule, a projection, a stop rule.

:func:`run_engine` perturbs a batch of inputs ``x`` (N, ...) to *increase* a per-example
objective, all examples together, with per-example early stopping by masks. What is
ascended, how a step is taken, what set the perturbation stays in and when an example stops
are four separate pieces (the objective lives outside the attack, as in captum):

- **objective** ``objective(model, x, delta, y, grad=...) -> Evaluation``: evaluates the
  examples at ``x + delta``; the :class:`Evaluation` carries the model output the stop rule
  looks at (may be ``None``), the per-example value and its gradient with respect to
  ``delta`` (both computed on demand). :class:`OutputLoss` is the usual one, a per-example
  loss of the model's output against the targets ``y``; RAR's inner maximisation brings
  its own (:class:`mer_lib.attributions.rar.RarAttackObjective`, a chunked double backprop).
- **update rule** and **projection** (:mod:`.steps`): ``delta <- projection(update(delta, grad))``.
- **stop rule** (:mod:`.stopping`): which examples stop, which perturbation each keeps.

Per-example side information an objective needs besides ``x`` and ``y`` (e.g. where the
frames of each waveform excerpt start, :mod:`.waveform`) is passed as ``context``, a dict of
tensors with ``x``'s first dimension: the engine cuts it into chunks and drops stopped
examples from it exactly as it does ``x``, and calls ``objective(..., context=cw)`` with the
working batch's rows (objectives that take no context are called without it).

Counting: the perturbation after ``t`` steps is *iteration* ``t`` (``t = 0`` is ``start``).
With ``evaluate_last=True`` the engine evaluates iterations ``0 .. steps`` (``steps + 1``
passes; the last one without a gradient); with ``evaluate_last=False`` it evaluates
``0 .. steps - 1`` and returns the perturbation after ``steps`` steps unevaluated (RAR's
inner maximisation: nothing looks at the last point). An example that stops leaves the
working batch, so its perturbation (and its update rule's state) never changes again.

Examples are processed in chunks of ``batch_size``; the stop and update rules are reset per
chunk. The engine never calls ``model.eval()``/``model.train()`` (the caller decides), runs in
full float32 (:func:`~.precision.full_float32`) and needs the objective to leave the
parameters' ``.grad`` alone (:class:`OutputLoss` uses ``torch.autograd.grad`` w.r.t. ``delta``).

Today's attack (:func:`mer_lib.attacks.attack`) is one instance: :class:`OutputLoss` of the
MSE, :class:`~.steps.SignStep` + :class:`~.steps.LinfBall` (or L2) with
:class:`~.stopping.CorrelationStop` in projected mode, :class:`~.steps.AdamSignStep` without
projection and :class:`~.stopping.ReferenceStop` in reference mode.

Example (PGD on the MSE of a linear model, every step taken):
    >>> import torch
    >>> from mer_lib.attacks.steps import LinfBall, SignStep
    >>> from mer_lib.attacks.stopping import RunAll
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8))
    >>> x, y = torch.randn(3, 1, 2, 3), torch.rand(3, 8)
    >>> res = run_engine(model, x, y, objective=OutputLoss(), update=SignStep(0.05),
    ...                  projection=LinfBall(0.1), stop=RunAll(), start=torch.zeros_like(x), steps=4)
    >>> res.iterations.tolist(), bool(res.final_delta.abs().max() <= 0.1)
    ([4, 4, 4], True)
    >>> mse = lambda d: ((model(x + d) - y) ** 2).mean(dim=1)
    >>> bool((mse(res.final_delta) > mse(torch.zeros_like(x))).all())
    True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from tqdm.auto import tqdm

from ..errors import ParameterError, check_int
from .precision import full_float32
from .steps import NoProjection, per_example
from .stopping import StopRule


class Evaluation:
    """The objective at the working batch's current perturbations.

    Attributes:
        output: the model output the stop rule looks at, detached (or ``None``).
        inputs: the model input the objective computed from ``x + delta``, detached (or
            ``None``). An objective that builds the input itself (the waveform attacks' front
            end) gives it, and the engine keeps it at the kept and final perturbations, so
            the caller need not compute those inputs again.

    ``value()`` (per-example objective, ``(B,)``) and ``gradient()`` (of the summed values
    with respect to ``delta``, ``delta``'s shape) are computed on first call; either may be
    given as a tensor or a zero-argument callable. ``gradient`` is only available when the
    objective was called with ``grad=True``.
    """

    def __init__(self, output: torch.Tensor | None = None,
                 value: torch.Tensor | Callable[[], torch.Tensor] | None = None,
                 gradient: torch.Tensor | Callable[[], torch.Tensor] | None = None,
                 inputs: torch.Tensor | None = None) -> None:
        self.output, self.inputs = output, inputs
        self._value, self._gradient = value, gradient

    @staticmethod
    def _get(thing, what: str) -> torch.Tensor:
        if thing is None:
            raise ParameterError(f"this evaluation has no {what} (the objective was called without it)")
        return thing() if callable(thing) else thing

    def value(self) -> torch.Tensor:
        self._value = self._get(self._value, "value")
        return self._value

    def gradient(self) -> torch.Tensor:
        self._gradient = self._get(self._gradient, "gradient")
        return self._gradient


class Objective(Protocol):
    def __call__(self, model: torch.nn.Module, x: torch.Tensor, delta: torch.Tensor,
                 y: torch.Tensor | None, *, grad: bool) -> Evaluation: ...


def example_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared error over the outputs, ``(B,)``."""
    return ((pred - y) ** 2).flatten(1).mean(dim=1)


class OutputLoss:
    """Objective ``loss(model(x + delta), y)`` per example (default :func:`example_mse`).

    The output must have ``y``'s shape. The gradient is ``torch.autograd.grad`` of the
    summed losses with respect to ``delta`` (each example's own gradient when examples do
    not interact, e.g. in eval mode).
    """

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = example_mse) -> None:
        self.loss = loss

    def __call__(self, model, x, delta, y, *, grad):
        dvar = delta.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            pred = model(x + dvar)
        if pred.shape != y.shape:
            raise ParameterError(
                f"model output shape {tuple(pred.shape)} does not match y {tuple(y.shape)}")
        if not grad:
            return Evaluation(output=pred.detach(), value=lambda: self.loss(pred, y).detach())
        per = self.loss(pred, y)
        return Evaluation(output=pred.detach(), value=per.detach(),
                          gradient=lambda: torch.autograd.grad(per.sum(), dvar)[0])


@dataclass
class EngineResult:
    """What :func:`run_engine` produced, per example (first dimension).

    Attributes:
        delta: the returned perturbation: the kept one where the stop rule says so
            (:meth:`~.stopping.StopRule.use_kept`), else the final one.
        final_delta: the last perturbation reached.
        iterations: its iteration (steps taken), long.
        delta_iteration: the iteration of ``delta``, long.
        first_output: output at iteration 0 (``None`` if the objective gives none).
        kept_output: output at ``delta`` (``None`` if unknown: no outputs, or ``evaluate_last=False``).
        final_output: output at ``final_delta`` (``None`` likewise).
        first_inputs, kept_inputs, final_inputs: the model inputs at the same three points,
            when the objective gives them (:attr:`Evaluation.inputs`; else ``None``).
        record: the stop rule's per-example bookkeeping (:meth:`~.stopping.StopRule.record`).
    """

    delta: torch.Tensor
    final_delta: torch.Tensor
    iterations: torch.Tensor
    delta_iteration: torch.Tensor
    first_output: torch.Tensor | None
    kept_output: torch.Tensor | None
    final_output: torch.Tensor | None
    first_inputs: torch.Tensor | None = None
    kept_inputs: torch.Tensor | None = None
    final_inputs: torch.Tensor | None = None
    record: dict = field(default_factory=dict)


def _chunk(model, x, y, start, *, objective, update, projection, stop, steps, evaluate_last,
           bar, context=None) -> dict:
    """Attack one chunk of examples together (see the module docstring)."""
    n, dev = x.shape[0], x.device
    stop.reset(n, dev)
    passes = steps + 1 if evaluate_last else steps
    final_delta, kept_delta = start.clone(), start.clone()
    kept_iteration = torch.zeros(n, dtype=torch.long, device=dev)
    iterations = torch.full((n,), steps, dtype=torch.long, device=dev)
    first = kept_out = final_out = None
    first_in = kept_in = final_in = None
    with_outputs = with_inputs = evaluate_last

    active = torch.arange(n, device=dev)
    xw, yw, dw, cw = x, y, start, context
    extra = {} if context is None else {"context": cw}
    update.reset(dw)
    for t in range(passes):
        last = evaluate_last and t == passes - 1
        ev = objective(model, xw, dw, yw, grad=not last, **extra)
        out = ev.output
        if t == 0:              # all n examples are active: allocate outputs like the model's
            with_outputs = with_outputs and out is not None
            if out is not None:
                first = out.clone()
            if with_outputs:
                kept_out, final_out = out.clone(), torch.zeros_like(out)
            with_inputs = with_inputs and ev.inputs is not None
            if with_inputs:
                first_in, kept_in, final_in = ev.inputs.clone(), ev.inputs.clone(), torch.zeros_like(ev.inputs)
        kept, done = stop.update(ev, yw, t, active)
        if bool(kept.any()):
            rows = active[kept]
            kept_delta[rows] = dw[kept]
            kept_iteration[rows] = t
            if with_outputs:
                kept_out[rows] = out[kept]
            if with_inputs:
                kept_in[rows] = ev.inputs[kept]
        if last:
            done = torch.ones_like(done)
        if bool(done.any()):
            rows = active[done]
            final_delta[rows] = dw[done]
            iterations[rows] = t
            if with_outputs:
                final_out[rows] = out[done]
            if with_inputs:
                final_in[rows] = ev.inputs[done]
            if bar is not None:
                bar.update(int(done.sum()))
            if bool(done.all()):
                break
        grad = ev.gradient()
        if bool(done.any()):
            keep = ~done
            active, xw, dw, grad = active[keep], xw[keep], dw[keep], grad[keep]
            yw = None if yw is None else yw[keep]
            if cw is not None:
                cw = {k: v[keep] for k, v in cw.items()}
                extra = {"context": cw}
            update.keep(keep)
        dw = projection(update(dw.detach(), grad))
        if bar is not None:
            bar.set_postfix(iteration=t + 1, active=int(active.numel()), refresh=False)
    if not evaluate_last:       # the perturbation after the last step, never evaluated
        final_delta[active] = dw
        iterations[active] = steps
        if bar is not None:
            bar.update(int(active.numel()))

    use = stop.use_kept()
    delta = torch.where(per_example(use, final_delta), kept_delta, final_delta)
    kept_output = None if not with_outputs else torch.where(per_example(use, kept_out), kept_out, final_out)
    kept_inputs = None if not with_inputs else torch.where(per_example(use, kept_in), kept_in, final_in)
    return dict(delta=delta, final_delta=final_delta, iterations=iterations,
                delta_iteration=torch.where(use, kept_iteration, iterations),
                first_output=first, kept_output=kept_output, final_output=final_out,
                first_inputs=first_in, kept_inputs=kept_inputs, final_inputs=None if not with_inputs else final_in,
                record=stop.record())


def run_engine(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None, *,
               objective: Objective, update, projection=None, stop: StopRule, start: torch.Tensor,
               steps: int, evaluate_last: bool = True, batch_size: int | None = None,
               progress: bool = False, desc: str = "attack",
               context: dict[str, torch.Tensor] | None = None) -> EngineResult:
    """Ascend ``objective`` from ``x + start`` (see the module docstring); returns an :class:`EngineResult`.

    ``y`` (targets, first dimension N, or ``None``) goes to the objective and the stop rule
    with the working batch. ``projection=None`` is :class:`~.steps.NoProjection`. Runs on
    ``x``'s device; ``batch_size`` examples at a time (default: all); ``progress`` shows a
    tqdm bar of finished examples. ``context`` (per-example tensors, first dimension N) goes
    to the objective with the working batch (see the module docstring).
    """
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ParameterError(f"x must be a tensor (N >= 1, ...), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    n = x.shape[0]
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape[0] != n):
        raise ParameterError(f"y must be None or a tensor with x's {n} examples")
    if not isinstance(start, torch.Tensor) or start.shape != x.shape:
        raise ParameterError(f"start must have x's shape {tuple(x.shape)}")
    check_int("steps", steps, minimum=0)
    if context is not None:
        bad = [k for k, v in context.items() if not isinstance(v, torch.Tensor) or v.shape[:1] != (n,)]
        if not isinstance(context, dict) or bad:
            raise ParameterError(f"context must map names to tensors with x's {n} examples first; "
                                 f"bad entries: {bad}")
    batch_size = n if batch_size is None else check_int("batch_size", batch_size)
    projection = NoProjection() if projection is None else projection
    start = start.to(device=x.device, dtype=x.dtype)
    parts = []
    with full_float32(), tqdm(total=n, unit="ex", desc=desc, disable=not progress) as bar:
        for lo in range(0, n, batch_size):
            sl = slice(lo, lo + batch_size)
            parts.append(_chunk(model, x[sl], None if y is None else y[sl], start[sl],
                                objective=objective, update=update, projection=projection, stop=stop,
                                steps=steps, evaluate_last=evaluate_last, bar=bar if progress else None,
                                context=None if context is None else {k: v[sl] for k, v in context.items()}))

    def cat(values):
        return None if values[0] is None else torch.cat(values)

    merged = {k: cat([p[k] for p in parts]) for k in parts[0] if k != "record"}
    record = {k: torch.cat([p["record"][k] for p in parts]) for k in parts[0]["record"]}
    return EngineResult(**merged, record=record)


__all__ = ["Evaluation", "Objective", "OutputLoss", "example_mse", "EngineResult", "run_engine"]
