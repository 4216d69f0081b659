"""Integrated Gradients (IG) of the emotion outputs: baselines, captum maps, a native version.

IG of output ``f_j`` at input ``x`` relative to a baseline ``b`` is

    IG_j(x) = (x - b) * integral_0^1 grad f_j(b + a (x - b)) da,

approximated by a quadrature with ``steps`` points. Its entries sum to ``f_j(x) - f_j(b)``
(*completeness*), up to the quadrature error.

- :func:`integrated_gradients` — evaluation maps through captum's ``IntegratedGradients``
  (any of its quadratures: :data:`METHODS`), for one emotion ``(B, 1, F, K)`` or all eight
  ``(B, 8, 1, F, K)``.
- :func:`path_integrated_gradients` — the same quantity with the right Riemann sum in plain
  torch, optionally *differentiable* (``create_graph=True``), which captum cannot do; the
  attribution attack (:mod:`.surrogate`) optimises through it. Tested equal to captum's.
- :func:`make_baseline` — the baselines: ``"zeros"`` is the data's mean spectrogram value
  (0 in standardised units) and ``"silence"`` is silent audio through the front end, whose
  log-filtered spectrogram is ``log10(1 + 0) = 0`` everywhere, i.e. ``(0 - mean) / std =
  -mean / std`` after the standardisation with the training split's ``mean`` and ``std``
  (:attr:`mer_lib.data.MerTensors.mean` / ``.std``). A tensor of the input's shape (or of
  one example's shape) is accepted as well.
- every attribution pass runs with BatchNorm and dropout frozen
  (:func:`mer_lib.models.frozen_normalisation`: running statistics, no dropout), and the
  modules' previous modes are restored afterwards.

No function here accumulates gradients into the model's parameters (they use
``torch.autograd.grad`` with respect to inputs only).

Example:
    >>> import torch
    >>> from mer_lib.attributions import integrated_gradients
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8))
    >>> x = torch.randn(2, 1, 2, 3)
    >>> maps = integrated_gradients(model, x, steps=8)
    >>> tuple(maps.shape)
    (2, 8, 1, 2, 3)
    >>> gap = maps.flatten(2).sum(2) - (model(x) - model(torch.zeros_like(x)))   # completeness
    >>> bool(gap.abs().max() < 1e-5)
    True
"""
from __future__ import annotations

import math
import torch
from torch import nn

from ..errors import ParameterError, check_choice, check_int
from ..models import frozen_normalisation

#: captum's quadratures accepted by :func:`integrated_gradients`. Not "riemann_trapezoid":
#: captum (0.9) gives its n points weights 1/n with the end points halved, which sum to
#: (n - 1)/n, so its maps are scaled by (n - 1)/n and are not complete.
METHODS = ("riemann_right", "riemann_left", "riemann_middle", "gausslegendre")
#: Named baselines of :func:`make_baseline`.
BASELINES = ("zeros", "silence")


