"""Local linear explanations: a least-squares fit with intercept in patch space, batched.

Around an input x, the model's outputs at N neighbours with patch-space offsets
``z (N, K)`` are fitted by ``g(z) = b + w . z`` (ordinary least squares, one fit per example
and output, all in one batched solve). ``w (K,)`` are the *patch weights* (change of the
output per unit change of a patch's mean, standardised units) and ``b`` is the fitted value
at x itself (z = 0). With K+1 unknowns a fit needs N >= K+1 neighbours (N = K+1 interpolates
exactly); the solve runs in float64 whatever the model's dtype.

:func:`least_squares_residual` is the same fit written as a projection, ``r = (I - H) y``
with the hat matrix H of the design ``[1, z]``: it depends on z only (a constant), so
gradients flow through y, the model outputs (ExpO-Fidelity's regulariser).

:func:`explain_local_linear` is the explainer: Gaussian neighbours (sigma 0.1 by default, the
metrics' sigma) of every input, the model evaluated on all of them in chunks (frozen
normalisation, no autograd), one batched fit. It uses ``n_fit = 2(K+1)`` neighbours by
default (:func:`default_fit_neighbours`), as many as ExpO-Fidelity's regulariser, so the fit has
as many residual degrees of freedom as unknowns.

Example:
    >>> import torch
    >>> z = torch.randn(2, 20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    >>> y = (z @ w + 4.0)[..., None]                 # (2 examples, 20 neighbours, 1 output)
    >>> fit = fit_local_linear(z, y)
    >>> fit.coef.shape, torch.allclose(fit.weights[:, 0], w.expand(2, 3)), torch.allclose(fit.intercept, torch.full((2, 1), 4.0, dtype=torch.float64))
    (torch.Size([2, 1, 4]), True, True)
    >>> float(least_squares_residual(z, y).abs().max()) < 1e-12
    True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import ParameterError, check_int, check_positive
from .forward import extra_passes, output_function, outputs_at_offsets
from .neighbours import gaussian_offsets
from .patches import PatchGrid, _frames_bins

#: ExpO's evaluation neighbourhood, sigma in standardised units: the metrics' neighbours and
#: the explainer's fit neighbours (:mod:`mer_lib.explain.metrics` re-exports it).
SIGMA_EVAL = 0.1


@dataclass(frozen=True)
class LocalLinear:
    """Fitted local linear models ``g(z) = b + w . z``, one per example and output.

    Attributes:
        coef: ``(B, O, K+1)``; column 0 is the intercept b, columns 1..K the patch weights w.
    """

    coef: torch.Tensor

    @property
    def intercept(self) -> torch.Tensor:
        """b, ``(B, O)``: the fitted output at the explained input (z = 0)."""
        return self.coef[..., 0]

    @property
    def weights(self) -> torch.Tensor:
        """w, ``(B, O, K)``: one weight per patch (see :meth:`PatchGrid.expand` to draw them)."""
        return self.coef[..., 1:]

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """``g(z)`` at offsets ``z (B, M, K)``: ``(B, M, O)``."""
        w = self.weights.to(z.dtype)
        return torch.einsum("bmk,bok->bmo", z, w) + self.intercept.to(z.dtype)[:, None, :]


def check_neighbours(n: int, n_patches: int, name: str = "n_neighbours", *, strict: bool = False) -> int:
    """``n`` if it is an integer >= K+1 (``strict``: > K+1), else ParameterError naming ``name``."""
    minimum = n_patches + 2 if strict else n_patches + 1
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        need = f"> K+1 = {n_patches + 1} (with K+1 the fit is exact and the residual is 0)" if strict \
            else f">= K+1 = {n_patches + 1} for a least-squares fit with intercept in {n_patches} patches"
        raise ParameterError(f"{name} must be an integer {need}, got {n!r}")
    return n


def design_matrix(z: torch.Tensor) -> torch.Tensor:
    """``[1, z]``: ``(B, N, K+1)`` from offsets ``(B, N, K)``."""
    return torch.cat([torch.ones_like(z[..., :1]), z], dim=-1)


def _as_outputs(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if z.dim() != 3:
        raise ParameterError(f"offsets z must have shape (batch, neighbours, K), got {tuple(z.shape)}")
    if y.dim() == 2:
        y = y[..., None]
    if y.dim() != 3 or y.shape[:2] != z.shape[:2]:
        raise ParameterError(f"outputs y must have shape {tuple(z.shape[:2])} + (outputs,), got {tuple(y.shape)}")
    check_neighbours(z.shape[1], z.shape[2])
    return y


def fit_local_linear(z: torch.Tensor, y: torch.Tensor) -> LocalLinear:
    """Least-squares fits with intercept of ``y (B, N, O)`` (or ``(B, N)``) on ``z (B, N, K)``.

    Returns :class:`LocalLinear` with ``coef (B, O, K+1)`` in y's dtype (float64 stays
    float64). Raises ParameterError when N < K+1.
    """
    y = _as_outputs(z, y)
    solution = torch.linalg.lstsq(design_matrix(z.double()), y.detach().double()).solution
    return LocalLinear(solution.transpose(1, 2).to(y.dtype))


def least_squares_residual(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(I - H) y``: residuals ``(B, N, O)`` of the fits, differentiable in ``y`` only.

    The orthonormal basis Q of the design ``[1, z]`` (reduced QR, float64) is a constant;
    ``r = y - Q (Q^T y)``.
    """
    y = _as_outputs(z, y)
    q = torch.linalg.qr(design_matrix(z.detach().double())).Q.to(y.dtype)
    return y - q @ (q.transpose(1, 2) @ y)


def default_fit_neighbours(grid: PatchGrid) -> int:
    """Neighbours of one least-squares fit by default: ``2 (K + 1)`` (66 for 4 x 8 patches)."""
    return 2 * (grid.n_patches + 1)


def explain_local_linear(model: Callable, x: torch.Tensor, grid: PatchGrid, *,
                         sigma: float = SIGMA_EVAL, n_fit: int | None = None, seed: int = 0,
                         target: str = "emotions", outputs: int | Sequence[int] | None = None,
                         batch_size: int = 256) -> LocalLinear:
    """Local linear explanations of ``model`` at every input of ``x (B, 1, frames, bins)``.

    Draws ``n_fit`` Gaussian neighbours per input (``torch.Generator`` seeded with
    ``seed``), evaluates the ``target`` outputs (all columns or ``outputs``) at all of them in
    chunks of ``batch_size``, and fits them at once: ``coef (B, O, K+1)``, e.g. ``(B, 8, 33)``
    for the eight emotions on a 4 x 8 grid.

    Example:
        >>> grid = PatchGrid(2, 2)
        >>> w = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
        >>> fit = explain_local_linear(lambda x: grid.reduce(x) @ w.T, torch.randn(3, 1, 8, 8), grid)
        >>> fit.coef.shape, torch.allclose(fit.weights[:, 0], w.expand(3, 4), atol=1e-4)
        (torch.Size([3, 1, 5]), True)
    """
    check_positive("sigma", sigma)
    check_int("seed", seed, minimum=0)
    n_fit = check_neighbours(default_fit_neighbours(grid) if n_fit is None else n_fit,
                             grid.n_patches, "n_fit")
    grid.check_fits(*_frames_bins(x))
    fn = output_function(model, target, outputs)
    z = gaussian_offsets(x.shape[0], n_fit, grid, sigma, torch.Generator().manual_seed(seed),
                         dtype=x.dtype, device=x.device)
    with extra_passes(model):
        y = outputs_at_offsets(fn, x, z, grid, batch_size)
    return fit_local_linear(z, y)
