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

from .attacks.config import MODES
from .attributions.ig import BASELINES
from .attributions.metrics import check_fraction
from .errors import ParameterError, check_choice, check_number_list, check_seeds  # noqa: F401 (check_seeds re-exported)
from .models import VARIANTS, Variant
from .params import parse_value
from .profiles import PROFILES, SIZE, at_least, get_profile, non_negative, or_none, positive  # noqa: F401 (get_profile: the doctest)
from .split import SPLITS

ALL_VARIANTS = ("a2e", "a2b2e", "a2m2e", "aa2e", "aa2b2e")
EXPO_VARIANTS = ("expof_a2e", "expos_a2e")
RAR_VARIANTS = ("ignorm_a2e", "igsumnorm_a2e")


@dataclass(frozen=True)
class Param:
    """One chapter parameter, declared once: default, check, per-profile default, comment.

    A parameter whose ``None`` means "the profile's" is written with :func:`sized`: its check,
    its words and the objectives' options it sets come from its :class:`~mer_lib.profiles.Size`
    row, where its value in each profile is declared.

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

    @property
    def is_list(self) -> bool:
        """The value is a list (the command line takes it comma-separated)."""
        return self.expected.startswith("a list")

    def resolve(self, value: Any, profile: Any) -> Any:
        """``value`` checked, the profile's field when it is None (see the attributes)."""
        if value is None and self.profile is not None and not self.deferred:
            value = getattr(profile, self.profile)
        return value if self.check is None else self.check(self.name, value)


def sized(name: str, comment: str, field: str | None = None, *, deferred: bool = False) -> Param:
    """The parameter ``name`` whose None stands for the profile's ``field`` (default: ``name``).

    Its check, its words and its objective options are the :class:`~mer_lib.profiles.Size`
    row's (a ``deferred`` one keeps None: the data layer applies the profile's value).

    Example:
        >>> p = sized("rar_steps", "RAR training: Riemann steps m", "rar_riemann_steps")
        >>> p.expected, p.options, p.resolve(None, get_profile("paper"))
        ('an integer >= 1 or None', ('ig_norm.riemann_steps', 'ig_sum_norm.riemann_steps'), 50)
    """
    size = SIZE[field or name]
    check = or_none(size.check) if deferred else size.check
    expected = size.expected if size.expected.endswith("or None") else f"{size.expected} or None"
    return Param(name, None, expected, f"{comment} (None: the profile's)",
                 profile=size.name, check=check, deferred=deferred, options=size.options)


def _one_of(choices):
    return lambda name, value: check_choice(name, value, choices)


