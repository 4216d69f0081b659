"""The fixed train/valid/test split of a corpus: one seeded permutation, the same on every machine.

It lives below both :mod:`mer_lib.data` (which splits the loaded corpus) and
:mod:`mer_lib.datasets.synthetic` (which checks the generated corpus against the split), so
neither imports the other.

Example:
    >>> parts = split_indices(10)
    >>> [len(parts[s]) for s in SPLITS]
    [8, 1, 1]
    >>> sorted(int(i) for s in SPLITS for i in parts[s]) == list(range(10))
    True
"""
from __future__ import annotations

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
