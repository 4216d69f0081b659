"""Execution profiles: one place that says how big a run is.

A chapter takes ``profile`` as a papermill parameter and reads every size from here, so the
same notebook runs in seconds (``smoke``, used by the tests), in minutes on a laptop CPU
(``quick``, the default of the main command) or at the paper's reference settings (``paper``,
meant for a GPU). Individual values can be overridden without editing this file.

Example:
    >>> from mer_lib.profiles import get_profile
    >>> p = get_profile("quick")
    >>> p.name, p.excerpt_frames
    ('quick', 126)
    >>> get_profile("quick", epochs=3).epochs
    3
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import ParameterError
from .frontend import FPS  # noqa: F401  (frames per second of the front end; re-exported)

#: The ten seeds of the paper's experiments.
PAPER_SEEDS = (6, 21, 42, 796, 950, 2025, 2324, 2451, 3100, 7192)


@dataclass(frozen=True)
class Profile:
    """Every size knob of a run. Use :func:`get_profile` to get one."""

    name: str
    # data
    n_clips: int                 # synthetic corpus size (real data: all clips)
    clip_seconds: float          # synthetic clip length
    n_extra_midlevel: int        # extra synthetic clips with mid-level labels only
    excerpt_seconds: float       # length of the random excerpt fed to the model
    # model and training
    width: float                 # channel multiplier of the VGG backbone (1.0 = paper)
    epochs: int
    patience: int
    batch_size: int
    lr: float
    seeds: tuple[int, ...]
    # attacks
    attack_iterations: int       # max iterations of the evaluation attack
    adv_attack_iterations: int   # max iterations of the attack inside adversarial training
    adv_every: int               # adversarial epochs: every adv_every-th epoch
    channels_last: bool = False  # training in the channels_last memory format (keyed; float32,
                                 # deterministic, not bit-equal to the default layout)
    epsilons: tuple[float, ...] = field(default=(0.001,))
    # extensions (ExpO, RAR) and explanation metrics
    finetune_epochs: int | None = None   # extension variants: fine-tune the stored A2E / A2B2E
                                         # for this many epochs (None: train from scratch)
    finetune_lr: float | None = None     # Adam learning rate of that fine-tuning (None: ``lr``)
    extension_seeds: int | None = None   # extension variants train the first this many seeds (None: all)
    expo_c: float = 1.0                  # ExpO: regulariser weight c (of c * L(init) / R(init))
    expo_reg_batch: int = 16             # ExpO: examples regularised per step (ExpO's 16)
    patch_bands: int = 4                 # interpretable space: frequency bands x time segments
    patch_segments: int = 8
    explain_examples: int | None = None  # clips of the split whose explanations are measured (None: all)
    ig_steps: int = 50                   # attribution metrics: IG quadrature points (>= 2)
    attr_steps: int = 20                 # attribution metrics: steps of the top-k attribution attack
    attr_examples: int | None = None     # clips of the split whose attributions are attacked (None: all)
    rar_riemann_steps: int = 50          # RAR training: Riemann steps m of the IG (Chen et al.: 50)
    rar_attack_steps: int = 10           # RAR training: PGD steps k of the inner maximisation
    rar_reg_batch: int | None = None     # RAR training: clips per batch regularised (None: all)
    # waveform attacks (Listening chapter): gradient steps, clips of the split, SNR budgets (dB)
    wave_iterations: int = 100
    wave_examples: int | None = None
    snr_budgets_db: tuple[float, ...] = (60.0, 50.0, 40.0, 30.0, 20.0)
    # execution: the seeds of one plain or adversarial variant train together as one model stack
    # (mer_lib.stack_training), this many at a time; 1 = one model at a time. A stacked model is
    # stored as the single run of its seed (same key): equal up to float rounding, as on another
    # device. Evaluation attacks are stacked on CUDA only (on the CPU they are not faster).
    stack_size: int = 1

    @property
    def excerpt_frames(self) -> int:
        """Excerpt length in frames (10 s -> 313, as in the paper)."""
        return int(math.ceil(self.excerpt_seconds * FPS))

    def as_dict(self) -> dict:
        """Plain dict (for configuration keys and tables)."""
        return dataclasses.asdict(self)


#: Profile fields that are training objectives' options and have no chapter parameter, with
#: where they go (``"objective.option"``, as :attr:`mer_lib.parameters.Param.options`).
PROFILE_OPTIONS: dict[str, tuple[str, ...]] = {
    "expo_reg_batch": ("expo_fidelity.reg_batch", "expo_stability.reg_batch"),
    "rar_attack_steps": ("ig_norm.attack_steps", "ig_sum_norm.attack_steps"),
    "rar_reg_batch": ("ig_norm.reg_batch", "ig_sum_norm.reg_batch"),
}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", n_clips=40, clip_seconds=3.0, n_extra_midlevel=0, excerpt_seconds=2.0,
        width=0.125, epochs=2, patience=2, batch_size=8, lr=5e-4, seeds=(6,),
        attack_iterations=5, adv_attack_iterations=2, adv_every=1, epsilons=(0.001, 0.01),
        finetune_epochs=1, expo_reg_batch=1, patch_bands=2, patch_segments=2, explain_examples=3,
        ig_steps=2, attr_steps=1, attr_examples=2,
        rar_riemann_steps=2, rar_attack_steps=1, rar_reg_batch=1,
        wave_iterations=2, wave_examples=3, snr_budgets_db=(40.0, 20.0),
    ),
    # quick: every chapter on a 2-core CPU in minutes, and still the paper's effects. Measured on
    # the synthetic corpus, the A2M2E bottleneck only learns its concepts (test concept r >= 0.5)
    # with more clips than the paper's 360 and a learning rate above the paper's 5e-4 for 30
    # epochs: 360 clips at width 0.25 gave concept r 0.42 (lr 3e-3; 0.16 at 5e-4), 720 shorter
    # clips at width 0.125 gave 0.54 in less time. Hence 720 clips of 6 s, 4-s excerpts.
    "quick": Profile(
        name="quick", n_clips=720, clip_seconds=6.0, n_extra_midlevel=0, excerpt_seconds=4.0,
        width=0.125, epochs=30, patience=10, batch_size=8, lr=3e-3, seeds=(6, 21, 42),
        attack_iterations=30, adv_attack_iterations=5, adv_every=5,
        epsilons=(0.001, 0.01, 0.1),
        # channels_last: oneDNN's NHWC kernels make a quick training epoch ~1.1x faster on 2 CPU
        # cores (plain 1.09 vs 1.21 s, adversarial 5.9 vs 6.7 s, measured in one process).
        channels_last=True,
        # extensions: ExpO-Fidelity costs ~reg_batch * (N + 1) / batch_size extra passes per
        # step; one regularised clip on a 2 x 4 grid (N = 18) keeps an epoch near 3x a plain
        # one, and 5 epochs of fine-tuning from the stored A2E / A2B2E keep the chapter short.
        # Fine-tuning a trained model at the from-scratch rate 3e-3 made its validation r jump
        # between epochs (ExpO-S-A2E at c = 1: test avg r 0.34 over 3 seeds vs 0.69 for a c = 0
        # fine-tune); at 1e-3 the c = 0 control keeps A2E's accuracy and ExpO still lowers NF.
        # c = 0.1: over 5 fine-tuning epochs (last epoch kept) c = 1 cost ExpO-F-A2E ~0.2 of
        # validation r and ExpO-S-A2E ~0.3; c = 0.1 ~0.05, with NF still several times A2E's.
        # Two of the three seeds for the extension variants (the chapters say so): the quick book
        # measured 28 min with three on 2 cores, the RAR fine-tuning alone ~3.4 min of it.
        extension_seeds=2,
        finetune_epochs=5, finetune_lr=1e-3, expo_c=0.1, expo_reg_batch=1, patch_bands=2, patch_segments=4,
        explain_examples=24,
        # attribution metrics: one attack costs ~ attr_steps x 8 emotions x (ig_steps captum passes
        # + the surrogate's double backprop) per clip; 4 clips, 8 IG steps and 3 attack steps
        # take ~6 s per model on one core (measured). 12 clips (3 x the pairs of the interval
        # comparisons: with 4, Kendall tau's intervals were wider than the differences between
        # systems) cost ~18 s per model for the 23 models of the Attributions chapter.
        ig_steps=8, attr_steps=3, attr_examples=12,
        # RAR: a step costs ~ k * (m / approx_factor) + m double-backprop passes per regularised
        # clip; m = 8, k = 3 on one clip of each batch is ~4.5x a plain step (measured on one
        # core: 120 vs 27 ms; two clips: 7x), and the two RAR variants' fine-tuning then took
        # ~4 min of the ~29-min quick book; m = 4 halves the outer Riemann sum (the inner
        # maximisation uses max(1, m // 5) = 1 step either way).
        rar_riemann_steps=4, rar_attack_steps=3, rar_reg_batch=1,
        # the three seeds of a variant train as one stack: on 2 CPU cores at this size (channels_last)
        # 1.28x faster than three single runs for A2E, 1.25-1.47x for aA2E (adversarial every epoch)
        stack_size=3,
        # waveform attacks: an attack through the front end costs ~3.6-4.2x a spectrogram attack at this
        # width (the front end's FFTs dominate a width-0.125 model; 1.2x at width 1, see
        # benchmarks/bench_waveform.py); 16 clips, 8 steps and three
        # budgets plus the L-inf attack keep the Listening chapter's attacks near 3 min on 2 cores
        wave_iterations=8, wave_examples=16, snr_budgets_db=(40.0, 30.0, 20.0),
    ),
    "paper": Profile(
        name="paper", n_clips=360, clip_seconds=15.0, n_extra_midlevel=0, excerpt_seconds=10.0,
        width=1.0, epochs=200, patience=50, batch_size=8, lr=5e-4, seeds=PAPER_SEEDS,
        attack_iterations=1000, adv_attack_iterations=50, adv_every=5,
        epsilons=(0.0003, 0.001, 0.003, 0.01, 0.03),
        finetune_epochs=None, expo_reg_batch=16, patch_bands=4, patch_segments=8, explain_examples=None,
        ig_steps=50, attr_steps=20, attr_examples=None,
        rar_riemann_steps=50, rar_attack_steps=10, rar_reg_batch=None,
        stack_size=10,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """Return the named profile, with any field replaced by ``overrides`` (None = keep).

    Raises ParameterError for an unknown profile, an unknown field or an out-of-range value.
    """
    if name not in PROFILES:
        raise ParameterError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    base = PROFILES[name]
    fields = {f.name for f in dataclasses.fields(Profile)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ParameterError(f"unknown profile field(s) {unknown}; known: {sorted(fields)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "seeds" in changes:
        changes["seeds"] = tuple(changes["seeds"])
    for name in ("epsilons", "snr_budgets_db"):
        if name in changes:
            changes[name] = tuple(changes[name])
    profile = dataclasses.replace(base, **changes)
    _validate(profile)
    return profile


def _validate(p: Profile) -> None:
    positive = ("clip_seconds", "excerpt_seconds", "width", "lr")
    if isinstance(p.expo_c, bool) or not isinstance(p.expo_c, (int, float)) or not 0 <= p.expo_c < math.inf:
        raise ParameterError(f"profile field expo_c must be a finite number >= 0, got {p.expo_c!r}")
    for key in positive:
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                or not math.isfinite(value):
            raise ParameterError(f"profile field {key} must be a finite number > 0, got {value!r}")
    at_least = {"n_clips": 10, "epochs": 1, "patience": 1, "batch_size": 1,
                "attack_iterations": 1, "adv_attack_iterations": 1, "adv_every": 1,
                "n_extra_midlevel": 0, "expo_reg_batch": 1, "patch_bands": 1, "patch_segments": 1,
                "ig_steps": 2, "attr_steps": 1, "rar_riemann_steps": 1, "rar_attack_steps": 1,
                "stack_size": 1, "wave_iterations": 1}
    if not isinstance(p.channels_last, bool):
        raise ParameterError(f"profile field channels_last must be True or False, got {p.channels_last!r}")
    if p.extension_seeds is not None and (isinstance(p.extension_seeds, bool)
                                          or not isinstance(p.extension_seeds, int) or p.extension_seeds < 1):
        raise ParameterError(f"profile field extension_seeds must be None or an integer >= 1, "
                             f"got {p.extension_seeds!r}")
    for key, minimum in at_least.items():
        value = getattr(p, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ParameterError(f"profile field {key} must be an integer >= {minimum}, got {value!r}")
    if not p.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in p.seeds):
        raise ParameterError(f"profile field seeds must be a non-empty list of integers, got {p.seeds!r}")
    if p.finetune_lr is not None and (isinstance(p.finetune_lr, bool) or not isinstance(p.finetune_lr, (int, float))
                                      or not 0 < p.finetune_lr < math.inf):
        raise ParameterError(f"profile field finetune_lr must be None or a finite number > 0, got {p.finetune_lr!r}")
    for key in ("finetune_epochs", "explain_examples", "attr_examples", "rar_reg_batch", "wave_examples"):
        value = getattr(p, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ParameterError(f"profile field {key} must be None or an integer >= 1, got {value!r}")
    if not p.epsilons or not all(isinstance(e, (int, float)) and e > 0 for e in p.epsilons):
        raise ParameterError(f"profile field epsilons must be a list of numbers > 0, got {p.epsilons!r}")
    if not p.snr_budgets_db or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b)
                                       for b in p.snr_budgets_db):
        raise ParameterError(f"profile field snr_budgets_db must be a list of finite numbers (dB), "
                             f"got {p.snr_budgets_db!r}")