#: The parameter block every chapter declares, in order (:func:`parameter_cell` renders it).
PARAMETERS: tuple[Param, ...] = (
    Param("profile", "quick", "one of " + "/".join(PROFILES), "smoke | quick | paper: the sizes below default to the profile's", True),
    Param("device", "auto", "auto, cpu or cuda", "auto | cpu | cuda (auto: the GPU when there is one)", True),
    Param("data", "synthetic", "'synthetic' or a folder", '"synthetic" or a folder with soundtracks/ and midlevel/ (real data)', True),
    sized("n_clips", "synthetic corpus: number of clips", deferred=True),
    sized("clip_seconds", "synthetic corpus: clip length in seconds", deferred=True),
    Param("corpus_seed", 0, "an integer >= 0", "synthetic corpus: generator seed", check=at_least(0)),
    Param("spurious_cue", None, "None or an emotion name", "synthetic corpus: None, or an emotion a nuisance sound follows (train/valid)", True),
    sized("excerpt_seconds", "model input length in seconds", deferred=True),
    Param("excerpt_seed", 0, "an integer >= 0", "seed of the random excerpt positions", check=at_least(0)),
    Param("variants", list(ALL_VARIANTS), "a list of variant names", "the systems to train and attack"),
    sized("seeds", "training seeds"),
    sized("epochs", "training: maximum epochs"),
    sized("patience", "training: early-stopping patience"),
    sized("width", "training: channel-width multiplier"),
    sized("lr", "training: Adam learning rate"),
    sized("batch_size", "training: batch size"),
    Param("modes", list(MODES), "a list of 'reference'/'projected'", "attacks at epsilon (Figure 3)"),
    Param("epsilon", 0.001, "a number > 0", "the paper's epsilon", check=positive),
    sized("epsilons", "epsilon sweep of the projected attack"),
    Param("step_size", 0.002, "a number > 0", "reference attack: Adam's learning rate", check=positive),
    Param("alpha_fraction", 0.1, "a number > 0", "projected attack: step size alpha_fraction x epsilon", check=positive),
    sized("max_iterations", "attack iterations", "attack_iterations"),
    Param("split", "test", "train, valid or test", "the clips that are attacked", True, check=_one_of(SPLITS)),
    Param("reference_logs", None, "None or a folder", "None: the paper's published logs (shipped), or a folder of the original code's runs/adversaries/<seed>_<hash>_*/log.csv", True),
    # the profile's extension_seeds is a count (the first n seeds), the parameter a list of seeds
    Param("extension_seeds", None, "a list of integers from seeds, or None", "ExpO and RAR systems: their seeds, some of seeds (None: the profile's; quick: the first 2)",
          profile="extension_seeds"),
    Param("expo_variants", list(EXPO_VARIANTS), "a list of ExpO variant names", "ExpO systems (Explanations chapter)"),
    sized("expo_c", "ExpO: regulariser weight c"),
    Param("c_values", [0.1, 1.0, 10.0], "a list of numbers > 0", "ExpO-Fidelity: the c of the accuracy-fidelity trade-off"),
    sized("patch_bands", "explanations: frequency bands of the patch grid"),
    sized("patch_segments", "explanations: time segments of the patch grid"),
    Param("sigma_eval", 0.1, "a number > 0", "explanation metrics: neighbourhood sigma (ExpO: 0.1)", check=positive),
    Param("n_neighbours_eval", 5, "an integer >= 1", "explanation metrics: neighbours per clip (ExpO: 5)", check=at_least(1)),
    sized("explain_examples", "explanation metrics: first clips of the split"),
    sized("ig_steps", "attributions: Integrated Gradients steps"),
    Param("ig_baseline", "zeros", "zeros or silence", "attributions: IG baseline, zeros (the data's mean) or silence", True,
          check=_one_of(BASELINES)),
    # 0.03: on the quick A2E, at 0.1 most attack steps moved an output by more than attr_tolerance
    Param("attr_epsilon", 0.03, "a number > 0", "attribution attack: L-inf radius in standardised units", check=positive),
    sized("attr_steps", "attribution attack: steps"),
    Param("attr_tolerance", 0.05, "a number >= 0", "attribution attack: largest allowed change of any emotion output",
          check=non_negative),
    Param("topk_fraction", 0.05, "a number in (0, 1]", "attribution metrics: top-k as a fraction of the bins",
          check=check_fraction),
    sized("attr_examples", "attribution metrics: first clips of the split"),
    Param("rar_variants", list(RAR_VARIANTS), "a list of RAR variant names", "RAR systems (ignorm_*, igsumnorm_*; Attributions chapter)"),
    Param("rar_lambda", 1.0, "a number >= 0", "IG-NORM: weight lambda of the IG L1 norm", check=non_negative,
          options=("ig_norm.weight",)),
    Param("rar_beta", 1.0, "a number >= 0", "IG-SUM-NORM: weight beta of the IG L1 norm", check=non_negative,
          options=("ig_sum_norm.weight",)),
    Param("rar_epsilon", 0.03, "a number > 0", "RAR training: L-inf radius of x' in standardised units", check=positive,
          options=("ig_norm.epsilon", "ig_sum_norm.epsilon")),
    sized("rar_steps", "RAR training: Riemann steps m of the IG", "rar_riemann_steps"),
    sized("snr_budgets_db", "waveform attacks: SNR budgets in dB"),
    Param("wave_epsilon", 0.001, "a number > 0", "waveform attack: L-inf bound on a sample (peak 1.0)", check=positive),
    sized("wave_max_iterations", "waveform attacks: gradient steps", "wave_iterations"),
    Param("wave_step_fraction", 0.25, "a number > 0", "waveform attacks: step length as a fraction of the budget",
          check=positive),
    sized("wave_examples", "waveform attacks: first clips of the split"),
    Param("listen_examples", 3, "an integer >= 1", "Listening chapter: clips with audio players", check=at_least(1)),
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


def check_distinct_numbers(name: str, values) -> list[float]:
    """Validate a non-empty list of distinct finite numbers > 0 (a papermill parameter ``name``)."""
    try:
        numbers = [float(x) for x in check_number_list(name, values)]
    except ParameterError:
        numbers = None
    if numbers is None or len(set(numbers)) != len(numbers):
        raise ParameterError(f"{name} must be a non-empty list of distinct finite numbers > 0, got {values!r}")
    return numbers

