"""The grid on Ray: one task per job or model stack, each job depending on its model's task.

Used by :meth:`mer_lib.runner.Runner.run` with ``engine="ray"`` (``python -m mer_lib run
--engine ray [--address auto]``). The data are loaded once by the driver and shared through
Ray's object store; each task calls the ``worker`` it is given (the runner passes
:func:`mer_lib.runner.execute_job`: the same cached, locked code as the in-process engine)
against the shared store, so the workers need the store (``MER_HOME``) on a filesystem they all
see, and ``mer_lib`` installed. The engine takes jobs and a worker, not the runner: it returns
each job's outcome and the runner turns the outcomes into its report.

- Training tasks go first; an extension model's or an attack's task takes the task of the
  models it needs (``job.needs``) as arguments, so Ray starts it once they are
  stored (jobs whose model is stored start at once).
- A model stack (the runner's :meth:`~mer_lib.runner.Runner.stacks`) is one task: its worker
  trains the K models together, as the in-process engine does.
- The step timings (``cost`` jobs) run last, in the driver, one at a time, once every task has
  finished: a training step timed beside other tasks would measure them too.
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
    """Body of every task: run one job, or one stack (a tuple of jobs), in a worker
    (``model_done`` only orders a job after the models it needs)."""
    t0 = time.perf_counter()
    # arrays from Ray's object store are read-only; the split indices are used by torch
    data.split = {name: np.array(idx) for name, idx in data.split.items()}
    out = worker(job, data)
    computed = {j: v for j, v in out.items()} if isinstance(job, tuple) else bool(out)
    return {"computed": computed, "seconds": time.perf_counter() - t0}


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"


def _run_alone(worker, job, data, outcomes: dict, log, head: str):
    """Run ``job`` in this process (nothing else running): its outcome, "not run" when a model it
    needs failed (the report names that model)."""
    if any(isinstance(outcomes.get(n), str) for n in job.needs):
        log(f"{head}: skipped, a model it needs failed")
        return "not run"
    t0 = time.perf_counter()
    try:
        computed = bool(worker(job, data))
    except (MerError, RuntimeError, ValueError, OSError) as exc:
        log(f"{head}: FAILED: {_cause(exc)}")
        return _cause(exc)
    log(f"{head}: {'done' if computed else 'found in the store'} in {time.perf_counter() - t0:.1f} s")
    return computed


def run_on_ray(jobs: list, worker, data, *, device: str = "auto", log=print, address: str | None = None,
               max_retries: int = MAX_RETRIES, stacks: list | None = None) -> dict:
    """Run ``jobs`` as Ray tasks, each calling ``worker(job, data)`` (True: it computed, False: it
    found the result stored); see the module docstring. Returns ``{job: True/False}`` for the
    jobs that finished and ``{job: "Type: message"}`` for those that raised.

    ``stacks`` (lists of model jobs among ``jobs``) run as one task each: the worker gets the
    tuple of jobs and returns ``{job: True/False}``; the task waits for every model its jobs
    need, and what needs one of its models waits for the whole stack.

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
        stack_of = {job.name: tuple(group) for group in (stacks or []) for job in group}
        # models first, then extension models (after their base), then what needs a model
        for kinds in (("train",), ("extension",), ("attack", "table")):
            for job in [j for j in jobs if j.kind in kinds]:
                unit = stack_of.get(job.name, job)
                if isinstance(unit, tuple) and unit[0] is not job:
                    continue                                  # submitted with its stack's first job
                members = unit if isinstance(unit, tuple) else (job,)
                needs = [n for j in members for n in j.needs]
                dep = list(dict.fromkeys(model_refs[n.name] for n in needs if n.name in model_refs))
                ref = task.remote(worker_ref, data_ref, unit, *dep)
                by_ref[ref] = unit
                for j in members:
                    if j.kind in ("train", "extension"):
                        model_refs[j.name] = ref
        outcomes: dict = {}
        pending, n_done = list(by_ref), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                unit = by_ref[ref]
                members = unit if isinstance(unit, tuple) else (unit,)
                n_done += len(members)
                first = members[0]
                head = f"[job {n_done}/{len(jobs)}] {first.kind} {first.name}" if len(members) == 1 else \
                    f"[jobs {n_done - len(members) + 1}-{n_done}/{len(jobs)}] {first.kind} stack of " \
                    f"{first.variant} seeds {', '.join(str(j.seed) for j in members)}"
                try:
                    out = ray.get(ref)
                except Exception as exc:  # a RayTaskError carrying the job's own error
                    for j in members:
                        outcomes[j] = _cause(exc)
                    log(f"{head}: FAILED: {outcomes[first]}")
                    continue
                computed = out["computed"] if isinstance(unit, tuple) else {unit: out["computed"]}
                outcomes.update(computed)
                what = "done" if any(v is True for v in computed.values()) else "found in the store"
                log(f"{head}: {what} in {out['seconds']:.1f} s")
        for job in [j for j in jobs if j.kind == "cost"]:
            n_done += 1
            outcomes[job] = _run_alone(worker, job, data, outcomes, log, f"[job {n_done}/{len(jobs)}] cost {job.name}")
        return outcomes
    finally:
        if started:
            ray.shutdown()
