"""The runner's jobs and its report: what one unit of work is, and what a run did.

A :class:`TrainJob` trains (or finds) one model of the paper's grid; an :class:`ExtensionJob`
trains one extension model (ExpO, RAR), fine-tuned from a paper model where the profile says
so; an :class:`AttackJob` attacks one model with one configuration; a :class:`TableJob`
computes one stored table of one model (explanation quality, attribution robustness:
:mod:`mer_lib.products`); a :class:`CostJob` times one system's training step beside the
reference system's (:mod:`mer_lib.step_costs`; run after every other job, never beside one).
A job's ``needs`` are the model jobs it needs first. Engines (:class:`~mer_lib.runner.Runner`'s in-process loop,
:mod:`mer_lib.ray_engine`) return ``{job: computed (bool) or failure cause (str)}``, and
:func:`report_from_outcomes` turns that into a :class:`RunReport`, where a job whose model
failed is *skipped* with the failing job named.

Example:
    >>> from mer_lib.attacks import AttackConfig
    >>> tj = TrainJob("a2e", 6, "k1")
    >>> aj = AttackJob(tj, AttackConfig(epsilon=0.001), "test", "r1")
    >>> report = report_from_outcomes("inprocess", {tj: "TrainingError: NaN loss", aj: "not run"})
    >>> report.failed
    {'train a2e seed 6': 'TrainingError: NaN loss'}
    >>> report.skipped
    {'a2e seed 6, projected eps=0.001': 'its model failed (train a2e seed 6: TrainingError: NaN loss)'}
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .attacks.results import describe
from .errors import MerError, ParameterError

__all__ = ["KINDS", "MODEL_KINDS", "JobError", "TrainJob", "ExtensionJob", "AttackJob", "TableJob", "CostJob",
           "RunReport", "stderr_log", "epoch_logger",
           "report_from_outcomes", "record", "check_kinds"]

#: The kinds of job, in the order a run executes them.
KINDS = ("train", "extension", "attack", "table", "cost")
#: The kinds of job that train a model (a job that needs a failed one is skipped).
MODEL_KINDS = ("train", "extension")


class JobError(MerError, RuntimeError):
    """Some jobs of a run failed; the message lists them (the other jobs were completed)."""


def stderr_log(message: str) -> None:
    """The default progress sink: one flushed line on stderr."""
    print(message, file=sys.stderr, flush=True)


def epoch_logger(log, job, epochs: int):
    """An ``on_epoch_end`` callback that sends about 20 progress lines of ``job``'s training to ``log``."""
    every = max(1, epochs // 20)

    def on_epoch_end(epoch: int, row: dict) -> None:
        if epoch == 1 or epoch % every == 0 or epoch == epochs:
            adv = " (adversarial)" if row.get("adversarial") else ""
            log(f"    {job.name}: epoch {epoch}/{epochs}{adv}, loss {row['train_loss']:.4f}, "
                f"valid r {row['valid_r']:.3f}, {row['seconds']:.1f} s")
    return on_epoch_end


@dataclass(frozen=True)
class TrainJob:
    """Train (or find) one model of the grid."""

    variant: str
    seed: int
    key: str                              # the model key (its folder name)
    kind = "train"
    needs = ()

    @property
    def name(self) -> str:
        return f"{self.variant} seed {self.seed}"


@dataclass(frozen=True)
class ExtensionJob:
    """Train (or find) one extension model: an ExpO or RAR variant of one seed, with the
    objective options ``options`` (sorted ``(name, value)`` pairs) on top of the experiment's.

    ``base`` is the paper model it is fine-tuned from (``None``: trained from scratch, as in
    the paper profile); ``chapter`` the first chapter that reads it.
    """

    variant: str
    seed: int
    options: tuple
    key: str                              # the model key (its folder name)
    base: TrainJob | None
    chapter: str
    kind = "extension"

    @property
    def needs(self) -> tuple:
        return () if self.base is None else (self.base,)

    @property
    def name(self) -> str:
        extra = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.options)
        return f"{self.variant} seed {self.seed}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class AttackJob:
    """Attack one model with one configuration on the experiment's split."""

    model: TrainJob | ExtensionJob
    config: object                        # an AttackConfig (hashable)
    split: str
    key: str                              # the result key (its folder name)
    kind = "attack"

    @property
    def needs(self) -> tuple:
        return (self.model,)

    @property
    def name(self) -> str:
        return f"{self.model.name}, {describe(self.config)}"


