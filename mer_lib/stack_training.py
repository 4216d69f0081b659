"""Stacked training: K seeds of one variant trained as one :class:`~mer_lib.stack.ModelStack`.

:func:`train_stack` trains K :class:`~mer_lib.training.TrainConfig` that differ only by
their seed. It gives what K calls of :func:`mer_lib.training.train` give: the same weights,
histories and best epochs, up to float rounding (the CPU float64 test asks for 1e-10), in one
network pass per batch. Both go through the one epoch loop,
:func:`mer_lib.trainer.train_replicas` (its docstring says how order, randomness, early
stopping, failures and files work for a stack). A variant stacks when its objective declares
a stacked step (``Objective.stackable``; every objective of the library has one).

:func:`get_trained_stack` is :func:`~mer_lib.training.get_trained` for several seeds: stored
models are loaded and the missing ones trained as one stack.

Example:
    >>> from mer_lib.training import TrainConfig
    >>> configs = [TrainConfig("a2e", seed, width=0.0625, epochs=2) for seed in (6, 21, 42)]
    >>> check_stackable(configs)[0].seed
    6
    >>> # models = train_stack(configs, data, "runs")          # three TrainedModel
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import torch

from . import training as T
from .data import MerTensors
from .errors import TrainingError
from .locks import work_lock
from .objectives import stackable_objectives
from .trainer import EpochHook, StackTrainingError, can_stack, check_stackable, train_replicas


def train_stack(configs: Sequence[T.TrainConfig], data: MerTensors, run_dir: str | Path, *,
                device: str | torch.device = "auto", progress: bool = True, resume: bool = True,
                on_epoch_end: EpochHook | None = None) -> list[T.TrainedModel]:
    """Train K configurations differing only by seed as one stack (see the module docstring).

    Returns one :class:`~mer_lib.training.TrainedModel` per configuration, in order.
    ``on_epoch_end(config, epoch, history_row)`` is called after each member's epoch has
    been saved.

    Raises:
        StackError: the configurations cannot share a stack (see :func:`check_stackable`).
        StackTrainingError: some members' losses became nan/inf (the others are stored).
        DataLayoutError, CheckpointError: as :func:`~mer_lib.training.train`.
    """
    configs = check_stackable(configs)
    if len(configs) == 1:        # one model trains as a plain model; its failure still names the stack
        try:
            return train_replicas(configs, data, run_dir, device=device, progress=progress, resume=resume,
                                  on_epoch_end=on_epoch_end)
        except TrainingError as exc:
            raise StackTrainingError(f"1 of 1 models of the {configs[0].spec.name} stack failed "
                                     f"(seed {configs[0].seed}: {exc}); the others are stored", [None],
                                     {configs[0].seed: str(exc)}) from exc
    return train_replicas(configs, data, run_dir, device=device, progress=progress, resume=resume,
                          on_epoch_end=on_epoch_end)


def get_trained_stack(variant: str, seeds: Sequence[int], data: MerTensors, profile, run_dir: str | Path, *,
                      device: str | torch.device = "auto", progress: bool = True,
                      on_epoch_end: EpochHook | None = None, **overrides) -> list[T.TrainedModel]:
    """:func:`~mer_lib.training.get_trained` for several seeds: stored ones loaded, the rest trained as one stack.

    The configurations are the profile's with ``overrides``; see :func:`get_trained_configs`.
    """
    configs = [T.TrainConfig.from_profile(profile, variant, s, **overrides) for s in seeds]
    return get_trained_configs(configs, data, run_dir, device=device, progress=progress, on_epoch_end=on_epoch_end)


def get_trained_configs(configs: Sequence[T.TrainConfig], data: MerTensors, run_dir: str | Path, *,
                        device: str | torch.device = "auto", progress: bool = True,
                        on_epoch_end: EpochHook | None = None) -> list[T.TrainedModel]:
    """The models of ``configs`` (one variant; they may differ by seed and ``init_from``): stored
    ones loaded, the rest trained as one stack.

    Holds every missing model's ``train.lock`` while training (other processes asking for
    one of them wait and then load it). Configurations that cannot be stacked, and models
    whose resume state (``state.pt``) is at another epoch than the others' (a stack steps its
    members together), are trained one by one with :func:`~mer_lib.training.train`.
    """
    configs = list(configs)
    variant = configs[0].variant
    dirs = [T.model_dir(run_dir, c, data) for c in configs]
    todo = [i for i, d in enumerate(dirs) if not (d / "model.pt").is_file()]
    for i, d in enumerate(dirs):
        if i not in todo:
            T._tidy_finished(d)       # a kill after model.pt: no state.pt or temporaries left
    out: list = [None] * len(configs)
    failed: dict[int, str] = {}
    if todo:
        with ExitStack() as locks:
            for i in todo:
                locks.enter_context(work_lock(dirs[i] / "train.lock",
                                              what=f"model {variant} seed {configs[i].seed} ({dirs[i].name})"))
            for i in todo:
                if (dirs[i] / "model.pt").is_file():     # finished while we waited
                    T._tidy_finished(dirs[i], locked=True)
            todo = [i for i in todo if not (dirs[i] / "model.pt").is_file()]
            if todo and can_stack(configs[0]):
                by_epoch: dict[int, list[int]] = {}
                for i in todo:
                    by_epoch.setdefault(_resume_epoch(dirs[i], T.run_identity(configs[i], data)), []).append(i)
                stacked = max(by_epoch.values(), key=len)
                if len(stacked) > 1:
                    try:
                        models = train_stack([configs[i] for i in stacked], data, run_dir, device=device,
                                             progress=progress, on_epoch_end=on_epoch_end)
                    except StackTrainingError as exc:     # train the others, then report
                        models, failed = exc.trained, exc.failed
                    for i, tm in zip(stacked, models):
                        out[i] = tm
                    todo = [i for i in todo if i not in stacked]
            if todo:
                for i in todo:
                    hook = None if on_epoch_end is None else (lambda e, r, c=configs[i]: on_epoch_end(c, e, r))
                    out[i] = T.train(configs[i], data, run_dir, device=device, progress=progress, on_epoch_end=hook)
    for i, d in enumerate(dirs):
        if out[i] is None and configs[i].seed not in failed:
            out[i] = T.load_trained(d, device=device, expected=T.run_identity(configs[i], data))
    if failed:
        raise StackTrainingError(f"{len(failed)} of {len(configs)} {variant} models failed ("
                                 + "; ".join(f"seed {s}: {m}" for s, m in failed.items()) + ")", out, failed)
    return out


def _resume_epoch(folder: Path, identity: dict) -> int:
    """The epoch a model folder's ``state.pt`` resumes from (0 when there is none).

    The state is checked as :func:`~mer_lib.training.train` checks it: a damaged one, or one of
    another configuration, is renamed to ``state.pt.corrupt`` with a warning (and the model
    starts afresh), so that the members grouped by this epoch resume from it.
    """
    if not (folder / "state.pt").is_file():
        return 0
    state = T._load_resume_state(folder, identity)
    return 0 if state is None else int(state["epoch"])


__all__ = ["train_stack", "get_trained_stack", "get_trained_configs", "check_stackable", "can_stack", "StackTrainingError",
           "stackable_objectives"]
