"""ExpO's explanation-quality metrics in patch space: neighbourhood fidelity and stability.

For an input x, let ``g_x(z) = b + w_x . z`` be the local linear explanation fitted at x
(:func:`mer_lib.explain.local_linear.explain_local_linear`), and ``x'_j = x + expand(z_j)``,
``j = 1..n``, Gaussian neighbours with ``z_j = sigma * eps_j`` (``sigma`` = 0.1 standardised
units and ``n`` = 5 by default, as in ExpO). Per example and output:

- **neighbourhood fidelity** ``NF = mean_j (g_x(z_j) - f(x'_j))^2``: how well the explanation
  at x predicts the model around x;
- **stability** ``S = mean_j ||w_{x'_j} - w_x||^2`` (sum over the K patch weights, intercepts
  excluded): how much the explanation changes when it is **refitted at each neighbour**
  ``x'_j``. The original ExpO code recomputed the explanation at x instead of at x' (so its
  "stability" compared an explanation with a re-sampled copy of itself, which measures
  the explainer's re-sampling noise at x rather than how the explanation changes around x);
  this implementation refits at x'.

Both use the same explainer: a least-squares fit on ``n_fit = 2(K+1)`` neighbours at
``sigma_fit = sigma``. All fits of one example (at x and at its n neighbours) share the same
fit offsets (common random numbers), so S reflects the change of the model between x and x',
not the re-sampling of the explainer: for a model linear in patch space S is exactly 0, and
for ``f = sum_k a_k p_k^2`` (p the patch means) ``w_{x'} - w_x = 2 a * z_j`` exactly.

Cost per example: ``(n + 1) * n_fit + n`` model evaluations (401 for 4 x 8 patches), all
points of a batch evaluated together in chunks of ``batch_size`` (one forward pass each),
under frozen normalisation and without autograd. Noise comes from a ``torch.Generator``
seeded with ``seed``, drawn for all of x at once, so results do not depend on
``batch_size``.

Example:
    >>> import torch
    >>> from mer_lib.explain.patches import PatchGrid
    >>> grid = PatchGrid(2, 2)
    >>> linear = lambda x: grid.reduce(x) @ torch.tensor([[1.0, -1.0, 0.5, 2.0]], dtype=x.dtype).T
    >>> q = explanation_quality(linear, torch.randn(4, 1, 8, 8, dtype=torch.float64), grid, seed=1)
    >>> q.nf.shape, float(q.nf.max()) < 1e-20, float(q.stability.max()) < 1e-20
    (torch.Size([4, 1]), True, True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import check_int, check_positive
from .forward import extra_passes, output_function, outputs_at_offsets
from .local_linear import SIGMA_EVAL, LocalLinear, check_neighbours, default_fit_neighbours, fit_local_linear
from .neighbours import gaussian_offsets
from .patches import PatchGrid, _frames_bins

#: ExpO's number of evaluation neighbours (their sigma, 0.1, is ``SIGMA_EVAL``).
N_EVAL = 5


@dataclass(frozen=True)
class ExplanationQuality:
    """Per-example, per-output metrics (float64) and what they were computed from.

    Attributes:
        nf: neighbourhood fidelity ``(B, O)``.
        stability: stability ``(B, O)``, or None when it was not asked for.
        explanation: the explanation fitted at x (``coef (B, O, K+1)``, float64; the same as
            :func:`explain_local_linear` with the same seed, n_fit and sigma).
        offsets: the evaluation neighbours' patch offsets ``z_j`` ``(B, n, K)``.
    """

    nf: torch.Tensor
    stability: torch.Tensor | None
    explanation: LocalLinear
    offsets: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Means over examples and outputs: ``{"nf": ..., "stability": ...}`` (nan if absent)."""
        s = float("nan") if self.stability is None else float(self.stability.mean())
        return {"nf": float(self.nf.mean()), "stability": s}


