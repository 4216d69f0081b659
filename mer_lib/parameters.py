"""Every chapter parameter declared once, and the checks of single parameters.

:data:`PARAMETERS` lists the parameter block every chapter declares (name, default, what it
must be, its comment); :func:`parameter_cell` renders it as the notebooks' ``parameters``
cell and :func:`parse_parameters` reads what papermill's CLI passes. The checks below
(:func:`check_variants`, :func:`check_seeds`, ...) are the ones
:class:`~mer_lib.experiments.Experiment` validates with; each error names the parameter.

Example:
    >>> print(parameter_cell().splitlines()[1])
    profile = "quick"          # smoke | quick | paper: the sizes below default to the profile's
    >>> check_seeds([6, 21])
    [6, 21]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .attacks.config import MODES
from .attributions.ig import BASELINES
from .attributions.metrics import check_fraction
from .errors import ParameterError, check_choice, check_int, check_number_list, check_positive
from .models import VARIANTS, Variant
from .params import parse_value
from .profiles import PROFILES
from .split import SPLITS

ALL_VARIANTS = ("a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e")
EXPO_VARIANTS = ("expof_a2e", "expos_a2e")
RAR_VARIANTS = ("ignorm_a2e", "igsumnorm_a2e")


@dataclass(frozen=True)
class Param:
    """One chapter parameter, declared once: default, check, per-profile default, comment.

    Attributes:
        name, default: the name and the value in the chapters' parameter block.
        expected: what it must be, in words (papermill's CLI errors say it).
        comment: its comment in the block.
        text: a string value is the value itself (not a literal to parse).
        profile: the :class:`~mer_lib.profiles.Profile` field a ``None`` value stands for
            (the per-profile default), or None when the parameter has no per-profile default.
        check: ``(name, value) -> value``, the validation :class:`~mer_lib.experiments.Experiment`
            applies after the profile's default is filled in (None: the experiment checks it
            with the others it depends on, e.g. ``extension_seeds`` against ``seeds``).
        deferred: the experiment keeps ``None`` (the data layer applies the profile's value).
        options: where the value goes besides the chapters: the training objectives' options
            it sets, as ``"objective.option"`` (e.g. ``rar_steps`` -> ``"ig_norm.riemann_steps"``);
            :func:`mer_lib.extensions.objective_options` reads them from here.
    """

    name: str
    default: Any
    expected: str
    comment: str
    text: bool = False
    profile: str | None = None
    check: Callable[[str, Any], Any] | None = None
    deferred: bool = False
    options: tuple[str, ...] = ()

    def resolve(self, value: Any, profile: Any) -> Any:
        """``value`` checked, the profile's field when it is None (see the attributes)."""
        if value is None and self.profile is not None and not self.deferred:
            value = getattr(profile, self.profile)
        return value if self.check is None else self.check(self.name, value)


def _optional(name: str, value: Any, check) -> Any:
    return None if value is None else check(name, value)


def _positive_number(name: str, value: Any) -> float:
    return float(check_positive(name, value))


def _at_least(minimum: int):
    return lambda name, value: check_int(name, value, minimum=minimum)


def _or_none(check):
    """``check`` that lets None through (a parameter whose None means "all")."""
    return lambda name, value: _optional(name, value, check)


def _non_negative_number(name: str, value: Any) -> float:
    return float(check_positive(name, value, allow_zero=True))


def _one_of(choices):
    return lambda name, value: check_choice(name, value, choices)


#: The parameter block every chapter declares, in order (:func:`parameter_cell` renders it).
PARAMETERS: tuple[Param, ...] = (
    Param("profile", "quick", "one of " + "/".join(PROFILES), "smoke | quick | paper: the sizes below default to the profile's", True),
    Param("device", "auto", "auto, cpu or cuda", "auto | cpu | cuda (auto: the GPU when there is one)", True),
    Param("data", "synthetic", "'synthetic' or a folder", '"synthetic" or a folder with soundtracks/ and midlevel/ (real data)', True),
    Param("n_clips", None, "an integer >= 10 or None", "synthetic corpus: number of clips (None: the profile's)",
          profile="n_clips", check=_or_none(_at_least(10)), deferred=True),
    Param("clip_seconds", None, "a number >= 1 or None", "synthetic corpus: clip length in seconds (None: the profile's)",
          profile="clip_seconds", deferred=True),
    Param("corpus_seed", 0, "an integer >= 0", "synthetic corpus: generator seed",
          check=_at_least(0)),
    Param("spurious_cue", None, "None or an emotion name", "synthetic corpus: None, or an emotion a nuisance sound follows (train/valid)", True),
    Param("excerpt_seconds", None, "a number > 0 or None", "model input length in seconds (None: the profile's)",
          profile="excerpt_seconds", check=_or_none(_positive_number), deferred=True),
    Param("excerpt_seed", 0, "an integer >= 0", "seed of the random excerpt positions",
          check=_at_least(0)),
    Param("variants", list(ALL_VARIANTS), "a list of variant names", "the systems to train and attack"),
    Param("seeds", None, "a list of integers", "training seeds (None: the profile's)",
          profile="seeds"),
    Param("epochs", None, "an integer >= 1 or None", "training: maximum epochs (None: the profile's)",
          profile="epochs", check=_at_least(1)),
    Param("patience", None, "an integer >= 1 or None", "training: early-stopping patience (None: the profile's)",
          profile="patience", check=_at_least(1)),
    Param("width", None, "a number > 0 or None", "training: channel-width multiplier (None: the profile's)",
          profile="width", check=_positive_number),
    Param("lr", None, "a number > 0 or None", "training: Adam learning rate (None: the profile's)",
          profile="lr", check=_positive_number),
    Param("batch_size", None, "an integer >= 1 or None", "training: batch size (None: the profile's)",
          profile="batch_size", check=_at_least(1)),
    Param("modes", list(MODES), "a list of 'reference'/'projected'", "attacks at epsilon (Figure 3)"),
    Param("epsilon", 0.001, "a number > 0", "the paper's epsilon",
          check=_positive_number),
    Param("epsilons", None, "a list of numbers > 0", "epsilon sweep of the projected attack (None: the profile's)",
          profile="epsilons"),
    Param("step_size", 0.002, "a number > 0", "reference attack: Adam's learning rate",
          check=_positive_number),
    Param("alpha_fraction", 0.1, "a number > 0", "projected attack: step size alpha_fraction x epsilon",
          check=_positive_number),
    Param("max_iterations", None, "an integer >= 1 or None", "attack iterations (None: the profile's)",
          profile="attack_iterations", check=_at_least(1)),
    Param("split", "test", "train, valid or test", "the clips that are attacked", True,
          check=_one_of(SPLITS)),
    Param("reference_logs", None, "None or a folder", "None: the paper's published logs (shipped), or a folder of the original code's runs/adversaries/<seed>_<hash>_*/log.csv", True),
    Param("extension_seeds", None, "a list of integers from seeds, or None", "ExpO and RAR systems: their seeds, some of seeds (None: the profile's; quick: the first 2)",
          profile="extension_seeds"),
    Param("expo_variants", list(EXPO_VARIANTS), "a list of ExpO variant names", "ExpO systems (Explanations chapter)"),
    Param("expo_c", None, "a number >= 0 or None", "ExpO: regulariser weight c (None: the profile's)",
          profile="expo_c", check=_non_negative_number,
          options=("expo_fidelity.c", "expo_stability.c")),
    Param("c_values", [0.1, 1.0, 10.0], "a list of numbers > 0", "ExpO-Fidelity: the c of the accuracy-fidelity trade-off"),
    Param("patch_bands", None, "an integer >= 1 or None", "explanations: frequency bands of the patch grid (None: the profile's)",
          profile="patch_bands", check=_at_least(1),
          options=("expo_fidelity.bands", "expo_stability.bands")),
    Param("patch_segments", None, "an integer >= 1 or None", "explanations: time segments of the patch grid (None: the profile's)",
          profile="patch_segments", check=_at_least(1),
          options=("expo_fidelity.segments", "expo_stability.segments")),
    Param("sigma_eval", 0.1, "a number > 0", "explanation metrics: neighbourhood sigma (ExpO: 0.1)",
          check=_positive_number),
    Param("n_neighbours_eval", 5, "an integer >= 1", "explanation metrics: neighbours per clip (ExpO: 5)",
          check=_at_least(1)),
    Param("explain_examples", None, "an integer >= 1 or None", "explanation metrics: first clips of the split (None: the profile's)",
          profile="explain_examples", check=_or_none(_at_least(1))),
    Param("ig_steps", None, "an integer >= 2 or None", "attributions: Integrated Gradients steps (None: the profile's)",
          profile="ig_steps", check=_at_least(2)),
    Param("ig_baseline", "zeros", "zeros or silence", "attributions: IG baseline, zeros (the data's mean) or silence", True,
          check=_one_of(BASELINES)),
    Param("attr_epsilon", 0.03, "a number > 0", "attribution attack: L-inf radius in standardised units",
          check=_positive_number),
    Param("attr_steps", None, "an integer >= 1 or None", "attribution attack: steps (None: the profile's)",
          profile="attr_steps", check=_at_least(1)),
    Param("attr_tolerance", 0.05, "a number >= 0", "attribution attack: largest allowed change of any emotion output",
          check=_non_negative_number),
    Param("topk_fraction", 0.05, "a number in (0, 1]", "attribution metrics: top-k as a fraction of the bins",
          check=check_fraction),
    Param("attr_examples", None, "an integer >= 1 or None", "attribution metrics: first clips of the split (None: the profile's)",
          profile="attr_examples", check=_or_none(_at_least(1))),
    Param("rar_variants", list(RAR_VARIANTS), "a list of RAR variant names", "RAR systems (ignorm_*, igsumnorm_*; Attributions chapter)"),
    Param("rar_lambda", 1.0, "a number >= 0", "IG-NORM: weight lambda of the IG L1 norm",
          check=_non_negative_number,
          options=("ig_norm.weight",)),
    Param("rar_beta", 1.0, "a number >= 0", "IG-SUM-NORM: weight beta of the IG L1 norm",
          check=_non_negative_number,
          options=("ig_sum_norm.weight",)),
    Param("rar_epsilon", 0.03, "a number > 0", "RAR training: L-inf radius of x' in standardised units",
          check=_positive_number,
          options=("ig_norm.epsilon", "ig_sum_norm.epsilon")),
    Param("rar_steps", None, "an integer >= 1 or None", "RAR training: Riemann steps m of the IG (None: the profile's)",
          profile="rar_riemann_steps", check=_at_least(1),
          options=("ig_norm.riemann_steps", "ig_sum_norm.riemann_steps")),
    Param("snr_budgets_db", None, "a list of finite numbers (dB)", "waveform attacks: SNR budgets in dB (None: the profile's)",
          profile="snr_budgets_db"),
    Param("wave_epsilon", 0.001, "a number > 0", "waveform attack: L-inf bound on a sample (peak 1.0)",
          check=_positive_number),
    Param("wave_max_iterations", None, "an integer >= 1 or None", "waveform attacks: gradient steps (None: the profile's)",
          profile="wave_iterations", check=_at_least(1)),
    Param("wave_step_fraction", 0.25, "a number > 0", "waveform attacks: step length as a fraction of the budget",
          check=_positive_number),
    Param("wave_examples", None, "an integer >= 1 or None", "waveform attacks: first clips of the split (None: the profile's)",
          profile="wave_examples", check=_or_none(_at_least(1))),
    Param("listen_examples", 3, "an integer >= 1", "Listening chapter: clips with audio players",
          check=_at_least(1)),
)
PARAMETER_NAMES = tuple(p.name for p in PARAMETERS)
_BY_NAME = {p.name: p for p in PARAMETERS}
#: Names an IPython kernel defines itself (skipped by :meth:`Experiment.from_namespace`).
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
#: The types a parameter's value can have (what papermill injects and the parameters cell assigns).
_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)


