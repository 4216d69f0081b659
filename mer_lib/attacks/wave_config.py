"""What a waveform-domain attack is: one frozen, validated, hashable configuration.

The spectrogram attacks (:class:`~.config.AttackConfig`) perturb the model's standardised
input; a waveform attack perturbs the *audio* of the excerpt and lets the model's own front
end (:class:`~.waveform.WaveformInput`) turn it into that input. Two threat models:

==========  ==========================================================================
``"snr"``   an SNR budget per clip: ``||delta||_2 <= ||s||_2 * 10 ** (-snr_db / 20)``
            with ``s`` the excerpt's samples, so "at least 40 dB" is a constraint, not a
            report. Steps are L2-normalised gradient steps of ``step_fraction`` times the
            budget's radius.
``"linf"``  ``|delta| <= epsilon`` per sample, in the peak-normalised amplitude the data
            pipeline gives (peak 1.0, so epsilon 0.001 is -60 dB below full scale); steps are
            sign steps of ``step_fraction * epsilon`` (BIM/PGD).
==========  ==========================================================================

Both ascend the per-example MSE against the true ratings and stop each example with the
projected spectrogram attack's correlation ladder (:class:`~.stopping.CorrelationStop`),
with the same counting and the same final/kept semantics (:mod:`.engine`). The field the
other threat model uses is stored as ``None``, so two configurations that attack alike
have one key.

Example:
    >>> cfg = WaveAttackConfig(threat="snr", snr_db=40, max_iterations=10)
    >>> round(cfg.bound, 6), round(cfg.step_size, 6), cfg.epsilon
    (0.01, 0.0025, None)
    >>> WaveAttackConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> WaveAttackConfig(snr_db=float("nan"))
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: snr_db must be a finite number (an SNR budget in dB), got nan
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError, check_choice, check_int, check_positive
from ..versions import WAVE_ENGINE_VERSION  # noqa: F401  (re-exported)
from .config import MAX_ITERATIONS

THREATS = ("snr", "linf")


def check_snr_db(name: str, value: Any) -> float:
    """A finite SNR budget in dB (any sign), as float; ParameterError naming ``name`` otherwise.

    >>> check_snr_db("snr_db", 40)
    40.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number (an SNR budget in dB), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class WaveAttackConfig:
    """Settings of one untargeted waveform attack (see the module docstring).

    Attributes:
        threat: ``"snr"`` (an L2 budget relative to the clip) or ``"linf"`` (sample amplitude).
        snr_db: the SNR budget in dB (``threat="snr"``; else stored as None).
        epsilon: the L-infinity bound on a sample (``threat="linf"``; else stored as None).
        step_fraction: each step's length as a fraction of the budget (radius or epsilon).
        max_iterations: most gradient steps per example (up to ``max_iterations + 1`` passes).
        early_stop: stop each example by the correlation ladder and keep its last new rung.
        random_start: start from a uniform random point of the budget.
        seed: seed of the random start.
        renormalise: re-apply the data pipeline's peak normalisation to the perturbed clip
            (what the model would see if the perturbed audio were a file); ``False``: the
            model sees ``s + delta`` as it is.
        examples: attack the first this many clips of the split (None: all).
    """

    threat: str = "snr"
    snr_db: float | None = 40.0
    epsilon: float | None = 0.001
    step_fraction: float = 0.25
    max_iterations: int = 10
    early_stop: bool = True
    random_start: bool = False
    seed: int = 0
    renormalise: bool = True
    examples: int | None = None

    def __post_init__(self) -> None:
        check_choice("threat", self.threat, THREATS)
        if self.threat == "snr":
            object.__setattr__(self, "snr_db", check_snr_db("snr_db", self.snr_db))
            object.__setattr__(self, "epsilon", None)
        else:
            object.__setattr__(self, "epsilon", float(check_positive("epsilon", self.epsilon)))
            object.__setattr__(self, "snr_db", None)
        object.__setattr__(self, "step_fraction", float(check_positive("step_fraction", self.step_fraction)))
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) \
                or not 1 <= self.max_iterations <= MAX_ITERATIONS:
            raise ParameterError(f"max_iterations must be an integer in [1, {MAX_ITERATIONS}], "
                                 f"got {self.max_iterations!r}")
        check_int("seed", self.seed, minimum=0)
        for name in ("early_stop", "random_start", "renormalise"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.examples is not None:
            check_int("examples", self.examples, minimum=1)

    domain = "waveform"

    @property
    def mode(self) -> str:
        """The name the tables and the runner use for this threat model: ``waveform-snr`` / ``waveform-linf``."""
        return f"waveform-{self.threat}"

    @property
    def bound(self) -> float:
        """The budget in the units of the perturbation the engine moves: the relative L2 radius
        ``10 ** (-snr_db / 20)`` (``snr``) or ``epsilon`` (``linf``)."""
        return 10.0 ** (-self.snr_db / 20.0) if self.threat == "snr" else float(self.epsilon)

    @property
    def step_size(self) -> float:
        """``step_fraction * bound``."""
        return self.step_fraction * self.bound

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields plus ``domain`` (JSON-serialisable)."""
        return {"domain": self.domain, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WaveAttackConfig":
        """Inverse of :meth:`to_dict`; missing fields take their defaults, unknown ones fail."""
        if not isinstance(d, dict):
            raise ParameterError(f"waveform attack configuration must be a dict, got {d!r}")
        d = dict(d)
        if d.pop("domain", "waveform") != "waveform":
            raise ParameterError(f"not a waveform attack configuration: domain {d!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(f"unknown waveform attack field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)

    def key(self) -> str:
        """Short stable hash of the configuration (10 hex digits)."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

    def describe(self) -> str:
        """Short description for logs: ``waveform SNR >= 40 dB`` or ``waveform |d| <= 0.001``."""
        if self.threat == "snr":
            return f"waveform SNR >= {self.snr_db:g} dB"
        return f"waveform |d| <= {self.epsilon:g}"
