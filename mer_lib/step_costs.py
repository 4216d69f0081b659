"""The training cost of each system: its own training step timed beside a reference system's.

Training cost is better compared in one process than from recorded histories (models trained
at different times share the machine with different neighbours). :func:`step_costs` times each
system's training step now, on the same batch, as the fastest of a few repeats, together with
the reference system's step (A2E) in the same session, and gives the cost of an average
epoch's step relative to the reference.

With a run store, each model's times are a stored measurement (``<run_dir>/step_costs/<model
key>/<key>/``, :func:`cost_identity`): timed once, then read by every page that shows them. The
runner plans them as :class:`~mer_lib.jobs.CostJob` s (one per system the chapters compare,
:func:`mer_lib.planning.cost_jobs`), runs them after every other job and never beside one (a
timing taken while other jobs run measures them too), so after ``python -m mer_lib run`` the
chapters only read. The times describe the machine that ran the job.

Example:
    >>> identity = cost_identity("m1", "a2e-key", COST_REPEATS, "cpu")
    >>> identity["measurement"], identity["repeats"], cost_folder("runs", identity).parent
    ('step_seconds', 5, PosixPath('runs/step_costs/m1'))
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import pandas as pd
import torch

from .comparison import model_list
from .errors import ParameterError
from .locks import work_lock
from .models import get_variant
from .objectives.base import StepContext, make_objective
from .store import is_stored, load_table, table_dir, write_table

#: Timed repeats of each system's training step (the chapters' cost tables).
COST_REPEATS = 5
#: The system every cost is relative to.
REFERENCE = "a2e"
#: The store's folder of the step timings (``<run_dir>/step_costs/<model key>/<key>/``).
COST_FOLDER = "step_costs"
#: The stored measurement's version: bump it when the timing changes (stored times are taken again).
COST_VERSION = 3


def cost_identity(model_key: str, reference_key: str | None, repeats: int, device: str) -> dict:
    """What one model's stored step times depend on (the model key covers its batch size)."""
    return {"measurement": "step_seconds", "version": COST_VERSION, "model": model_key, "repeats": repeats,
            "device": device, "reference": reference_key}


def cost_folder(run_dir: str | Path, identity: dict) -> Path:
    """Where one model's step times are stored."""
    return table_dir(run_dir, COST_FOLDER, identity["model"], identity)


