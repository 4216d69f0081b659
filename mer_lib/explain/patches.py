"""The interpretable space of the explanations: K time-frequency patches of a spectrogram.

A :class:`PatchGrid` cuts an input of ``(frames, bins)`` into ``segments`` time segments x
``bands`` frequency bands, K = ``bands * segments`` patches. It is shape-agnostic: the same
grid fits any input at least as large as the grid, and the sizes are computed per input.

- **Uneven sizes** are split as :func:`torch.tensor_split` does: ``n`` rows into ``p`` parts
  gives parts of ``n // p + 1`` rows first (``n % p`` of them), then parts of ``n // p``,
  so sizes differ by at most one and lower bands / earlier segments are the larger ones.
- **Patch numbering**: patch ``k = band * segments + segment`` (band 0 = lowest bins,
  segment 0 = first frames), so ``weights.view(bands, segments)`` is an image with frequency
  on the rows and time on the columns (``imshow(..., origin="lower")``).
- A grid that does not fit (more bands than bins, more segments than frames) is rejected
  with a :class:`~mer_lib.errors.ParameterError` naming the field.

Example:
    >>> import torch
    >>> grid = PatchGrid(bands=2, segments=3)
    >>> grid.n_patches, grid.segment_sizes(7), grid.band_sizes(5)
    (6, (3, 2, 2), (3, 2))
    >>> grid.patch_ids(7, 5).T   # rows: bins, columns: frames
    tensor([[0, 0, 0, 1, 1, 2, 2],
            [0, 0, 0, 1, 1, 2, 2],
            [0, 0, 0, 1, 1, 2, 2],
            [3, 3, 3, 4, 4, 5, 5],
            [3, 3, 3, 4, 4, 5, 5]])
    >>> x = grid.expand(torch.arange(6.0)[None], 7, 5)      # (1, 1, 7, 5), constant per patch
    >>> grid.reduce(x)
    tensor([[0., 1., 2., 3., 4., 5.]])
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import ParameterError, check_int

#: The default grid of the Explanations chapter: 4 frequency bands x 8 time segments.
DEFAULT_BANDS = 4
DEFAULT_SEGMENTS = 8


def split_sizes(n: int, parts: int) -> tuple[int, ...]:
    """Sizes of ``n`` rows cut into ``parts`` as :func:`torch.tensor_split` does.

    >>> split_sizes(10, 4)
    (3, 3, 2, 2)
    """
    base, extra = divmod(n, parts)
    return tuple(base + 1 if i < extra else base for i in range(parts))


@dataclass(frozen=True)
class PatchGrid:
    """``bands`` frequency bands x ``segments`` time segments (frozen, validated, hashable).

    Attributes:
        bands: number of frequency bands (splits the last axis, the bins), >= 1.
        segments: number of time segments (splits the frames axis), >= 1.
    """

    bands: int = DEFAULT_BANDS
    segments: int = DEFAULT_SEGMENTS

    def __post_init__(self) -> None:
        check_int("PatchGrid.bands", self.bands)
        check_int("PatchGrid.segments", self.segments)

    # ----------------------------------------------------------------------------------
    @property
    def n_patches(self) -> int:
        """K, the number of patches (= interpretable features)."""
        return self.bands * self.segments

    def to_dict(self) -> dict:
        """``{"bands": ..., "segments": ...}`` (JSON; for configuration keys)."""
        return asdict(self)

    def check_fits(self, frames: int, bins: int) -> None:
        """Raise ParameterError unless every patch of an input ``(frames, bins)`` is non-empty."""
        if self.segments > frames:
            raise ParameterError(f"PatchGrid.segments = {self.segments} does not fit an input of "
                                 f"{frames} frames (need segments <= frames)")
        if self.bands > bins:
            raise ParameterError(f"PatchGrid.bands = {self.bands} does not fit an input of "
                                 f"{bins} frequency bins (need bands <= bins)")

    def segment_sizes(self, frames: int) -> tuple[int, ...]:
        """Frames per segment (earlier segments one frame longer when uneven)."""
        self.check_fits(frames, self.bands)
        return split_sizes(frames, self.segments)

    def band_sizes(self, bins: int) -> tuple[int, ...]:
        """Bins per band (lower bands one bin wider when uneven)."""
        self.check_fits(self.segments, bins)
        return split_sizes(bins, self.bands)

    # ----------------------------------------------------------------------------------
    def patch_ids(self, frames: int, bins: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Long tensor ``(frames, bins)``: the patch number of every input element."""
        self.check_fits(frames, bins)
        seg = torch.repeat_interleave(torch.arange(self.segments, device=device),
                                      torch.tensor(split_sizes(frames, self.segments), device=device))
        band = torch.repeat_interleave(torch.arange(self.bands, device=device),
                                       torch.tensor(split_sizes(bins, self.bands), device=device))
        return band[None, :] * self.segments + seg[:, None]

    def feature_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Patch ids shaped ``(1, 1, frames, bins)`` for an input ``x (B, 1, frames, bins)``.

        This is captum's ``feature_mask`` (ids 0..K-1, broadcast over the batch).
        """
        frames, bins = _frames_bins(x)
        return self.patch_ids(frames, bins, x.device)[None, None]

    def expand(self, weights: torch.Tensor, frames: int, bins: int) -> torch.Tensor:
        """Patch values ``(B, K)`` -> input-shaped ``(B, 1, frames, bins)``, constant per patch.

        Differentiable in ``weights``; keeps its dtype and device.
        """
        if weights.dim() != 2 or weights.shape[1] != self.n_patches:
            raise ParameterError(f"PatchGrid.expand expects weights of shape (batch, {self.n_patches}), "
                                 f"got {tuple(weights.shape)}")
        ids = self.patch_ids(frames, bins, weights.device).flatten()
        return weights.index_select(1, ids).view(weights.shape[0], 1, frames, bins)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch means ``(B, K)`` of an input ``(B, 1, frames, bins)`` (differentiable)."""
        frames, bins = _frames_bins(x)
        ids = self.patch_ids(frames, bins, x.device).flatten()
        flat = x.reshape(x.shape[0], frames * bins)
        sums = flat.new_zeros(x.shape[0], self.n_patches).index_add_(1, ids, flat)
        counts = torch.bincount(ids, minlength=self.n_patches).to(flat.dtype)
        return sums / counts


def _frames_bins(x: torch.Tensor) -> tuple[int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ParameterError(f"expected an input tensor (batch, 1, frames, bins), got {shape}")
    return int(x.shape[2]), int(x.shape[3])
