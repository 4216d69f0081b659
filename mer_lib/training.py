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
:func:`load_trained`, :func:`model_ref`, the resume state), :mod:`mer_lib.train_loop` (the epoch
loop's parts) and :mod:`mer_lib.objectives.adversarial_batch` (:func:`default_adv_attack`,
:func:`adversarial_input`). The epoch loop itself is :func:`mer_lib.trainer.train_replicas`,
the same for one model and for a stack of seeds (:mod:`mer_lib.stack_training`); this module
keeps :func:`train` (one model) and :func:`get_trained`.

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

from pathlib import Path
from typing import Callable

import torch

from .data import MerTensors
from .locks import work_lock
from .models import Variant
from .profiles import Profile
from .trainer import train_replicas

# The parts of the trainer live in their own modules; every name (public and private) that
# other modules and tests use is re-exported here, so ``mer_lib.training.<name>`` keeps working.
# To patch a step of the loop, patch it where the loop looks it up (mer_lib.trainer).
from .objectives.adversarial_batch import (ADV_EPSILON, ADV_INPUTS, ADV_STEP_SIZE,  # noqa: F401
                                           adversarial_input, default_adv_attack)
from .train_config import (FORMAT_VERSION, KEEP_RULES, TrainConfig, _check_float, _check_int,  # noqa: F401
                           _is_model_ref, model_dir, run_identity, run_key)
from .checkpoints import (HISTORY_COLUMNS, TrainedModel, _check_identity, _cpu_state_dict,  # noqa: F401
                          _differences, _history_bytes, _initialise_from, _history_frame, _load_history, _load_resume_state,
                          _open_model_folder, _read_json, _save_final, _save_progress, _save_torch,
                          _tidy_finished, _variant_from_stored, _write_bytes, load_trained, model_ref)
from .train_loop import (_batch_order, _deterministic, _epoch_means, _history_row,  # noqa: F401
                         _prepare_data, _rng_states, _score, _set_rng_states)


def train(config: TrainConfig, data: MerTensors, run_dir: str | Path, *,
          device: str | torch.device = "auto", progress: bool = True, resume: bool = True,
          on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainedModel:
    """Train ``config`` on ``data`` into ``run_dir/models/<variant>/<key>/`` (see module doc).

    The one epoch loop, :func:`mer_lib.trainer.train_replicas`, with one member. Resumes
    from ``state.pt`` when present (``resume=True``); an existing ``model.pt`` is
    overwritten. ``on_epoch_end(epoch, history_row)`` is called after each epoch's state
    has been saved. Use :func:`get_trained` to load instead of retraining.

    Raises:
        DataLayoutError: the data lacks what the variant needs (e.g. mid-level ratings).
        TrainingError: the loss became nan/inf (the message names epoch and batch).
        CheckpointError: the folder holds another configuration.
    """
    hook = None if on_epoch_end is None else (lambda _config, epoch, row: on_epoch_end(epoch, row))
    return train_replicas([config], data, run_dir, device=device, progress=progress, resume=resume,
                          on_epoch_end=hook)[0]


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