def parameter_cell() -> str:
    """The source of the cell tagged ``parameters`` that every chapter carries (one truth)."""
    lines = ["# The experiment: the same parameters in every chapter (mer_lib.experiments.PARAMETERS)."]
    for p in PARAMETERS:
        value = repr(p.default).replace("'", '"')          # the notebooks' string style
        code = f"{p.name} = {value}"
        lines.append(f"{code:<26} # {p.comment}")
    return "\n".join(lines)


def parse_parameters(params: dict) -> dict:
    """``params`` with strings parsed as papermill's CLI needs (:mod:`mer_lib.params`); unknown names fail.

    Example:
        >>> parse_parameters({"seeds": "[6, 21]", "data": "/data/mer"})
        {'seeds': [6, 21], 'data': '/data/mer'}
    """
    unknown = [name for name in params if name not in _BY_NAME]
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; the chapters take: "
                             + ", ".join(PARAMETER_NAMES))
    parsed = {}
    for name, value in params.items():
        spec = _BY_NAME[name]
        if not spec.text:
            value = parse_value(name, value, spec.expected)
        elif value == "None" and spec.default is None:   # bookbuild -p spurious_cue None
            value = None
        parsed[name] = value
    return parsed


# --------------------------------------------------------------------------------------
# Checks of single parameters
# --------------------------------------------------------------------------------------

