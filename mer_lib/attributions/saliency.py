"""Gradient saliency: the input gradient of each emotion output, for comparison with IG.

``saliency(model, x)[b, j] = d f_j(x_b) / d x_b`` — one forward pass and one backward pass
per emotion, with BatchNorm and dropout frozen (:func:`mer_lib.models.frozen_normalisation`).
Unlike IG it has no baseline and no completeness: it describes the model at ``x`` only.
``absolute=True`` gives ``|gradient|`` (captum's ``Saliency`` default).

Example:
    >>> import torch
    >>> from mer_lib.attributions import saliency
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8))
    >>> s = saliency(net, torch.randn(3, 1, 2, 2))
    >>> tuple(s.shape), torch.allclose(s[1, 2].flatten(), net[1].weight[2])
    ((3, 8, 1, 2, 2), True)
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import frozen_normalisation
from .ig import _check_input, _emotions, _n_outputs, _stack


def saliency(model: nn.Module, x: torch.Tensor, *, emotion: int | None = None,
             absolute: bool = False) -> torch.Tensor:
    """Input gradients of the outputs, ``(B, 1, F, K)`` for one emotion or ``(B, 8, 1, F, K)``.

    Each example's map is its own gradient (the model runs in eval mode, so examples do
    not interact). Detached; parameters' ``.grad`` are not touched.
    """
    _check_input(x)
    with frozen_normalisation(model), torch.enable_grad():
        xv = x.detach().requires_grad_(True)
        out = model(xv)
        targets = _emotions(emotion, _n_outputs(out))
        maps = []
        for i, j in enumerate(targets):
            (g,) = torch.autograd.grad(out[:, j].sum(), xv, retain_graph=i < len(targets) - 1)
            maps.append(g.abs() if absolute else g)
    return _stack(maps, emotion)


__all__ = ["saliency"]
