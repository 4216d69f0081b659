"""Device choice and seeding shared by the chapters, the trainer and the CLI.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from .errors import ParameterError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a fresh torch.Generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def evaluating(model: torch.nn.Module, device: str | torch.device | None = None) -> Iterator[torch.nn.Module]:
    """``model`` on ``device`` (default: CUDA when available) in eval mode; its device and
    train/eval mode are restored afterwards, also on an error.

    Example:
        >>> m = torch.nn.Dropout().train()
        >>> with evaluating(m, "cpu") as e:
        ...     e.training
        False
        >>> m.training
        True
    """
    params = list(model.parameters())
    home = params[0].device if params else torch.device("cpu")
    was_training = model.training
    try:
        yield model.to(resolve_device(device)).eval()
    finally:
        model.to(home).train(was_training)
