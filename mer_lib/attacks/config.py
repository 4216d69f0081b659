"""What an attack is: one frozen, validated, hashable configuration.

Two modes share one engine (:func:`mer_lib.attacks.attack`):

- ``"projected"`` — a correct BIM/PGD: ``delta += step_size * sign(grad)`` (``norm="l2"``: a
  step of length ``step_size`` along the normalised gradient), then projection onto the
  ``epsilon`` ball after every step. The ball is guaranteed.
- ``"reference"`` — the reference implementation's behaviour: the *sign* of the gradient is
  fed to Adam (learning rate ``step_size``), and there is **no** projection, because the
  reference's epsilon clip is a no-op (``clamp`` instead of ``clamp_``, result discarded).
  ``epsilon`` is kept for bookkeeping only in this mode.

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
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError, check_choice, check_int, check_positive

MODES = ("projected", "reference")
NORMS = ("linf", "l2")


@dataclass(frozen=True)
class AttackConfig:
    """Settings of one untargeted attack (see the module docstring for the two modes).

    Attributes:
        mode: ``"projected"`` (BIM/PGD, the ball is honoured) or ``"reference"``
            (sign-of-gradient fed to Adam, no projection, as in the reference code).
        epsilon: radius of the perturbation ball in standardised spectrogram units.
        step_size: projected: the step length alpha; reference: Adam's learning rate.
        max_iterations: most gradient steps per example.
        norm: ``"linf"`` or ``"l2"`` (``"l2"`` only in projected mode).
        random_start: start from a uniform random point of the ball instead of zero.
        early_stop: stop each example by the correlation ladder (:mod:`.ladder`).
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
        check_int("max_iterations", self.max_iterations, minimum=1)
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
