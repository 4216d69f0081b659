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

Modules (all re-exported here, so ``mer_lib.training.<name>`` is the one place to import from):
:mod:`mer_lib.train_config` (:class:`TrainConfig`, :data:`FORMAT_VERSION`, the key),
:mod:`mer_lib.checkpoints` (the model folder's files, :class:`TrainedModel`,
:func:`load_trained`, :func:`model_ref`, the resume state), :mod:`mer_lib.train_loop` (the epoch loop's parts
shared with :mod:`mer_lib.stack_training`) and :mod:`mer_lib.objectives.adversarial_batch`
(:func:`default_adv_attack`, :func:`adversarial_input`); this module keeps :func:`train` and
:func:`get_trained`.

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

import math
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .attacks.precision import full_float32
from .data import MerTensors
from .errors import CheckpointError
from .locks import work_lock
from .metrics import predict
from .models import MerNet, Variant, build_model
from .objectives import StepContext, make_objective
from .profiles import Profile
from .runtime import resolve_device, seed_everything

# The parts of the trainer live in their own modules; every name (public and private) that
# other modules and tests use is re-exported here, so ``mer_lib.training.<name>`` keeps working
# and monkeypatching ``mer_lib.training._save_final`` (etc.) still reaches :func:`train`.
from .objectives.adversarial_batch import (ADV_EPSILON, ADV_INPUTS, ADV_STEP_SIZE,  # noqa: F401
                                           adversarial_input, default_adv_attack)
from .train_config import (FORMAT_VERSION, KEEP_RULES, TrainConfig, _check_float, _check_int,  # noqa: F401
                           _is_model_ref, model_dir, run_identity, run_key)
from .checkpoints import (HISTORY_COLUMNS, TrainedModel, _check_identity, _cpu_state_dict,  # noqa: F401
                          _differences, _history_bytes, _history_frame, _load_history, _load_resume_state,
                          _open_model_folder, _read_json, _save_final, _save_progress, _save_torch,
                          _tidy_finished, _variant_from_stored, _write_bytes, load_trained, model_ref)
from .train_loop import (_batch_order, _deterministic, _epoch_means, _history_row,  # noqa: F401
                         _prepare_data, _rng_states, _score, _set_rng_states)


def _validate(model: MerNet, spec: Variant, x: torch.Tensor, y: torch.Tensor,
              m: torch.Tensor | None) -> tuple[float, dict]:
    e, c = predict(model, x, batch_size=64)
    return _score(spec, e, c, y, m)


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
