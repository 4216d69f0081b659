"""From a corpus to model-ready tensors: split, spectrogram cache, standardisation, excerpts.

The split is the one fixed 80/10/10 partition (generator seed 42) that every model and seed
shares. Spectrograms are cached on disk keyed by the front-end settings and each audio file's
identity; the standardisation uses one scalar mean and std taken over the training split.

Example:
    >>> from mer_lib.data import split_indices
    >>> s = split_indices(10)
    >>> [len(s[k]) for k in ("train", "valid", "test")]
    [8, 1, 1]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ParameterError

SPLIT_SEED = 42
SPLITS = ("train", "valid", "test")


def split_indices(n: int, seed: int = SPLIT_SEED, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Fixed 80/10/10 train/valid/test partition of ``range(n)`` by a seeded permutation.

    Sizes are floor(0.8 n) and floor(0.1 n) for train and validation; the test split takes
    the rest. Every index appears in exactly one split; the result depends only on n and seed.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ParameterError(f"split needs an integer number of clips >= 3, got {n!r}")
    perm = torch.randperm(int(n), generator=torch.Generator().manual_seed(seed)).numpy()
    n_train = int(n * fractions[0])
    n_valid = max(1, int(n * fractions[1]))
    return {
        "train": np.sort(perm[:n_train]),
        "valid": np.sort(perm[n_train:n_train + n_valid]),
        "test": np.sort(perm[n_train + n_valid:]),
    }


@dataclass
class MerTensors:
    """A whole dataset as tensors, ready for training and attacks.

    Attributes:
        x: standardised log-filtered spectrogram excerpts, float32, shape (N, 1, frames, 149).
        emotions: emotion ratings (already divided by 10), float32, shape (N, 8).
        midlevel: mid-level ratings (divided by 10), float32, shape (N, 7), or None.
        split: indices of each split, ``{"train": ..., "valid": ..., "test": ...}``.
        ids: clip identifiers (Soundtracks numbers as zero-padded strings), length N.
        mean, std: the scalars used to standardise (from the training split).
        identity: a short hash naming the data (corpus, front end, excerpts) for cache keys.
    """

    x: torch.Tensor
    emotions: torch.Tensor
    midlevel: torch.Tensor | None
    split: dict[str, np.ndarray]
    ids: list[str]
    mean: float
    std: float
    identity: str
    info: dict = field(default_factory=dict)

    def subset(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return ``(x, emotions, midlevel)`` of one split ("train", "valid" or "test")."""
        if name not in self.split:
            raise ParameterError(f"split must be one of {list(self.split)}, got {name!r}")
        idx = torch.as_tensor(self.split[name], dtype=torch.long)
        mid = None if self.midlevel is None else self.midlevel[idx]
        return self.x[idx], self.emotions[idx], mid

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[2])
