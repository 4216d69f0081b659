"""Full float32 on CUDA: no TF32 convolutions or matmuls inside attacks and training.

On Ampere and newer GPUs PyTorch may run float32 convolutions (cuDNN, on by default) and
matmuls in TF32, whose 10-bit mantissa resolves about 1e-3 near 1 — the size of the
attack's epsilon (0.001 in standardised units). An attack or a training run inside
:func:`full_float32` computes in true float32 on every device; the previous settings are
restored afterwards, whatever happens. On a CPU the flags have no effect (but are still
set and restored, so the behaviour is testable anywhere).

Example:
    >>> import torch
    >>> with full_float32():
    ...     torch.backends.cudnn.allow_tf32
    False
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def full_float32() -> Iterator[None]:
    """Turn off TF32 for cuBLAS matmuls and cuDNN convolutions; restore the flags on exit."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    previous = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = previous
