"""The cached, resumable trainer: every chapter gets its models through :func:`get_trained`.

Reference recipe (DESIGN §3): Adam (lr 5e-4), batch 8, early stopping on the validation
score with ``patience`` epochs, the best checkpoint restored at the end.

- **Objectives** (:mod:`mer_lib.objectives`): each batch is one call of the variant's
  objective, which does the forward pass(es), the backward pass and the optimiser step and
  returns named components; the history has one column per component (mean over the
  epoch's batches). The ``"mse"`` objective (A2E, A2B2E, A2M2E) minimises
  ``(1 - w) * emotion MSE + w * concept MSE`` with ``w = variant.concept_weight`` (A2M2E:
  w = 0.5; w = 0: emotion MSE only). The objective's options are resolved into
  ``TrainConfig.objective_options`` and are part of the key.
- **Validation score**: the mean Pearson r over the 8 emotions; for variants with
  ``concept_weight > 0`` (A2M2E) the *mean* of that and the mean Pearson r over the 7
  mid-level features, so the score stays on the scale of a correlation. A nan score (e.g.
  constant predictions) never counts as an improvement.
- **Adversarial variants** (aA2E, aA2B2E; the ``"adversarial"`` objective): epoch ``e``
  (counting from 1) is adversarial when ``e % adv_every == 0`` (reference: epochs 5, 10,
  15, ...). In such an epoch, after each clean optimiser step the whole batch is attacked at
  once by :func:`mer_lib.attacks.attack` with ``config.adv_attack`` under
  :func:`mer_lib.models.frozen_normalisation` (BatchNorm uses and keeps its running
  statistics, no dropout while attacking), then the model takes one more optimiser step on
  ``(x_adv, y)`` with the same loss. ``x_adv`` is chosen by ``adv_input``: ``"kept"``
  (default, as the original's ``adv_train_funcs.py``): ``x +`` the attack's kept
  perturbation — in reference mode the *clean* input for an example whose ladder reached no
  rung below its start; ``"kept_or_final"``: the attack's last perturbation for such
  examples instead (what mer_lib did before it emulated the original exactly).
- **Precision**: training runs in full float32 on every device (TF32 off on CUDA, see
  :func:`mer_lib.attacks.precision.full_float32`) unless ``bf16`` is asked for. (Data and
  model follow torch's default dtype, float32; the equivalence tests of
  :mod:`mer_lib.stack_training` set float64.)
- **Batches**: the training split lives on the device as one tensor; each epoch draws a
  permutation from a ``torch.Generator`` seeded with the seed, batches are index slices of
  it (the last one may be smaller). No DataLoader, no per-file loading.
- **Determinism**: torch, numpy and Python are seeded with the seed; on CPU deterministic
  algorithms are switched on while training, so training a configuration twice gives
  bit-identical weights. On CUDA cuDNN runs in deterministic mode.
- **Speed flags** (off by default, part of the key since they change the numbers):
  ``bf16`` autocast, CUDA only (ignored with a warning on CPU, which stays float32);
  ``channels_last`` memory format on any device — float32 and still deterministic, and
  about 1.1x faster per epoch on 2 CPU cores at the quick size (oneDNN's NHWC kernels; the
  quick profile turns it on), but not bit-equal to the default layout.

Storage (one folder per configuration)::

    run_dir/models/<variant>/<key>/
        config.json   the full configuration and the identity it was keyed by
        state.pt      resume state after each completed epoch (removed once model.pt exists)
        history.csv   one row per epoch
        model.pt      the final (best) weights, written at the end

``key`` is a short sha256 of the identity: the training configuration, the variant's
definition, ``data.identity`` and the number of frames. Every file is written to a temporary
file in the same folder and moved into place (:func:`mer_lib.paths.atomic_path`), so a
``kill -9`` never leaves a truncated file under a final name; a kill after ``model.pt`` is in
place but before ``state.pt`` is removed leaves no trace either: the next :func:`get_trained`
(or :func:`~mer_lib.stack_training.get_trained_stack`) of the model removes the resume state,
the dead writer's temporary and its lock note (:func:`_tidy_finished`). ``model.pt`` and
``state.pt`` carry a checksum of their content (``"digest"``), so a file that still unpickles but whose
bytes changed is caught too. Policy for damaged files: an unreadable, damaged or foreign
``state.pt`` is renamed to ``state.pt.corrupt`` and training restarts from scratch with a
warning (it is only a cache of progress); an unreadable or damaged ``model.pt`` or
``config.json``, or one that disagrees with the request, raises :class:`CheckpointError`
naming the file (delete the folder to retrain); ``model.pt`` keeps a copy of the history, from
which a damaged or missing ``history.csv`` is written again (with a line on stderr).

Resume: when ``state.pt`` exists and ``model.pt`` does not, training continues after the last
completed epoch with the saved model, optimiser, early-stopping and RNG states, and ends
with exactly the weights an uninterrupted run gives.

Example:
    >>> from mer_lib.training import TrainConfig
    >>> cfg = TrainConfig.from_profile("smoke", "a2m2e", seed=6, epochs=3)
    >>> cfg.variant, cfg.epochs, cfg.batch_size, cfg.lr
    ('a2m2e', 3, 8, 0.0005)
    >>> # model = get_trained("a2m2e", 6, data, "smoke", "runs").model   # loads or trains
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import random
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__
from .data import MerTensors
from .errors import CheckpointError, DataLayoutError, ParameterError, TrainingError
from .metrics import ConstantColumnWarning, evaluate, predict
from .models import MerNet, Variant, build_model, get_variant
from .objectives import StepContext, make_objective
from .paths import EXACT_FLOATS, atomic_path
from .checksums import digest_ok, with_digest
from .profiles import Profile, get_profile
from .runtime import resolve_device, seed_everything

#: Bumped when the meaning of stored files changes (part of every key).
FORMAT_VERSION = 2   # 2: objectives with options in the key; history columns per component
#: Attack of the reference's adversarial training: epsilon, Adam step size (DESIGN §3-4).
ADV_EPSILON = 0.001
ADV_STEP_SIZE = 0.002
#: History columns after ``epoch`` and the objective's components (``train_loss``, ...).
HISTORY_COLUMNS = ("valid_score", "valid_r", "valid_mae",
                   "valid_concept_r", "adversarial", "improved", "seconds")


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

#: How adversarial training builds its adversarial batch (see the module docstring).
ADV_INPUTS = ("kept", "kept_or_final")
#: Which weights training keeps (:attr:`TrainConfig.keep`).
KEEP_RULES = ("best", "last")


def default_adv_attack(iterations: int = 50) -> dict:
    """The attack inside adversarial training: reference mode, eps 0.001, Adam lr 0.002.

    ``iterations`` counts forward passes, as the original's ``max_iters`` (50).
    """
    from .attacks import AttackConfig

    return AttackConfig(mode="reference", epsilon=ADV_EPSILON, step_size=ADV_STEP_SIZE,
                        max_iterations=iterations, norm="linf", random_start=False,
                        early_stop=True).to_dict()


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
            ``"kept_or_final"`` (see the module docstring); ignored for the others.
        objective_options: overrides of the variant's objective options (e.g. ``{"c": 0.5}``
            for an ExpO variant); stored resolved (objective defaults < variant options <
            overrides), so every option is part of the key.
        keep: which weights the model keeps: ``"best"`` (the epoch with the best validation
            score, the paper's rule) or ``"last"`` (the final epoch: a fixed budget of
            fine-tuning, whose regulariser the best-score rule would undo by picking the
            least-regularised epoch). Part of the key only when ``"last"``.
        init_from: fine-tune: ``"<variant>/<key>"`` of a finished model in the same run
            directory (:func:`model_ref`) whose weights initialise training instead of the
            random initialisation (same head and width required). The parent's key names
            its whole configuration and data, so it is part of this model's key.
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
        from .objectives import resolve_options

        object.__setattr__(self, "objective_options", resolve_options(spec, self.objective_options))
        attack_cfg = self.adv_attack
        if spec.adversarial:
            from .attacks import AttackConfig

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
            from .attacks.engine import ENGINE_VERSION

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


def model_ref(trained: "TrainedModel") -> str:
    """``"<variant>/<key>"``: how ``TrainConfig.init_from`` names a stored model to fine-tune."""
    return f"{trained.config.variant}/{trained.key}"


def run_identity(config: TrainConfig, data: MerTensors) -> dict:
    """What a stored model is keyed by: configuration, variant definition, data, length."""
    return {"format": FORMAT_VERSION, "config": config.identity(),
            "variant": config.spec.identity(), "data": str(data.identity),
            "n_frames": int(data.n_frames)}


def run_key(identity: dict) -> str:
    """Short sha256 (16 hex digits) of an identity dict."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_dir(run_dir: str | Path, config: TrainConfig, data: MerTensors) -> Path:
    """``run_dir/models/<variant>/<key>`` of a configuration on a dataset."""
    return Path(run_dir) / "models" / config.variant / run_key(run_identity(config, data))


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------

