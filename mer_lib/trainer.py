"""The one epoch loop: K >= 1 models of one variant trained together as *replicas*.

:func:`train_replicas` is the only training loop of the library.
:func:`mer_lib.training.train` calls it with one configuration.
:func:`mer_lib.stack_training.train_stack` calls it with K seeds of one variant.
The loop itself is the same in both cases:

- **Replicas.** Each configuration is a member (:mod:`mer_lib.stack_members`). A member is
  seeded and built as a single run of its seed would be. It has its own batch order (its
  seed's generator through :func:`~mer_lib.train_loop._batch_order`), its own dropout stream,
  its own Adam state, early stopping, history and folder.
- **One model or a stack.** One member trains as a plain :class:`~mer_lib.models.MerNet`
  with the objective's :meth:`~mer_lib.objectives.Objective.step`. Its dropout draws from the
  global generator, as it always has. Several members train as one
  :class:`~mer_lib.stack.ModelStack` with the objective's
  :meth:`~mer_lib.objectives.Objective.stack_step`. That needs an objective that declares
  ``stackable = True``, and the trainer itself names no objective. Each member's dropout then
  draws from a generator in the state a single run's global generator would be in.
- **Per-model early stopping.** After each epoch every member is validated and keeps its own
  best state and patience (``keep="last"``, the fine-tunes' rule: its last epoch's weights). A member that is done is saved at once (``model.pt``) and leaves.
  The stack and its Adam state are then rebuilt from the remaining members, so finished
  models neither compute nor update. A member's ``seconds`` is the epoch's time divided by
  the members.
- **Failures.** A member whose loss becomes NaN/inf stops with the message of
  :func:`~mer_lib.train_loop._epoch_means` and the others go on. With one member that
  :class:`~mer_lib.errors.TrainingError` is raised. With several,
  :class:`StackTrainingError` lists the failed seeds, and ``.trained`` holds the others.
- **Files.** Each member is stored in its own folder by the writers of
  :mod:`mer_lib.checkpoints`: ``config.json``, ``state.pt`` after each epoch, ``history.csv``
  and ``model.pt``. A stacked run is therefore indistinguishable from K single runs, and a
  stack resumes from single runs' states and vice versa.

Contract, tested in float64 for every stackable objective of the registry: a K = 3 stack
gives the weights, histories and best epochs of three single runs.

Example:
    >>> from mer_lib.train_config import TrainConfig
    >>> configs = [TrainConfig("a2e", seed, width=0.0625, epochs=2) for seed in (6, 21, 42)]
    >>> check_stackable(configs)[0].seed, can_stack(TrainConfig("expof_a2e", 6))   # every objective stacks
    (6, True)
    >>> # models = train_replicas(configs, data, "runs")        # three TrainedModel
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .attacks.precision import full_float32
from .checkpoints import TrainedModel, _cpu_state_dict, _history_frame, _save_final, _save_progress
from .data import MerTensors
from .errors import TrainingError
from .metrics import predict
from .models import MerNet, Variant, build_model
from .objectives import StepContext, get_objective, make_objective, stackable_objectives
from .runtime import resolve_device
from .stack import ModelStack, StackError
from .stack_members import _build, _Member, _member_optimizer_state, _new_member
from .train_config import TrainConfig
from .train_loop import (_batch_order, _deterministic, _epoch_means, _history_row, _prepare_data,
                         _rng_states, _score, _set_rng_states)

#: ``on_epoch_end(config, epoch, history_row)``, called after a member's epoch is saved.
EpochHook = Callable[[TrainConfig, int, dict], None]


class StackTrainingError(TrainingError):
    """Some members of a stack failed (NaN loss); the others were trained and stored.

    Attributes:
        trained: one entry per configuration: its TrainedModel, or None where it failed.
        failed: ``{seed: message}``.
    """

    def __init__(self, message: str, trained: list, failed: dict[int, str]) -> None:
        super().__init__(message)
        self.trained, self.failed = trained, failed


def can_stack(config: TrainConfig) -> bool:
    """True when the configuration's objective has a stacked step."""
    return get_objective(config.spec.objective).stackable


