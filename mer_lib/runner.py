"""From an experiment to jobs: what is stored, what is missing, and running the rest.

An :class:`~mer_lib.experiments.Experiment` becomes five kinds of job (:mod:`mer_lib.planning`):
one :class:`TrainJob` per paper model, one :class:`ExtensionJob` per ExpO/RAR model the chapters
read (after its base model), one :class:`AttackJob` per (model, attack configuration), one
:class:`TableJob` per explanation or attribution table and one :class:`CostJob` per system whose
training step the chapters time (last, alone). A job is *done* when its result is in
the store (:mod:`mer_lib.store`). :meth:`Runner.plan` lists every job with its status and
chapter; :meth:`Runner.run` executes the missing ones with an *engine*:

- ``"inprocess"`` (default): one after the other in this process, models first;
- ``"ray"``: one Ray task per job or model stack (:mod:`mer_lib.ray_engine`), each after the
  models it needs; the step timings run last, in the driver, one at a time.

Model stacks (:mod:`mer_lib.runner_stacks`): the missing models of one variant train
``stack_size`` at a time (the runner's explicit ``stack_size``, else the profile's) as one
:class:`~mer_lib.stack.ModelStack`, and the missing attacks of one configuration on one
variant's models run ``stack_size`` models in one pass on CUDA (or when ``stack_size`` is given);
both are stored exactly like single runs. :meth:`Runner.plan` names each job's stack. The work
goes through the one cached, locked code path (:func:`mer_lib.training.get_trained`,
:func:`mer_lib.attacks.results.get_attack`, the products), so the chapters, ``python -m mer_lib
run`` and concurrent workers on one ``MER_HOME`` compute each result once. Progress goes to
stderr, one line per job and per epoch.

Example:
    >>> from mer_lib.experiments import Experiment
    >>> runner = Runner(Experiment.from_parameters(profile="smoke"))    # doctest: +SKIP
    >>> print(runner.plan_text())                                       # doctest: +SKIP
    >>> runner.run()                                                    # doctest: +SKIP
    >>> grid = runner.models()          # {(variant, seed): TrainedModel}  # doctest: +SKIP
    >>> table = runner.attack_table(runner.exp.attack_config("projected", 0.001))  # doctest: +SKIP
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from .errors import MerError, ParameterError
from .experiments import Experiment
from .paths import mer_home
from .jobs import (KINDS, MODEL_KINDS, AttackJob, CostJob, ExtensionJob, JobError, RunReport,  # noqa: F401 (re-exported)
                   TableJob, TrainJob, _one_line, check_kinds, epoch_logger, failed_need, record, report_from_outcomes,
                   skip_reason, stderr_log)
from . import planning, runner_stacks
from .planning import chapter_of, is_wave
from .extensions import extension_model
from .comparison import attack_tables
from .products import PRODUCTS, table_folder
from .step_costs import COST_FOLDER, step_costs
from .store import is_stored, open_store
from .stack import check_stack_size
from .data import load_dataset
from .runtime import resolve_device
from .training import get_trained
from .attacks.results import get_attack
from .attacks.wave_results import get_wave_attack
from .ray_engine import run_on_ray

ENGINES = ("inprocess", "ray")


class Runner:
    """The jobs of one experiment against one store (``run_dir``, default :func:`mer_home`).

    Args:
        experiment: the spec.
        run_dir: the store; the data cache and generated corpora live there too.
        data: the :class:`~mer_lib.data.MerTensors`, when already loaded (e.g. in a worker).
        log: progress sink (default: a line on stderr); ``None``-like ``lambda m: None`` to mute.
        progress: show progress bars while the corpus and its spectrograms are made.
    """

    def __init__(self, experiment: Experiment, run_dir: str | Path | None = None, *, data=None,
                 log: Callable[[str], None] | None = None, progress: bool = True,
                 stack_size: int | None = None) -> None:
        if not isinstance(experiment, Experiment):
            raise ParameterError(f"experiment must be an Experiment, got {type(experiment).__name__}")
        if stack_size is not None:
            check_stack_size(stack_size)
        self._stack_size = stack_size
        self.exp = experiment
        self.run_dir = open_store(Path(run_dir) if run_dir is not None else mer_home())
        self._data = data
        self.progress = progress   # progress bars while the corpus and spectrograms are made
        self.log = log or stderr_log
        self._models: dict[tuple[str, int], object] = {}
        self._stacked_tables: dict[str, object] = {}   # attack job key -> StoredTable of a stacked attack
        self._extension_models: dict[str, object] = {}  # extension job key -> TrainedModel trained in a stack

    # ------------------------------------------------------------------ data and jobs
    @property
    def data(self):
        """The experiment's :class:`~mer_lib.data.MerTensors` (loaded, or generated, on first use)."""
        if self._data is None:
            self._data = load_dataset(self.exp.profile, home=self.run_dir, device=self.device,
                                      progress=self.progress, **self.exp.load_kwargs())
        return self._data

    @property
    def device(self):
        """The experiment's device as a ``torch.device`` (``auto``: CUDA when available)."""
        return resolve_device(self.exp.device)

    def train_jobs(self) -> list[TrainJob]:
        """One job per (variant, seed), in the experiment's order."""
        return planning.train_jobs(self.exp, self.data)

    def extension_jobs(self) -> list[ExtensionJob]:
        """The extension models the chapters read, each after its base model when fine-tuned."""
        return planning.extension_jobs(self.exp, self.data)

    def attack_jobs(self) -> list[AttackJob]:
        """The spectrogram grid, the waveform attacks, then the extension models' attack."""
        return planning.attack_jobs(self.exp, self.data)

    def table_jobs(self) -> list[TableJob]:
        """The explanation and attribution tables the chapters read."""
        return planning.table_jobs(self.exp, self.data)

    def cost_jobs(self) -> list[CostJob]:
        """The step timings the chapters show, one per system (:func:`mer_lib.planning.cost_jobs`)."""
        return planning.cost_jobs(self.exp, self.data)

    def wave_grid(self) -> list:
        """The experiment's waveform attacks (none when the data hold no audio)."""
        return planning.wave_grid(self.exp, self.data)

    def _attack_job(self, tj, config) -> AttackJob:
        return planning.attack_job(self.exp, self.data, tj, config)

    def jobs(self, kinds=KINDS) -> list:
        """The jobs of the requested kinds, in :data:`KINDS` order (models, extension models,
        attacks, tables, step timings)."""
        kinds = check_kinds(kinds)
        planned = {"train": self.train_jobs, "extension": self.extension_jobs, "attack": self.attack_jobs,
                   "table": self.table_jobs, "cost": self.cost_jobs}
        return [job for kind in KINDS if kind in kinds for job in planned[kind]()]

    def path(self, job) -> Path:
        """Where a job's result is stored."""
        if job.kind in MODEL_KINDS:
            return self.run_dir / "models" / job.variant / job.key
        if job.kind == "table":
            return table_folder(self.run_dir, job.product, job.model.key, job.config, job.split, self.data.identity)
        return self.run_dir / (COST_FOLDER if job.kind == "cost" else "attacks") / job.model.key / job.key

    def is_done(self, job) -> bool:
        """True when the job's result is in the store (a model's ``model.pt``, an intact table)."""
        path = self.path(job)
        return (path / "model.pt").is_file() if job.kind in MODEL_KINDS else is_stored(path)

    def missing(self, kinds=KINDS) -> list:
        """The jobs whose results are not stored yet."""
        return [job for job in self.jobs(kinds) if not self.is_done(job)]

    @property
    def stack_size(self) -> int:
        """Models trained together: the explicit ``stack_size``, else the profile's."""
        if self._stack_size is not None:
            return self._stack_size
        return self.exp.profile_spec.stack_size

    @property
    def attack_stack_size(self) -> int:
        """Models attacked together: the explicit ``stack_size``, else the profile's on CUDA, else 1."""
        if self._stack_size is not None:
            return self._stack_size
        return self.exp.profile_spec.stack_size if self.device.type == "cuda" else 1

    def stacks(self, jobs: list) -> list[list]:
        """The train and extension jobs among ``jobs`` that train together
        (:func:`mer_lib.runner_stacks.train_groups`; none when ``stack_size`` is 1)."""
        return runner_stacks.train_groups(self, jobs)

    def attack_stacks(self, jobs: list) -> list[list[AttackJob]]:
        """The attack jobs among ``jobs`` that run together (:func:`mer_lib.runner_stacks.attack_groups`)."""
        return runner_stacks.attack_groups(self, jobs)

    def plan(self, kinds=KINDS) -> pd.DataFrame:
        """Every job with its status (``stored`` / ``to do``), what it needs and its model stack."""
        jobs = self.jobs(kinds)
        todo = [j for j in jobs if not self.is_done(j)]
        stack_of = {}
        for groups in (self.stacks(todo), self.attack_stacks(todo)):
            stack_of.update({job: f"{n} of {len(groups)} ({len(group)} models)"
                             for n, group in enumerate(groups, 1) for job in group})
        rows = []
        for job in jobs:
            done = self.is_done(job)
            needs = ", ".join(f"model {n.key}" + ("" if self.is_done(n) else " (to train)") for n in job.needs)
            rows.append({"kind": job.kind, "job": job.name, "key": job.key,
                         "status": "stored" if done else "to do", "needs": needs,
                         "stack": stack_of.get(job, ""), "chapter": chapter_of(job)})
        return pd.DataFrame(rows, columns=["kind", "job", "key", "status", "needs", "stack", "chapter"])

    def plan_text(self, kinds=KINDS, *, show_stored: bool = False) -> str:
        """:meth:`plan` as a text table (missing jobs only unless ``show_stored``) and a count line."""
        return planning.plan_text(self.plan(kinds), [self.exp.describe(),
                                                     f"store: {self.run_dir}  (data {self.data.identity})"],
                                  show_stored=show_stored)

    # ------------------------------------------------------------------ executing one job
    def train(self, job: TrainJob):
        """The trained model of ``job`` (loaded when stored, else trained with progress lines)."""
        if (job.variant, job.seed) not in self._models:
            tm = get_trained(job.variant, job.seed, self.data, self.exp.profile, self.run_dir,
                             device=self.device, progress=False,
                             on_epoch_end=epoch_logger(self.log, job, self.exp.epochs),
                             **self.exp.train_overrides())
            self._models[(job.variant, job.seed)] = tm
        return self._models[(job.variant, job.seed)]

    def attack(self, job: AttackJob):
        """The :class:`~mer_lib.attacks.results.StoredTable` of ``job`` (computed when missing)."""
        if job.key in self._stacked_tables:            # attacked in a stack by this runner
            return self._stacked_tables[job.key]
        trained = self.model_of(job.model)
        if is_wave(job.config):
            return get_wave_attack(trained, self.data, job.config, split=job.split, run_dir=self.run_dir,
                                   device=self.device)
        return get_attack(trained, self.data, job.config, split=job.split, run_dir=self.run_dir,
                          device=self.device, progress=False)

    def extension(self, job: ExtensionJob):
        """The trained extension model of ``job`` (after its base model; loaded when stored)."""
        if job.key in self._extension_models:          # trained in a stack by this runner
            return self._extension_models[job.key]
        return extension_model(self, job.variant, job.seed, **dict(job.options))

    def train_extensions(self, variants, seeds, options: dict) -> None:
        """Train the missing extension models of ``variants`` x ``seeds`` with ``options`` that
        the plan holds, a variant's seeds as model stacks (``stack_size`` at a time; none when
        it is 1). A stack that fails leaves its models to :meth:`extension` (one by one)."""
        wanted = {(v, s) for v in variants for s in seeds}
        todo = [j for j in self.missing(("extension",))
                if (j.variant, j.seed) in wanted and dict(j.options) == dict(options)]
        if len(todo) > 1:
            runner_stacks.train_stacks(self, todo, RunReport("inprocess"), {})

    def model_of(self, job):
        """The trained model of a train or extension job."""
        return self.extension(job) if job.kind == "extension" else self.train(job)

    def table(self, job: TableJob):
        """The stored table of ``job`` (computed when missing)."""
        trained = self.model_of(job.model)
        return PRODUCTS[job.product].table(trained, self.data, job.config, split=job.split, run_dir=self.run_dir,
                                           device=self.device)

    def execute(self, job) -> bool:
        """Run one job; True when this call computed it (False: it was stored meanwhile)."""
        if job.kind == "train":
            return bool(self.train(job).trained_now)
        if job.kind == "extension":
            return bool(self.extension(job).trained_now)
        if job.kind in ("table", "cost"):
            stored = self.is_done(job)
            if job.kind == "table":
                self.table(job)
            else:
                self.step_cost(job)
            return not stored
        return self.attack(job).computed_now

    def step_cost(self, job: CostJob):
        """The step times of ``job``'s system beside the reference's (timed when not stored)."""
        models = [self.model_of(n) for n in job.needs]   # without a reference model: no cost ratio
        return step_costs(models, self.data, repeats=job.repeats, run_dir=self.run_dir)

    # ------------------------------------------------------------------ running many
    def run(self, engine: str = "inprocess", *, kinds=KINDS, address: str | None = None,
            raise_on_failure: bool = True, grid_only: bool = False) -> RunReport:
        """Execute every missing job of ``kinds`` with ``engine`` (see the module docstring);
        ``grid_only``: only the paper models and their attacks.

        A failing job does not stop the others; a job whose model failed is skipped. At the
        end a :class:`JobError` lists the failures (unless ``raise_on_failure=False``).
        """
        if engine not in ENGINES:
            raise ParameterError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
        todo = [j for j in self.missing(kinds) if not grid_only or planning.in_grid(j)]
        n = {kind: sum(j.kind == kind for j in todo) for kind in KINDS}
        self.log(f"{self.exp.describe()}\n  to do: {n['train']} model(s) to train, {n['extension']} extension "
                 f"model(s), {n['attack']} attack(s) to run, {n['table']} table(s), {n['cost']} step "
                 f"timing(s) ({engine})")
        t0 = time.perf_counter()
        if engine == "ray":
            outcomes = run_on_ray(todo, functools.partial(execute_job, self.exp, str(self.run_dir)), self.data,
                                  device=self.exp.device, log=self.log, address=address, stacks=self.stacks(todo))
            report = report_from_outcomes("ray", outcomes)
        else:
            report = self._run_inprocess(todo)
        report.seconds = time.perf_counter() - t0
        self.log(f"  done: {report.summary()}")
        if raise_on_failure:
            report.raise_on_failure()
        return report

    def _run_inprocess(self, jobs: list) -> RunReport:
        report = RunReport("inprocess")
        failed_models: dict[str, str] = {}
        runner_stacks.train_stacks(self, jobs, report, failed_models)
        attack_groups = self.attack_stacks(jobs)
        group_of = {job.key: (n, group) for n, group in enumerate(attack_groups, 1) for job in group}
        for i, job in enumerate(jobs, 1):
            head = f"[job {i}/{len(jobs)}] {job.kind} {job.name}"
            if job.kind == "train" and job.name in failed_models:
                self.log(f"{head}: FAILED in its stack")
                continue
            dep = failed_need(job, failed_models)
            if dep is not None:
                report.skipped[job.name] = skip_reason(dep, failed_models[dep.name])
                if job.kind in MODEL_KINDS:            # what needs this model is skipped too
                    failed_models[job.name] = report.skipped[job.name]
                self.log(f"{head}: skipped, its model {dep.name} failed")
                continue
            if job.key in group_of:                     # the first job of its stack: run the stack
                n, group = group_of[job.key]
                for j in group:
                    del group_of[j.key]
                group = [j for j in group if j.model.name not in failed_models]
                if len(group) > 1:
                    runner_stacks.attack_stack(self, group, n, len(attack_groups))
            self.log(f"{head}: {planning.DOING[job.kind]} ...")
            t0 = time.perf_counter()
            try:
                computed = self.execute(job)
            except (MerError, RuntimeError, ValueError, OSError) as exc:
                report.failed[f"{job.kind} {job.name}"] = _one_line(exc)
                if job.kind in MODEL_KINDS:
                    failed_models[job.name] = _one_line(exc)
                self.log(f"{head}: FAILED: {_one_line(exc)}")
                continue
            record(report, job, computed)
            self.log(f"{head}: {'done' if computed else 'found in the store'} in "
                     f"{time.perf_counter() - t0:.1f} s")
        return report

    # ------------------------------------------------------------------ what the chapters read
    def models(self) -> dict:
        """``{(variant, seed): TrainedModel}`` of the whole grid (missing models trained first)."""
        if self.missing(("train",)):
            self.run(kinds=("train",))
        return {(j.variant, j.seed): self.train(j) for j in self.train_jobs()}

    @property
    def trained_now(self) -> int:
        """How many of the models this runner holds were trained by this process."""
        return sum(bool(m.trained_now) for m in self._models.values())

    def attack_table(self, config, extra_models=()) -> pd.DataFrame:
        """The per-example table of every model of the grid under one attack configuration,
        followed by those of ``extra_models`` (e.g. the extension models; stored or computed
        as :func:`mer_lib.comparison.attack_tables`)."""
        jobs = [self._attack_job(tj, config) for tj in self.train_jobs()]
        missing = [j for j in jobs if not self.is_done(j)]
        if missing:
            report = self._run_inprocess(missing)
            report.raise_on_failure()
        tables = [self.attack(j).table for j in jobs]
        extra = list(extra_models)
        if extra:
            tables.append(attack_tables(extra, self.data, config, split=self.exp.split, run_dir=self.run_dir,
                                        device=self.device))
        return pd.concat(tables, ignore_index=True)

    def attack_tables(self) -> dict:
        """``{AttackConfig: table}`` for the experiment's whole attack grid (missing jobs run first)."""
        if any(planning.in_grid(j) for j in self.missing(("train", "attack"))):
            self.run(kinds=("train", "attack"), grid_only=True)
        return {config: self.attack_table(config) for config in self.exp.attack_grid()}


    def wave_tables(self) -> dict:
        """``{WaveAttackConfig: table}`` for the experiment's waveform attacks (missing jobs run first)."""
        return {config: self.attack_table(config) for config in self.wave_grid()}


def execute_job(experiment, run_dir: str, job, data):
    """Run one job in a worker process (the Ray engine's worker): True when it computed.

    A tuple of model jobs is one stack: trained together, then ``{job: True/False, or the
    failure}`` for each.
    """
    runner = Runner(experiment, run_dir, data=data, log=stderr_log)
    if not isinstance(job, tuple):
        return runner.execute(job)
    report = RunReport("ray")
    runner_stacks.train_stacks(runner, list(job), report, {}, groups=[list(job)])
    return {j: report.failed.get(f"{j.kind} {j.name}") or runner.execute(j) for j in job}
