"""The grid on Ray: one task per job, each attack depending on its model's training task.

Used by :meth:`mer_lib.runner.Runner.run` with ``engine="ray"`` (``python -m mer_lib run
--engine ray [--address auto]``). The data are loaded once by the driver and shared through
Ray's object store; each task calls the ``worker`` it is given (the runner passes
:func:`mer_lib.runner.execute_job`: the same cached, locked code as the in-process engine)
against the shared store, so the workers need the store (``MER_HOME``) on a filesystem they all
see, and ``mer_lib`` installed. The engine takes jobs and a worker, not the runner: it returns
each job's outcome and the runner turns the outcomes into its report.

- Training tasks go first; an extension model's or an attack's task takes the task of the
  model it needs (``job.depends_on``) as an argument, so Ray starts it once that model is
  stored (jobs whose model is stored start at once).
- ``num_gpus=1`` per task when the cluster has GPUs (and the experiment's device is not
  ``cpu``), else ``num_cpus=1``.
- A task whose worker died is retried (``max_retries``); training resumes from the model's
  ``state.pt`` after the last completed epoch (the dead worker's lock is released by the OS).
- The driver prints one line per finished job; the workers' epoch lines are forwarded by Ray.

Ray is an optional dependency: ``pip install -e '.[cluster]'``.

Example:
    >>> run_on_ray(jobs, worker, data, device="auto", log=print)   # doctest: +SKIP
    {TrainJob(...): True, AttackJob(...): 'RuntimeError: ...'}
"""
from __future__ import annotations

import time

import numpy as np

from .errors import MerError, ParameterError

#: Retries of a task whose worker process died (not of a task that raised an error).
MAX_RETRIES = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise MerError("the ray engine needs Ray, which is not installed: pip install -e '.[cluster]' "
                       "(or pip install ray), or use --engine inprocess") from None
    return ray


def _execute_task(worker, data, job, *model_done) -> dict:
    """Body of every task: run one job in a worker (``model_done`` only orders attacks after training)."""
    t0 = time.perf_counter()
    # arrays from Ray's object store are read-only; the split indices are used by torch
    data.split = {name: np.array(idx) for name, idx in data.split.items()}
    return {"computed": bool(worker(job, data)), "seconds": time.perf_counter() - t0}


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"


def run_on_ray(jobs: list, worker, data, *, device: str = "auto", log=print, address: str | None = None,
               max_retries: int = MAX_RETRIES) -> dict:
    """Run ``jobs`` as Ray tasks, each calling ``worker(job, data)`` (True: it computed, False: it
    found the result stored); see the module docstring. Returns ``{job: True/False}`` for the
    jobs that finished and ``{job: "Type: message"}`` for those that raised.

    Connects to ``address`` (``"auto"``: the running cluster) unless Ray is already
    initialised in this process; without an address a local Ray instance is started on this
    machine (all its CPUs and GPUs) and stopped at the end.
    """
    ray = _ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True,
                 logging_level="WARNING")
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0) if device != "cpu" else 0
        if str(device).startswith("cuda") and not gpus:
            raise ParameterError(f"device {device!r} was requested but the Ray cluster has no GPU")
        options = dict(num_cpus=1, num_gpus=1 if gpus else 0, max_retries=max_retries)
        task = ray.remote(_execute_task).options(**options)
        log(f"  ray: {int(resources.get('CPU', 0))} CPU(s), {int(gpus)} GPU(s); one task per job "
            f"({'1 GPU' if gpus else '1 CPU'} each)")
        data_ref, worker_ref = ray.put(data), ray.put(worker)
        by_ref, model_refs = {}, {}
        # models first, then extension models (after their base), then what needs a model
        for kinds in (("train",), ("extension",), ("attack", "table")):
            for job in [j for j in jobs if j.kind in kinds]:
                needs = job.depends_on
                dep = [model_refs[needs.name]] if needs is not None and needs.name in model_refs else []
                ref = task.remote(worker_ref, data_ref, job, *dep)
                by_ref[ref] = job
                if job.kind in ("train", "extension"):
                    model_refs[job.name] = ref
        outcomes: dict = {}
        pending, n_done = list(by_ref), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                job = by_ref[ref]
                n_done += 1
                head = f"[job {n_done}/{len(jobs)}] {job.kind} {job.name}"
                try:
                    out = ray.get(ref)
                except Exception as exc:  # a RayTaskError carrying the job's own error
                    outcomes[job] = _cause(exc)
                    log(f"{head}: FAILED: {outcomes[job]}")
                    continue
                outcomes[job] = out["computed"]
                log(f"{head}: {'done' if out['computed'] else 'found in the store'} in {out['seconds']:.1f} s")
        return outcomes
    finally:
        if started:
            ray.shutdown()
