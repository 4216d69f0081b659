"""The runner's model stacks: which jobs train or are attacked together, and running those groups.

- :func:`train_groups`: train jobs of one variant, and extension jobs of one variant with the
  same objective options, whose objective has a stacked step
  (:func:`mer_lib.trainer.can_stack`), ``runner.stack_size`` at most. Extension models
  fine-tuned from each seed's own base model stack too (each member loads its own).
- :func:`attack_groups`: spectrogram attacks of one configuration on models of one variant,
  ``runner.attack_stack_size`` at most.
- :func:`train_stacks` / :func:`attack_stack`: run them; the runner's per-job loop then finds
  the models and tables here (``runner._models``, ``runner._extension_models``,
  ``runner._stacked_tables``) and reports them as computed.

Example:
    >>> from mer_lib.experiments import Experiment
    >>> from mer_lib.runner import Runner
    >>> runner = Runner(Experiment.from_parameters(profile="smoke"), "/tmp/never-made", log=lambda m: None)
    >>> runner.stack_size                  # smoke trains one model at a time: no groups
    1
"""
from __future__ import annotations

import time

from .attacks.results import describe, get_stacked_attacks
from .errors import MerError, TrainingError
from .extensions import extension_config
from .jobs import AttackJob, _one_line, epoch_logger
from .planning import is_wave
from .stack_training import StackTrainingError, get_trained_configs
from .trainer import can_stack

__all__ = ["train_groups", "attack_groups", "train_stacks", "attack_stack"]


def _config(runner, job):
    """The training configuration of a train or extension job."""
    if job.kind == "extension":
        return extension_config(runner.exp, job.variant, job.seed, runner.data, **dict(job.options))
    return runner.exp.train_config(job.variant, job.seed)


def _chunks(groups: dict, size: int) -> list[list]:
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)
            if len(group[i:i + size]) > 1]


def train_groups(runner, jobs: list) -> list[list]:
    """The train and extension jobs among ``jobs`` that train together (see the module docstring)."""
    size = runner.stack_size
    if size < 2:
        return []
    groups: dict[tuple, list] = {}
    for job in jobs:
        if job.kind == "train" and can_stack(_config(runner, job)):
            groups.setdefault(("train", job.variant), []).append(job)
        elif job.kind == "extension" and can_stack(_config(runner, job)):
            groups.setdefault(("extension", job.variant, job.options), []).append(job)
    return _chunks(groups, size)


def attack_groups(runner, jobs: list) -> list[list[AttackJob]]:
    """The attack jobs among ``jobs`` that run together: one configuration on models of one
    variant, ``runner.attack_stack_size`` at most (none when that is 1)."""
    size = runner.attack_stack_size
    groups: dict[tuple, list[AttackJob]] = {}
    for job in jobs:      # waveform attacks run one model at a time
        if job.kind == "attack" and size > 1 and not is_wave(job.config):
            groups.setdefault((job.config, job.split, job.model.variant), []).append(job)
    return _chunks(groups, size)


def train_stacks(runner, jobs: list, report, failed_models: dict[str, str], groups: list | None = None) -> None:
    """Train the groups of :func:`train_groups` among ``jobs`` (extension groups after their base
    models), or the given ``groups``."""
    groups = train_groups(runner, jobs) if groups is None else groups
    for n, group in enumerate(groups, 1):
        kind, variant, seeds = group[0].kind, group[0].variant, [job.seed for job in group]
        head = f"[stack {n}/{len(groups)}] {kind} {variant} seeds {', '.join(map(str, seeds))}"
        runner.log(f"{head}: training {len(group)} models as one stack ...")
        t0 = time.perf_counter()
        configs = [_config(runner, job) for job in group]
        loggers = {c.seed: epoch_logger(runner.log, job, c.epochs) for c, job in zip(configs, group)}
        try:
            for job in group:           # a fine-tuned member's base model first
                if job.kind == "extension" and job.base is not None:
                    runner.train(job.base)
            models = get_trained_configs(configs, runner.data, runner.run_dir, device=runner.device,
                                         progress=False, on_epoch_end=lambda c, e, r: loggers[c.seed](e, r))
        except StackTrainingError as exc:
            models = exc.trained
            for job, tm in zip(group, models):
                if tm is None:
                    why = _one_line(TrainingError(exc.failed[job.seed]))
                    report.failed[f"{kind} {job.name}"] = failed_models[job.name] = why
        except (MerError, RuntimeError, ValueError, OSError) as exc:
            models = [None] * len(group)
            for job in group:
                report.failed[f"{kind} {job.name}"] = failed_models[job.name] = _one_line(exc)
        for job, tm in zip(group, models):
            if tm is None:
                continue
            if kind == "train":
                runner._models[(job.variant, job.seed)] = tm
            else:
                runner._extension_models[job.key] = tm
        failed = [failed_models[j.name] for j in group if j.name in failed_models]
        outcome = f"FAILED: {'; '.join(dict.fromkeys(failed))}" if failed else "done"
        runner.log(f"{head}: {outcome} in {time.perf_counter() - t0:.1f} s")


def attack_stack(runner, group: list[AttackJob], n: int, total: int) -> None:
    """Attack ``group`` (one configuration, models of one variant) in one pass; the per-job
    loop then finds the tables. A failing stack leaves its jobs to that loop."""
    head = (f"[attack stack {n}/{total}] {group[0].model.variant} seeds "
            f"{', '.join(str(j.model.seed) for j in group)}, {describe(group[0].config)}")
    runner.log(f"{head}: attacking {len(group)} models in one pass ...")
    t0 = time.perf_counter()
    try:
        models = [runner.model_of(job.model) for job in group]
        tables = get_stacked_attacks(models, runner.data, group[0].config, split=group[0].split,
                                     run_dir=runner.run_dir, device=runner.device)
    except (MerError, RuntimeError, ValueError, OSError) as exc:
        runner.log(f"{head}: FAILED ({_one_line(exc)}); its models are attacked one by one")
        return
    runner._stacked_tables.update({job.key: table for job, table in zip(group, tables)})
    runner.log(f"{head}: done in {time.perf_counter() - t0:.1f} s")
