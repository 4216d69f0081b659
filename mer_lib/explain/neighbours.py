"""Neighbours of an input in patch space: ExpO's Gaussian neighbours and LIME's binary masks.

- **Gaussian (ExpO)**: ``x' = x + sigma * expand(eps)`` with ``eps ~ N(0, I_K)``, one normal
  draw per patch, constant within the patch. The neighbour's coordinates in the
  interpretable space are its *offsets* ``z = sigma * eps`` (the change of each patch mean:
  ``grid.reduce(x') - grid.reduce(x) == z``). sigma is in standardised input units.
- **Binary masks (LIME)**: ``z in {0, 1}^K`` with every patch kept (1) or switched off (0)
  independently with probability 1/2; a switched-off patch takes the value
  :data:`LIME_BASELINE` = 0, which for standardised spectrograms is the training-set mean
  (the "average" spectrogram value), not silence.
- **Uniform box**: ``u ~ U[-r, r]`` per patch or per input element (ExpO-Stability).

Every draw comes from a ``torch.Generator`` when one is given (reproducible; drawn on the
generator's device, then moved), else from torch's global generator. All neighbours of a batch
are drawn at once as one tensor ``(B, n, K)``.

Example:
    >>> import torch
    >>> from mer_lib.explain.patches import PatchGrid
    >>> grid = PatchGrid(2, 2)
    >>> x = torch.zeros(3, 1, 8, 6)
    >>> xs, z = gaussian_neighbours(x, grid, sigma=0.1, n=5, generator=torch.Generator().manual_seed(0))
    >>> tuple(xs.shape), tuple(z.shape)
    ((3, 5, 1, 8, 6), (3, 5, 4))
    >>> torch.allclose(grid.reduce(xs[:, 0]), z[:, 0])
    True
    >>> masks = lime_masks(1, 2, grid, generator=torch.Generator().manual_seed(0))
    >>> masked = apply_masks(torch.ones(1, 1, 8, 6), grid, masks)
    >>> bool(torch.equal(grid.reduce(masked[0]), masks[0].float()))   # off patches -> 0
    True
"""
from __future__ import annotations

import torch

from ..errors import ParameterError, check_int, check_positive
from .patches import PatchGrid, _frames_bins

#: Value of a switched-off patch in LIME (standardised units: 0 = the training mean).
LIME_BASELINE = 0.0


def _device_of(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def gaussian_offsets(n_examples: int, n: int, grid: PatchGrid, sigma: float,
                     generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """``sigma * eps`` with ``eps ~ N(0, 1)``, shape ``(n_examples, n, K)``."""
    check_positive("sigma", sigma)
    check_int("n_neighbours", n)
    device = torch.device(device)
    eps = torch.randn(n_examples, n, grid.n_patches, generator=generator, dtype=dtype,
                      device=_device_of(generator, device))
    return (sigma * eps).to(device)


def gaussian_neighbours(x: torch.Tensor, grid: PatchGrid, sigma: float, n: int,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Gaussian neighbours of every example: ``(x' (B, n, 1, F, T), offsets (B, n, K))``.

    Materialises all ``B * n`` neighbours; the metrics and regularisers use
    :func:`mer_lib.explain.forward.outputs_at_offsets` instead, which builds them per chunk.
    """
    frames, bins = _frames_bins(x)
    grid.check_fits(frames, bins)
    z = gaussian_offsets(x.shape[0], n, grid, sigma, generator, dtype=x.dtype, device=x.device)
    noise = grid.expand(z.reshape(-1, grid.n_patches), frames, bins)
    return x[:, None] + noise.view(x.shape[0], n, 1, frames, bins), z


def lime_masks(n_examples: int, n: int, grid: PatchGrid,
               generator: torch.Generator | None = None, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Binary LIME masks ``(n_examples, n, K)`` (float 0/1), each patch on with probability 1/2."""
    check_int("n_samples", n)
    device = torch.device(device)
    bits = torch.randint(0, 2, (n_examples, n, grid.n_patches), generator=generator,
                         device=_device_of(generator, device))
    return bits.to(device=device, dtype=torch.float32)


def apply_masks(x: torch.Tensor, grid: PatchGrid, masks: torch.Tensor,
                baseline: float = LIME_BASELINE) -> torch.Tensor:
    """Masked copies ``(B, n, 1, F, T)``: patches with mask 1 keep ``x``, the others ``baseline``."""
    frames, bins = _frames_bins(x)
    if masks.dim() != 3 or masks.shape[0] != x.shape[0] or masks.shape[2] != grid.n_patches:
        raise ParameterError(f"masks must have shape ({x.shape[0]}, n, {grid.n_patches}), "
                             f"got {tuple(masks.shape)}")
    n = masks.shape[1]
    keep = grid.expand(masks.reshape(-1, grid.n_patches).to(x), frames, bins).view(x.shape[0], n, 1, frames, bins)
    return keep * x[:, None] + (1 - keep) * baseline


def uniform_box(shape: tuple[int, ...], radius: float, generator: torch.Generator | None = None, *,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """``u ~ U[-radius, radius]`` elementwise, of the given shape."""
    check_positive("radius", radius)
    device = torch.device(device)
    u = torch.rand(shape, generator=generator, dtype=dtype, device=_device_of(generator, device))
    return ((2 * u - 1) * radius).to(device)
