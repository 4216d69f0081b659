"""ExpO's explanation regularisers (Plumb et al. 2020) as pure functions of a model and a batch.

- **ExpO-Fidelity** :func:`fidelity_regulariser`: for every input x, N Gaussian neighbours
  ``x + expand(sigma * eps)`` in patch space (sigma_reg = 0.5, ``N = 2(K+1)`` by default), the
  local linear fit with intercept in closed form, and the mean squared residual
  ``R = mean over inputs, neighbours and outputs of ((I - H) y)^2``. The hat matrix H depends
  on the noise only (a constant), so gradients flow through the model outputs y.
  :func:`fidelity_regulariser_backward` gives the same gradient chunk by chunk (bounded
  memory): since ``(I - H)`` is a symmetric projection, ``dR = (2 / size) * sum(r * dy)`` with
  the residuals r as constants, so it evaluates all neighbours once without autograd, then
  backpropagates ``r * y`` over chunks of neighbours (one more forward pass per neighbour).
- **ExpO-Stability** :func:`stability_regulariser`: ``mean over inputs of ||f(x) - f(x + u)||^2``
  (sum over the outputs) with u uniform in the box ``[-radius, radius]``, per patch when a
  grid is given (the box is in the interpretable space), else per input element.
  (:mod:`mer_lib.objectives.expo_stacked` has both regularisers for every member of a model
  stack at once.)
- **Weight**: :func:`regulariser_weight` = ``c * L(init) / R(init)``: the loss and the
  regulariser of the freshly initialised model on the same batch, so that c is the weight of
  the regulariser relative to the loss at the start (c = 1: both terms start equal; c = 0:
  plain training). Compute both once, before the first step, and keep the weight fixed.

Every extra pass runs under :func:`mer_lib.models.frozen_normalisation`: the neighbours of one
input are near copies of it, so train-mode BatchNorm would normalise them by their own
(tiny) batch statistics, removing the differences the regulariser is about, and would pollute
the running statistics; dropout would add noise to the fit. Each regularised input costs N
(fidelity) or 2 (stability) forward and backward passes, so the objective may regularise a
subset of the batch (ExpO's "regularisation batch").

Example:
    >>> import torch
    >>> from mer_lib.explain import PatchGrid
    >>> from mer_lib.models import build_model
    >>> torch.manual_seed(0) and None
    >>> model, grid = build_model("a2e", width=0.0625), PatchGrid(bands=2, segments=2)
    >>> x = torch.randn(2, 1, 16, 16)
    >>> r = fidelity_regulariser(model, x, grid, generator=torch.Generator().manual_seed(0))
    >>> r.shape, bool(r > 0), r.requires_grad                     # N = 2 (K + 1) = 10 neighbours
    (torch.Size([]), True, True)
    >>> s = stability_regulariser(model, x, radius=0.1, generator=torch.Generator().manual_seed(0))
    >>> bool(s > 0), model.training                               # mode untouched
    (True, True)
    >>> regulariser_weight(0.5, loss_init=2.0, reg_init=0.25)
    4.0
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import ParameterError, check_int, check_positive
from ..explain.forward import extra_passes, output_function, outputs_at_offsets
from ..explain.local_linear import SIGMA_EVAL, check_neighbours, default_fit_neighbours, least_squares_residual
from ..explain.neighbours import gaussian_offsets, uniform_box
from ..explain.patches import PatchGrid, _frames_bins

#: ExpO-Fidelity's neighbourhood (standardised units).
SIGMA_REG = 0.5
#: ExpO-Stability's box half-width (standardised units): the metrics' sigma.
STABILITY_RADIUS = SIGMA_EVAL


def _fidelity_setup(model: Callable, x: torch.Tensor, grid: PatchGrid, sigma: float,
                    n_neighbours: int | None, generator: torch.Generator | None, target: str):
    check_positive("sigma", sigma)
    n = default_fit_neighbours(grid) if n_neighbours is None else n_neighbours
    check_neighbours(n, grid.n_patches, "n_neighbours", strict=True)
    grid.check_fits(*_frames_bins(x))
    fn = output_function(model, target)
    z = gaussian_offsets(x.shape[0], n, grid, sigma, generator, dtype=x.dtype, device=x.device)
    return fn, z


def fidelity_regulariser(model: Callable, x: torch.Tensor, grid: PatchGrid, sigma: float = SIGMA_REG,
                         n_neighbours: int | None = None, generator: torch.Generator | None = None, *,
                         target: str = "emotions", batch_size: int | None = None) -> torch.Tensor:
    """ExpO-Fidelity: mean squared residual of the local linear fits (a differentiable scalar).

    Args:
        model: callable or ``forward_all`` model (an ``nn.Module`` runs under frozen
            normalisation; parameters get gradients as usual).
        x: inputs to regularise ``(B, 1, frames, bins)``.
        grid: the patch grid (K patches).
        sigma: neighbourhood sigma (ExpO: 0.5).
        n_neighbours: N per input, > K+1 (default ``2(K+1)``).
        generator: source of the noise (None: torch's global generator).
        target: ``"emotions"`` or ``"concepts"``.
        batch_size: neighbours per forward pass (default: all ``B * N`` in one pass); the
            graph of all of them is kept; use :func:`fidelity_regulariser_backward` to bound memory.

    Raises:
        ParameterError: sigma <= 0, N <= K+1, a grid that does not fit x.
    """
    fn, z = _fidelity_setup(model, x, grid, sigma, n_neighbours, generator, target)
    with extra_passes(model, grad=True):
        y = outputs_at_offsets(fn, x, z, grid, batch_size or z.shape[0] * z.shape[1])
    return least_squares_residual(z, y).pow(2).mean()


def fidelity_regulariser_backward(model: Callable, x: torch.Tensor, grid: PatchGrid, weight: float = 1.0,
                                  sigma: float = SIGMA_REG, n_neighbours: int | None = None,
                                  generator: torch.Generator | None = None, *, target: str = "emotions",
                                  chunk_size: int = 64) -> torch.Tensor:
    """Accumulate the gradient of ``weight * fidelity_regulariser(...)`` chunk by chunk.

    Same noise (same generator draws) and the same gradient as
    ``(weight * fidelity_regulariser(...)).backward()``, but at most ``chunk_size`` neighbours
    hold a graph at a time. Adds to the parameters' ``.grad`` (call it after the loss's
    ``backward()``, before the optimiser step) and returns R, detached.
    """
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ParameterError(f"weight must be a finite number >= 0, got {weight!r}")
    check_int("chunk_size", chunk_size)
    fn, z = _fidelity_setup(model, x, grid, sigma, n_neighbours, generator, target)
    with extra_passes(model):
        residual = least_squares_residual(z, outputs_at_offsets(fn, x, z, grid, chunk_size))
    reg = residual.pow(2).mean()
    scale = 2.0 * weight / residual.numel()
    n_ex, n = z.shape[:2]
    example = torch.arange(n_ex, device=x.device).repeat_interleave(n)
    z_flat, r_flat = z.reshape(n_ex * n, 1, -1), residual.reshape(n_ex * n, -1)
    with extra_passes(model, grad=True):
        for start in range(0, n_ex * n, chunk_size):
            rows = slice(start, start + chunk_size)
            y = outputs_at_offsets(fn, x.index_select(0, example[rows]), z_flat[rows], grid, chunk_size)
            (scale * (r_flat[rows] * y[:, 0]).sum()).backward()
    return reg.detach()


def stability_regulariser(model: Callable, x: torch.Tensor, radius: float = STABILITY_RADIUS,
                          generator: torch.Generator | None = None, *, grid: PatchGrid | None = None,
                          target: str = "emotions") -> torch.Tensor:
    """ExpO-Stability: ``mean_b ||f(x_b) - f(x_b + u_b)||^2``, u uniform in ``[-radius, radius]``.

    With a ``grid`` u is drawn per patch and expanded (a box in the interpretable space);
    without, per input element. f(x) and f(x + u) are one forward pass under frozen
    normalisation; gradients flow through both.

    Raises:
        ParameterError: radius <= 0, a grid that does not fit x.
    """
    check_positive("radius", radius)
    frames, bins = _frames_bins(x)
    fn = output_function(model, target)
    if grid is None:
        u = uniform_box(tuple(x.shape), radius, generator, dtype=x.dtype, device=x.device)
    else:
        grid.check_fits(frames, bins)
        u = grid.expand(uniform_box((x.shape[0], grid.n_patches), radius, generator, dtype=x.dtype,
                                    device=x.device), frames, bins)
    with extra_passes(model, grad=True):
        y = fn(torch.cat([x, x + u]))
    clean, moved = y.split(x.shape[0])
    return (clean - moved).pow(2).sum(dim=1).mean()


def regulariser_weight(c: float, loss_init: float | torch.Tensor, reg_init: float | torch.Tensor) -> float:
    """``c * L(init) / R(init)``: the weight of a regulariser given its relative weight c.

    Raises:
        ParameterError: c < 0, a loss that is not finite and >= 0, a regulariser that is not
            finite and > 0 (a model whose outputs are exactly linear has R = 0: no scale).
    """
    check_positive("c", c, allow_zero=True)
    loss, reg = float(loss_init), float(reg_init)
    if not math.isfinite(loss) or loss < 0:
        raise ParameterError(f"loss_init L(init) must be a finite number >= 0, got {loss!r}")
    if not math.isfinite(reg) or reg <= 0:
        raise ParameterError(f"reg_init R(init) must be a finite number > 0, got {reg!r}")
    return c * loss / reg