@dataclass(frozen=True)
class TableJob:
    """Compute one stored table (``product``: a :data:`mer_lib.products.PRODUCTS` name) of one model."""

    product: str
    model: TrainJob | ExtensionJob
    config: object                        # the product's configuration (hashable)
    split: str
    key: str                              # the table key (its folder name)
    chapter: str
    kind = "table"

    @property
    def needs(self) -> tuple:
        return (self.model,)

    @property
    def name(self) -> str:
        label = getattr(self.config, "label", "")       # a product with several configurations per model
        return f"{self.product} of {self.model.name}" + (f", {label}" if label else "")


@dataclass(frozen=True)
class CostJob:
    """Time one system's training step (``model``'s) beside the ``reference`` system's, ``repeats``
    times each, on ``device`` (:func:`mer_lib.step_costs.step_costs`); ``reference`` None: no
    reference system in the experiment (the cost ratio is NaN)."""

    model: TrainJob | ExtensionJob
    reference: TrainJob | None
    repeats: int
    device: str
    key: str                              # the stored times' key (its folder name)
    chapter: str
    kind = "cost"

    @property
    def needs(self) -> tuple:
        return tuple(dict.fromkeys(j for j in (self.model, self.reference) if j is not None))

    @property
    def name(self) -> str:
        return f"step cost of {self.model.name}"


@dataclass
class RunReport:
    """What a run did: counts, failures and wall time."""

    engine: str
    trained: list[str] = field(default_factory=list)          # models trained by this run
    found_trained: list[str] = field(default_factory=list)    # trained meanwhile by another worker
    attacked: list[str] = field(default_factory=list)
    found_attacked: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)           # explanation / attribution tables computed
    found_tables: list[str] = field(default_factory=list)
    timed: list[str] = field(default_factory=list)            # step timings taken
    found_timed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)      # job name -> one-line reason
    skipped: dict[str, str] = field(default_factory=dict)     # job name -> why (its model failed)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"trained {len(self.trained)} model(s)", f"ran {len(self.attacked)} attack(s)"]
        if self.tables:
            parts.append(f"computed {len(self.tables)} table(s)")
        if self.timed:
            parts.append(f"timed {len(self.timed)} training step(s)")
        found = sum(map(len, (self.found_trained, self.found_attacked, self.found_tables, self.found_timed)))
        if found:
            parts.append(f"found {found} finished by another worker")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return f"{', '.join(parts)} in {self.seconds:.1f} s ({self.engine})"

    def raise_on_failure(self) -> None:
        if not self.failed:
            return
        first = "; ".join(f"{name}: {why}" for name, why in list(self.failed.items())[:3])
        more = f" (and {len(self.failed) - 3} more)" if len(self.failed) > 3 else ""
        skipped = f"; {len(self.skipped)} job(s) skipped because their model failed" if self.skipped else ""
        raise JobError(f"{len(self.failed)} job(s) failed: {first}{more}{skipped}; fix the cause and "
                       f"run again (finished jobs are kept)")


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def report_from_outcomes(engine: str, outcomes: dict) -> RunReport:
    """The report of an engine's ``{job: computed (bool) or failure cause (str)}``: a job one of
    whose models (``needs``) failed is *skipped*, with that job named; every other failure is *failed*."""
    report = RunReport(engine)
    failed_models = {job.name: out for job, out in outcomes.items()
                     if isinstance(out, str) and job.kind in MODEL_KINDS}
    for job, out in outcomes.items():
        dep = failed_need(job, failed_models)
        if not isinstance(out, str):
            record(report, job, out)
        elif dep is not None:
            report.skipped[job.name] = skip_reason(dep, failed_models[dep.name])
        else:
            report.failed[f"{job.kind} {job.name}"] = out
    return report


def failed_need(job, failed_models: dict):
    """The first model job ``job`` needs whose name is in ``failed_models`` (None: none failed)."""
    return next((n for n in job.needs if n.name in failed_models), None)


def skip_reason(model, cause: str) -> str:
    """Why a job is skipped: the model job it needs failed (named, with its cause)."""
    return f"its model failed ({model.kind} {model.name}: {cause})"


def check_kinds(kinds) -> tuple[str, ...]:
    """Validate a non-empty subset of :data:`KINDS`; return it as a tuple.

    >>> check_kinds(["train"])
    ('train',)
    """
    if isinstance(kinds, str) or not kinds or not set(kinds) <= set(KINDS):
        raise ParameterError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
    return tuple(kinds)


def record(report: RunReport, job, computed: bool) -> None:
    """Count one finished job in ``report``."""
    if job.kind in MODEL_KINDS:
        (report.trained if computed else report.found_trained).append(job.name)
    elif job.kind == "table":
        (report.tables if computed else report.found_tables).append(job.name)
    elif job.kind == "cost":
        (report.timed if computed else report.found_timed).append(job.name)
    else:
        (report.attacked if computed else report.found_attacked).append(job.name)
