"""Stacked training: K seeds of one variant trained as one :class:`~mer_lib.stack.ModelStack`.

:func:`train_stack` trains K :class:`~mer_lib.training.TrainConfig` that differ only by
their seed and gives what K calls of :func:`mer_lib.training.train` give — the same weights,
histories and best epochs (up to float rounding; the CPU float64 test asks for 1e-10) — in
one network pass per batch:

- **Order and randomness.** Member k is seeded and built exactly as ``train`` builds seed k;
  its batches come from its own seed's batch generator through the same
  :func:`~mer_lib.training._batch_order`, and its dropout masks from a generator holding
  the global random state a single run would have (so it draws the same masks).
- **Steps.** ``"mse"`` (A2E, A2B2E, A2M2E): one stacked forward pass, each member's loss
  by :func:`mer_lib.objectives.task_loss`, the sum backpropagated (each member gets exactly
  its own gradient) and one Adam step over the stacked parameters — Adam is elementwise and
  all members of a stack have taken the same number of steps, so this is K separate Adams.
  ``"adversarial"`` (aA2E, aA2B2E): the same clean step, then in adversarial epochs the
  attack of all members in one pass (:func:`~mer_lib.attacks.stacked.stacked_attack`, per-member
  per-example stopping, under :func:`~mer_lib.models.frozen_normalisation`) and the step on
  the adversarial batches. Other objectives (ExpO, RAR) have no stacked step:
  :func:`can_stack` says so and the runner trains them one by one.
- **Per-model early stopping.** After each epoch every member is validated (one stacked
  pass), keeps its own best state and patience; a member that is done is saved at once
  (``model.pt``) and leaves the stack: the stack and its Adam state are rebuilt from the
  remaining members (so finished models neither compute nor update).
- **History.** A member's ``seconds`` is the stack's epoch time divided by the members.
- **Failures.** A member whose loss becomes NaN/inf is reported by its seed with the
  message ``train`` would give and stops; the others go on. At the end
  :class:`StackTrainingError` lists the failed seeds (``.trained`` holds the others).
- **Files.** Every member is stored in its ordinary folder by the trainer's own writers
  (``config.json``, ``state.pt`` after each epoch, ``history.csv``, ``model.pt``), so
  :func:`~mer_lib.training.load_trained` / :func:`~mer_lib.training.get_trained` find it and a
  stacked run is indistinguishable from K single runs; the ``state.pt`` of a member is
  that of a single run (a stack resumes from single runs' states and vice versa, as long as
  the members are at the same epoch).

The members' bookkeeping and the stack's Adam state are in :mod:`mer_lib.stack_members`.

Example:
    >>> from mer_lib.training import TrainConfig
    >>> configs = [TrainConfig("a2e", seed, width=0.0625, epochs=2) for seed in (6, 21, 42)]
    >>> check_stackable(configs)[0].seed
    6
    >>> # models = train_stack(configs, data, "runs")          # three TrainedModel
"""
from __future__ import annotations

import math
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import training as T
from .attacks import AttackConfig
from .attacks.precision import full_float32
from .data import MerTensors
from .errors import TrainingError
from .locks import work_lock
from .models import build_model, frozen_normalisation
from .objectives import make_objective, task_loss
from .runtime import resolve_device
from .attacks.stacked import stacked_attack
from .stack import ModelStack, StackError
from .stack_members import _build, _Member, _member_optimizer_state, _new_member

#: Objectives with a stacked step; the others train one model at a time.
STACKABLE_OBJECTIVES = ("mse", "adversarial")


class StackTrainingError(TrainingError):
    """Some members of a stack failed (NaN loss); the others were trained and stored.

    Attributes:
        trained: one entry per configuration: its TrainedModel, or None where it failed.
        failed: ``{seed: message}``.
    """

    def __init__(self, message: str, trained: list, failed: dict[int, str]) -> None:
        super().__init__(message)
        self.trained, self.failed = trained, failed


def can_stack(config: T.TrainConfig) -> bool:
    """True when the configuration's objective has a stacked step (plain or adversarial)."""
    return config.spec.objective in STACKABLE_OBJECTIVES and config.keep == "best"


def check_stackable(configs: Sequence[T.TrainConfig]) -> list[T.TrainConfig]:
    """The configurations as a list, or :class:`~mer_lib.stack.StackError` if they cannot share a stack."""
    if isinstance(configs, T.TrainConfig) or not isinstance(configs, (list, tuple)):
        raise StackError(f"configs must be a list of TrainConfig, got {type(configs).__name__}")
    if not configs:
        raise StackError("stack_size must be an integer >= 1, got 0 configurations")
    for i, c in enumerate(configs):
        if not isinstance(c, T.TrainConfig):
            raise StackError(f"configs[{i}] is a {type(c).__name__}, not a TrainConfig")
    first = {k: v for k, v in configs[0].to_dict().items() if k != "seed"}
    for i, c in enumerate(configs[1:], 1):
        other = {k: v for k, v in c.to_dict().items() if k != "seed"}
        diff = sorted(k for k in first if first[k] != other[k])
        if diff:
            raise StackError(f"configs[{i}] differs from configs[0] in {diff} (a stack's configurations "
                             f"may differ only by seed)")
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise StackError(f"the seeds of a stack must differ, got {seeds}")
    if configs[0].keep != "best":
        raise StackError(f"a stack keeps each model's best-validation weights; keep={configs[0].keep!r} "
                         f"is not stackable, train it with train()")
    if not can_stack(configs[0]):
        raise StackError(f"variant {configs[0].variant} trains with the objective "
                         f"{configs[0].spec.objective!r}, which has no stacked step "
                         f"(stackable: {list(STACKABLE_OBJECTIVES)}); train it with train()")
    return list(configs)