def check_stackable(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    """The configurations as a list, or :class:`~mer_lib.stack.StackError` if they cannot share a stack."""
    if isinstance(configs, TrainConfig) or not isinstance(configs, (list, tuple)):
        raise StackError(f"configs must be a list of TrainConfig, got {type(configs).__name__}")
    if not configs:
        raise StackError("stack_size must be an integer >= 1, got 0 configurations")
    for i, c in enumerate(configs):
        if not isinstance(c, TrainConfig):
            raise StackError(f"configs[{i}] is a {type(c).__name__}, not a TrainConfig")
    own = ("seed", "init_from")          # each member starts from its own seed's model when fine-tuned
    first = {k: v for k, v in configs[0].to_dict().items() if k not in own}
    for i, c in enumerate(configs[1:], 1):
        other = {k: v for k, v in c.to_dict().items() if k not in own}
        diff = sorted(k for k in first if first[k] != other[k])
        if diff:
            raise StackError(f"configs[{i}] differs from configs[0] in {diff} (a stack's configurations "
                             f"may differ only by seed and by the model each fine-tunes, init_from)")
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise StackError(f"the seeds of a stack must differ, got {seeds}")
    if not can_stack(configs[0]):
        raise StackError(f"variant {configs[0].variant} trains with the objective "
                         f"{configs[0].spec.objective!r}, which has no stacked step "
                         f"(stackable: {stackable_objectives()}); train it with train()")
    return list(configs)


def _validate(model: MerNet, spec: Variant, x: torch.Tensor, y: torch.Tensor,
              m: torch.Tensor | None) -> tuple[float, dict]:
    """Validation score and metrics of one model (see :func:`~mer_lib.train_loop._score`)."""
    e, c = predict(model, x, batch_size=64)
    return _score(spec, e, c, y, m)


@torch.no_grad()
def _predict_stack(stack: ModelStack, x: torch.Tensor, batch_size: int = 64):
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


def _build_single(m: _Member, device, memory_format) -> tuple[MerNet, torch.optim.Optimizer]:
    """One member's model and Adam from its current states; the global RNG set to its run's."""
    cfg = m.config
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.spec, cfg.width)
    model = model.to(device, dtype=torch.get_default_dtype(), memory_format=memory_format)
    model.load_state_dict(m.model_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if m.opt_state is not None:
        optimizer.load_state_dict(m.opt_state)
    _set_rng_states(m.rng_states(device), m.gen, device)    # dropout draws from the global generator
    return model, optimizer


def train_replicas(configs: Sequence[TrainConfig], data: MerTensors, run_dir: str | Path, *,
                   device: str | torch.device = "auto", progress: bool = True, resume: bool = True,
                   on_epoch_end: EpochHook | None = None) -> list[TrainedModel]:
    """Train one configuration, or K that differ only by seed as one stack (see the module doc).

    Returns one :class:`~mer_lib.checkpoints.TrainedModel` per configuration, in order.

    Raises:
        StackError: several configurations that cannot share a stack (:func:`check_stackable`).
        TrainingError: the one member's loss became nan/inf (the message names epoch and batch).
        StackTrainingError: some of several members failed (the others are stored).
        DataLayoutError, CheckpointError: the data lacks what the variant needs; a folder
            holds another configuration.
    """
    configs = list(configs) if len(configs) == 1 else check_stackable(configs)
    stacked = len(configs) > 1
    cfg0, spec = configs[0], configs[0].spec
    objective = make_objective(spec, cfg0.objective_options)
    device = resolve_device(device)
    (x_tr, y_tr, m_tr), (x_va, y_va, m_va) = _prepare_data(data, spec, device)
    if cfg0.bf16 and device.type != "cuda":
        warnings.warn("bf16 autocast is CUDA-only; ignored on CPU (float32)", RuntimeWarning, stacklevel=2)
    use_bf16 = cfg0.bf16 and device.type == "cuda"
    memory_format = torch.channels_last if cfg0.channels_last else torch.contiguous_format
    if not stacked:
        x_tr, x_va = x_tr.contiguous(memory_format=memory_format), x_va.contiguous(memory_format=memory_format)
    n, bs = x_tr.shape[0], cfg0.batch_size
    n_batches = math.ceil(n / bs)
    with _deterministic(device), full_float32(), torch.random.fork_rng(devices=[]):
        members = [_new_member(c, data, run_dir, device, memory_format, resume) for c in configs]
        if len({m.epoch for m in members if m.running}) > 1:
            raise StackError(f"the members resume from different epochs "
                             f"({ {m.config.seed: m.epoch for m in members} }); train them with train()")
        for m in members:
            if not m.running:     # resumed past its end (killed while saving): finish it
                _finish(m, device)
        alive = [m for m in members if m.running]
        name = f"{spec.name} stack of {len(configs)}" if stacked else f"{spec.name} seed {cfg0.seed}"
        bar = tqdm(total=cfg0.epochs, initial=min((m.epoch for m in alive), default=cfg0.epochs), desc=name,
                   unit="epoch", disable=not progress, dynamic_ncols=True)
        try:
            while alive:
                net, optimizer = _build(alive, device, memory_format) if stacked else \
                    _build_single(alive[0], device, memory_format)
                while True:
                    epoch = alive[0].epoch + 1
                    t0 = time.perf_counter()
                    net.train()
                    perms = torch.stack([_batch_order(m.gen, n, device) for m in alive])
                    parts: dict[str, list[tuple[int, torch.Tensor]]] = {c: [] for c in objective.components}
                    for b in range(n_batches):
                        idx = perms[:, b * bs:(b + 1) * bs]
                        for key, value in _step(objective, net, optimizer, alive, epoch, b + 1, use_bf16,
                                                x_tr, y_tr, m_tr, idx if stacked else idx[0]).items():
                            parts[key].append((b + 1, value))
                        net.train()   # an objective must not leave it otherwise; be sure
                    scores = _validate_all(net, spec, alive, x_va, y_va, m_va)
                    seconds = (time.perf_counter() - t0) / len(alive)
                    for k, m in enumerate(alive):
                        _end_epoch(m, k, net, optimizer, epoch, parts, n_batches, scores[k], seconds,
                                   objective.components, device, on_epoch_end)
                    bar.update(1)
                    if not stacked and alive[0].history:
                        bar.set_postfix(loss=f"{alive[0].history[-1]['train_loss']:.4f}",
                                        valid_r=f"{alive[0].history[-1]['valid_r']:.3f}", refresh=False)
                    if any(not m.running for m in alive):
                        for m in alive:
                            if m.error is None and not m.running:
                                _finish(m, device)
                        alive = [m for m in alive if m.running]
                        break
        finally:
            bar.close()

    failed = {m.config.seed: m for m in members if m.error is not None}
    if failed and not stacked:
        raise members[0].exception
    trained = [m.result for m in members]
    if failed:
        first = "; ".join(f"seed {s}: {m.error}" for s, m in failed.items())
        raise StackTrainingError(f"{len(failed)} of {len(members)} models of the {spec.name} stack failed "
                                 f"({first}); the others are stored", trained,
                                 {s: m.error for s, m in failed.items()})
    return trained


def _step(objective, net, optimizer, alive: list[_Member], epoch: int, batch: int, bf16: bool,
          x, y, m, idx) -> dict[str, torch.Tensor]:
    """One optimiser step of the objective on batch ``idx``: ``(K,)`` components."""
    mb = None if m is None else m[idx]
    config = alive[0].config
    if isinstance(net, ModelStack):
        ctx = StepContext(net, config.spec, optimizer, config, epoch, batch, {}, bf16,
                          states=[a.loss_state for a in alive], configs=[a.config for a in alive])
        return objective.stack_step(ctx, x[idx], y[idx], mb)
    ctx = StepContext(net, config.spec, optimizer, config, epoch, batch, alive[0].loss_state, bf16)
    return {key: value.reshape(1) for key, value in objective.step(ctx, x[idx], y[idx], mb).items()}


def _validate_all(net, spec: Variant, alive: list[_Member], x, y, m) -> list[tuple[float, dict]]:
    """Each member's validation ``(score, metrics)``: one stacked pass, or :func:`_validate`."""
    if not isinstance(net, ModelStack):
        return [_validate(net, spec, x, y, m)]
    es, cs = _predict_stack(net, x)
    return [_score(spec, es[k], cs[k], y, m) for k in range(len(alive))]


def _end_epoch(m: _Member, k: int, net, optimizer, epoch, parts, n_batches, validation, seconds,
               components, device, on_epoch_end: EpochHook | None) -> None:
    """Member ``k``'s epoch: means, early stopping, ``state.pt``, history and the hook."""
    own = {name: [(b, v[k]) for b, v in pairs] for name, pairs in parts.items()}
    m.epoch = epoch
    try:
        means = _epoch_means(own, m.config, epoch, n_batches)
    except TrainingError as exc:
        m.error, m.exception = str(exc), exc
        return
    score, metrics = validation
    stacked = isinstance(net, ModelStack)
    state = net.member_state_dict(k) if stacked else _cpu_state_dict(net)
    improved = math.isfinite(score) and score > m.best_score
    if improved:
        m.best_score, m.best_epoch, m.bad = score, epoch, 0
        m.best_state = state
    else:
        m.bad += 1
    row = _history_row(epoch, means, score, metrics, m.config.is_adversarial_epoch(epoch), improved, seconds)
    m.history.append(row)
    m.model_state = state
    m.opt_state = _member_optimizer_state(net, optimizer, k) if stacked else optimizer.state_dict()
    rng = m.rng_states(device) if stacked else _rng_states(m.gen, device)
    if not stacked:
        m.rng = rng
    _save_progress(m.folder, m.identity, epoch, m.model_state, m.opt_state, m.best_state, m.best_score,
                   m.best_epoch, m.bad, m.history, m.loss_state, rng, components)
    if on_epoch_end is not None:
        on_epoch_end(m.config, epoch, row)


def _finish(m: _Member, device) -> None:
    """Save a member that is done (``model.pt``) and keep its TrainedModel."""
    cfg = m.config
    components = make_objective(cfg.spec, cfg.objective_options).components
    if cfg.keep == "last" and m.history:
        m.best_state, m.best_epoch, m.best_score = m.model_state, int(m.history[-1]["epoch"]), \
            m.history[-1]["valid_score"]
    if m.best_state is None:
        warnings.warn(f"{cfg.variant} seed {cfg.seed}: the validation score was never finite; "
                      f"keeping the last weights", RuntimeWarning, stacklevel=3)
        m.best_state, m.best_epoch = m.model_state, m.epoch
    _save_final(m.folder, m.identity, m.key, m.best_state, m.best_epoch, m.best_score, m.history, components)
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.spec, cfg.width).to(device, dtype=torch.get_default_dtype())
    model.load_state_dict(m.best_state)
    m.result = TrainedModel(model.eval(), cfg, m.key, m.folder, _history_frame(m.history, components),
                            trained_now=True)


__all__ = ["train_replicas", "can_stack", "check_stackable", "StackTrainingError", "EpochHook"]
