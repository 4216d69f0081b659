"""The correlation ladder of the projected mode: a clean version of the reference's rule.

(The reference mode emulates the original rule exactly, float quirks included:
:mod:`.reference_ladder`; the table in :mod:`.config` lists the differences.)

For one example, let ``r_t`` be the Pearson correlation between the model's 8 emotion
outputs and the 8 true ratings after ``t`` attack steps (``t = 0`` is the start point).
The ladder has rungs at ``1.0, 0.9, ..., -0.9`` (:data:`RUNGS`). A rung ``k/10`` is
*reached* at the first iteration ``t`` with ``r_t <= k/10``; rungs are never "un-reached".
The example's *level* is the lowest rung reached so far. Precisely, in tenths:

- ``level_t = ceil(10 * r_t - TOL)`` is the lowest rung that ``r_t`` reaches;
- at ``t = 0`` this gives the reference's starting threshold ``ceil(10 * r0) / 10``, which
  ``r0`` reaches trivially, so the start rung is always reached at iteration 0;
- a *new rung* is reached at ``t`` when ``level_t`` is below every earlier level; the
  perturbation of that iteration becomes the example's best;
- the example has *converged* once rung ``-0.9`` is reached (``level <= -9``).

Decisions and edge cases:

- **Several rungs in one step.** If ``r`` drops by more than 0.1 in one step, every rung
  it passes is reached at that iteration. The reference moved its threshold by only 0.1
  per forward pass, so it needed one extra pass per skipped rung; this ladder records the
  first iteration at which each rung was truly crossed.
- **Floating point.** ``ceil(10 * r)`` is fragile: ``10 * 0.30000000000000004`` is
  ``3.0000000000000004`` and a Pearson r of 0.3 computed from float32 predictions is rarely
  exactly 0.3, so a naive ceil would start at 0.4. We compare in tenths with a tolerance
  ``TOL = 1e-6`` (i.e. r within 1e-7 of a rung counts as reaching it) and keep levels as
  integers, so thresholds never accumulate rounding error. The reference subtracted 0.1
  from a float threshold repeatedly: its "-0.9" rung became ``-0.8999999999999998`` (or
  ``-0.8999999999999999``, or ``-0.9``, depending on the start rung), which passed its
  ``>= -0.9`` test, so it stopped only near ``r = -1.0``. That is why all 1800 examples
  of its published logs report ``converged = False`` after 1000 forward passes. This
  ladder converges at -0.9 as the paper describes.
- **r0 already <= -0.9.** The example converges at iteration 0, with zero steps.
- **NaN correlation** (constant predictions or constant labels). ``NaN <= x`` is false, so
  such an iteration reaches no rung. If ``r0`` is NaN, the first iteration with a finite
  ``r`` reaches every rung at or above it at once (its starting rung).

Example:
    >>> import torch
    >>> ladder = CorrelationLadder(2)
    >>> ladder.update(torch.tensor([0.34, -0.95]), 0).tolist()   # start rungs 0.4 and -0.9
    [True, True]
    >>> ladder.converged.tolist()
    [False, True]
    >>> ladder.update(torch.tensor([0.12, -0.95]), 1).tolist()   # 0.3 and 0.2 reached at t=1
    [True, False]
    >>> ladder.rung_iterations[0, :9].tolist()                   # rungs 1.0 ... 0.2
    [0, 0, 0, 0, 0, 0, 0, 1, 1]
"""
from __future__ import annotations

import torch

#: Rungs in tenths, from the top: 10, 9, ..., -9 (i.e. r = 1.0, 0.9, ..., -0.9).
RUNG_TENTHS = tuple(range(10, -10, -1))
#: Rungs as correlations (1.0, 0.9, ..., -0.9), the columns of ``rung_iterations``.
RUNGS = tuple(k / 10 for k in RUNG_TENTHS)
#: Tolerance in tenths of a correlation (see the module docstring).
TOL = 1e-6
#: The rung whose reaching means "converged" (in tenths).
FINAL_TENTHS = -9


def pearson_rows(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson r per row of two (B, K) tensors, in float64; NaN for a constant row.

    Example:
        >>> import torch
        >>> pearson_rows(torch.tensor([[1., 2., 3.]]), torch.tensor([[3., 2., 1.]])).tolist()
        [-1.0]
    """
    p = pred.detach().double()
    y = target.detach().double().to(p.device)
    p = p - p.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    return (p * y).sum(dim=1) / torch.sqrt((p * p).sum(dim=1) * (y * y).sum(dim=1))


def rung_level(r: torch.Tensor) -> torch.Tensor:
    """Lowest rung (in tenths, as float; NaN for NaN r) that correlations ``r`` reach."""
    return torch.ceil(10.0 * r.double() - TOL)


class CorrelationLadder:
    """State of the ladder for ``n`` examples; :meth:`update` advances a subset of them.

    Attributes:
        level: lowest rung reached per example, in tenths (``inf`` before any rung).
        rung_iterations: (n, 20) long tensor; iteration at which each rung of :data:`RUNGS`
            was first reached, -1 if never.
        best_iteration: iteration of the last new rung per example (-1 if none).
        converged: whether rung -0.9 was reached.
    """

    def __init__(self, n: int, device: torch.device | str = "cpu") -> None:
        self.level = torch.full((n,), float("inf"), dtype=torch.float64, device=device)
        self.rung_iterations = torch.full((n, len(RUNGS)), -1, dtype=torch.long, device=device)
        self.best_iteration = torch.full((n,), -1, dtype=torch.long, device=device)
        self._tenths = torch.tensor(RUNG_TENTHS, dtype=torch.float64, device=device)

    @property
    def converged(self) -> torch.Tensor:
        return self.level <= FINAL_TENTHS

    def update(self, r: torch.Tensor, iteration: int,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """Feed correlations ``r`` at ``iteration``; return which of them reached a new rung.

        ``index`` says which examples ``r`` belongs to (default: all, in order).
        """
        if index is None:
            index = torch.arange(self.level.numel(), device=self.level.device)
        index = index.to(self.level.device)
        level = rung_level(r.to(self.level.device))
        new = level < self.level[index]            # False for NaN
        rows = index[new]
        self.level[rows] = level[new]
        self.best_iteration[rows] = iteration
        reached = self._tenths[None, :] >= level[new][:, None]
        fresh = reached & (self.rung_iterations[rows] < 0)
        self.rung_iterations[rows] = torch.where(
            fresh, torch.full_like(self.rung_iterations[rows], iteration),
            self.rung_iterations[rows])
        return new
