"""The experiment: one frozen, validated spec shared by every chapter, the CLI and the runner.

An :class:`Experiment` says what the book computes: the data (synthetic corpus settings or a
folder with the real datasets, the excerpts), the models (variants x seeds, training
overrides) and the attack grid (modes, the paper's epsilon, the epsilon sweep, steps). Every
chapter declares the *same* parameter block (:func:`parameter_cell`, generated from
:data:`PARAMETERS`) and builds the spec with one call, so Table 1 and Figure 3 always come
from the same models:

    exp = Experiment.from_namespace(globals())     # first code cell of every chapter

:meth:`Experiment.from_parameters` checks *every* parameter before anything is computed:
an unknown name, a malformed list (papermill's CLI passes lists as strings; they are read
with :mod:`mer_lib.params`), a negative seed or an unknown variant is a one-line
:class:`~mer_lib.errors.ParameterError` that names it. The runner (:mod:`mer_lib.runner`)
turns a spec into train and attack jobs.

Example:
    >>> exp = Experiment.from_parameters(profile="smoke", variants="['a2e', 'a2m2e']",
    ...                                  epsilons="[0.0005, 0.002]")
    >>> exp.variants, exp.seeds, exp.epsilons, exp.epochs
    (('a2e', 'a2m2e'), (6,), (0.0005, 0.002), 2)
    >>> [(c.mode, c.epsilon) for c in exp.attack_grid()]
    [('reference', 0.001), ('projected', 0.001), ('projected', 0.0005), ('projected', 0.002)]
    >>> Experiment.from_parameters(profile="smoke", seeds=[6, -1])
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: seeds must be a non-empty list of distinct integers in [0, 2**32), got [6, -1]
    >>> Experiment.from_parameters(epsilon_s=[0.1])   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mer_lib.errors.ParameterError: unknown parameter(s) ['epsilon_s']; the chapters take: profile, device, data, ...
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


import numpy as np
import pandas as pd

from .errors import DataLayoutError, ParameterError, check_choice
from .audio import MIN_SECONDS
from .profiles import PROFILES, Profile, get_profile
from .attacks.config import MODES

from .parameters import (ALL_VARIANTS, EXPO_VARIANTS, PARAMETER_NAMES, PARAMETERS, RAR_VARIANTS,  # noqa: F401 (re-exported)
                         VARIANT_FAMILIES, Param, _BY_NAME, _KERNEL_NAMES, _PLAIN,
                         check_distinct_numbers, check_seeds, check_variants,
                         parameter_cell, parse_parameters)
from .metrics import evaluate, predict
from .runtime import resolve_device
from .datasets import EMOTIONS
from .training import TrainConfig
from .attacks import AttackConfig
from .attacks.wave_config import WaveAttackConfig


# --------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Experiment:
    """What the book computes; build it with :meth:`from_parameters` (see the module doc).

    Profile-dependent values (seeds, training sizes, epsilons, iterations) are stored
    resolved, so two specs that compute the same thing compare equal. ``device`` and
    ``reference_logs`` say where and with what to compare, not what is computed: they are
    not part of :meth:`key`.
    """

    profile: str
    device: str
    data: str
    n_clips: int | None
    clip_seconds: float | None
    corpus_seed: int
    spurious_cue: str | None
    excerpt_seconds: float | None
    excerpt_seed: int
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    patience: int
    width: float
    lr: float
    batch_size: int
    modes: tuple[str, ...]
    epsilon: float
    epsilons: tuple[float, ...]
    step_size: float
    alpha_fraction: float
    max_iterations: int
    split: str
    reference_logs: str | None
    # extensions and explanation metrics
    extension_seeds: tuple[int, ...]          # resolved: the seeds of the ExpO and RAR systems
    expo_variants: tuple[str, ...]
    expo_c: float
    c_values: tuple[float, ...]
    patch_bands: int
    patch_segments: int
    sigma_eval: float
    n_neighbours_eval: int
    explain_examples: int | None
    # attribution metrics (Attributions chapter)
    ig_steps: int
    ig_baseline: str
    attr_epsilon: float
    attr_steps: int
    attr_tolerance: float
    topk_fraction: float
    attr_examples: int | None
    # RAR training (IG-NORM, IG-SUM-NORM)
    rar_variants: tuple[str, ...]
    rar_lambda: float
    rar_beta: float
    rar_epsilon: float
    rar_steps: int
    # waveform attacks (Listening chapter)
    snr_budgets_db: tuple[float, ...]
    wave_epsilon: float
    wave_max_iterations: int
    wave_step_fraction: float
    wave_examples: int | None
    listen_examples: int

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_parameters(cls, **params) -> "Experiment":
        """The spec from chapter parameters (strings from papermill's CLI are parsed).

        Every parameter is checked here, before any corpus is generated or model trained.
        """
        values = {p.name: p.default for p in PARAMETERS}
        values.update(parse_parameters(params))
        return cls._validated(values)

    @classmethod
    def from_namespace(cls, namespace: dict) -> "Experiment":
        """The spec from a notebook's globals: every non-private name holding plain data (a string,
        number, boolean, None, list, tuple or dict) is a parameter.

        Called in a chapter's first code cell, the names are exactly the parameter cell's plus
        the ones papermill injected (always plain data), so a misspelt ``-p`` name is reported
        here; modules, classes, functions and other objects the cell made (e.g. a
        :class:`~mer_lib.reproducibility.ChapterRun`) are not parameters.
        """
        params = {k: v for k, v in namespace.items()
                  if not k.startswith("_") and k not in _KERNEL_NAMES and isinstance(v, _PLAIN)
                  and not isinstance(v, ModuleType) and not inspect.isclass(v) and not callable(v)}
        return cls.from_parameters(**params)

    @classmethod
    def _validated(cls, v: dict) -> "Experiment":
        if not isinstance(v["profile"], str) or v["profile"] not in PROFILES:
            raise ParameterError(f"profile must be one of {sorted(PROFILES)}, got {v['profile']!r}")
        prof = get_profile(v["profile"])
        if not isinstance(v["device"], str):
            raise ParameterError(f"device must be 'auto', 'cpu' or 'cuda', got {v['device']!r}")
        resolve_device(v["device"])
        data = "synthetic" if v["data"] in (None, "synthetic") else v["data"]
        if not isinstance(data, (str, Path)):
            raise ParameterError(f"data must be 'synthetic' or a folder, got {data!r}")
        data = str(data)
        def c(name: str):
            # a parameter with a check of its own, the profile's default filled in (parameters.PARAMETERS);
            # called in the order below, so the first bad parameter is the one reported
            return _BY_NAME[name].resolve(v[name], prof)

        n_clips = c("n_clips")
        clip_seconds = c("clip_seconds")
        if clip_seconds is not None and clip_seconds < MIN_SECONDS:
            raise ParameterError(f"clip_seconds must be >= {MIN_SECONDS:g} (the shortest clip the loader accepts), "
                                 f"got {clip_seconds!r}")
        corpus_seed = c("corpus_seed")
        cue = v["spurious_cue"]
        if cue is not None:
            check_choice("spurious_cue", cue, [None, *EMOTIONS])
        if data != "synthetic":
            if not Path(data).expanduser().is_dir():
                raise DataLayoutError(
                    f"data folder {data} does not exist; expected a folder holding soundtracks/ "
                    "(Set1/*.mp3 and mean_ratings_set1.csv) and optionally midlevel/, or data='synthetic'")
            used = [k for k, default in (("n_clips", None), ("clip_seconds", None), ("corpus_seed", 0),
                                         ("spurious_cue", None)) if v[k] != default]
            if used:
                raise ParameterError(f"{', '.join(used)} only apply to the synthetic corpus, not to data={data!r}")
        excerpt_seconds, excerpt_seed = c("excerpt_seconds"), c("excerpt_seed")
        variants = tuple(check_variants(v["variants"]))
        seeds = c("seeds")
        training = {name: c(name) for name in ("epochs", "patience", "width", "lr", "batch_size")}
        modes = v["modes"]
        if isinstance(modes, str) or not isinstance(modes, (list, tuple)) or not modes:
            raise ParameterError(f"modes must be a non-empty list of {list(MODES)}, got {modes!r}")
        modes = tuple(dict.fromkeys(check_choice("modes[]", m, MODES) for m in modes))
        attack = dict(
            epsilons=tuple(sorted(float(e) for e in c("epsilons"))),
            **{name: c(name) for name in ("epsilon", "step_size", "alpha_fraction", "max_iterations", "split")})
        logs = v["reference_logs"]
        if logs is not None and not (isinstance(logs, (str, Path)) and Path(logs).expanduser().is_dir()):
            raise ParameterError(f"reference_logs must be None or an existing folder, got {logs!r}")
        expo_variants = tuple(check_variants(v["expo_variants"], "expo_variants"))
        if v["extension_seeds"] is None:
            extension_seeds = seeds[:prof.extension_seeds]          # None: all
        else:
            extension_seeds = tuple(check_seeds(v["extension_seeds"], "extension_seeds"))
            outside = [s for s in extension_seeds if s not in seeds]
            if outside:
                raise ParameterError(f"extension_seeds must be some of seeds {list(seeds)} (the extension "
                                     f"systems are compared seed by seed with the paper's); {outside} are not, "
                                     f"got {v['extension_seeds']!r}")
        extensions = dict(
            extension_seeds=tuple(extension_seeds),
            expo_variants=expo_variants,
            c_values=tuple(sorted(check_distinct_numbers("c_values", v["c_values"]))),
            **{name: c(name) for name in ("expo_c", "patch_bands", "patch_segments", "sigma_eval",
                                          "n_neighbours_eval", "explain_examples")})
        attributions = {name: c(name) for name in ("ig_steps", "ig_baseline", "attr_epsilon", "attr_steps",
                                                   "attr_tolerance", "topk_fraction", "attr_examples")}
        rar = dict(rar_variants=tuple(check_variants(v["rar_variants"], "rar_variants")),
                   **{name: c(name) for name in ("rar_lambda", "rar_beta", "rar_epsilon", "rar_steps")})
        budgets = c("snr_budgets_db")
        if len(set(budgets)) != len(budgets):
            raise ParameterError(f"snr_budgets_db must not repeat a budget, got {v['snr_budgets_db']!r}")
        waveform = dict(
            snr_budgets_db=tuple(sorted((float(b) for b in budgets), reverse=True)),
            **{name: c(name) for name in ("wave_epsilon", "wave_max_iterations", "wave_step_fraction",
                                          "wave_examples", "listen_examples")})
        exp = cls(profile=prof.name, device=v["device"], data=data, n_clips=n_clips,
                  clip_seconds=clip_seconds, corpus_seed=corpus_seed, spurious_cue=cue,
                  excerpt_seconds=excerpt_seconds, excerpt_seed=excerpt_seed, variants=variants,
                  seeds=seeds, modes=modes, reference_logs=None if logs is None else str(logs),
                  **training, **attack, **extensions, **attributions, **rar, **waveform)
        for variant in variants:      # the training and attack configurations validate too
            exp.train_config(variant, seeds[0])
        exp.attack_grid()
        exp.wave_grid()
        return exp

    # ---------------------------------------------------------------- what it computes
    @property
    def profile_spec(self) -> Profile:
        """The :class:`~mer_lib.profiles.Profile` with this spec's excerpt length."""
        return get_profile(self.profile, excerpt_seconds=self.excerpt_seconds)

    @property
    def synthetic(self) -> bool:
        return self.data == "synthetic"

    def train_overrides(self) -> dict:
        """Training sizes for :meth:`mer_lib.training.TrainConfig.from_profile`."""
        return dict(epochs=self.epochs, patience=self.patience, width=self.width, lr=self.lr,
                    batch_size=self.batch_size)

    def train_config(self, variant: str, seed: int):
        """The :class:`~mer_lib.training.TrainConfig` of one model of the grid."""
        return TrainConfig.from_profile(self.profile, variant, seed, **self.train_overrides())

    def models(self) -> list[tuple[str, int]]:
        """Every (variant, seed) of the grid, variant-major."""
        return [(v, s) for v in self.variants for s in self.seeds]

    def attack_config(self, mode: str, epsilon: float):
        """The :class:`~mer_lib.attacks.AttackConfig` of one attack of the grid."""
        check_choice("mode", mode, MODES)
        if mode == "reference":
            return AttackConfig(mode="reference", epsilon=epsilon, step_size=self.step_size,
                                max_iterations=self.max_iterations)
        return AttackConfig(mode="projected", epsilon=epsilon, step_size=self.alpha_fraction * epsilon,
                            max_iterations=self.max_iterations)

    def attack_grid(self) -> list:
        """Every attack configuration, once: each mode at ``epsilon``, then the projected sweep."""
        configs = [self.attack_config(m, self.epsilon) for m in self.modes]
        configs += [self.attack_config("projected", e) for e in self.epsilons]
        return list(dict.fromkeys(configs))

    def wave_config(self, threat: str, budget: float | None = None):
        """The :class:`~mer_lib.attacks.wave_config.WaveAttackConfig` of one waveform attack:
        ``threat="snr"`` at ``budget`` dB, or ``"linf"`` at :attr:`wave_epsilon`."""
        common = dict(step_fraction=self.wave_step_fraction, max_iterations=self.wave_max_iterations,
                      examples=self.wave_examples)
        if threat == "snr":
            return WaveAttackConfig(threat="snr", snr_db=budget, **common)
        return WaveAttackConfig(threat=check_choice("threat", threat, ("snr", "linf")),
                                epsilon=self.wave_epsilon, **common)

    def wave_grid(self) -> list:
        """Every waveform attack: the SNR budgets (loudest perturbation last), then the L-inf one."""
        return [self.wave_config("snr", b) for b in self.snr_budgets_db] + [self.wave_config("linf")]

    def load_kwargs(self) -> dict:
        """Keyword arguments of :func:`mer_lib.data.load_dataset` for this spec's data."""
        return dict(data=self.data, spurious_cue=self.spurious_cue, n_clips=self.n_clips,
                    clip_seconds=self.clip_seconds, excerpt_seconds=self.excerpt_seconds,
                    synth_seed=self.corpus_seed, excerpt_seed=self.excerpt_seed)

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict:
        """All fields, JSON-serialisable (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def key(self) -> str:
        """Short hash of what the spec computes (everything but ``device`` and ``reference_logs``)."""
        d = self.to_dict()
        d.pop("device")
        d.pop("reference_logs")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def parameters(self) -> dict:
        """The parameters that rebuild this spec (``from_parameters(**exp.parameters())``)."""
        return self.to_dict()

    def describe(self) -> str:
        """One line for logs: profile, grid and attacks."""
        data = "synthetic corpus" if self.synthetic else self.data
        return (f"experiment {self.key()}: profile {self.profile}, {data}, {len(self.variants)} variants "
                f"x {len(self.seeds)} seeds (width {self.width:g}, <= {self.epochs} epochs), "
                f"{len(self.attack_grid())} attack configurations x {self.max_iterations} iterations "
                f"and {len(self.wave_grid())} waveform attacks x {self.wave_max_iterations} steps "
                f"on the {self.split} split")


# --------------------------------------------------------------------------------------
# Tables of a grid of trained models
# --------------------------------------------------------------------------------------

def evaluate_grid(grid: dict, data, split: str = "test") -> pd.DataFrame:
    """One row per model of ``{(variant, seed): TrainedModel}`` with every metric on ``split``."""
    x, emotions, midlevel = data.subset(split)
    rows = []
    for (variant, seed), trained in grid.items():
        pred, concepts = predict(trained.model, x)
        true_c = None if midlevel is None or concepts is None else midlevel.numpy()
        metrics = evaluate(pred, emotions.numpy(), concepts, true_c)
        rows.append({"variant": variant, "seed": seed, "epochs": len(trained.history), **metrics})
    return pd.DataFrame(rows)


def mean_std(table: pd.DataFrame, columns: list[str], by: str = "variant") -> pd.DataFrame:
    """``mean ± std`` strings per group (std with ddof=1; no ± where a group has one row)."""
    agg = table.groupby(by, sort=False)[columns].agg(["mean", "std", "count"])
    out = {}
    for col in columns:
        m, s, n = agg[(col, "mean")], agg[(col, "std")], agg[(col, "count")]
        out[col] = [f"{a:.2f} ± {b:.2f}" if c > 1 and np.isfinite(b) else f"{a:.2f}"
                    for a, b, c in zip(m, s, n)]
    return pd.DataFrame(out, index=agg.index)