# --------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------

class _Outputs:
    """Precomputed outputs that look like a model to :func:`mer_lib.objectives.task_loss`."""

    def __init__(self, emotions, concepts) -> None:
        self.outputs = (emotions, concepts)

    def forward_all(self, x):
        return self.outputs


def _descend(stack: ModelStack, optimizer, spec, x, y, m, bf16: bool) -> torch.Tensor:
    """Each member's task loss on its batch, one backward pass of their sum, one Adam step; ``(K,)`` losses."""
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
        e, c = stack.forward_all(x)
        losses = torch.stack([
            task_loss(_Outputs(e[k], None if c is None else c[k]), spec, x[k], y[k], None if m is None else m[k])
            for k in range(stack.k)])
    optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    optimizer.step()
    return losses.detach()


def _step(stack, optimizer, config: T.TrainConfig, epoch: int, x, y, m, bf16: bool) -> dict[str, torch.Tensor]:
    """One stacked step of the configuration's objective; components as ``(K,)`` tensors."""
    spec = config.spec
    parts = {"train_loss": _descend(stack, optimizer, spec, x, y, m, bf16)}
    if spec.objective == "adversarial" and config.is_adversarial_epoch(epoch):
        with frozen_normalisation(stack):
            results = stacked_attack(stack, x, y, AttackConfig.from_dict(config.adv_attack))
        x_adv = torch.stack([T.adversarial_input(r, config.adv_input) for r in results]).view_as(x)
        parts["adv_loss"] = _descend(stack, optimizer, spec, x_adv, y, m, bf16)
    stack.train()
    return parts


@torch.no_grad()
def _predict(stack: ModelStack, x: torch.Tensor, batch_size: int = 64):
    """Every member's predictions on a shared ``x``: lists of float32 numpy arrays (as :func:`~mer_lib.metrics.predict`)."""
    was = stack.training
    stack.eval()
    es, cs = [], []
    try:
        with full_float32():
            for lo in range(0, x.shape[0], batch_size):
                e, c = stack.forward_all(x[lo:lo + batch_size])
                es.append(e.float().cpu())
                if c is not None:
                    cs.append(c.float().cpu())
    finally:
        stack.train(was)
    e = torch.cat(es, dim=1)
    c = torch.cat(cs, dim=1) if cs else None
    return [e[k].numpy() for k in range(stack.k)], [None if c is None else c[k].numpy() for k in range(stack.k)]


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------

def train_stack(configs: Sequence[T.TrainConfig], data: MerTensors, run_dir: str | Path, *,
                device: str | torch.device = "auto", progress: bool = True, resume: bool = True,
                on_epoch_end: Callable[[T.TrainConfig, int, dict], None] | None = None) -> list[T.TrainedModel]:
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
    cfg0, spec = configs[0], configs[0].spec
    components = make_objective(spec, cfg0.objective_options).components
    device = resolve_device(device)
    (x_tr, y_tr, m_tr), (x_va, y_va, m_va) = T._prepare_data(data, spec, device)
    on_cuda = device.type == "cuda"
    if cfg0.bf16 and not on_cuda:
        warnings.warn("bf16 autocast is CUDA-only; ignored on CPU (float32)", RuntimeWarning, stacklevel=2)
    use_bf16 = cfg0.bf16 and on_cuda
    memory_format = torch.channels_last if cfg0.channels_last else torch.contiguous_format
    with T._deterministic(device), full_float32(), torch.random.fork_rng(devices=[]):
        members = [_new_member(c, data, run_dir, device, memory_format, resume) for c in configs]
        epochs = {m.epoch for m in members if m.running}
        if len(epochs) > 1:
            raise StackError(f"the members resume from different epochs "
                             f"({ {m.config.seed: m.epoch for m in members} }); train them with train()")
        for m in members:
            if not m.running:     # resumed past its end (killed while saving): finish it
                _finish(m, device)
        n, bs = x_tr.shape[0], cfg0.batch_size
        n_batches = math.ceil(n / bs)
        alive = [m for m in members if m.running]
        bar = tqdm(total=cfg0.epochs, initial=min((m.epoch for m in alive), default=cfg0.epochs),
                   desc=f"{spec.name} stack of {len(configs)}", unit="epoch", disable=not progress,
                   dynamic_ncols=True)
        try:
            while alive:
                stack, optimizer = _build(alive, device, memory_format)
                while True:
                    epoch = alive[0].epoch + 1
                    t0 = time.perf_counter()
                    stack.train()
                    perms = torch.stack([T._batch_order(m.gen, n, device) for m in alive])
                    parts: dict[str, list[tuple[int, torch.Tensor]]] = {c: [] for c in components}
                    for b in range(n_batches):
                        idx = perms[:, b * bs:(b + 1) * bs]
                        mb = None if m_tr is None else m_tr[idx]
                        for name, value in _step(stack, optimizer, cfg0, epoch, x_tr[idx], y_tr[idx], mb,
                                                 use_bf16).items():
                            parts[name].append((b + 1, value))
                    e_va, c_va = _predict(stack, x_va)
                    seconds = (time.perf_counter() - t0) / len(alive)
                    for k, m in enumerate(alive):
                        _end_epoch(m, k, stack, optimizer, epoch, parts, n_batches, e_va[k], c_va[k],
                                   (y_va, m_va), seconds, components, device, on_epoch_end)
                    bar.update(1)
                    if any(not m.running for m in alive):
                        for m in alive:
                            if m.error is None and not m.running:
                                _finish(m, device)
                        alive = [m for m in alive if m.running]
                        break
        finally:
            bar.close()

    failed = {m.config.seed: m.error for m in members if m.error is not None}
    trained = [m.result for m in members]
    if failed:
        first = "; ".join(f"seed {s}: {msg}" for s, msg in failed.items())
        raise StackTrainingError(f"{len(failed)} of {len(members)} models of the {spec.name} stack failed "
                                 f"({first}); the others are stored", trained, failed)
    return trained