def silence_value(mean: float, std: float) -> float:
    """Standardised value of the spectrogram of silence: ``(log10(1 + 0) - mean) / std``.

    Example:
        >>> silence_value(2.0, 4.0)
        -0.5
    """
    for name, value in (("mean", mean), ("std", std)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParameterError(f"baseline 'silence' needs the data's {name} as a finite number, got {value!r}")
    if std <= 0:
        raise ParameterError(f"baseline 'silence' needs std > 0, got {std!r}")
    return (0.0 - float(mean)) / float(std)


def make_baseline(baseline: str | torch.Tensor, x: torch.Tensor, *, mean: float | None = None,
                  std: float | None = None) -> torch.Tensor:
    """The baseline as a tensor of ``x``'s shape, dtype and device.

    Args:
        baseline: ``"zeros"`` (the data's mean, 0 after standardisation), ``"silence"``
            (needs ``mean`` and ``std``: every bin is :func:`silence_value`), or a tensor of
            shape ``x.shape``, ``x.shape[1:]`` or ``(1, *x.shape[1:])``.
        x: the inputs ``(B, ...)``.
        mean, std: the standardisation scalars of the data (for ``"silence"``).

    Example:
        >>> make_baseline("silence", torch.zeros(1, 1, 1, 2), mean=2.0, std=4.0).flatten().tolist()
        [-0.5, -0.5]
        >>> make_baseline(torch.zeros(3), torch.zeros(2, 1, 2, 2))
        Traceback (most recent call last):
        ...
        mer_lib.errors.ParameterError: baseline must have the input's shape (2, 1, 2, 2) or one example's shape (1, 2, 2), got (3,)
    """
    if isinstance(baseline, torch.Tensor):
        one = tuple(x.shape[1:])
        if tuple(baseline.shape) not in (tuple(x.shape), one, (1, *one)):
            raise ParameterError(
                f"baseline must have the input's shape {tuple(x.shape)} or one example's shape "
                f"{one}, got {tuple(baseline.shape)}")
        return baseline.detach().to(device=x.device, dtype=x.dtype).expand_as(x)
    check_choice("baseline", baseline, BASELINES)
    if baseline == "zeros":
        return torch.zeros_like(x)
    return torch.full_like(x, silence_value(mean, std))


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ParameterError(f"x must be a tensor (batch >= 1, ...), got {shape}")


def _emotions(emotion: int | None, n_outputs: int) -> list[int]:
    """The output indices to attribute: all (``None``) or one, validated."""
    if emotion is None:
        return list(range(n_outputs))
    if isinstance(emotion, bool) or not isinstance(emotion, int) or not 0 <= emotion < n_outputs:
        raise ParameterError(f"emotion must be None or an integer in [0, {n_outputs}), got {emotion!r}")
    return [emotion]


def _n_outputs(out: torch.Tensor) -> int:
    """Number of outputs of a model output ``(B, outputs)``; anything else is an error."""
    if out.dim() != 2:
        raise ParameterError(f"the model must map (B, ...) to (B, outputs), got output shape {tuple(out.shape)}")
    return int(out.shape[1])


def _stack(maps: list[torch.Tensor], emotion: int | None) -> torch.Tensor:
    return maps[0] if emotion is not None else torch.stack(maps, dim=1)


def integrated_gradients(model: nn.Module, x: torch.Tensor, *, emotion: int | None = None,
                         baseline: str | torch.Tensor = "zeros", mean: float | None = None,
                         std: float | None = None, steps: int = 50, method: str = "riemann_right",
                         internal_batch_size: int | None = None) -> torch.Tensor:
    """IG maps of the emotion outputs with captum's ``IntegratedGradients`` (detached).

    Args:
        model: maps ``(B, 1, F, K)`` to ``(B, 8)`` (any number of outputs works); it runs
            under :func:`mer_lib.models.frozen_normalisation` (modes restored afterwards).
        x: inputs ``(B, 1, F, K)`` (any ``(B, ...)`` the model accepts).
        emotion: an output index for one map per example ``(B, 1, F, K)``; ``None`` for all
            outputs ``(B, E, 1, F, K)``.
        baseline, mean, std: see :func:`make_baseline`.
        steps: quadrature points (>= 2: captum's Riemann rules need two).
        method: one of :data:`METHODS`.
        internal_batch_size: evaluate at most this many path points per forward pass
            (bounds memory; ``None``: all ``steps * B`` at once).
    """
    from captum.attr import IntegratedGradients  # the one place captum is needed

    _check_input(x)
    check_int("steps", steps, minimum=2)
    check_choice("method", method, METHODS)
    if internal_batch_size is not None:
        check_int("internal_batch_size", internal_batch_size, minimum=1)
    base = make_baseline(baseline, x, mean=mean, std=std)
    with frozen_normalisation(model):
        with torch.no_grad():
            targets = _emotions(emotion, _n_outputs(model(x[:1])))
        ig = IntegratedGradients(model)
        maps = [ig.attribute(x.detach(), baselines=base, target=j, n_steps=steps, method=method,
                             internal_batch_size=internal_batch_size).detach()
                for j in targets]
    return _stack(maps, emotion)


def path_integrated_gradients(model: nn.Module, x: torch.Tensor, *, emotion: int | None = None,
                              baseline: str | torch.Tensor = "zeros", mean: float | None = None,
                              std: float | None = None, steps: int = 50,
                              create_graph: bool = False) -> torch.Tensor:
    """IG of the emotion outputs by the right Riemann sum, in plain (batched) torch.

    ``IG_j = (x - b) * (1/m) sum_{k=1..m} grad f_j(b + k/m (x - b))``, the same numbers as
    :func:`integrated_gradients` with ``method="riemann_right"``. With ``create_graph=True``
    the result is differentiable with respect to ``x`` and the parameters (double backprop);
    otherwise it is detached. All ``m * B`` path points go through the model in one pass.
    Shapes and the frozen-mode rule as in :func:`integrated_gradients`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> x = torch.ones(1, 1, 2, 2, requires_grad=True)
        >>> ig = path_integrated_gradients(net, x, emotion=0, steps=4, create_graph=True)
        >>> torch.allclose(ig, x.detach() * net[1].weight[0].view(1, 1, 2, 2))
        True
    """
    _check_input(x)
    check_int("steps", steps, minimum=1)
    base = make_baseline(baseline, x, mean=mean, std=std)
    alphas = torch.arange(1, steps + 1, device=x.device, dtype=x.dtype) / steps
    diff = x - base
    with frozen_normalisation(model), torch.enable_grad():
        z = (base.unsqueeze(0) + alphas.view(-1, *[1] * x.dim()) * diff.unsqueeze(0)).flatten(0, 1)
        if not z.requires_grad:
            z.requires_grad_(True)
        out = model(z)
        targets = _emotions(emotion, _n_outputs(out))
        maps = []
        for i, j in enumerate(targets):
            (g,) = torch.autograd.grad(out[:, j].sum(), z, create_graph=create_graph,
                                       retain_graph=create_graph or i < len(targets) - 1)
            maps.append(diff * g.view(steps, *x.shape).mean(dim=0))
    result = _stack(maps, emotion)
    return result if create_graph else result.detach()


__all__ = ["METHODS", "BASELINES", "silence_value", "make_baseline",
           "integrated_gradients", "path_integrated_gradients"]
