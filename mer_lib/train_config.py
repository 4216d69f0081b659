"""What decides a trained model: :class:`TrainConfig`, its checks, and the key it is stored under.

- :class:`TrainConfig`: every field that changes what training produces (besides the data),
  validated and normalised on construction (the objective's options resolved, the inner
  attack of adversarial variants filled in and checked).
- :func:`run_identity` / :func:`run_key`: what a stored model is keyed by (the configuration,
  the variant's definition, ``data.identity``, the number of frames and
  :data:`FORMAT_VERSION`) and its short sha256; :func:`model_dir` is the folder
  ``run_dir/models/<variant>/<key>``.
- ``_is_model_ref``: the form of ``TrainConfig.init_from`` (``"<variant>/<key>"``, see
  :func:`mer_lib.checkpoints.model_ref`).

Everything here is re-exported by :mod:`mer_lib.training`, whose docstring describes the
trainer these settings drive.

Example:
    >>> from mer_lib.train_config import TrainConfig, run_key
    >>> cfg = TrainConfig("a2e", seed=6, width=0.5, epochs=3)
    >>> cfg.identity()["width"], "adv_attack" in cfg.identity()   # no adversarial settings for a2e
    (0.5, False)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> len(run_key({"config": cfg.identity()}))
    16
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .attacks.config import AttackConfig
from .data import MerTensors
from .errors import ParameterError
from .models import Variant, get_variant
from .objectives import resolve_options
from .objectives.adversarial_batch import ADV_INPUTS, default_adv_attack
from .profiles import Profile, get_profile
from .store import identity_key
from .versions import ENGINE_VERSION, FORMAT_VERSION

#: Which weights training keeps (:attr:`TrainConfig.keep`).
KEEP_RULES = ("best", "last")


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ParameterError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not math.isfinite(value) or not low < value <= high:
        raise ParameterError(f"{name} must be a finite number in ({low}, {high}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what training produces (besides the data).

    Attributes:
        variant: registered variant name (see :mod:`mer_lib.models`).
        seed: seed of initialisation, dropout and batch order (0 <= seed < 2**32).
        width: channel multiplier of the backbone.
        epochs: maximum number of epochs (>= 1).
        patience: early stopping after this many epochs without a better validation score.
        batch_size, lr: Adam's batch size and learning rate.
        adv_every: adversarial variants: epochs e with ``e % adv_every == 0`` are adversarial.
        adv_attack: adversarial variants: ``AttackConfig.to_dict()`` of the inner attack
            (default :func:`default_adv_attack`); ignored (None) for the others.
        adv_input: adversarial variants: ``"kept"`` (the original's choice) or
            ``"kept_or_final"`` (see :mod:`mer_lib.training`); ignored for the others.
        objective_options: overrides of the variant's objective options (e.g. ``{"c": 0.5}``
            for an ExpO variant); stored resolved (objective defaults < variant options <
            overrides), so every option is part of the key.
        keep: which weights the model keeps: ``"best"`` (the epoch with the best validation
            score, the paper's rule) or ``"last"`` (the final epoch: a fixed budget of
            fine-tuning, whose regulariser the best-score rule would undo by picking the
            least-regularised epoch). Part of the key only when ``"last"``.
        init_from: fine-tune: ``"<variant>/<key>"`` of a finished model in the same run
            directory (:func:`~mer_lib.checkpoints.model_ref`) whose weights initialise
            training instead of the random initialisation (same head and width required). The
            parent's key names its whole configuration and data, so it is part of this model's key.
        bf16: bf16 autocast (CUDA only; ignored with a warning on CPU).
        channels_last: channels_last memory format (any device; float32, deterministic).

    Example:
        >>> TrainConfig("a2e", seed=6, epochs=0)
        Traceback (most recent call last):
        ...
        mer_lib.errors.ParameterError: epochs must be an integer >= 1, got 0
    """

    variant: str
    seed: int
    width: float = 1.0
    epochs: int = 200
    patience: int = 50
    batch_size: int = 8
    lr: float = 5e-4
    adv_every: int = 5
    adv_attack: dict | None = None
    adv_input: str = "kept"
    objective_options: dict | None = None
    init_from: str | None = None
    keep: str = "best"
    bf16: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        spec = get_variant(self.variant)
        if get_variant(spec.name) != spec:
            raise ParameterError(f"variant {spec.name!r} differs from the registered one; "
                                 f"register it with register_variant(..., replace=True) first")
        object.__setattr__(self, "variant", spec.name)
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0, 2**32 - 1))
        object.__setattr__(self, "width", _check_float("width", self.width, 0.0, 16.0))
        object.__setattr__(self, "epochs", _check_int("epochs", self.epochs, 1))
        object.__setattr__(self, "patience", _check_int("patience", self.patience, 1))
        object.__setattr__(self, "batch_size", _check_int("batch_size", self.batch_size, 1))
        object.__setattr__(self, "lr", _check_float("lr", self.lr, 0.0, 1.0))
        object.__setattr__(self, "adv_every", _check_int("adv_every", self.adv_every, 1))
        if self.init_from is not None and not _is_model_ref(self.init_from):
            raise ParameterError(f"init_from must be '<variant>/<16-hex-digit key>' of a stored model "
                                 f"(see model_ref), got {self.init_from!r}")
        if self.keep not in KEEP_RULES:
            raise ParameterError(f"keep must be one of {list(KEEP_RULES)}, got {self.keep!r}")
        if self.adv_input not in ADV_INPUTS:
            raise ParameterError(f"adv_input must be one of {list(ADV_INPUTS)}, got {self.adv_input!r}")
        for name in ("bf16", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")
        object.__setattr__(self, "objective_options", resolve_options(spec, self.objective_options))
        attack_cfg = self.adv_attack
        if spec.adversarial:
            if attack_cfg is None:
                attack_cfg = default_adv_attack()
            elif isinstance(attack_cfg, AttackConfig):
                attack_cfg = attack_cfg.to_dict()
            elif not isinstance(attack_cfg, dict):
                raise ParameterError(f"adv_attack must be a dict from AttackConfig.to_dict(), "
                                     f"got {attack_cfg!r}")
            attack_cfg = AttackConfig.from_dict(dict(attack_cfg)).to_dict()  # validates, normalises
        else:
            attack_cfg = None
        object.__setattr__(self, "adv_attack", attack_cfg)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def spec(self) -> Variant:
        """The registered :class:`Variant`."""
        return get_variant(self.variant)

    def is_adversarial_epoch(self, epoch: int) -> bool:
        """True when epoch ``epoch`` (counting from 1) includes adversarial steps."""
        return self.spec.adversarial and epoch % self.adv_every == 0

    def to_dict(self) -> dict:
        """All fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown fields fail)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParameterError(f"unknown training configuration field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def identity(self) -> dict:
        """The fields that change the result (adversarial settings only for adversarial variants)."""
        d = self.to_dict()
        if d["keep"] == "best":      # the rule of every model stored before the field existed
            d.pop("keep")
        if not self.spec.adversarial:
            d.pop("adv_every")
            d.pop("adv_attack")
            d.pop("adv_input")
        else:
            d["attack_engine"] = ENGINE_VERSION   # the inner attack's results depend on it
        return d

    @classmethod
    def from_profile(cls, profile: Profile | str, variant: str | Variant, seed: int,
                     **overrides) -> "TrainConfig":
        """Sizes from an execution profile, any field replaced by ``overrides`` (None = keep)."""
        if isinstance(profile, str):
            profile = get_profile(profile)
        spec = get_variant(variant)
        values: dict[str, Any] = dict(
            variant=spec.name, seed=seed, width=profile.width, epochs=profile.epochs,
            patience=profile.patience, batch_size=profile.batch_size, lr=profile.lr,
            adv_every=profile.adv_every, channels_last=profile.channels_last,
            adv_attack=default_adv_attack(profile.adv_attack_iterations) if spec.adversarial else None)
        known = {f.name for f in dataclasses.fields(cls)} - {"variant", "seed"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ParameterError(f"unknown training override(s) {unknown}; known: {sorted(known)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _is_model_ref(ref: Any) -> bool:
    if not isinstance(ref, str) or ref.count("/") != 1:
        return False
    variant, key = ref.split("/")
    return bool(variant) and len(key) == 16 and all(c in "0123456789abcdef" for c in key)


def run_identity(config: TrainConfig, data: MerTensors) -> dict:
    """What a stored model is keyed by: configuration, variant definition, data, length."""
    return {"format": FORMAT_VERSION, "config": config.identity(),
            "variant": config.spec.identity(), "data": str(data.identity),
            "n_frames": int(data.n_frames)}


def run_key(identity: dict) -> str:
    """Short sha256 (16 hex digits) of an identity dict: the store's one key function
    (:func:`mer_lib.store.identity_key`), so models and tables are keyed alike."""
    return identity_key(identity)


def model_dir(run_dir: str | Path, config: TrainConfig, data: MerTensors) -> Path:
    """``run_dir/models/<variant>/<key>`` of a configuration on a dataset."""
    return Path(run_dir) / "models" / config.variant / run_key(run_identity(config, data))


__all__ = ["TrainConfig", "FORMAT_VERSION", "KEEP_RULES", "run_identity", "run_key", "model_dir"]
