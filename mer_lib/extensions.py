"""Extension models within an experiment: ExpO and RAR variants beside the paper's grid.

An extension variant (e.g. ``expof_a2e``, ``ignorm_a2e``) trains with the experiment's sizes,
like the paper's systems, with its objective's options taken from the experiment (ExpO: the
profile's regularisation batch, the experiment's patch grid and ``expo_c``; RAR: ``rar_lambda``
or ``rar_beta``, ``rar_epsilon``, ``rar_steps`` and the profile's attack steps and
regularisation batch; each setting's own declaration says where it goes, see
:func:`objective_options`) plus any given here. When the profile has
``finetune_epochs`` (quick, smoke) it is **fine-tuned** for that many epochs (at the
profile's ``finetune_lr``, keeping the last epoch's weights: the best-validation rule would
pick the least-regularised epoch) from the
experiment's stored base model of the same head and seed (``a2e`` for a direct head,
``a2b2e`` for a bottleneck), trained first if missing; otherwise (paper) it trains from
scratch like the others. Either way its configuration, and so its cache key, says which.

Example:
    >>> from mer_lib.experiments import Experiment
    >>> exp = Experiment.from_parameters(profile="smoke")
    >>> base_variant("expof_a2b2e"), expo_options(exp, c=0.5)
    ('a2b2e', {'c': 0.5, 'bands': 2, 'segments': 2, 'reg_batch': 1})
    >>> rar_options(exp, "igsumnorm_a2e")
    {'weight': 1.0, 'epsilon': 0.03, 'riemann_steps': 2, 'attack_steps': 1, 'reg_batch': 1}
"""
from __future__ import annotations

from typing import Any

from .errors import ParameterError
from .models import get_variant
from .parameters import PARAMETERS
from .profiles import SIZES
from .training import get_trained, run_identity, run_key, TrainConfig
from .jobs import epoch_logger, TrainJob
from .explain.report import QualityConfig

#: The paper's system each head is fine-tuned from.
BASE_OF_HEAD = {"direct": "a2e", "bottleneck": "a2b2e"}
#: Objectives whose options take the profile's ExpO sizes.
EXPO_OBJECTIVES = ("expo_fidelity", "expo_stability")
#: Objectives whose options take the experiment's RAR settings.
RAR_OBJECTIVES = ("ig_norm", "ig_sum_norm")


def base_variant(variant: str) -> str:
    """The paper's variant an extension variant is fine-tuned from (same head)."""
    return BASE_OF_HEAD[get_variant(variant).head]


def objective_options(exp, objective: str, **options: Any) -> dict:
    """The options experiment ``exp`` gives training objective ``objective``, plus ``options``.

    Every setting says where it goes, in its one row: a per-profile size in its
    :class:`~mer_lib.profiles.Size` (e.g. ``rar_riemann_steps`` -> ``ig_norm.riemann_steps``), a
    chapter parameter without one in its ``Param(options=...)`` (e.g. ``rar_lambda``). The value is
    the experiment's parameter when the size has one (``rar_steps``), else the profile's
    (``rar_reg_batch``).
    An objective no setting goes to gets ``options`` alone.

    Example:
        >>> from mer_lib.experiments import Experiment
        >>> objective_options(Experiment.from_parameters(profile="smoke"), "ig_norm", weight=2.0)
        {'weight': 2.0, 'epsilon': 0.03, 'riemann_steps': 2, 'attack_steps': 1, 'reg_batch': 1}
    """
    routed: dict[str, Any] = {}
    sources = [(p.options, getattr(exp, p.name)) for p in PARAMETERS if p.options]
    chapter_sizes = {p.profile for p in PARAMETERS}
    sources += [(s.options, getattr(exp.profile_spec, s.name)) for s in SIZES
                if s.options and s.name not in chapter_sizes]
    for targets, value in sources:
        for target in targets:
            name, option = target.split(".")
            if name == objective:
                routed[option] = value
    return {**routed, **options}


def expo_options(exp, **options: Any) -> dict:
    """ExpO objective options of an experiment (regularisation batch, patch grid, c), plus ``options``."""
    return objective_options(exp, "expo_fidelity", **options)


