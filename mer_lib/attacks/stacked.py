"""The evaluation attack of every member of a :class:`~mer_lib.stack.ModelStack` in one pass.

:func:`stacked_attack` runs :func:`~mer_lib.attacks.attack`'s engine and pieces
(:func:`~.engine.engine_pieces`, the same random start) on the K models' rows at once, with
per-model, per-example early stopping: result k equals ``attack(member k, x[k], y[k], config)``
up to float rounding (tested in float64). Used by the stored stacked attack tables
(:func:`~.results.get_stacked_attacks`) and by stacked adversarial training.

Example:
    >>> import torch
    >>> from mer_lib.attacks import AttackConfig
    >>> from mer_lib.models import build_model
    >>> from mer_lib.stack import stack_models
    >>> torch.manual_seed(0) and None
    >>> stack = stack_models([build_model("a2e", width=0.0625).eval() for _ in range(2)]).eval()
    >>> results = stacked_attack(stack, torch.randn(3, 1, 16, 16), torch.rand(3, 8), AttackConfig(epsilon=0.1, max_iterations=2))
    >>> [tuple(r.delta.shape) for r in results]
    [(3, 1, 16, 16), (3, 1, 16, 16)]
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from ..stack import ModelStack, StackError
from .config import AttackConfig
from .engine import AttackResult, engine_pieces, random_start
from .generic import OutputLoss, example_mse, run_engine
from .precision import full_float32

__all__ = ["stacked_attack"]


class _OwnerTracker:
    """A stop rule wrapper that remembers which member owns each row of the engine's working batch.

    The generic engine takes an example out of its working batch exactly when the stop rule
    says it stopped, keeping the order of the others; so after each update the working rows
    are ``index[~stop]``.
    """

    def __init__(self, inner, owners: torch.Tensor) -> None:
        self.inner, self.owners = inner, owners
        self.current = owners

    def reset(self, n, device):
        self.inner.reset(n, device)
        self.current = self.owners

    def update(self, evaluation, target, iteration, index):
        kept, stop = self.inner.update(evaluation, target, iteration, index)
        self.current = self.owners[index[~stop]]
        return kept, stop

    def use_kept(self):
        return self.inner.use_kept()

    def record(self):
        return self.inner.record()


class _RowsModel(nn.Module):
    """The stack as one model of rows ``(N, 1, T, F) -> (N, 8)``: each row goes to its owner.

    Rows are grouped per member (zero rows pad the members with fewer working rows; in eval
    mode rows do not interact, so padding changes nothing).
    """

    def __init__(self, stack: ModelStack, tracker: _OwnerTracker) -> None:
        super().__init__()
        self.stack, self.tracker = stack, tracker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        owners = self.tracker.current
        if owners.numel() != x.shape[0]:
            raise StackError(f"internal: {x.shape[0]} rows but {owners.numel()} owners")
        k = self.stack.k
        counts = torch.bincount(owners, minlength=k)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(x.shape[0], device=x.device) - starts[owners]
        width = int(counts.max())
        padded = x.new_zeros((k, width, *x.shape[1:]))
        padded = padded.index_put((owners, pos), x)
        return self.stack(padded)[owners, pos]


def stacked_attack(stack: ModelStack, x: torch.Tensor, y: torch.Tensor, config) -> list:
    """:func:`mer_lib.attacks.attack` of every member of ``stack`` in one pass: K AttackResults.

    ``x`` is ``(K, B, 1, T, F)`` (each member its own examples) or a shared ``(B, 1, T, F)``;
    ``y`` is ``(K, B, 8)`` or a shared ``(B, 8)``. The engine, its pieces
    (:func:`~mer_lib.attacks.engine.engine_pieces`) and the random start are those of
    :func:`~mer_lib.attacks.attack`, so result k equals ``attack(member k, x[k], y[k], config)``
    (per-example early stopping included) up to float rounding. The caller sets the stack's
    mode (eval, or :func:`~mer_lib.models.frozen_normalisation` while training).
    """
    if not isinstance(config, AttackConfig):
        raise ParameterError(f"config must be an AttackConfig, got {type(config).__name__}")
    k = stack.k
    if x.dim() == 4:
        x = x.unsqueeze(0).expand(k, *x.shape)
    if y.dim() == 2:
        y = y.unsqueeze(0).expand(k, *y.shape)
    if x.dim() != 5 or x.shape[0] != k or y.shape[:2] != x.shape[:2]:
        raise ParameterError(f"x must be ({k}, B, 1, T, F) and y ({k}, B, 8) for a stack of {k}, "
                             f"got x {tuple(x.shape)} and y {tuple(y.shape)}")
    b = x.shape[1]
    rows = x.detach().reshape(k * b, *x.shape[2:])
    ys = y.detach().to(device=rows.device, dtype=rows.dtype).reshape(k * b, -1)
    owners = torch.arange(k, device=rows.device).repeat_interleave(b)
    pieces = engine_pieces(config)
    tracker = _OwnerTracker(pieces["stop"], owners)
    pieces["stop"] = tracker
    model = _RowsModel(stack, tracker)
    if config.random_start:     # attack() draws the same starts for every model's B examples
        start = random_start((b, *x.shape[2:]), config).to(device=rows.device, dtype=rows.dtype).repeat(k, 1, 1, 1)
    else:
        start = torch.zeros_like(rows)
    res = run_engine(model, rows, ys, objective=OutputLoss(example_mse), start=start,
                     desc=f"stacked attack ({config.mode})", **pieces)
    if config.random_start:
        with torch.no_grad(), full_float32():
            clean = stack(rows.view(k, b, *rows.shape[1:])).reshape(k * b, -1).detach()
    else:
        clean = res.first_output
    out = []
    for m in range(k):
        sl = slice(m * b, (m + 1) * b)
        delta = res.delta[sl].detach()
        out.append(AttackResult(
            x=rows[sl], y=ys[sl], x_adv=(rows[sl] + delta).detach(), delta=delta,
            final_delta=res.final_delta[sl].detach(), iterations=res.iterations[sl],
            delta_iteration=res.delta_iteration[sl], clean_pred=clean[sl], adv_pred=res.kept_output[sl],
            final_pred=res.final_output[sl], **{name: v[sl] for name, v in res.record.items()}))
    return out
