"""Which model output is explained, and evaluating it on many neighbours in chunks.

A *model* here is any callable ``x (B, 1, frames, bins) -> (B, outputs)`` or a model with
``forward_all(x) -> (emotions, concepts)`` (:class:`mer_lib.models.MerNet`); ``target``
picks ``"emotions"`` (the 8 emotions, the default) or ``"concepts"`` (the 7 bottleneck units
of A2B2E / A2M2E, for the patches -> concept level of a two-level explanation).

All points an explainer or metric needs are written as offsets from the explained inputs in
patch space: point ``m`` of example ``b`` is ``x[b] + grid.expand(offsets[b, m])``.
:func:`outputs_at_offsets` evaluates all of them, chunk by chunk, so only ``batch_size``
inputs exist at a time.

Example:
    >>> import torch
    >>> from mer_lib.explain.patches import PatchGrid
    >>> grid = PatchGrid(1, 2)
    >>> f = output_function(lambda x: grid.reduce(x))        # 2 outputs: the patch means
    >>> offsets = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])   # (1 example, 3 points, K)
    >>> outputs_at_offsets(f, torch.zeros(1, 1, 4, 3), offsets, grid, batch_size=2)
    tensor([[[1., 0.],
             [0., 2.],
             [3., 3.]]])
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import ParameterError, check_choice, check_int
from ..models import frozen_normalisation
from .patches import PatchGrid, _frames_bins

TARGETS = ("emotions", "concepts")
OutputFn = Callable[[torch.Tensor], torch.Tensor]


def output_function(model: Callable, target: str = "emotions",
                    outputs: int | Sequence[int] | None = None) -> OutputFn:
    """A function ``x -> (B, O)``: the ``target`` outputs of ``model``, columns ``outputs``.

    Args:
        model: callable ``x -> (B, outputs)`` or a model with ``forward_all``.
        target: ``"emotions"`` or ``"concepts"`` (the latter needs ``forward_all`` returning
            concepts, i.e. a bottleneck model).
        outputs: None for all columns, an int for one (kept as a column: ``(B, 1)``), or a
            list of column indices.
    """
    check_choice("target", target, TARGETS)
    if not callable(model):
        raise ParameterError(f"model must be callable (x -> outputs), got {type(model).__name__}")
    forward_all = getattr(model, "forward_all", None)
    if target == "concepts":
        if forward_all is None:
            raise ParameterError("target='concepts' needs a model with forward_all(x) -> (emotions, concepts)")

        def base(x: torch.Tensor) -> torch.Tensor:
            concepts = forward_all(x)[1]
            if concepts is None:
                raise ParameterError(f"target='concepts': model {getattr(model, 'variant', '')!r} "
                                     f"has no concept bottleneck (direct head)")
            return concepts
    elif forward_all is not None:
        def base(x: torch.Tensor) -> torch.Tensor:
            return forward_all(x)[0]
    else:
        base = model
    if outputs is None:
        return base
    columns = [outputs] if isinstance(outputs, int) and not isinstance(outputs, bool) else list(outputs)
    if not columns or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in columns):
        raise ParameterError(f"outputs must be None, a column index >= 0 or a list of them, got {outputs!r}")

    def select(x: torch.Tensor) -> torch.Tensor:
        y = base(x)
        if max(columns) >= y.shape[1]:
            raise ParameterError(f"outputs {columns} out of range: the {target} have {y.shape[1]} columns")
        return y[:, columns]
    return select


@contextmanager
def extra_passes(model: Callable, *, grad: bool = False) -> Iterator[None]:
    """Context of the explainers' and regularisers' extra passes.

    A :class:`torch.nn.Module` runs under :func:`mer_lib.models.frozen_normalisation`
    (BatchNorm with running statistics, no dropout, modes restored afterwards); any other
    callable runs as it is. ``grad=False`` also switches autograd off (metrics, explainers).
    """
    frozen = frozen_normalisation(model) if isinstance(model, nn.Module) else nullcontext()
    with frozen, torch.set_grad_enabled(torch.is_grad_enabled() and grad):
        yield


def outputs_at_offsets(fn: OutputFn, x: torch.Tensor, offsets: torch.Tensor, grid: PatchGrid,
                       batch_size: int = 256) -> torch.Tensor:
    """``fn(x[b] + grid.expand(offsets[b, m]))`` for every example b and point m: ``(B, M, O)``.

    The ``B * M`` points are evaluated in chunks of ``batch_size`` (one forward pass each);
    gradients flow when ``fn`` and the caller allow them (no ``torch.no_grad`` here).
    """
    check_int("batch_size", batch_size)
    frames, bins = _frames_bins(x)
    if offsets.dim() != 3 or offsets.shape[0] != x.shape[0] or offsets.shape[2] != grid.n_patches:
        raise ParameterError(f"offsets must have shape ({x.shape[0]}, points, {grid.n_patches}), "
                             f"got {tuple(offsets.shape)}")
    n_ex, n_pts = offsets.shape[:2]
    flat = offsets.reshape(n_ex * n_pts, grid.n_patches).to(device=x.device, dtype=x.dtype)
    example = torch.arange(n_ex, device=x.device).repeat_interleave(n_pts)
    chunks = []
    for start in range(0, n_ex * n_pts, batch_size):
        stop = min(start + batch_size, n_ex * n_pts)
        points = x.index_select(0, example[start:stop]) + grid.expand(flat[start:stop], frames, bins)
        chunks.append(fn(points))
    y = torch.cat(chunks)
    return y.view(n_ex, n_pts, y.shape[1])