def rar_options(exp, variant: str, **options: Any) -> dict:
    """RAR objective options of an experiment for ``variant``, plus ``options``.

    The weight is ``exp.rar_lambda`` for IG-NORM and ``exp.rar_beta`` for IG-SUM-NORM; the
    radius ``exp.rar_epsilon``, the Riemann steps ``exp.rar_steps``, the inner PGD steps and
    the regularisation batch the profile's (``rar_attack_steps``, ``rar_reg_batch``).
    """
    objective = get_variant(variant).objective
    if objective not in RAR_OBJECTIVES:
        raise ParameterError(f"{variant} is not a RAR variant (ignorm_*, igsumnorm_*)")
    return objective_options(exp, objective, **options)


def extension_config(exp, variant: str, seed: int, data, **options: Any):
    """The :class:`~mer_lib.training.TrainConfig` of an extension model in experiment ``exp``.

    ``options`` are objective options (e.g. ``c=0.5``) on top of the profile's.
    """
    spec = get_variant(variant)
    if spec.name in BASE_OF_HEAD.values() or spec.adversarial:
        raise ParameterError(f"{variant} is one of the paper's systems, not an extension variant")
    profile = exp.profile_spec
    fields = exp.train_config(base_variant(variant), seed).to_dict()
    opts = objective_options(exp, spec.objective, **options)
    fields.update(variant=spec.name, objective_options=opts, adv_attack=None)
    if profile.finetune_epochs is not None:
        base = exp.train_config(base_variant(variant), seed)
        fields.update(init_from=f"{base.variant}/{run_key(run_identity(base, data))}",
                      epochs=profile.finetune_epochs, patience=profile.finetune_epochs, keep="last",
                      lr=profile.finetune_lr if profile.finetune_lr is not None else fields["lr"])
    return TrainConfig.from_dict(fields)


def extension_plan(exp, data) -> list[dict]:
    """Every extension model the chapters read, once each, in the order the book reads them.

    - Explanations: ``expo_variants`` x ``extension_seeds``; the ExpO-Fidelity c-sweep
      (``expof_a2e`` at the first extension seed, one model per ``c_values``); when the
      profile fine-tunes, the c = 0 control (``expos_a2e``, the same epochs without the
      regulariser).
    - Attributions: ``rar_variants`` x ``extension_seeds`` (and the ExpO models again).

    Each row: ``variant, seed, options`` (sorted ``(name, value)`` pairs of objective options
    on top of the experiment's), ``key`` (the model's folder), ``base`` (``(variant, seed,
    key)`` of the paper model it is fine-tuned from, or None) and ``chapter``. Models with the
    same key (e.g. a c of the sweep equal to ``expo_c``) are listed once.

    Example:
        >>> from mer_lib.data import load_dataset
        >>> from mer_lib.experiments import Experiment
        >>> exp = Experiment.from_parameters(profile="smoke")
        >>> rows = extension_plan(exp, load_dataset("smoke", progress=False))     # doctest: +SKIP
        >>> [(r["variant"], dict(r["options"])) for r in rows][:3]                # doctest: +SKIP
        [('expof_a2e', {}), ('expos_a2e', {}), ('expof_a2e', {'c': 0.1})]
    """
    seed0 = exp.extension_seeds[0]
    wanted = [(v, s, (), "explanations") for v in exp.expo_variants for s in exp.extension_seeds]
    wanted += [("expof_a2e", seed0, (("c", float(c)),), "explanations") for c in exp.c_values]
    if exp.profile_spec.finetune_epochs is not None:
        wanted.append(("expos_a2e", seed0, (("c", 0.0),), "explanations"))
    wanted += [(v, s, (), "attributions") for v in exp.rar_variants for s in exp.extension_seeds]
    rows, seen = [], set()
    for variant, seed, options, chapter in wanted:
        config = extension_config(exp, variant, seed, data, **dict(options))
        key = run_key(run_identity(config, data))
        if key in seen:
            continue
        seen.add(key)
        base = None
        if config.init_from is not None:
            base = (base_variant(variant), seed, config.init_from.split("/")[1])
        rows.append({"variant": variant, "seed": seed, "options": tuple(sorted(options)), "key": key,
                     "base": base, "chapter": chapter})
    return rows


