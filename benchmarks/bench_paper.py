"""Projected wall time of a whole profile's book on this device, from measured per-step costs.

Running the ``paper`` profile end to end takes hours; this benchmark measures a sample of
every kind of work the book does, at the profile's sizes on the chosen device, and
multiplies it by how often the book does it. Training and attacks are priced at their
maximum: every model runs the profile's maximum epochs (early stopping only shortens
training) and every attack its maximum iterations on every clip (per-example early stopping
only shortens it).

What is measured (random spectrograms of the profile's excerpt length, batch and width):

- one training epoch of each kind of model on ``--sample`` clips (64: the per-epoch validation and checkpoint are amortised
  as in a real epoch) -> seconds per batch:
  the plain step (``a2b2e``; A2E and A2M2E cost the same backbone), the adversarial epoch
  (``aa2e`` with every epoch adversarial), each ExpO and RAR objective with the profile's
  options. Every variant trains as stacks, as the runner does (:mod:`mer_lib.stack_training`;
  per-batch cost of the whole stack): the paper systems' seeds ``stack_size`` at a time, an
  extension system's seeds ``min(stack_size, extension seeds)`` at a time (the c sweep's
  single-seed models one by one). The extension systems are also priced one model at a
  time (``extension systems one model at a time``), the cost before they stacked;
- the evaluation attack: seconds per (iteration x clip), stacked like the runner's (on CUDA);
- the explanation (NF/S) and attribution (IG + top-k attack) metrics: seconds per clip and model.

How often (from the profile and the chapters' defaults): the five paper systems x seeds
(stacked), the extension systems x their seeds (trained from scratch, or fine-tuned when the
profile says so) and the ExpO c sweep; the attack grid on the paper systems plus one
projected attack per extension model; the metrics on every model. Data generation, kernel
start-up and the site build are left out (minutes, not hours).

``--profile quick`` on the CPU checks the method against a measured ``make book`` (the quick
profile's models run close to their maximum epochs): on 2 cores it projected 19.9 min for
chapters 2-5, which took 20.5 min. Results go to
``benchmarks/results/paper_projection_<profile>.json``.

Examples::

    python benchmarks/bench_paper.py --device cuda                   # the paper profile on this GPU
    python benchmarks/bench_paper.py --profile quick --device cpu    # the quick profile on this CPU
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stack import _sync  # noqa: E402
from bench_training import make_data  # noqa: E402  (the same synthetic data)

from mer_lib.attacks import AttackConfig, attack  # noqa: E402
from mer_lib.attributions.report import attribution_config  # noqa: E402
from mer_lib.comparison import attribution_tables, explanation_tables  # noqa: E402
from mer_lib.data import split_indices  # noqa: E402
from mer_lib.experiments import Experiment  # noqa: E402
from mer_lib.extensions import extension_config, quality_config  # noqa: E402
from mer_lib.models import build_model, get_variant  # noqa: E402
from mer_lib.runtime import resolve_device  # noqa: E402
from mer_lib.attacks.stacked import stacked_attack  # noqa: E402
from mer_lib.stack import stack_models  # noqa: E402
from mer_lib.stack_training import can_stack, train_stack  # noqa: E402
from mer_lib.training import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def batch_seconds(config: TrainConfig, k: int, data, device, work: Path, batches: int) -> float:
    """Seconds per training batch of ``config`` (a stack of ``k`` when ``k`` > 1), second epoch timed."""
    config = dataclasses.replace(config, epochs=2, patience=3, init_from=None)
    configs = [dataclasses.replace(config, seed=s) for s in range(k)]
    times = []

    def on_epoch_end(*args) -> None:
        _sync(device)
        times.append(time.perf_counter())

    _sync(device)
    times.append(time.perf_counter())
    if k > 1:
        train_stack(configs, data, work / f"{config.variant}-stack", device=device, progress=False,
                    on_epoch_end=lambda c, e, r: on_epoch_end() if c.seed == 0 else None)
    else:
        train(config, data, work / config.variant, device=device, progress=False, on_epoch_end=on_epoch_end)
    return (times[2] - times[1]) / batches          # the second epoch: warm caches and kernels


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", help="the profile to project (default: paper)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sample", type=int, default=64, help="training clips per measured epoch (default 64)")
    parser.add_argument("--attack-iterations", type=int, default=10, help="measured attack iterations")
    parser.add_argument("--metric-clips", type=int, default=2, help="clips of the measured metrics")
    parser.add_argument("--stack-size", type=int, default=None,
                        help="models per stack (default as the runner: the profile's for training, "
                             "and for attacks on CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    exp = Experiment.from_parameters(profile=args.profile, device=str(device))
    prof = exp.profile_spec
    frames, bs = prof.excerpt_frames, exp.batch_size
    k_stack = args.stack_size or prof.stack_size                        # training (Runner.stack_size)
    k_attack = args.stack_size or (prof.stack_size if device.type == "cuda" else 1)   # Runner.attack_stack_size
    sizes = {name: len(idx) for name, idx in split_indices(prof.n_clips).items()}
    batches_per_epoch = math.ceil(sizes["train"] / bs)
    sample = make_data(args.sample, 4, frames)
    sample_batches = math.ceil(args.sample / bs)

    seconds: dict[str, float] = {}
    detail: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # ---------------------------------------------------------------- training
        plain = exp.train_config("a2b2e", exp.seeds[0])
        adv = dataclasses.replace(exp.train_config("aa2e", exp.seeds[0]), adv_every=1)
        batch_seconds(plain, k_stack, sample, device, work, sample_batches)         # warm-up
        cost = {"plain": batch_seconds(plain, k_stack if can_stack(plain) else 1, sample, device, work / "p",
                                     sample_batches),
                "adversarial": batch_seconds(adv, k_stack if can_stack(adv) else 1, sample, device, work / "a",
                                           sample_batches)}
        ext_jobs = [(v, s, {}) for v in (*exp.expo_variants, *exp.rar_variants) for s in exp.extension_seeds]
        ext_jobs += [("expof_a2e", exp.extension_seeds[0], {"c": c}) for c in exp.c_values if c != exp.expo_c]
        ext_jobs += [(v, exp.extension_seeds[0], {"c": 0.0}) for v in exp.expo_variants
                    if get_variant(v).objective == "expo_stability"]
        # the extension systems' seeds train as stacks (Runner.train_extensions): the runner's
        # stack size, at most the extension seeds; the sweep points (one seed each) one by one
        k_ext = min(k_stack, len(exp.extension_seeds))
        for variant in dict.fromkeys(v for v, _, _ in ext_jobs):
            config = extension_config(exp, variant, exp.extension_seeds[0], sample)
            cost[variant] = batch_seconds(config, 1, sample, device, work / variant, sample_batches)
            if k_ext > 1 and can_stack(config):
                cost[f"{variant}, stack of {k_ext}"] = batch_seconds(config, k_ext, sample, device,
                                                                   work / f"{variant}-{k_ext}", sample_batches)

        n_paper_stacks = {v: math.ceil(len(exp.seeds) / (k_stack if can_stack(exp.train_config(v, exp.seeds[0]))
                                                            else 1)) for v in exp.variants}
        train_s = 0.0
        for v in exp.variants:
            config = exp.train_config(v, exp.seeds[0])
            if get_variant(v).adversarial:
                adv_epochs = config.epochs // config.adv_every
                per_model = (config.epochs - adv_epochs) * cost["plain"] + adv_epochs * cost["adversarial"]
            else:
                per_model = config.epochs * cost["plain"]
            train_s += n_paper_stacks[v] * per_model * batches_per_epoch
        seconds["train paper systems"] = train_s
        ext_single, ext_s = {}, 0.0
        for v, s, options in ext_jobs:
            epochs = extension_config(exp, v, s, sample, **options).epochs
            ext_single[v] = ext_single.get(v, 0.0) + epochs * batches_per_epoch * cost[v]
            if options or f"{v}, stack of {k_ext}" not in cost:
                ext_s += epochs * batches_per_epoch * cost[v]
        for v in dict.fromkeys(v for v, _, o in ext_jobs if not o):       # the seeds' stacks
            if f"{v}, stack of {k_ext}" in cost:
                epochs = extension_config(exp, v, exp.extension_seeds[0], sample).epochs
                n_stacks = math.ceil(len(exp.extension_seeds) / k_ext)
                ext_s += n_stacks * epochs * batches_per_epoch * cost[f"{v}, stack of {k_ext}"]
        seconds["train extension systems"] = ext_s
        detail["extension systems one model at a time (s)"] = ext_single
        detail["extension systems one model at a time, total (s)"] = sum(ext_single.values())

        # ---------------------------------------------------------------- attacks
        torch.manual_seed(0)
        models = [build_model("a2e", exp.width).to(device).eval() for _ in range(k_attack)]
        x, y, _ = make_data(args.metric_clips * 4, 4, frames, 1).subset("train")
        x, y = x.to(device), y.to(device)
        config = AttackConfig(mode="projected", epsilon=0.001, max_iterations=args.attack_iterations)
        warm = dataclasses.replace(config, max_iterations=2)

        def pass_seconds(run) -> float:
            # seconds per forward pass of one model on one clip (passes actually made)
            run(warm)
            _sync(device)
            start = time.perf_counter()
            results = run(config)
            _sync(device)
            return (time.perf_counter() - start) / sum(int(r.forward_passes.sum()) for r in results)

        cost["attack pass per clip"] = pass_seconds(lambda c: [attack(models[0], x, y, c)])
        stacked_pass = cost["attack pass per clip"]
        if k_attack > 1:
            stack = stack_models(models).eval()
            stacked_pass = cost["attack pass per clip, stacked"] = pass_seconds(lambda c: stacked_attack(stack, x, y, c))
        n_paper_attacks = len(exp.attack_grid()) * len(exp.variants) * len(exp.seeds)
        n_ext_attacks = (len(exp.expo_variants) + len(exp.rar_variants)) * len(exp.extension_seeds)
        passes = exp.max_iterations * sizes[exp.split]          # upper bound: no example stops early
        seconds["attacks"] = (n_paper_attacks * stacked_pass + n_ext_attacks * cost["attack pass per clip"]) * passes

        # ---------------------------------------------------------------- metrics
        trained = train(dataclasses.replace(exp.train_config("a2e", 0), epochs=1), sample, work / "m",
                        device=device, progress=False)
        metric_data = make_data(4, args.metric_clips, frames, 2)
        q = dataclasses.replace(quality_config(exp), n_examples=args.metric_clips)
        a = dataclasses.replace(attribution_config(exp), n_examples=args.metric_clips)
        t_q = _timed(lambda: explanation_tables([trained], metric_data, q, split="test", run_dir=work / "q",
                                                device=device))
        t_a = _timed(lambda: attribution_tables([trained], metric_data, a, split="test", run_dir=work / "r",
                                                device=device))
        n_models = len(exp.variants) * len(exp.seeds) + len(ext_jobs)
        clips_q = min(exp.explain_examples or sizes[exp.split], sizes[exp.split])
        clips_a = min(exp.attr_examples or sizes[exp.split], sizes[exp.split])
        seconds["explanation metrics"] = n_models * clips_q * t_q / args.metric_clips
        seconds["attribution metrics"] = n_models * clips_a * t_a / args.metric_clips
        cost["explanation metrics per clip"] = t_q / args.metric_clips
        cost["attribution metrics per clip"] = t_a / args.metric_clips

    total = sum(seconds.values())
    result = {
        "benchmark": f"projected wall time of the {exp.profile} profile's book (maximum epochs and iterations)",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "profile": exp.profile, "stack_size": k_stack, "attack_stack_size": k_attack, "width": exp.width, "frames": frames,
        "batch_size": bs, "split_sizes": sizes, "batches_per_epoch": batches_per_epoch,
        "seeds": len(exp.seeds), "extension_seeds": len(exp.extension_seeds),
        "extension_jobs": [f"{v} seed {s} {o}" for v, s, o in ext_jobs],
        "extension_stack_size": k_ext, **detail,
        "seconds_per_batch_or_unit": cost, "projected_seconds": seconds, "projected_total_seconds": total,
        "projected_total_minutes": total / 60,
    }
    out = args.out or RESULTS / f"paper_projection_{exp.profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, profile {exp.profile}, stack size {k_stack} (attacks {k_attack}), width {exp.width:g}, {frames} frames")
    for name, value in cost.items():
        print(f"  {name:<32} {value * 1000:10.2f} ms")
    for name, value in seconds.items():
        print(f"  projected {name:<28} {value / 60:8.1f} min")
    print(f"  (extension systems one model at a time: "
          f"{result['extension systems one model at a time, total (s)'] / 60:.1f} min; stacks of {k_ext}: "
          f"{seconds['train extension systems'] / 60:.1f} min)")
    print(f"  projected total                      {total / 60:8.1f} min  -> {out}")
    return result


if __name__ == "__main__":
    main()
