"""What an attack is: one frozen, validated, hashable configuration.

Two modes share one engine (:func:`mer_lib.attacks.attack`). Both ascend the MSE between
``model(x + delta)`` and the true ratings along the *sign* of its gradient, and both stop
each example by a *correlation ladder* on the Pearson r between its 8 predictions and its
8 ratings. They differ in everything around that:

========================  ======================================  ==========================================
                          ``"projected"`` (clean BIM/PGD)          ``"reference"`` (the original, step for step)
========================  ======================================  ==========================================
update                    ``delta + step_size * sign(g)``, then   ``-sign(g)`` fed to Adam (lr ``step_size``);
                          projected onto the ``epsilon`` ball     **no projection** (the original's clip was a
                          (``norm="l2"``: normalised gradient)    no-op), ``epsilon`` is bookkeeping only
``max_iterations``        gradient steps (so up to                forward passes, as the original's
                          ``max_iterations + 1`` forward passes)  ``max_iters`` (the last evaluated
                                                                  perturbation has ``max_iterations - 1`` steps)
ladder arithmetic         integer tenths; the start rung is       float64 thresholds: start
                          ``ceil(10 r0 - 1e-6) / 10``             ``ceil(10 r0) / 10``, then repeated ``- 0.1``
rungs per forward pass    every rung ``r`` crossed                at most one
threshold exactly 0.0     an ordinary rung                        counts as *unset*: re-initialised from the
                                                                  current r at every pass (from start rungs
                                                                  0.2 / 0.1 / 0.0), so it can climb back up
converged                 r <= -0.9 (1e-7 tolerance)              a threshold below -0.9 reached: in practice
                                                                  r <= -0.9999999999999998 (or r = -1.0)
kept perturbation         the one of the last *new* rung;         the one of the last threshold reached;
                          if no rung below the start was          **zero** if that was the start (as the
                          reached: the final perturbation         original's ``best_delta``)
========================  ======================================  ==========================================

Both modes report ``iterations`` as the number of steps of the last perturbation evaluated
(its prediction is ``final_pred``) and ``forward_passes`` as ``iterations + 1``; the reader
of the original's logs (:mod:`.reference_logs`) fills the same two columns from ``epoch``.

Example:
    >>> from mer_lib.attacks import AttackConfig
    >>> cfg = AttackConfig(mode="projected", epsilon=0.001, step_size=0.0002, max_iterations=50)
    >>> AttackConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> len(cfg.key())
    10
    >>> AttackConfig(epsilon=0)
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: epsilon must be a finite number > 0, got 0
    >>> AttackConfig(max_iterations=10**6)
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: max_iterations must be an integer in [1, 100000], got 1000000
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError, check_choice, check_int, check_positive

MODES = ("reference", "projected")   # the one list of attack modes (the chapters' default order)
NORMS = ("linf", "l2")
#: Upper bound of ``max_iterations`` (a typo like 1e9 would otherwise run for days).
MAX_ITERATIONS = 100_000


@dataclass(frozen=True)
class AttackConfig:
    """Settings of one untargeted attack (see the module docstring for the two modes).

    Attributes:
        mode: ``"projected"`` (BIM/PGD, the ball is honoured) or ``"reference"``
            (the original attacker step for step; see the table in the module docstring).
        epsilon: radius of the perturbation ball in standardised spectrogram units.
        step_size: projected: the step length alpha; reference: Adam's learning rate.
        max_iterations: projected: most gradient steps per example; reference: most forward
            passes per example (the original's ``max_iters``). At most :data:`MAX_ITERATIONS`.
        norm: ``"linf"`` or ``"l2"`` (``"l2"`` only in projected mode).
        random_start: start from a uniform random point of the ball instead of zero.
        early_stop: stop each example by its correlation ladder (:mod:`.ladder`,
            :mod:`.reference_ladder`) and return the kept perturbation; ``False``: run all
            iterations and return the final perturbation (the ladder is still recorded).
        seed: seed of the random start.
    """

    mode: str = "projected"
    epsilon: float = 0.001
    step_size: float = 0.002
    max_iterations: int = 1000
    norm: str = "linf"
    random_start: bool = False
    early_stop: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("norm", self.norm, NORMS)
        if self.mode == "reference" and self.norm != "linf":
            raise ParameterError(
                f"norm={self.norm!r} needs mode='projected' (the reference mode has no "
                f"projection, so only norm='linf' describes it), got mode={self.mode!r}")
        # store numbers as float so that 1 and 1.0 give the same key
        object.__setattr__(self, "epsilon", float(check_positive("epsilon", self.epsilon)))
        object.__setattr__(self, "step_size", float(check_positive("step_size", self.step_size)))
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) \
                or not 1 <= self.max_iterations <= MAX_ITERATIONS:
            raise ParameterError(f"max_iterations must be an integer in [1, {MAX_ITERATIONS}], "
                                 f"got {self.max_iterations!r}")
        check_int("seed", self.seed, minimum=0)
        for name in ("random_start", "early_stop"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ParameterError(f"{name} must be True or False, got {value!r}")

    @property
    def projected(self) -> bool:
        """True when the epsilon ball is enforced."""
        return self.mode == "projected"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AttackConfig":
        """Inverse of :meth:`to_dict`; missing fields take their defaults, unknown ones fail."""
        if not isinstance(d, dict):
            raise ParameterError(f"attack configuration must be a dict, got {d!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(
                f"unknown attack configuration field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def key(self) -> str:
        """Short stable hash of the configuration (10 hex digits), for cache file names."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]