def extension_model(runner, variant: str, seed: int, **options: Any):
    """The trained extension model (stored, or trained now after its base model if needed)."""
    config = extension_config(runner.exp, variant, seed, runner.data, **options)
    if config.init_from is not None:                    # its base model must exist first
        base = base_variant(variant)
        job = next((j for j in runner.train_jobs() if (j.variant, j.seed) == (base, seed)), None)
        if job is None:
            job = TrainJob(base, seed, config.init_from.split("/")[1])
        runner.train(job)
    overrides = {k: v for k, v in config.to_dict().items() if k not in ("variant", "seed", "adv_attack")}
    job = TrainJob(variant, seed, run_key(run_identity(config, runner.data)))
    if not runner.is_done(job):                         # progress lines, as the runner's jobs
        how = f"fine-tuning {config.epochs} epochs from {config.init_from}" if config.init_from \
            else "training"
        runner.log(f"[extension] {job.name} {config.objective_options}: {how} ...")
    return get_trained(variant, seed, runner.data, runner.exp.profile, runner.run_dir,
                       device=runner.device, progress=False,
                       on_epoch_end=epoch_logger(runner.log, job, config.epochs), **overrides)


def extension_models(runner, variants=None, seeds=None, **options: Any) -> dict:
    """``{(variant, seed): TrainedModel}`` of extension variants (default: the experiment's
    ``expo_variants`` x ``extension_seeds``; pass ``exp.rar_variants`` for the RAR systems),
    each as :func:`extension_model` with ``options``. The missing ones of the runner's plan
    train first, the seeds of a variant as model stacks (:meth:`~mer_lib.runner.Runner.train_extensions`)."""
    exp = runner.exp
    variants = exp.expo_variants if variants is None else variants
    seeds = exp.extension_seeds if seeds is None else seeds
    runner.train_extensions(variants, seeds, options)
    return {(v, s): extension_model(runner, v, s, **options) for v in variants for s in seeds}


def seeds_text(exp) -> str:
    """The seeds of an experiment in words, saying when the extension systems use fewer.

    Example:
        >>> from mer_lib.experiments import Experiment
        >>> seeds_text(Experiment.from_parameters(profile="quick"))
        'the 3 seeds (2 for the extension systems: 6, 21)'
        >>> seeds_text(Experiment.from_parameters(profile="quick", extension_seeds=[6, 21, 42]))
        'the 3 seeds'
        >>> seeds_text(Experiment.from_parameters(profile="smoke"))
        'a single seed (6)'
    """
    text = f"the {len(exp.seeds)} seeds" if len(exp.seeds) != 1 else f"a single seed ({exp.seeds[0]})"
    if exp.extension_seeds != exp.seeds:
        text += (f" ({len(exp.extension_seeds)} for the extension systems: "
                 f"{', '.join(map(str, exp.extension_seeds))})")
    return text


def extension_seeds_sentence(exp) -> str:
    """The chapters' sentence on the extension systems' seeds ("" when they use all of them).

    Example:
        >>> from mer_lib.experiments import Experiment
        >>> extension_seeds_sentence(Experiment.from_parameters(profile="quick"))[:44]
        'They run for seeds 6, 21 only: 2 of the 3 se'
    """
    if exp.extension_seeds == exp.seeds:
        return ""
    return (f"They run for seeds {', '.join(map(str, exp.extension_seeds))} only: "
            f"{len(exp.extension_seeds)} of the {len(exp.seeds)} seeds of the paper's systems, to keep "
            f"the `{exp.profile}` profile short (the parameter `extension_seeds` sets them).")


def quality_config(exp, *, seed: int = 0):
    """The :class:`~mer_lib.explain.report.QualityConfig` of an experiment's explanation metrics."""
    return QualityConfig(bands=exp.patch_bands, segments=exp.patch_segments, sigma=exp.sigma_eval,
                         n_neighbours=exp.n_neighbours_eval, n_examples=exp.explain_examples, seed=seed)
