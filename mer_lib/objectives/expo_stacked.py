"""The ExpO regularisers of :mod:`mer_lib.objectives.expo` for every member of a model stack at once.

A :class:`~mer_lib.stack.ModelStack` holds K models; its input is ``(K, B, 1, frames, bins)``,
member k's own examples. Each function here gives what the single-model function gives for
every member, ``(K,)``, from stacked forward passes:

- **noise**: member k draws its noise from ``generators[k]`` exactly as the single-model
  function draws it from the global generator (in a stack, ``generators`` are the members'
  dropout generators: each holds the state a single run's global generator would hold), so
  member k's neighbours are a single run's;
- **passes**: all members' neighbours go through the stack together, in chunks of
  ``chunk_size`` points per member, under frozen normalisation.

- :func:`stacked_stability_regulariser`: ExpO-Stability, one pass of all ``K x 2B`` inputs.
- :func:`stacked_fidelity_regulariser`: ExpO-Fidelity with one graph of all neighbours.
- :func:`stacked_fidelity_regulariser_backward`: ExpO-Fidelity's gradient chunk by chunk
  (bounded memory), the stacked :func:`~mer_lib.objectives.expo.fidelity_regulariser_backward`.

Example:
    >>> import torch
    >>> from mer_lib.explain import PatchGrid
    >>> from mer_lib.models import build_model
    >>> from mer_lib.objectives.expo import fidelity_regulariser
    >>> from mer_lib.stack import stack_models
    >>> torch.manual_seed(0) and None
    >>> models = [build_model("a2e", width=0.0625).eval() for _ in range(2)]
    >>> grid, x = PatchGrid(bands=2, segments=2), torch.randn(2, 3, 1, 16, 16)
    >>> gens = [torch.Generator().manual_seed(k) for k in range(2)]
    >>> r = stacked_fidelity_regulariser(stack_models(models).eval(), x, grid, generators=gens)
    >>> one = fidelity_regulariser(models[1], x[1], grid, generator=torch.Generator().manual_seed(1))
    >>> r.shape, bool(torch.allclose(r[1], one, rtol=1e-4))
    (torch.Size([2]), True)
"""
from __future__ import annotations

import math

import torch

from ..errors import ParameterError, check_int, check_positive
from ..explain.forward import extra_passes
from ..explain.local_linear import check_neighbours, default_fit_neighbours, least_squares_residual
from ..explain.neighbours import gaussian_offsets, uniform_box
from ..explain.patches import PatchGrid, _frames_bins
from .expo import SIGMA_REG, STABILITY_RADIUS

__all__ = ["stacked_stability_regulariser", "stacked_fidelity_regulariser", "stacked_fidelity_regulariser_backward"]


def _generator(generators, k: int):
    return None if generators is None else generators[k]


def stacked_stability_regulariser(stack: torch.nn.Module, x: torch.Tensor, radius: float = STABILITY_RADIUS,
                                  generators: list | None = None, *, grid: PatchGrid | None = None) -> torch.Tensor:
    """:func:`~mer_lib.objectives.expo.stability_regulariser` of every member: ``(K,)``, differentiable."""
    check_positive("radius", radius)
    k, b = x.shape[:2]
    frames, bins = _frames_bins(x[0])
    if grid is not None:
        grid.check_fits(frames, bins)
    moved = []
    for m in range(k):
        gen = _generator(generators, m)
        if grid is None:
            u = uniform_box(tuple(x[m].shape), radius, gen, dtype=x.dtype, device=x.device)
        else:
            u = grid.expand(uniform_box((b, grid.n_patches), radius, gen, dtype=x.dtype, device=x.device),
                            frames, bins)
        moved.append(torch.cat([x[m], x[m] + u]))
    with extra_passes(stack, grad=True):
        y = stack.forward_all(torch.stack(moved))[0]                       # (K, 2B, outputs)
    clean, shifted = y[:, :b], y[:, b:]
    return (clean - shifted).pow(2).sum(dim=2).mean(dim=1)