#: The variant lists restricted to one family: parameter -> (the family in words, its objectives' test).
VARIANT_FAMILIES = {
    "expo_variants": ("ExpO variants (expof_*, expos_*)", lambda objective: objective.startswith("expo")),
    "rar_variants": ("RAR variants (ignorm_*, igsumnorm_*)", lambda objective: objective in ("ig_norm", "ig_sum_norm")),
}


def check_variants(variants, name: str = "variants") -> list[str]:
    """Validate a list of distinct variant names (the papermill parameter ``name``); return it as a list.

    ``expo_variants`` and ``rar_variants`` must name variants of their family
    (:data:`VARIANT_FAMILIES`). Every message names ``name`` and ends with the value it got.
    """
    if isinstance(variants, str) or not isinstance(variants, (list, tuple)) or not variants:
        raise ParameterError(f"{name} must be a non-empty list of variant names, got {variants!r}")
    found = []
    for item in variants:
        if isinstance(item, Variant):
            found.append(item)
        elif isinstance(item, str) and item.lower() in VARIANTS:
            found.append(VARIANTS[item.lower()])
        else:
            raise ParameterError(f"unknown model variant {item!r} in {name}; known variants: {sorted(VARIANTS)}; "
                                 f"got {variants!r}")
    if name in VARIANT_FAMILIES:
        family, member = VARIANT_FAMILIES[name]
        other = [v.name for v in found if not member(v.objective)]
        if other:
            raise ParameterError(f"{name} must name {family} only; {other[0]!r} is not one, got {variants!r}")
    names = [v.name for v in found]
    if len(set(names)) != len(names):
        raise ParameterError(f"{name} must not repeat a variant, got {variants!r}")
    return names


def check_seeds(seeds, name: str = "seeds") -> list[int]:
    """Validate a list of distinct seeds in [0, 2**32) (a papermill parameter ``name``); return a list."""
    ok = (not isinstance(seeds, (str, bytes)) and isinstance(seeds, (list, tuple)) and seeds
          and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 2**32
                  for s in seeds)
          and len(set(seeds)) == len(seeds))
    if not ok:
        raise ParameterError(f"{name} must be a non-empty list of distinct integers in [0, 2**32), got {seeds!r}")
    return [int(s) for s in seeds]


def check_distinct_numbers(name: str, values) -> list[float]:
    """Validate a non-empty list of distinct finite numbers > 0 (a papermill parameter ``name``)."""
    try:
        numbers = [float(x) for x in check_number_list(name, values)]
    except ParameterError:
        numbers = None
    if numbers is None or len(set(numbers)) != len(numbers):
        raise ParameterError(f"{name} must be a non-empty list of distinct finite numbers > 0, got {values!r}")
    return numbers