@dataclass
class TrainedModel:
    """A trained model (eval mode, on its device) with where it came from."""

    model: MerNet
    config: TrainConfig
    key: str
    path: Path
    history: pd.DataFrame
    trained_now: bool

    @property
    def variant(self) -> str:
        return self.config.variant

    def evaluate(self, data: MerTensors, split: str = "test", batch_size: int = 64) -> dict:
        """:func:`mer_lib.metrics.evaluate` of this model on one split of ``data``."""
        x, y, m = data.subset(split)
        e, c = predict(self.model, x, batch_size=batch_size)
        return evaluate(e, y, c, m if c is not None else None)


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

def _write_bytes(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())


def _save_torch(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def _history_bytes(rows: list[dict], components: tuple[str, ...]) -> bytes:
    return _history_frame(rows, components).to_csv(index=False).encode()


def _history_frame(rows: list[dict], components: tuple[str, ...] = ("train_loss",)) -> pd.DataFrame:
    columns = ["epoch", *components, *HISTORY_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; delete the folder {path.parent} to retrain") from exc


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: stored {va!r} != requested {vb!r}")
    return out


def _check_identity(folder: Path, stored: dict, expected: dict) -> None:
    if stored != expected:
        diff = "; ".join(_differences(stored, expected)) or "unknown difference"
        raise CheckpointError(f"the model folder {folder} holds a different configuration ({diff}) in "
                              f"{folder / 'config.json'}; delete the folder or use another run directory")


def _cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _variant_from_stored(d: dict) -> Variant:
    try:
        registered = get_variant(d["name"])
        if registered.identity() == d:
            return registered
    except ParameterError:
        pass
    fields = dict(d)
    fields["options"] = tuple(tuple(kv) for kv in fields.get("options", ()))
    return Variant(**fields)


def load_trained(path: str | Path, *, device: str | torch.device = "auto",
                 expected: dict | None = None) -> TrainedModel:
    """Load a finished model from its folder (``model.pt`` + ``config.json``).

    Checks that ``model.pt`` belongs to the folder's ``config.json`` and, when ``expected``
    (a :func:`run_identity`) is given, that the folder holds that configuration; any
    mismatch or unreadable file raises :class:`CheckpointError`.

    Example:
        >>> tm = load_trained("runs/models/a2e/0123456789abcdef")   # doctest: +SKIP
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a model folder (no config.json)")
    stored = _read_json(folder / "config.json")
    if not isinstance(stored, dict) or "identity" not in stored or "train_config" not in stored:
        raise CheckpointError(f"{folder / 'config.json'} is not a mer_lib model configuration")
    if expected is not None:
        _check_identity(folder, stored["identity"], expected)
    if not (folder / "model.pt").is_file():
        raise CheckpointError(f"{folder} holds no finished model (model.pt missing); "
                              f"get_trained/train resumes or restarts it")
    model_pt = folder / "model.pt"
    try:
        payload = torch.load(model_pt, map_location="cpu", weights_only=True)
        identity, state_dict = payload["identity"], payload["state_dict"]
        intact = digest_ok(payload)
    except Exception as exc:  # any unpickling/IO problem means the file cannot be trusted
        raise CheckpointError(f"cannot load {model_pt} ({exc}); delete the folder to retrain") from exc
    if not intact:
        raise CheckpointError(f"{model_pt} is damaged (its content does not match the checksum stored in it); "
                              f"delete the folder {folder} to retrain")
    if identity != stored["identity"]:
        raise CheckpointError(f"{model_pt} was trained for another configuration than "
                              f"its config.json; delete the folder to retrain")
    config = TrainConfig.from_dict(stored["train_config"])
    spec = _variant_from_stored(identity["variant"])
    model = build_model(spec, config.width)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"{model_pt} does not fit the {spec.name} model: {exc}") from exc
    model.to(resolve_device(device)).eval()
    history = _load_history(folder, payload)
    return TrainedModel(model, config, stored["key"], folder, history, trained_now=False)


def _load_history(folder: Path, payload: dict) -> pd.DataFrame:
    """``history.csv`` of a finished model, checked against the copy inside ``model.pt``.

    A missing, unreadable or different ``history.csv`` is written again from ``model.pt``
    (saying so on stderr). Models stored before ``model.pt`` held the history: the file as it
    is, or :class:`CheckpointError` naming it when it cannot be read.
    """
    path = folder / "history.csv"
    if payload.get("history") is None:
        if not path.is_file():
            return _history_frame([])
        try:
            return pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001 - whatever pandas makes of a damaged file
            raise CheckpointError(f"cannot read {path} ({type(exc).__name__}: {exc}); delete the folder "
                                  f"{folder} to retrain") from None
    expected = _history_bytes(payload["history"], tuple(payload["components"]))
    try:
        raw = path.read_bytes()
        same = raw == expected or pd.read_csv(io.BytesIO(raw), **EXACT_FLOATS).equals(
            pd.read_csv(io.BytesIO(expected), **EXACT_FLOATS))
    except Exception:  # noqa: BLE001 - missing, unreadable or unparsable: written again below
        same = False
    if same:
        return pd.read_csv(io.BytesIO(raw))
    try:
        _write_bytes(path, expected)
        done = "wrote it again from"
    except OSError:
        done = "cannot rewrite it (read-only store?); using the copy in"
    print(f"mer_lib: {path} is damaged or missing; {done} {folder / 'model.pt'}", file=sys.stderr, flush=True)
    return pd.read_csv(io.BytesIO(expected))


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------

@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]


def _rng_states(gen: torch.Generator, device: torch.device) -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
        "batches": gen.get_state(),
    }


def _set_rng_states(states: dict, gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(tuple(s) if isinstance(s, list) else s for s in states["python"]))
    gen.set_state(states["batches"])


def _load_resume_state(folder: Path, identity: dict) -> dict | None:
    path = folder / "state.pt"
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and not digest_ok(state):
            ok, reason = False, "it is damaged (its content does not match the checksum stored in it)"
        else:
            ok = isinstance(state, dict) and state.get("identity") == identity
            reason = "it belongs to another configuration"
    except Exception as exc:  # unreadable: treat as absent (it only caches progress)
        ok, reason = False, f"it cannot be read ({type(exc).__name__}: {exc})"
    if not ok:
        path.replace(path.with_name("state.pt.corrupt"))
        warnings.warn(f"ignoring {path} because {reason}; renamed it to state.pt.corrupt and "
                      f"training from scratch", RuntimeWarning, stacklevel=3)
        return None
    return state


def _prepare_data(data: MerTensors, spec: Variant, device: torch.device):
    if data.x.dim() != 4 or data.x.shape[1] != 1:
        raise DataLayoutError(f"data.x must have shape (N, 1, frames, bands), got {tuple(data.x.shape)}")
    if spec.needs_midlevel and data.midlevel is None:
        raise DataLayoutError(
            f"variant {spec.name} trains its 7 bottleneck units on mid-level ratings, but this "
            f"dataset ({data.identity}) has none (MerTensors.midlevel is None); add the Mid-level "
            f"Perceptual Features annotations (midlevel/annotations.csv) or train a2b2e instead")
    out = []
    for name, minimum in (("train", 1), ("valid", 2)):
        if name not in data.split or len(data.split[name]) < minimum:
            raise DataLayoutError(f"the {name} split needs at least {minimum} examples, "
                                  f"got {len(data.split.get(name, ()))}")
        x, y, m = data.subset(name)
        dtype = torch.get_default_dtype()   # float32 unless a test asks for float64
        out.append((x.to(device, dtype).contiguous(), y.to(device, dtype),
                    None if m is None else m.to(device, dtype)))
    return out


def _open_model_folder(config: TrainConfig, data: MerTensors, run_dir: str | Path) -> tuple[dict, str, Path]:
    """``(identity, key, folder)`` of a configuration; writes ``config.json`` or checks the stored one."""
    identity = run_identity(config, data)
    key = run_key(identity)
    folder = Path(run_dir) / "models" / config.variant / key
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "config.json").is_file():
        stored = _read_json(folder / "config.json")
        if not isinstance(stored, dict):
            raise CheckpointError(f"{folder / 'config.json'} is not a mer_lib model configuration; "
                                  f"delete the folder {folder} to retrain")
        _check_identity(folder, stored.get("identity", {}), identity)
    else:
        doc = {"key": key, "identity": identity, "train_config": config.to_dict(),
               "mer_lib_version": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_bytes(folder / "config.json", json.dumps(doc, indent=2, sort_keys=True).encode())
    return identity, key, folder


def _batch_order(gen: torch.Generator, n: int, device: torch.device) -> torch.Tensor:
    """One epoch's order of the ``n`` training examples, drawn from the seed's batch generator."""
    return torch.randperm(n, generator=gen).to(device)


def _history_row(epoch: int, means: dict, score: float, metrics: dict, adversarial: bool,
                 improved: bool, seconds: float) -> dict:
    """One row of ``history.csv``."""
    return {"epoch": epoch, **means,
            "valid_score": score, "valid_r": metrics["avg_r"], "valid_mae": metrics["mae"],
            "valid_concept_r": metrics.get("concept_avg_r", math.nan),
            "adversarial": adversarial, "improved": improved, "seconds": seconds}


def _save_progress(folder: Path, identity: dict, epoch: int, model_state: dict, optimizer_state: dict,
                   best_state: dict | None, best_score: float, best_epoch: int, bad: int,
                   history: list[dict], loss_state: dict, rng: dict, components: tuple[str, ...]) -> None:
    """Write the resume state ``state.pt`` and ``history.csv`` after an epoch."""
    _save_torch(folder / "state.pt", with_digest({
        "identity": identity, "epoch": epoch, "model": model_state,
        "optimizer": optimizer_state, "best_state": best_state,
        "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad,
        "history": history, "loss_state": loss_state, "rng": rng}))
    _write_bytes(folder / "history.csv", _history_bytes(history, components))


def _save_final(folder: Path, identity: dict, key: str, best_state: dict, best_epoch: int,
                best_score: float, history: list[dict], components: tuple[str, ...]) -> None:
    """Write ``model.pt`` (with a copy of the history and a checksum) and ``history.csv`` and drop
    the resume state: the model is finished."""
    _save_torch(folder / "model.pt", with_digest({
        "identity": identity, "key": key, "state_dict": best_state, "best_epoch": best_epoch,
        "best_score": best_score, "history": list(history), "components": list(components)}))
    _write_bytes(folder / "history.csv", _history_bytes(history, components))
    (folder / "state.pt").unlink(missing_ok=True)


def _tidy_finished(folder: Path, *, locked: bool = False) -> None:
    """Leave a finished model's folder as an uninterrupted run does: ``model.pt``, ``config.json``,
    ``history.csv`` and the lock file only.

    A ``kill -9`` after ``model.pt`` was moved into place but before :func:`_save_final` removed
    ``state.pt`` (or before the lock was released) leaves the resume state, the temporary of the
    write in progress and the dead holder's note beside the finished model; nobody writes into
    the folder again, so nobody would remove them. Dead writers' temporaries are removed at
    once (safe without the lock, see :func:`mer_lib.paths.remove_dead_temporaries`); a
    ``state.pt`` or a dead holder's note under ``train.lock`` (``locked``: the caller holds it).
    A folder held by a live process is left to it.
    """
    from .locks import _alive, holder, work_lock
    from .paths import remove_dead_temporaries

    remove_dead_temporaries(folder)
    if locked:
        if (folder / "model.pt").is_file():
            (folder / "state.pt").unlink(missing_ok=True)
        return
    lock = folder / "train.lock"
    note = holder(lock)
    if note is not None and _alive(note):
        return
    if note is None and not (folder / "state.pt").exists():
        return
    with work_lock(lock, what=f"the finished model {folder.parent.name}/{folder.name}"):
        if (folder / "model.pt").is_file():
            (folder / "state.pt").unlink(missing_ok=True)


def _validate(model: MerNet, spec: Variant, x: torch.Tensor, y: torch.Tensor,
              m: torch.Tensor | None) -> tuple[float, dict]:
    e, c = predict(model, x, batch_size=64)
    return _score(spec, e, c, y, m)


def _score(spec: Variant, e, c, y: torch.Tensor, m: torch.Tensor | None) -> tuple[float, dict]:
    """Validation score and metrics of predictions ``e`` (and concepts ``c``) (see the module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantColumnWarning)
        metrics = evaluate(e, y.cpu(), c, None if (c is None or m is None) else m.cpu())
    score = metrics["avg_r"]
    if spec.concept_weight > 0:
        score = 0.5 * (score + metrics.get("concept_avg_r", float("nan")))
    return score, metrics


def train(config: TrainConfig, data: MerTensors, run_dir: str | Path, *,
          device: str | torch.device = "auto", progress: bool = True, resume: bool = True,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainedModel:
    """Train ``config`` on ``data`` into ``run_dir/models/<variant>/<key>/`` (see module doc).

    Resumes from ``state.pt`` when present (``resume=True``); an existing ``model.pt`` is
    overwritten. ``on_epoch_end(epoch, history_row)`` is called after each epoch's state
    has been saved. Use :func:`get_trained` to load instead of retraining.

    Raises:
        DataLayoutError: the data lacks what the variant needs (e.g. mid-level ratings).
        TrainingError: the loss became nan/inf (the message names epoch and batch).
        CheckpointError: the folder holds another configuration.
    """
    spec = config.spec
    objective = make_objective(spec, config.objective_options)
    device = resolve_device(device)
    (x_tr, y_tr, m_tr), (x_va, y_va, m_va) = _prepare_data(data, spec, device)
    identity, key, folder = _open_model_folder(config, data, run_dir)

    on_cuda = device.type == "cuda"
    if config.bf16 and not on_cuda:
        warnings.warn("bf16 autocast is CUDA-only; ignored on CPU (float32)", RuntimeWarning, stacklevel=2)
    use_bf16 = config.bf16 and on_cuda
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    from .attacks.precision import full_float32

    with _deterministic(device), full_float32():
        gen = seed_everything(config.seed)
        model = build_model(spec, config.width).to(device, memory_format=memory_format)
        if config.init_from is not None:
            _initialise_from(model, Path(run_dir), config)
        x_tr = x_tr.contiguous(memory_format=memory_format)
        x_va = x_va.contiguous(memory_format=memory_format)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        done, best_score, best_epoch, bad = 0, -math.inf, 0, 0
        best_state: dict | None = None
        history: list[dict] = []
        loss_state: dict = {}
        saved = _load_resume_state(folder, identity) if resume else None
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            best_state = saved["best_state"]
            done, best_score, best_epoch, bad = (saved["epoch"], saved["best_score"],
                                                 saved["best_epoch"], saved["bad_epochs"])
            history, loss_state = saved["history"], saved["loss_state"]
            _set_rng_states(saved["rng"], gen, device)

        n, bs = x_tr.shape[0], config.batch_size
        n_batches = math.ceil(n / bs)
        bar = tqdm(total=config.epochs, initial=done, desc=f"{spec.name} seed {config.seed}",
                   unit="epoch", leave=True, disable=not progress, dynamic_ncols=True)
        try:
            epoch = done
            while epoch < config.epochs and bad < config.patience:
                epoch += 1
                t0 = time.perf_counter()
                adversarial = config.is_adversarial_epoch(epoch)
                model.train()
                perm = _batch_order(gen, n, device)
                parts: dict[str, list[tuple[int, torch.Tensor]]] = {c: [] for c in objective.components}
                for b in range(n_batches):
                    idx = perm[b * bs:(b + 1) * bs]
                    mb = None if m_tr is None else m_tr[idx]
                    ctx = StepContext(model, spec, optimizer, config, epoch, b + 1, loss_state, use_bf16)
                    for name, value in objective.step(ctx, x_tr[idx], y_tr[idx], mb).items():
                        parts[name].append((b + 1, value))
                    model.train()   # an objective must not leave it otherwise; be sure
                means = _epoch_means(parts, config, epoch, n_batches)
                train_loss = means["train_loss"]

                score, metrics = _validate(model, spec, x_va, y_va, m_va)
                improved = math.isfinite(score) and score > best_score
                if improved:
                    best_score, best_epoch, bad = score, epoch, 0
                    best_state = _cpu_state_dict(model)
                else:
                    bad += 1
                row = _history_row(epoch, means, score, metrics, adversarial, improved,
                                   time.perf_counter() - t0)
                history.append(row)
                _save_progress(folder, identity, epoch, _cpu_state_dict(model), optimizer.state_dict(),
                               best_state, best_score, best_epoch, bad, history, loss_state,
                               _rng_states(gen, device), objective.components)
                bar.set_postfix(epoch=epoch, loss=f"{train_loss:.4f}", valid_r=f"{metrics['avg_r']:.3f}",
                                refresh=False)
                bar.update(1)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, row)
            if bar.n < bar.total:  # stopped early: show the bar as complete
                bar.total = bar.n
                bar.set_postfix(epoch=bar.n, best=best_epoch, stopped="early", refresh=False)
                bar.refresh()
        finally:
            bar.close()

        if config.keep == "last" and history:
            last = history[-1]
            best_state, best_epoch, best_score = _cpu_state_dict(model), int(last["epoch"]), last["valid_score"]
        if best_state is None:
            warnings.warn(f"{spec.name} seed {config.seed}: the validation score was never finite; "
                          f"keeping the last weights", RuntimeWarning, stacklevel=2)
            best_state, best_epoch = _cpu_state_dict(model), epoch
        model.load_state_dict(best_state)
        _save_final(folder, identity, key, best_state, best_epoch, best_score, history, objective.components)
    model.to(memory_format=torch.contiguous_format).eval()
    return TrainedModel(model, config, key, folder, _history_frame(history, objective.components),
                        trained_now=True)


def _initialise_from(model: MerNet, run_dir: Path, config: TrainConfig) -> None:
    """Load the weights of the finished model ``config.init_from`` into ``model`` (fine-tuning)."""
    folder = run_dir / "models" / config.init_from
    if not (folder / "model.pt").is_file():
        raise CheckpointError(f"init_from={config.init_from!r}: no finished model in {folder}; "
                              f"train that model first (in the same run directory)")
    parent = load_trained(folder, device="cpu")
    if parent.model.head != model.head or parent.config.width != config.width:
        raise CheckpointError(
            f"init_from={config.init_from!r} is a {parent.model.head} model of width "
            f"{parent.config.width}; {config.variant} needs a {model.head} model of width {config.width}")
    model.load_state_dict(parent.model.state_dict())


def adversarial_input(result, how: str = "kept") -> torch.Tensor:
    """The adversarial batch of one training step from an :class:`~mer_lib.attacks.AttackResult`.

    ``"kept"``: ``x +`` the kept perturbation (the original's ``input + best_delta``, i.e.
    the clean input where the ladder reached no rung below its start); ``"kept_or_final"``:
    ``x +`` the last perturbation for those examples (``delta_iteration == 0``) instead.
    """
    if how == "kept":
        return result.x_adv.detach()
    if how != "kept_or_final":
        raise ParameterError(f"adv_input must be one of {list(ADV_INPUTS)}, got {how!r}")
    none = (result.delta_iteration == 0).view(-1, *[1] * (result.x.dim() - 1))
    return torch.where(none, result.x + result.final_delta, result.x_adv).detach()


def _epoch_means(parts: dict[str, list[tuple[int, torch.Tensor]]], config: TrainConfig, epoch: int,
                 n_batches: int) -> dict[str, float]:
    """Mean of each component over the epoch's batches (NaN when it never occurred).

    ``parts[name]`` holds ``(batch, value)`` pairs. Raises TrainingError naming the first
    batch whose component was not finite: one device sync per component and epoch, not
    per batch.
    """
    means = {}
    for name, pairs in parts.items():
        if not pairs:
            means[name] = math.nan
            continue
        stacked = torch.stack([v for _, v in pairs]).double().cpu()
        bad = torch.nonzero(~torch.isfinite(stacked)).flatten()
        if len(bad):
            raise TrainingError(
                f"training {config.variant} seed {config.seed}: {name} became "
                f"{float(stacked[bad[0]])} at epoch {epoch}, batch {pairs[int(bad[0])][0]} of "
                f"{n_batches} (both counted from 1); check the data for nan/inf values or lower "
                f"the learning rate (lr={config.lr})")
        means[name] = float(stacked.mean())
    return means


def get_trained(variant: str | Variant, seed: int, data: MerTensors, profile: Profile | str,
                run_dir: str | Path, *, device: str | torch.device = "auto", progress: bool = True,
                on_epoch_end: Callable[[int, dict], None] | None = None, **overrides) -> TrainedModel:
    """The one cached entry point: load the stored model, or train (resuming) if missing.

    Training holds the lock ``<model folder>/train.lock`` (:func:`mer_lib.locks.work_lock`), so
    any number of processes may ask for the same model at once: one trains, the others wait
    and load it; a worker killed mid-training leaves ``state.pt`` for the next to resume.

    Sizes come from ``profile`` (a :class:`Profile` or its name) with ``overrides`` for any
    :class:`TrainConfig` field (``epochs=3``, ``width=0.5``, ...).

    Example:
        >>> tm = get_trained("a2m2e", 6, data, "quick", "runs")          # doctest: +SKIP
        >>> tm.trained_now, tm.path.parent.name                          # doctest: +SKIP
        (False, 'a2m2e')
    """
    from .locks import work_lock

    config = TrainConfig.from_profile(profile, variant, seed, **overrides)
    identity = run_identity(config, data)
    folder = Path(run_dir) / "models" / config.variant / run_key(identity)
    if (folder / "model.pt").is_file():
        _tidy_finished(folder)
        return load_trained(folder, device=device, expected=identity)
    # check, lock, check again: concurrent workers sharing run_dir train each model once
    with work_lock(folder / "train.lock", what=f"model {config.variant} seed {config.seed} ({folder.name})"):
        if (folder / "model.pt").is_file():
            _tidy_finished(folder, locked=True)
            return load_trained(folder, device=device, expected=identity)
        return train(config, data, run_dir, device=device, progress=progress, on_epoch_end=on_epoch_end)


__all__ = ["TrainConfig", "TrainedModel", "train", "get_trained", "load_trained", "run_identity", "run_key",
           "model_dir", "model_ref", "default_adv_attack", "adversarial_input", "ADV_INPUTS", "ADV_EPSILON",
           "ADV_STEP_SIZE", "FORMAT_VERSION"]