def _offsets(x: torch.Tensor, grid: PatchGrid, sigma: float, n_neighbours: int | None, generators) -> torch.Tensor:
    """Every member's Gaussian patch offsets ``(K, B, N, patches)``, drawn as the single-model function does."""
    check_positive("sigma", sigma)
    n = default_fit_neighbours(grid) if n_neighbours is None else n_neighbours
    check_neighbours(n, grid.n_patches, "n_neighbours", strict=True)
    grid.check_fits(*_frames_bins(x[0]))
    return torch.stack([gaussian_offsets(x.shape[1], n, grid, sigma, _generator(generators, m), dtype=x.dtype,
                                         device=x.device) for m in range(x.shape[0])])


def _stacked_outputs(stack, x: torch.Tensor, z: torch.Tensor, grid: PatchGrid, rows: slice) -> torch.Tensor:
    """The stack's emotions at the flattened points ``rows`` of every member: ``(K, points, outputs)``."""
    k, b, n = z.shape[:3]
    frames, bins = _frames_bins(x[0])
    example = torch.arange(b, device=x.device).repeat_interleave(n)[rows]
    flat = z.reshape(k, b * n, grid.n_patches)[:, rows]
    points = torch.stack([x[m].index_select(0, example) + grid.expand(flat[m], frames, bins) for m in range(k)])
    return stack.forward_all(points)[0]


def stacked_fidelity_regulariser(stack: torch.nn.Module, x: torch.Tensor, grid: PatchGrid,
                                 sigma: float = SIGMA_REG, n_neighbours: int | None = None,
                                 generators: list | None = None, *, chunk_size: int | None = None) -> torch.Tensor:
    """:func:`~mer_lib.objectives.expo.fidelity_regulariser` of every member: ``(K,)``, one graph of all neighbours."""
    z = _offsets(x, grid, sigma, n_neighbours, generators)
    k, b, n = z.shape[:3]
    size = chunk_size or b * n
    check_int("chunk_size", size)
    with extra_passes(stack, grad=True):
        y = torch.cat([_stacked_outputs(stack, x, z, grid, slice(lo, lo + size)) for lo in range(0, b * n, size)],
                      dim=1)
    y = y.view(k, b, n, -1)
    return torch.stack([least_squares_residual(z[m], y[m]).pow(2).mean() for m in range(k)])


def stacked_fidelity_regulariser_backward(stack: torch.nn.Module, x: torch.Tensor, grid: PatchGrid,
                                          weights: torch.Tensor, sigma: float = SIGMA_REG,
                                          n_neighbours: int | None = None, generators: list | None = None, *,
                                          chunk_size: int = 64) -> torch.Tensor:
    """Accumulate the gradient of ``sum_k weights[k] * R_k`` chunk by chunk; return ``R`` ``(K,)``, detached.

    The stacked :func:`~mer_lib.objectives.expo.fidelity_regulariser_backward`: all
    neighbours are evaluated once without autograd, the residuals ``r`` kept as constants,
    then ``sum r * y`` is backpropagated over chunks of ``chunk_size`` points per member.
    """
    check_int("chunk_size", chunk_size)
    weights = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    if weights.shape != x.shape[:1] or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ParameterError(f"weights must be {x.shape[0]} finite numbers >= 0, one per member, got {weights}")
    z = _offsets(x, grid, sigma, n_neighbours, generators)
    k, b, n = z.shape[:3]
    with extra_passes(stack):
        y = torch.cat([_stacked_outputs(stack, x, z, grid, slice(lo, lo + chunk_size))
                       for lo in range(0, b * n, chunk_size)], dim=1).view(k, b, n, -1)
    residual = torch.stack([least_squares_residual(z[m], y[m]) for m in range(k)])     # (K, B, N, O)
    regs = residual.pow(2).flatten(1).mean(dim=1)
    scale = (2.0 * weights / math.prod(residual.shape[1:])).view(k, 1, 1)
    r_flat = residual.reshape(k, b * n, -1)
    with extra_passes(stack, grad=True):
        for lo in range(0, b * n, chunk_size):
            rows = slice(lo, lo + chunk_size)
            (scale * r_flat[:, rows] * _stacked_outputs(stack, x, z, grid, rows)).sum().backward()
    return regs.detach()
