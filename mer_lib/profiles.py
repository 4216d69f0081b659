"""Execution profiles: one table that says how big a run is.

A chapter takes ``profile`` as a papermill parameter and reads every size from here, so the
same notebook runs in seconds (``smoke``, used by the tests), in minutes on a laptop CPU
(``quick``, the default of the main command) or at the paper's reference settings (``paper``,
meant for a GPU). Individual values can be overridden without editing this file.

Every size is declared once, as one :class:`Size` row of :data:`SIZES`: its name, its value
in each profile, its check and, for the training objectives' options, where it goes
(``rar_riemann_steps`` -> ``ig_norm.riemann_steps``). :class:`Profile`, the profiles, their
validation and the objectives' options (:func:`mer_lib.extensions.objective_options`) are
built from the table; a chapter parameter whose ``None`` means "the profile's" takes its check
and its options from its row (:data:`mer_lib.parameters.PARAMETERS`). A new size is one row.

Example:
    >>> from mer_lib.profiles import get_profile
    >>> p = get_profile("quick")
    >>> p.name, p.excerpt_frames
    ('quick', 126)
    >>> get_profile("quick", epochs=3).epochs
    3
    >>> SIZE["rar_riemann_steps"].options
    ('ig_norm.riemann_steps', 'ig_sum_norm.riemann_steps')
    >>> get_profile("quick", epochs=0)
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: profile field epochs must be an integer >= 1, got 0
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ParameterError, check_int, check_number_list, check_positive, check_seeds
from .frontend import FPS  # noqa: F401  (frames per second of the front end; re-exported)

#: The ten seeds of the paper's experiments.
PAPER_SEEDS = (6, 21, 42, 796, 950, 2025, 2324, 2451, 3100, 7192)
#: The profiles, smallest first (each :class:`Size` row gives one value per name).
PROFILE_NAMES = ("smoke", "quick", "paper")


# ------------------------------------------------------------------------------ checks
def at_least(minimum: int) -> Callable[[str, Any], int]:
    """The check of an integer >= ``minimum``."""
    return lambda name, value: check_int(name, value, minimum=minimum)


def positive(name: str, value: Any) -> float:
    """The check of a finite number > 0 (as float)."""
    return float(check_positive(name, value))


def non_negative(name: str, value: Any) -> float:
    """The check of a finite number >= 0 (as float)."""
    return float(check_positive(name, value, allow_zero=True))


def or_none(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """``check``, letting None through (a size whose None means "all" or "the default").

    >>> or_none(at_least(1))("attr_examples", 0)
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: attr_examples must be None or an integer >= 1, got 0
    """
    def checked(name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(name, value)
        except ParameterError as exc:
            raise ParameterError(str(exc).replace(" must be ", " must be None or ", 1)) from None
    return checked


def flag(name: str, value: Any) -> bool:
    """The check of True or False."""
    if not isinstance(value, bool):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return value


def _seeds(name: str, value: Any) -> tuple[int, ...]:
    return tuple(check_seeds(value, name))


def _numbers(name: str, value: Any) -> tuple[float, ...]:
    return tuple(check_number_list(name, value))


def _finite_numbers(name: str, value: Any) -> tuple[float, ...]:
    ok = (not isinstance(value, (str, bytes)) and isinstance(value, (list, tuple)) and value
          and all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in value))
    if not ok:
        raise ParameterError(f"{name} must be a non-empty list of finite numbers (dB), got {value!r}")
    return tuple(value)


# ------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Size:
    """One size of a run, declared once: its value in each profile, its check, where it goes.

    Attributes:
        name: the :class:`Profile` field.
        smoke, quick, paper: its value in each profile.
        check: ``(name, value) -> value``; raises a ParameterError naming ``name``.
        expected: what the value must be, in words (the chapters' and the CLI's help).
        note: what it is.
        options: the training objectives' options it sets, as ``"objective.option"``.
    """

    name: str
    smoke: Any
    quick: Any
    paper: Any
    check: Callable[[str, Any], Any]
    expected: str
    note: str
    options: tuple[str, ...] = ()

    def value(self, profile: str) -> Any:
        """Its value in the profile named ``profile``."""
        return getattr(self, profile)


_INT, _INT_OR_NONE = "an integer >= 1", "an integer >= 1 or None"
_EXPO = ("expo_fidelity", "expo_stability")
_RAR = ("ig_norm", "ig_sum_norm")


def _to(objectives: tuple[str, ...], option: str) -> tuple[str, ...]:
    return tuple(f"{objective}.{option}" for objective in objectives)


# The quick profile: every chapter on a 2-core CPU in minutes, and still the paper's effects. Measured
# on the synthetic corpus, the A2M2E bottleneck only learns its concepts (test concept r >= 0.5) with
# more clips than the paper's 360 and a learning rate above the paper's 5e-4 for 30 epochs: 360 clips
# at width 0.25 gave concept r 0.42 (lr 3e-3; 0.16 at 5e-4), 720 shorter clips at width 0.125 gave
# 0.54 in less time. Hence 720 clips of 6 s, 4-s excerpts.
SIZES: tuple[Size, ...] = (
    # data
    Size("n_clips", 40, 720, 360, at_least(10), "an integer >= 10", "synthetic corpus size (real data: all clips)"),
    Size("clip_seconds", 3.0, 6.0, 15.0, positive, "a number > 0", "synthetic clip length in seconds"),
    Size("n_extra_midlevel", 0, 0, 0, at_least(0), "an integer >= 0",
         "extra synthetic clips with mid-level labels only"),
    Size("excerpt_seconds", 2.0, 4.0, 10.0, positive, "a number > 0",
         "length of the random excerpt fed to the model"),
    # model and training
    Size("width", 0.125, 0.125, 1.0, positive, "a number > 0", "channel multiplier of the VGG backbone (1.0 = paper)"),
    Size("epochs", 2, 30, 200, at_least(1), _INT, "training: maximum epochs"),
    Size("patience", 2, 10, 50, at_least(1), _INT, "training: early-stopping patience"),
    Size("batch_size", 8, 8, 8, at_least(1), _INT, "training: batch size"),
    Size("lr", 5e-4, 3e-3, 5e-4, positive, "a number > 0", "training: Adam learning rate"),
    Size("seeds", (6,), (6, 21, 42), PAPER_SEEDS, _seeds, "a list of distinct integers", "training seeds"),
    # quick: oneDNN's NHWC kernels make a training epoch ~1.1x faster on 2 CPU cores (plain 1.09 vs
    # 1.21 s, adversarial 5.9 vs 6.7 s, measured in one process)
    Size("channels_last", False, True, False, flag, "True or False",
         "training in the channels_last memory format (keyed; float32, deterministic, not bit-equal "
         "to the default layout)"),
    # the seeds of one variant train together as one model stack, this many at a time (1: one model
    # at a time); a stacked model is stored as the single run of its seed (same key). Quick: 1.28x
    # faster than three single runs for A2E, 1.25-1.47x for aA2E on 2 CPU cores (channels_last)
    Size("stack_size", 1, 3, 10, at_least(1), _INT, "models trained as one stack"),
    # attacks
    Size("attack_iterations", 5, 30, 1000, at_least(1), _INT, "maximum iterations of the evaluation attack"),
    Size("adv_attack_iterations", 2, 5, 50, at_least(1), _INT,
         "maximum iterations of the attack inside adversarial training"),
    Size("adv_every", 1, 5, 5, at_least(1), _INT, "adversarial epochs: every adv_every-th epoch"),
    Size("epsilons", (0.001, 0.01), (0.001, 0.01, 0.1), (0.0003, 0.001, 0.003, 0.01, 0.03), _numbers,
         "a list of numbers > 0", "epsilon sweep of the projected attack"),
    # extensions (ExpO, RAR). Quick: fine-tuning a trained model at the from-scratch rate 3e-3 made its
    # validation r jump between epochs (ExpO-S-A2E at c = 1: test avg r 0.34 over 3 seeds vs 0.69 for a
    # c = 0 fine-tune); at 1e-3 the c = 0 control keeps A2E's accuracy and ExpO still lowers NF. Two of
    # the three seeds: the quick book measured 28 min with three on 2 cores, the RAR fine-tuning ~3.4 min.
    Size("finetune_epochs", 1, 5, None, or_none(at_least(1)), _INT_OR_NONE,
         "extension variants: fine-tune the stored A2E / A2B2E for this many epochs (None: from scratch)"),
    Size("finetune_lr", None, 1e-3, None, or_none(positive), "a number > 0 or None",
         "Adam learning rate of that fine-tuning (None: lr)"),
    Size("extension_seeds", None, 2, None, or_none(at_least(1)), _INT_OR_NONE,
         "extension variants train the first this many seeds (None: all)"),
    # quick: over 5 fine-tuning epochs c = 1 cost ExpO-F-A2E ~0.2 of validation r and ExpO-S-A2E ~0.3;
    # c = 0.1 ~0.05, with NF still several times A2E's
    Size("expo_c", 1.0, 0.1, 1.0, non_negative, "a number >= 0",
         "ExpO: regulariser weight c (of c * L(init) / R(init))", _to(_EXPO, "c")),
    # ExpO-Fidelity costs ~reg_batch * (N + 1) / batch_size extra passes per step; one regularised clip
    # on a 2 x 4 grid (N = 18) keeps a quick epoch near 3x a plain one
    Size("expo_reg_batch", 1, 1, 16, at_least(1), _INT, "ExpO: examples regularised per step (ExpO's 16)",
         _to(_EXPO, "reg_batch")),
    Size("patch_bands", 2, 2, 4, at_least(1), _INT, "interpretable space: frequency bands",
         _to(_EXPO, "bands")),
    Size("patch_segments", 2, 4, 8, at_least(1), _INT, "interpretable space: time segments",
         _to(_EXPO, "segments")),
    Size("explain_examples", 3, 24, None, or_none(at_least(1)), _INT_OR_NONE,
         "clips of the split whose explanations are measured (None: all)"),
    # attribution metrics: one attack costs ~ attr_steps x 8 emotions x (ig_steps captum passes + the
    # surrogate's double backprop) per clip. Quick: 12 clips (3 x the pairs of the interval comparisons;
    # with 4, Kendall tau's intervals were wider than the differences) cost ~18 s per model
    Size("ig_steps", 2, 8, 50, at_least(2), "an integer >= 2", "attribution metrics: IG quadrature points"),
    Size("attr_steps", 1, 3, 20, at_least(1), _INT, "attribution metrics: steps of the top-k attribution attack"),
    Size("attr_examples", 2, 12, None, or_none(at_least(1)), _INT_OR_NONE,
         "clips of the split whose attributions are attacked (None: all)"),
    # RAR: a step costs ~ k * (m / approx_factor) + m double-backprop passes per regularised clip. Quick:
    # m = 8, k = 3 on one clip of each batch was ~4.5x a plain step (one core: 120 vs 27 ms); m = 4
    # halves the outer Riemann sum (the inner maximisation uses max(1, m // 5) = 1 step either way)
    Size("rar_riemann_steps", 2, 4, 50, at_least(1), _INT, "RAR training: Riemann steps m of the IG (Chen et al.: 50)",
         _to(_RAR, "riemann_steps")),
    Size("rar_attack_steps", 1, 3, 10, at_least(1), _INT, "RAR training: PGD steps k of the inner maximisation",
         _to(_RAR, "attack_steps")),
    Size("rar_reg_batch", 1, 1, None, or_none(at_least(1)), _INT_OR_NONE,
         "RAR training: clips per batch regularised (None: all)", _to(_RAR, "reg_batch")),
    # waveform attacks (Listening chapter). Quick: an attack through the front end costs ~2.6-2.8x a
    # spectrogram attack at width 0.125 (benchmarks/bench_waveform.py); 16 clips, 8 steps and three
    # budgets plus the L-inf attack keep the chapter's attacks near 3 min on 2 cores
    Size("wave_iterations", 2, 8, 100, at_least(1), _INT, "waveform attacks: gradient steps"),
    Size("wave_examples", 3, 16, None, or_none(at_least(1)), _INT_OR_NONE,
         "waveform attacks: clips of the split (None: all)"),
    Size("snr_budgets_db", (40.0, 20.0), (40.0, 30.0, 20.0), (60.0, 50.0, 40.0, 30.0, 20.0), _finite_numbers,
         "a list of finite numbers (dB)", "waveform attacks: SNR budgets in dB"),
)
#: The rows by name.
SIZE: dict[str, Size] = {s.name: s for s in SIZES}


def _excerpt_frames(self) -> int:
    """Excerpt length in frames (10 s -> 313, as in the paper)."""
    return int(math.ceil(self.excerpt_seconds * FPS))


def _as_dict(self) -> dict:
    """Plain dict (for configuration keys and tables)."""
    return dataclasses.asdict(self)


def make_profiles(sizes: tuple[Size, ...]) -> tuple[type, dict[str, Any]]:
    """The profile class (a frozen dataclass: ``name`` plus one field per row of ``sizes``) and
    the validated profiles of :data:`PROFILE_NAMES` built from ``sizes``: what this module does
    with :data:`SIZES` (a new size is one more row).

    Example:
        >>> toy = Size("toy_steps", 1, 2, 3, at_least(1), "an integer >= 1", "a toy size")
        >>> cls, profiles = make_profiles(SIZES + (toy,))
        >>> profiles["quick"].toy_steps, profiles["paper"].epochs
        (2, 200)
    """
    cls = dataclasses.make_dataclass(
        "Profile", [("name", str)] + [(s.name, Any) for s in sizes], frozen=True,
        namespace={"__doc__": "Every size knob of a run, one field per row of mer_lib.profiles.SIZES. "
                              "Use get_profile to get one.",
                   "__module__": __name__, "excerpt_frames": property(_excerpt_frames), "as_dict": _as_dict})
    profiles = {name: _validated(cls(name=name, **{s.name: s.value(name) for s in sizes}), sizes)
                for name in PROFILE_NAMES}
    return cls, profiles


def _validated(profile: Any, sizes: tuple[Size, ...]) -> Any:
    """``profile`` with each field checked and normalised by its row (lists become tuples)."""
    return dataclasses.replace(profile, **{s.name: s.check(f"profile field {s.name}", getattr(profile, s.name))
                                           for s in sizes})


#: Every size knob of a run (one field per :data:`SIZES` row, frozen), and the three profiles.
Profile, PROFILES = make_profiles(SIZES)


def get_profile(name: str, **overrides) -> Profile:
    """Return the named profile, with any field replaced by ``overrides`` (None = keep).

    Raises ParameterError for an unknown profile, an unknown field or an out-of-range value.
    """
    if name not in PROFILES:
        raise ParameterError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    unknown = sorted(set(overrides) - set(SIZE))
    if unknown:
        raise ParameterError(f"unknown profile field(s) {unknown}; known: {sorted(SIZE)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return _validated(dataclasses.replace(PROFILES[name], **changes), SIZES)