def explanation_quality(model: Callable, x: torch.Tensor, grid: PatchGrid, sigma: float = SIGMA_EVAL,
                        n_neighbours: int = N_EVAL, *, seed: int = 0, with_stability: bool = True,
                        n_fit: int | None = None, sigma_fit: float | None = None,
                        target: str = "emotions", outputs: int | Sequence[int] | None = None,
                        batch_size: int = 256) -> ExplanationQuality:
    """NF and S (see module doc) of ``model``'s explanations at every input of ``x``.

    Args:
        model: callable ``x -> (B, outputs)`` or a model with ``forward_all`` (an
            ``nn.Module`` runs under frozen normalisation; its modes are restored).
        x: inputs ``(B, 1, frames, bins)``.
        grid: the patch grid (interpretable space).
        sigma, n_neighbours: evaluation neighbourhood (ExpO: 0.1 and 5).
        seed: seed of all noise: the fit offsets first (so ``explanation`` equals
            :func:`explain_local_linear` with the same seed), then the evaluation neighbours.
        with_stability: also refit at every neighbour and compute S (``n_neighbours * n_fit``
            more evaluations per example); False gives NF only.
        n_fit, sigma_fit: the explainer's neighbourhood (default ``2(K+1)`` and ``sigma``).
        target, outputs: which outputs are explained (see :func:`output_function`).
        batch_size: points per forward pass.

    Raises:
        ParameterError: sigma <= 0, n_neighbours < 1, n_fit < K+1, a grid that does not fit.
    """
    check_positive("sigma", sigma)
    check_int("n_neighbours", n_neighbours)
    check_int("seed", seed, minimum=0)
    sigma_fit = sigma if sigma_fit is None else check_positive("sigma_fit", sigma_fit)
    n_fit = check_neighbours(default_fit_neighbours(grid) if n_fit is None else n_fit, grid.n_patches, "n_fit")
    grid.check_fits(*_frames_bins(x))
    fn = output_function(model, target, outputs)

    n_ex, n, k = x.shape[0], n_neighbours, grid.n_patches
    gen = torch.Generator().manual_seed(seed)
    z_fit = gaussian_offsets(n_ex, n_fit, grid, sigma_fit, gen, dtype=x.dtype, device=x.device)
    z_eval = gaussian_offsets(n_ex, n, grid, sigma, gen, dtype=x.dtype, device=x.device)
    parts = [z_fit, z_eval]
    if with_stability:  # the fit offsets around every neighbour, relative to x
        parts.append((z_eval[:, :, None, :] + z_fit[:, None, :, :]).reshape(n_ex, n * n_fit, k))
    with extra_passes(model):
        y = outputs_at_offsets(fn, x, torch.cat(parts, dim=1), grid, batch_size).double()
    n_out = y.shape[2]
    y_fit, y_eval = y[:, :n_fit], y[:, n_fit:n_fit + n]
    if with_stability:  # fit at x and at every x'_j in one solve: columns (centre, output)
        y_refit = y[:, n_fit + n:].view(n_ex, n, n_fit, n_out).permute(0, 2, 1, 3).reshape(n_ex, n_fit, n * n_out)
        y_fit = torch.cat([y_fit, y_refit], dim=2)
    coef = fit_local_linear(z_fit, y_fit).coef.view(n_ex, -1, n_out, k + 1)  # (B, 1 [+ n], O, K+1)

    at_x = LocalLinear(coef[:, 0])
    nf = (at_x.predict(z_eval.double()) - y_eval).pow(2).mean(dim=1)
    stability = None
    if with_stability:
        stability = (coef[:, 1:, :, 1:] - coef[:, :1, :, 1:]).pow(2).sum(dim=-1).mean(dim=1)
    return ExplanationQuality(nf, stability, at_x, z_eval)


def neighbourhood_fidelity(model: Callable, x: torch.Tensor, grid: PatchGrid, sigma: float = SIGMA_EVAL,
                           n_neighbours: int = N_EVAL, *, seed: int = 0, **kwargs) -> torch.Tensor:
    """NF ``(B, O)`` only (no refits); keyword arguments as :func:`explanation_quality`."""
    return explanation_quality(model, x, grid, sigma, n_neighbours, seed=seed, with_stability=False,
                               **kwargs).nf


def explanation_stability(model: Callable, x: torch.Tensor, grid: PatchGrid, sigma: float = SIGMA_EVAL,
                          n_neighbours: int = N_EVAL, *, seed: int = 0, **kwargs) -> torch.Tensor:
    """S ``(B, O)``, refitted at every neighbour; keyword arguments as :func:`explanation_quality`."""
    return explanation_quality(model, x, grid, sigma, n_neighbours, seed=seed, **kwargs).stability
