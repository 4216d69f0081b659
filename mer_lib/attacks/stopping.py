"""Stop rules: when each example of an attack stops, and which perturbation it keeps.

The generic engine (:mod:`.generic`) evaluates the objective at every example's current
perturbation and shows the :class:`~.generic.Evaluation` to the stop rule, which answers per
example of the working batch:

- ``kept``: this perturbation becomes the example's *kept* one (a new best);
- ``stop``: the example is done (it leaves the working batch; its perturbation is final).

After the last pass :meth:`StopRule.use_kept` says which examples return their kept
perturbation instead of their final one, and :meth:`StopRule.record` gives the rule's own
per-example bookkeeping (ladder rungs, thresholds).

Rules:

- :class:`RunAll`: every example takes every step; the final perturbation is returned
  (RAR's inner maximisation, an attack with ``early_stop=False``).
- :class:`CorrelationStop`: the projected mode's clean correlation ladder
  (:class:`~.ladder.CorrelationLadder`): keep the perturbation of each new rung, stop at
  -0.9; return the kept one if a rung below the start was reached, else the final one.
- :class:`ReferenceStop`: the original attacker's threshold rule, float quirks included
  (:class:`~.reference_ladder.ReferenceLadder`); the kept perturbation is always returned
  (the start, zero, until a later threshold is reached).

Both ladders look at the Pearson r between the model's output and the targets. With
``early_stop=False`` they still record the ladder but never stop and keep nothing.

Example:
    >>> import torch
    >>> from mer_lib.attacks.generic import Evaluation
    >>> rule = CorrelationStop()
    >>> rule.reset(2, "cpu")
    >>> y = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    >>> ev = Evaluation(output=torch.tensor([[1.0, 2.0, 3.5], [3.0, 2.0, 1.0]]))
    >>> [m.tolist() for m in rule.update(ev, y, 0, torch.arange(2))]   # r = 0.99 and -1
    [[True, True], [False, True]]
"""
from __future__ import annotations

import math

import torch

from .ladder import FINAL_TENTHS, CorrelationLadder, pearson_rows
from .reference_ladder import ReferenceLadder


class StopRule:
    """Base class; :meth:`reset` is called at the start of every batch of examples."""

    def reset(self, n: int, device: torch.device | str) -> None:
        """Start ``n`` new examples."""
        self.n, self.device = n, device

    def update(self, evaluation, target: torch.Tensor | None, iteration: int,
               index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept, stop)`` masks over the working batch ``index`` at ``iteration``."""
        raise TypeError(f"{type(self).__name__} must define update()")

    def use_kept(self) -> torch.Tensor:
        """``(n,)``: which examples return their kept perturbation instead of the final one."""
        return torch.zeros(self.n, dtype=torch.bool, device=self.device)

    def record(self) -> dict[str, torch.Tensor]:
        """Per-example tensors ``(n, ...)`` of the rule's bookkeeping (for result tables)."""
        return {}

    def __repr__(self) -> str:
        flag = getattr(self, "early_stop", None)
        return f"{type(self).__name__}({'' if flag is None else f'early_stop={flag}'})"


class RunAll(StopRule):
    """Never stop early, keep nothing: every example takes every step."""

    def update(self, evaluation, target, iteration, index):
        none = torch.zeros(index.numel(), dtype=torch.bool, device=index.device)
        return none, none


class CorrelationStop(StopRule):
    """The projected mode's correlation ladder (see :mod:`.ladder`)."""

    def __init__(self, early_stop: bool = True) -> None:
        self.early_stop = early_stop

    def reset(self, n, device):
        super().reset(n, device)
        self.ladder = CorrelationLadder(n, device)

    def update(self, evaluation, target, iteration, index):
        new = self.ladder.update(pearson_rows(evaluation.output, target), iteration, index)
        if not self.early_stop:
            return torch.zeros_like(new), torch.zeros_like(new)
        return new, self.ladder.converged[index]

    def use_kept(self):
        return (self.ladder.best_iteration >= 1) & bool(self.early_stop)

    def record(self):
        """``converged``, ``threshold`` (the next rung below the lowest one reached, -0.9 once
        converged, NaN if none) and ``rung_iterations``."""
        ladder = self.ladder
        nxt = torch.where(ladder.converged, torch.full_like(ladder.level, FINAL_TENTHS),
                          ladder.level - 1.0) / 10.0
        threshold = torch.where(torch.isinf(ladder.level), torch.full_like(nxt, math.nan), nxt)
        return {"converged": ladder.converged.clone(), "threshold": threshold,
                "rung_iterations": ladder.rung_iterations}


class ReferenceStop(StopRule):
    """The original attacker's threshold rule (see :mod:`.reference_ladder`)."""

    def __init__(self, early_stop: bool = True) -> None:
        self.early_stop = early_stop

    def reset(self, n, device):
        super().reset(n, device)
        self.ladder = ReferenceLadder(n, device)

    def update(self, evaluation, target, iteration, index):
        reached, stop = self.ladder.update(pearson_rows(evaluation.output, target), iteration, index)
        if not self.early_stop:
            return torch.zeros_like(reached), torch.zeros_like(stop)
        return reached, stop

    def use_kept(self):
        return torch.full((self.n,), self.early_stop, dtype=torch.bool, device=self.device)

    def record(self):
        """``converged``, ``threshold`` (the original's last threshold) and ``rung_iterations``."""
        ladder = self.ladder
        return {"converged": ladder.converged.clone(), "threshold": ladder.threshold.clone(),
                "rung_iterations": ladder.rung_iterations}


__all__ = ["StopRule", "RunAll", "CorrelationStop", "ReferenceStop"]
