"""A trained model's folder: writing, checking and loading ``config.json``, ``state.pt``,
``history.csv`` and ``model.pt``.

The layout and the policy for damaged files are described in :mod:`mer_lib.training`
(which re-exports everything here). In short: every file is written to a temporary in the
same folder and moved into place (:func:`mer_lib.paths.atomic_path`); ``model.pt`` and
``state.pt`` carry a checksum (:mod:`mer_lib.checksums`); a damaged ``state.pt`` is renamed
to ``state.pt.corrupt`` (:func:`_load_resume_state`), a damaged ``model.pt`` or
``config.json`` raises :class:`~mer_lib.errors.CheckpointError`, and a damaged
``history.csv`` is written again from the copy inside ``model.pt``.

- :class:`TrainedModel` and :func:`load_trained`: a finished model and how it is loaded;
  :func:`model_ref` names it for ``TrainConfig.init_from``.
- ``_open_model_folder``, ``_save_progress``, ``_save_final``, ``_load_resume_state``:
  the trainer's (and :mod:`mer_lib.stack_training`'s) writers and the resume state.
- ``_tidy_finished``: what a kill between ``model.pt`` and the end of the run left behind.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from mer_lib.checkpoints import _history_frame, _load_resume_state, _write_bytes
    >>> list(_history_frame([], ("train_loss",)).columns)[:3]
    ['epoch', 'train_loss', 'valid_score']
    >>> folder = Path(tempfile.mkdtemp())
    >>> _load_resume_state(folder, {"format": 2}) is None          # no state.pt: start afresh
    True
    >>> _write_bytes(folder / "history.csv", b"epoch\\n"); (folder / "history.csv").read_bytes()
    b'epoch\\n'
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .versions import __version__
from .checksums import digest_ok, with_digest
from .data import MerTensors
from .errors import CheckpointError, ParameterError
from .locks import _alive, holder, work_lock
from .metrics import evaluate, predict
from .models import MerNet, Variant, build_model, get_variant
from .paths import EXACT_FLOATS, atomic_path, remove_dead_temporaries
from .runtime import resolve_device
from .train_config import TrainConfig, run_identity, run_key

#: History columns after ``epoch`` and the objective's components (``train_loss``, ...).
HISTORY_COLUMNS = ("valid_score", "valid_r", "valid_mae",
                   "valid_concept_r", "adversarial", "improved", "seconds")


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


def model_ref(trained: TrainedModel) -> str:
    """``"<variant>/<key>"``: how ``TrainConfig.init_from`` names a stored model to fine-tune."""
    return f"{trained.config.variant}/{trained.key}"


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
# The trainer's writers and the resume state
# --------------------------------------------------------------------------------------

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


__all__ = ["TrainedModel", "load_trained", "model_ref", "HISTORY_COLUMNS"]
