"""The original attacker's early-stopping rule, emulated exactly and batched with masks.

The reference implementation keeps, per example, a float threshold ``thr`` (initially
unset) and at every forward pass, with ``r`` the Pearson r between the 8 predictions and
the 8 ratings:

1. if ``thr`` is unset **or exactly 0.0** (the original tests ``not thr``), it becomes
   ``ceil(10 * r) / 10`` (float64);
2. if ``r <= thr`` the threshold is *reached*: the current perturbation becomes the kept
   one; then, if ``thr >= -0.9``, ``thr -= 0.1`` (float64), else the example has
   *converged* and stops;
3. otherwise nothing happens (the attack takes its next step).

Consequences this class reproduces on purpose (they are what the published logs contain):

- **Float thresholds.** Repeated ``- 0.1`` drifts: from start rung 1.0 the threshold near
  -0.9 is ``-0.8999999999999998``, from 0.7 ``-0.8999999999999999``, from -0.8 exactly
  ``-0.9``. All of them pass ``>= -0.9``, so the next threshold is about -1.0 and an
  example converges only when ``r <= -0.9999999999999998`` (or ``r == -1.0``).
- **0.0 counts as unset.** From start rungs 0.2 and 0.1 the threshold becomes exactly 0.0;
  it is then re-initialised from ``r`` at every pass: while ``r`` is in (0, 0.1] the kept
  perturbation is replaced at every pass, and if ``r`` rises above 0.1 the threshold climbs
  back (to 0.2 for ``r`` in (0.1, 0.2]).
- **One rung per pass.** ``thr`` moves by at most 0.1 per forward pass, however far ``r``
  fell.
- **The start is always kept.** At the first pass ``r0 <= ceil(10 * r0) / 10`` (up to
  float rounding), so the kept perturbation is the start (zero) until a later threshold is
  reached.

``r`` is clipped to [-1, 1] as ``scipy.stats.pearsonr`` does. A NaN ``r`` (constant
predictions) reaches nothing and leaves the threshold as it was; the original would raise
``ValueError`` from ``math.ceil(nan)`` if that happened while its threshold was unset.

Iterations here are step counts: the pass that evaluates the perturbation after ``t`` steps
has iteration ``t`` (the original's forward pass ``t + 1``).

Example:
    >>> import torch
    >>> ladder = ReferenceLadder(1)
    >>> [ladder.update(torch.tensor([r], dtype=torch.float64), t)[0].item()
    ...  for t, r in enumerate([0.15, 0.05, 0.08, 0.12, 0.15])]
    [True, True, True, True, False]
    >>> ladder.threshold.item(), ladder.kept_iteration.item()    # climbed back from 0.0
    (0.1, 3)
"""
from __future__ import annotations

import torch

from .ladder import RUNG_TENTHS

#: The original's stopping test: a reached threshold below this means "converged".
LAST_THRESHOLD = -0.9
#: The original's threshold step.
THRESHOLD_STEP = 0.1


class ReferenceLadder:
    """State of the original's threshold rule for ``n`` examples (see the module docstring).

    Attributes:
        threshold: float64 threshold per example; NaN while unset (the original's ``None``).
            After the attack it is the original's last ``cur_target_threshold`` (its logged
            ``adv-target``, which the original wrote as empty when it was 0.0).
        kept_iteration: iteration whose perturbation is kept (0: the start).
        converged: whether a threshold below -0.9 was reached.
        rung_iterations: (n, 20) first iteration at which a threshold of each rung of
            :data:`~mer_lib.attacks.ladder.RUNGS` (and so every rung above it) was reached,
            -1 if never; a threshold is assigned to the nearest tenth.
    """

    def __init__(self, n: int, device: torch.device | str = "cpu") -> None:
        self.threshold = torch.full((n,), float("nan"), dtype=torch.float64, device=device)
        self.kept_iteration = torch.zeros(n, dtype=torch.long, device=device)
        self.converged = torch.zeros(n, dtype=torch.bool, device=device)
        self.rung_iterations = torch.full((n, len(RUNG_TENTHS)), -1, dtype=torch.long,
                                          device=device)
        self._tenths = torch.tensor(RUNG_TENTHS, dtype=torch.float64, device=device)

    def update(self, r: torch.Tensor, iteration: int,
               index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass of the examples ``index`` (default: all) with correlations ``r``.

        Returns ``(reached, stop)``: which of them reached their threshold (their current
        perturbation becomes the kept one) and which of those converged.
        """
        if index is None:
            index = torch.arange(self.threshold.numel(), device=self.threshold.device)
        index = index.to(self.threshold.device)
        r = r.to(self.threshold.device, torch.float64).clamp(-1.0, 1.0)
        thr = self.threshold[index]
        unset = (torch.isnan(thr) | (thr == 0.0)) & ~torch.isnan(r)
        thr = torch.where(unset, torch.ceil(r * 10.0) / 10.0, thr)
        reached = r <= thr                                   # False for NaN r or threshold
        stop = reached & (thr < LAST_THRESHOLD)
        self.threshold[index] = torch.where(reached & ~stop, thr - THRESHOLD_STEP, thr)

        rows = index[reached]
        self.kept_iteration[rows] = iteration
        self.converged[index[stop]] = True
        tenths = torch.round(thr[reached] * 10.0)
        fresh = (self._tenths[None, :] >= tenths[:, None]) & (self.rung_iterations[rows] < 0)
        self.rung_iterations[rows] = torch.where(
            fresh, torch.full_like(self.rung_iterations[rows], iteration),
            self.rung_iterations[rows])
        return reached, stop