def _end_epoch(m: _Member, k: int, stack, optimizer, epoch, parts, n_batches, e, c, valid, seconds,
               components, device, on_epoch_end) -> None:
    """Member ``k``'s epoch: means, validation, early stopping, state.pt and history (as train())."""
    own = {name: [(b, v[k]) for b, v in pairs] for name, pairs in parts.items()}
    m.epoch = epoch
    try:
        means = T._epoch_means(own, m.config, epoch, n_batches)
    except TrainingError as exc:
        m.error = str(exc)
        return
    score, metrics = T._score(m.config.spec, e, c, *valid)
    improved = math.isfinite(score) and score > m.best_score
    if improved:
        m.best_score, m.best_epoch, m.bad = score, epoch, 0
        m.best_state = stack.member_state_dict(k)
    else:
        m.bad += 1
    row = T._history_row(epoch, means, score, metrics, m.config.is_adversarial_epoch(epoch), improved, seconds)
    m.history.append(row)
    m.model_state = stack.member_state_dict(k)
    m.opt_state = _member_optimizer_state(stack, optimizer, k)
    T._save_progress(m.folder, m.identity, epoch, m.model_state, m.opt_state, m.best_state, m.best_score,
                     m.best_epoch, m.bad, m.history, m.loss_state, m.rng_states(device), components)
    if on_epoch_end is not None:
        on_epoch_end(m.config, epoch, row)


def _finish(m: _Member, device) -> None:
    """Save a member that is done (``model.pt``) and keep its TrainedModel."""
    cfg = m.config
    components = make_objective(cfg.spec, cfg.objective_options).components
    if m.best_state is None:
        warnings.warn(f"{cfg.variant} seed {cfg.seed}: the validation score was never finite; "
                      f"keeping the last weights", RuntimeWarning, stacklevel=3)
        m.best_state, m.best_epoch = m.model_state, m.epoch
    T._save_final(m.folder, m.identity, m.key, m.best_state, m.best_epoch, m.best_score, m.history, components)
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.spec, cfg.width).to(device, dtype=torch.get_default_dtype())
    model.load_state_dict(m.best_state)
    m.result = T.TrainedModel(model.eval(), cfg, m.key, m.folder, T._history_frame(m.history, components),
                              trained_now=True)


def get_trained_stack(variant: str, seeds: Sequence[int], data: MerTensors, profile, run_dir: str | Path, *,
                      device: str | torch.device = "auto", progress: bool = True,
                      on_epoch_end: Callable[[T.TrainConfig, int, dict], None] | None = None,
                      **overrides) -> list[T.TrainedModel]:
    """:func:`~mer_lib.training.get_trained` for several seeds: stored ones loaded, the rest trained as one stack.

    Holds every missing model's ``train.lock`` while training (other processes asking for
    one of them wait and then load it). Configurations that cannot be stacked, and models
    whose resume state (``state.pt``) is at another epoch than the others' (a stack steps its
    members together), are trained one by one with :func:`~mer_lib.training.train`.
    """
    configs = [T.TrainConfig.from_profile(profile, variant, s, **overrides) for s in seeds]
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


__all__ = ["train_stack", "get_trained_stack", "check_stackable", "can_stack", "StackTrainingError",
           "STACKABLE_OBJECTIVES"]
