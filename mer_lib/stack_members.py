"""The members of a training stack: each one's bookkeeping and the stack's shared Adam state.

Used by the one epoch loop, :func:`mer_lib.trainer.train_replicas` (see its module docstring):

- ``_Member``: one configuration of the stack — its folder and identity, its batch-order and
  dropout generators (those a single run of its seed would hold), its model, optimiser and
  early-stopping state and its history; ``_new_member`` seeds and builds it exactly as
  :func:`mer_lib.training.train` does and resumes it from its ``state.pt``.
- ``_build``: a :class:`~mer_lib.stack.ModelStack` and one Adam over it from the members'
  current states (their single-model Adam states stacked, so the stack takes K separate
  Adam steps); ``_member_optimizer_state`` splits it back into one member's
  ``torch.optim.Adam.state_dict()``, so its ``state.pt`` is that of a single run.

Example:
    >>> import torch
    >>> from pathlib import Path
    >>> from mer_lib.models import build_model
    >>> from mer_lib.stack_members import _Member, _build, _member_optimizer_state
    >>> from mer_lib.train_config import TrainConfig
    >>> configs = [TrainConfig("a2e", seed, width=0.0625) for seed in (6, 21)]
    >>> members = [_Member(c, {}, "", Path("."), torch.Generator(), torch.Generator(), {},
    ...                    build_model(c.spec, c.width).state_dict()) for c in configs]
    >>> stack, optimizer = _build(members, torch.device("cpu"), torch.contiguous_format)
    >>> stack.k, _member_optimizer_state(stack, optimizer, 1)["state"]     # no step taken yet
    (2, {})
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoints import _cpu_state_dict, _initialise_from, _load_resume_state, _open_model_folder
from .models import build_model
from .train_config import TrainConfig
from .train_loop import _rng_states
from .runtime import seed_everything
from .stack import ModelStack, StackError


# --------------------------------------------------------------------------------------
# One member's bookkeeping
# --------------------------------------------------------------------------------------

@dataclass
class _Member:
    config: TrainConfig
    identity: dict
    key: str
    folder: Path
    gen: torch.Generator              # batch order
    drop: torch.Generator             # dropout masks (the single run's global generator)
    rng: dict                         # the single run's saved rng entries (numpy, python, ...)
    model_state: dict
    opt_state: dict | None = None
    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    bad: int = 0
    best_state: dict | None = None
    history: list = field(default_factory=list)
    loss_state: dict = field(default_factory=dict)
    error: str | None = None
    exception: Exception | None = None   # the TrainingError behind ``error``
    result: object = None

    def rng_states(self, device: torch.device) -> dict:
        out = dict(self.rng)
        out["batches"] = self.gen.get_state()
        if device.type == "cuda":
            out["cuda"] = [self.drop.get_state()]
        else:
            out["torch"] = self.drop.get_state()
        return out

    @property
    def running(self) -> bool:
        return self.error is None and self.result is None and \
            self.epoch < self.config.epochs and self.bad < self.config.patience


def _new_member(config, data, run_dir, device, memory_format, resume: bool) -> _Member:
    identity, key, folder = _open_model_folder(config, data, run_dir)
    gen = seed_everything(config.seed)
    model = build_model(config.spec, config.width).to(device, memory_format=memory_format)
    if config.init_from is not None:
        _initialise_from(model, Path(run_dir), config)
    rng = _rng_states(gen, device)
    drop = torch.Generator(device=device)
    drop.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    member = _Member(config, identity, key, folder, gen, drop, rng, _cpu_state_dict(model))
    saved = _load_resume_state(folder, identity) if resume else None
    if saved is not None:
        member.model_state, member.opt_state = saved["model"], saved["optimizer"]
        member.best_state = saved["best_state"]
        member.epoch, member.best_score, member.best_epoch, member.bad = (
            saved["epoch"], saved["best_score"], saved["best_epoch"], saved["bad_epochs"])
        member.history, member.loss_state = saved["history"], saved["loss_state"]
        rng = saved["rng"]
        member.rng = rng
        gen.set_state(rng["batches"])
        drop.set_state(rng["cuda"][0] if device.type == "cuda" else rng["torch"])
    return member


# --------------------------------------------------------------------------------------
# Stacks of members and their Adam state
# --------------------------------------------------------------------------------------

def _build(members: list[_Member], device, memory_format) -> tuple[ModelStack, torch.optim.Optimizer]:
    """A stack and one Adam over it from the members' current model and optimiser states."""
    cfg = members[0].config
    with torch.random.fork_rng(devices=[]):
        template = build_model(cfg.spec, cfg.width)
    stack = ModelStack(template, len(members)).to(device, dtype=torch.get_default_dtype())
    stack.load_members([m.model_state for m in members])
    stack = stack.to(memory_format=memory_format)
    stack.generators = [m.drop for m in members]
    optimizer = torch.optim.Adam(stack.parameters(), lr=cfg.lr)
    states = [m.opt_state for m in members]
    if any(s is not None and s["state"] for s in states):
        if not all(s is not None and s["state"] for s in states):
            raise StackError("some members of the stack have taken optimiser steps and others not; "
                             "resume them with train() or from the same epoch")
        own = optimizer.state_dict()
        stacked = {}
        for i, (name, p) in enumerate(stack.named_parameters()):
            per = [s["state"][i] for s in states]
            steps = {float(e["step"]) for e in per}
            if len(steps) != 1:
                raise StackError(f"the members took different numbers of Adam steps ({sorted(steps)}); "
                                 f"they cannot share a stack")
            stacked[i] = {"step": per[0]["step"].clone(),
                          **{key: torch.stack([e[key] for e in per]).reshape(p.shape).to(p.device, p.dtype)
                             for key in ("exp_avg", "exp_avg_sq")}}
        optimizer.load_state_dict({"state": stacked, "param_groups": own["param_groups"]})
    return stack, optimizer


def _member_optimizer_state(stack: ModelStack, optimizer: torch.optim.Optimizer, k: int) -> dict:
    """Member ``k``'s Adam state in the single-model format (``torch.optim.Adam.state_dict()``)."""
    sd = optimizer.state_dict()
    state = {}
    for i, (name, _) in enumerate(stack.named_parameters()):
        if i not in sd["state"]:
            continue
        e = sd["state"][i]
        shape = stack._shapes[name]
        state[i] = {"step": e["step"].detach().cpu().clone(),
                    **{key: e[key].reshape(stack.k, *shape)[k].detach().to("cpu", copy=True).contiguous()
                       for key in ("exp_avg", "exp_avg_sq")}}
    return {"state": state, "param_groups": [dict(g) for g in sd["param_groups"]]}
