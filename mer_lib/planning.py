"""Which jobs an experiment has: the models, the extension models, the attacks and the tables
every chapter reads, computed from the experiment and its data alone (no store, no runner).

:class:`~mer_lib.runner.Runner` asks these functions for its jobs and runs them; a job's key
is the folder its result is stored in, so planning and computing always agree.

Example:
    >>> from mer_lib.data import load_dataset
    >>> from mer_lib.experiments import Experiment
    >>> exp = Experiment.from_parameters(profile="smoke")
    >>> data = load_dataset("smoke", progress=False)                     # doctest: +SKIP
    >>> [job.name for job in train_jobs(exp, data)][:2]                  # doctest: +SKIP
    ['a2e seed 6', 'a2b2e seed 6']
"""
from __future__ import annotations

from .attacks.results import result_identity, result_key
from .attacks.wave_results import wave_result_identity
from .extensions import extension_plan
from .jobs import AttackJob, CostJob, ExtensionJob, TableJob, TrainJob
from .products import PRODUCTS, extension_attack_plan, table_key, table_plan
from .runtime import resolve_device
from .step_costs import COST_REPEATS, REFERENCE, cost_identity
from .store import identity_key
from .training import run_identity, run_key

__all__ = ["train_jobs", "extension_jobs", "attack_jobs", "table_jobs", "cost_jobs", "wave_grid", "attack_job",
           "is_wave", "in_grid", "chapter_of", "plan_text", "DOING"]

#: What the runner's progress line says a job is doing.
DOING = {"train": "training", "extension": "training", "attack": "attacking", "table": "computing",
         "cost": "timing"}


def is_wave(config) -> bool:
    """True for a waveform-domain attack configuration."""
    return getattr(config, "domain", "spectrogram") == "waveform"


def train_jobs(exp, data) -> list[TrainJob]:
    """One job per (variant, seed) of the paper's grid, in the experiment's order."""
    return [TrainJob(v, s, run_key(run_identity(exp.train_config(v, s), data))) for v, s in exp.models()]


def extension_jobs(exp, data) -> list[ExtensionJob]:
    """The extension models the chapters read (:func:`mer_lib.extensions.extension_plan`), each
    after the paper model it is fine-tuned from (its ``base``)."""
    by_model = {(j.variant, j.seed): j for j in train_jobs(exp, data)}
    jobs = []
    for row in extension_plan(exp, data):
        base = None
        if row["base"] is not None:
            base = by_model.get(row["base"][:2]) or TrainJob(*row["base"])
        jobs.append(ExtensionJob(row["variant"], row["seed"], row["options"], row["key"], base, row["chapter"]))
    return jobs


def wave_grid(exp, data) -> list:
    """The experiment's waveform attacks, or none when the data hold no audio: tensors made in
    memory (not by :func:`mer_lib.data.load_dataset`) record no audio files to attack."""
    return exp.wave_grid() if data.info.get("excerpt_starts") is not None else []


def attack_job(exp, data, model, config) -> AttackJob:
    """The job of attacking ``model``'s (a train or extension job) model with ``config``."""
    identity = (wave_result_identity if is_wave(config) else result_identity)(model.key, config, exp.split,
                                                                              data.identity)
    return AttackJob(model, config, exp.split, result_key(identity))


def attack_jobs(exp, data) -> list[AttackJob]:
    """One job per (attack configuration, model): the spectrogram grid, then the waveform
    attacks, then the projected attack at the experiment's epsilon of the extension models
    (:func:`mer_lib.products.extension_attack_plan`)."""
    models = train_jobs(exp, data)
    grid = [attack_job(exp, data, tj, config) for config in exp.attack_grid() + wave_grid(exp, data)
            for tj in models]
    at_epsilon = exp.attack_config("projected", exp.epsilon)
    return grid + [attack_job(exp, data, job, at_epsilon)
                   for job, _ in extension_attack_plan(extension_jobs(exp, data))]


def table_jobs(exp, data) -> list[TableJob]:
    """The explanation and attribution tables the chapters read (:func:`mer_lib.products.table_plan`)."""
    configs = {name: product.configs_of(exp) for name, product in PRODUCTS.items()}
    audio = bool(wave_grid(exp, data))
    return [TableJob(product, job, config, exp.split, table_key(product, job.key, config, exp.split, data.identity),
                     chapter)
            for product, job, chapter in table_plan(train_jobs(exp, data), extension_jobs(exp, data), audio=audio)
            for config in configs[product]]


def cost_jobs(exp, data) -> list[CostJob]:
    """The step timings the Explanations and Attributions chapters show: one per system, of its
    first model (the first seed; the ExpO and RAR models of the default options), each beside
    the first A2E model (:mod:`mer_lib.step_costs`)."""
    first = {}
    for job in train_jobs(exp, data) + [j for j in extension_jobs(exp, data) if not j.options]:
        first.setdefault(job.variant, job)
    reference = first.get(REFERENCE)
    device = resolve_device(exp.device).type
    jobs = []
    for job in first.values():
        identity = cost_identity(job.key, None if reference is None else reference.key, COST_REPEATS, device)
        chapter = job.chapter if job.kind == "extension" else "explanations"
        jobs.append(CostJob(job, reference, COST_REPEATS, device, identity_key(identity), chapter))
    return jobs


def in_grid(job) -> bool:
    """True for a paper model's job (its training or an attack of it), False for extension models and tables."""
    return job.kind == "train" or (job.kind == "attack" and job.model.kind == "train")


def chapter_of(job) -> str:
    """The chapter that first reads a job's result."""
    if job.kind in ("extension", "table", "cost"):
        return job.chapter
    if job.kind == "attack":
        if job.model.kind == "extension":
            return job.model.chapter
        return "listening" if is_wave(job.config) else "robustness"
    return "training"


#: The count line's words per kind.
_LABELS = {"train": "model", "extension": "extension model", "attack": "attack", "table": "table",
           "cost": "step timing"}


def plan_text(table, header: list[str], *, show_stored: bool = False) -> str:
    """A plan (:meth:`mer_lib.runner.Runner.plan`) as text: ``header`` lines, the missing jobs
    (every job with ``show_stored``) and one count line per kind."""
    todo = table[table.status == "to do"]
    lines = list(header)
    shown = table if show_stored else todo
    if not shown["stack"].any():
        shown = shown.drop(columns="stack")
    if len(shown):
        lines.append(shown.to_string(index=False))
    counts = []
    for kind, label in _LABELS.items():
        part = table[table.kind == kind]
        if len(part):
            n_todo = int((part.status == "to do").sum())
            counts.append(f"{kind}: {n_todo} of {len(part)} {label}{'s' if len(part) != 1 else ''} to do")
    lines.append("; ".join(counts) if counts else "no jobs")
    return "\n".join(lines)