def step_costs(models, data, *, reference: str = REFERENCE, repeats: int = COST_REPEATS,
               run_dir: str | Path | None = None) -> pd.DataFrame:
    """Each system's training step timed (one model per variant: the first given).

    For every variant, a copy of its model (the stored one is untouched) takes one warm-up
    step and then ``repeats`` timed steps of its own objective (:mod:`mer_lib.objectives`) on
    the same training batch (the first ``batch_size`` training clips); the step time is the
    fastest repeat. The repeats run in rounds, one step of every system per round, so that
    a burst of load from other processes slows one round of all systems rather than all
    repeats of one. Adversarial systems are timed in a plain and in an adversarial epoch,
    and their average step weights them as their epochs do (one adversarial epoch in ``adv_every``).

    With a ``run_dir`` (the run store), each model's times are stored the first time they are
    measured, together with the reference's step time *of the same session*, and read back
    afterwards: every page shows the same number, and a cost is always a ratio of two steps
    timed side by side. Only the models not yet timed are timed (with the reference, in rounds).

    Returns one row per variant (index): ``system``, ``step_seconds`` (plain epoch),
    ``adversarial_step_seconds`` (NaN if not adversarial), ``mean_step_seconds`` and
    ``epoch_cost`` = ``mean_step_seconds`` / that of ``reference`` (NaN when it is absent).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ParameterError(f"repeats must be an integer >= 1, got {repeats!r}")
    first = {}
    for m in model_list(models):
        first.setdefault(m.config.variant, m)
    if run_dir is None:
        times = _time_steps(first, data, repeats)
        ref = _mean_step(first[reference], *times[reference]) if reference in first else float("nan")
        sessions = {v: (*t, ref) for v, t in times.items()}
    else:
        sessions = _stored_step_times(first, data, repeats, run_dir, reference)
    rows = []
    for variant, m in first.items():
        plain, adv, ref = sessions[variant]
        mean = _mean_step(m, plain, adv)
        rows.append({"variant": variant, "system": get_variant(variant).label, "step_seconds": plain,
                     "adversarial_step_seconds": adv, "mean_step_seconds": mean, "epoch_cost": mean / ref})
    return pd.DataFrame(rows).set_index("variant")


def _mean_step(model, plain: float, adv: float) -> float:
    """The average step of an epoch: adversarial systems run one adversarial epoch in ``adv_every``."""
    every = model.config.adv_every
    return plain if not get_variant(model.config.variant).adversarial else ((every - 1) * plain + adv) / every


def _stored_step_times(first: dict, data, repeats: int, run_dir, reference: str) -> dict:
    """``{variant: (plain, adversarial, reference's mean step of the same session)}``: read from the
    store, the missing models timed (with the reference) and stored first."""
    ref_model = first.get(reference)

    def folder(m):
        device = next(m.model.parameters()).device.type
        identity = cost_identity(m.key, None if ref_model is None else ref_model.key, repeats, device)
        return cost_folder(run_dir, identity), identity

    def stored(variant):
        where, identity = folder(first[variant])
        if not is_stored(where):
            return None
        row = load_table(where, identity).iloc[0]
        return float(row.step_seconds), float(row.adversarial_step_seconds), float(row.reference_step_seconds)

    times = {v: stored(v) for v in first}
    if any(t is None for t in times.values()):
        with work_lock(Path(run_dir) / COST_FOLDER / "timing.lock", what="step timing"):
            missing = [v for v in first if stored(v) is None]     # another worker may have timed some
            session = [*missing, *([reference] if ref_model is not None and reference not in missing else [])]
            measured = _time_steps({v: first[v] for v in session}, data, repeats)
            ref = _mean_step(ref_model, *measured[reference]) if ref_model is not None else float("nan")
            for v in missing:
                plain, adv = measured[v]
                where, identity = folder(first[v])
                write_table(where, pd.DataFrame({"step_seconds": [plain], "adversarial_step_seconds": [adv],
                                                 "reference_step_seconds": [ref]}),
                            {"identity": identity, "key": where.name, "rows": 1})
        times = {v: stored(v) for v in first}
    return times


def _time_steps(first: dict, data, repeats: int) -> dict:
    """``{variant: (plain step seconds, adversarial step seconds or NaN)}``, timed in rounds."""
    timers = {}                                   # (variant, epoch kind) -> one warmed-up step
    for variant, m in first.items():
        cfg, spec = m.config, get_variant(variant)
        device = next(m.model.parameters()).device
        idx = torch.as_tensor(data.split["train"][: cfg.batch_size], dtype=torch.long)
        batch = (data.x[idx].to(device), data.emotions[idx].to(device),
                 None if data.midlevel is None else data.midlevel[idx].to(device))
        for kind, epoch in (("plain", 1), ("adversarial", cfg.adv_every))[: 2 if spec.adversarial else 1]:
            model = copy.deepcopy(m.model).train()
            ctx = StepContext(model, spec, torch.optim.Adam(model.parameters(), lr=cfg.lr), cfg, epoch, 1, {})
            objective = make_objective(spec, cfg.objective_options)
            objective.step(ctx, *batch)                          # warm-up (and ExpO's weight)
            timers[(variant, kind)] = (objective, ctx, batch, device)
    best = {key: float("inf") for key in timers}
    for _ in range(repeats):
        for key, (objective, ctx, batch, device) in timers.items():
            t0 = time.perf_counter()
            objective.step(ctx, *batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[key] = min(best[key], time.perf_counter() - t0)
    return {v: (best[(v, "plain")], best.get((v, "adversarial"), float("nan"))) for v in first}
