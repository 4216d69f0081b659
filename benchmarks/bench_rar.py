"""Cost of RAR training: IG-NORM epochs vs plain and adversarial-training epochs; peak memory vs m.

**Epochs through the training objectives** (``epoch`` in the results): each system's own
training step (:mod:`mer_lib.objectives`, as the trainer calls it) on the same quick-size
batch, timed alternating ``--repeats`` times (fastest repeat), times the batches of a quick
epoch (576 training clips / 8 = 72; the validation pass, the same for all, is left out):

- ``plain``: ``"mse"`` (A2E);
- ``adversarial``: ``"adversarial"`` (aA2E) in an adversarial epoch (clean step, the quick
  profile's reference-mode attack of 5 forward passes, the step on the attacked batch), and
  ``adversarial_mean``: averaged with its clean epochs as they alternate (one in ``adv_every``);
- ``ig_norm`` / ``ig_sum_norm``: the RAR objectives with the quick experiment's options
  (:func:`mer_lib.extensions.rar_options`: m = 4, k = 3, one regularised clip per batch), and
  ``ig_norm_full_batch``: IG-NORM regularising the whole batch (``reg_batch=None``, as the
  paper profile does, at the quick m and k).

Ratios are reported against the plain epoch and against the adversarial epoch.

Model and batch (here and below): the quick profile's A2E (width 0.125) on a batch of 8
excerpts of the quick size, (8, 1, 126, 149), random standardised inputs, Adam.

**Steps of the RAR functions** (``timing``; ``--skip-steps`` leaves them out): three training
steps are timed in
the same run, alternating ``--repeats`` times after a warm-up, each over ``--steps`` steps
(the fastest repeat is reported, as ``timeit`` does; the median too):

- **plain**: ``zero_grad``, MSE forward/backward in train mode, ``optimizer.step()``.
- **pgd_mse**: an adversarial-training-style step for scale: ``k`` signed-gradient PGD steps
  on the MSE from a uniform random start in the same L-inf ball (normalisation frozen),
  then the plain step on the attacked batch. (Not the project's adversarial trainer, which
  uses the reference-mode attack engine; this one matches the IG-NORM inner loop's ``k``.)
- **ig_norm**: :func:`~mer_lib.attributions.rar.rar_attack` (``k`` PGD steps, each with
  ``m // approx_factor`` Riemann steps and double backprop), then
  :func:`~mer_lib.attributions.rar.rar_backward` (``m`` Riemann steps, chunked) and
  ``optimizer.step()``. Its two parts are also timed on their own (``ig_norm_inner``,
  ``ig_norm_outer``), and the outer step without chunking (``ig_norm_outer_unchunked``:
  the price of the bounded memory is pass 1, one more forward/backward per Riemann step).

Peak memory of one IG-NORM step for ``m`` in ``--memory-m`` (default 5, 10, 20, 40), with
the textbook single-pass double backprop (``chunk_size=None``) and chunked
(``--chunk-size``, default 5, for the outer step and the inner maximisation alike):

- CPU: every configuration runs in a fresh subprocess; after the model, the batch and a
  plain warm-up step exist, the resident-set high-water mark is reset (``5`` written to
  ``/proc/self/clear_refs``), and the peak is ``VmHWM`` after one step minus ``VmRSS``
  before it (``/proc/self/status``; Linux). ``ru_maxrss`` cannot serve: it is never reset
  and, across ``execve``, starts from the forking parent's RSS. The subprocess runs with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc maps every large tensor on its own and
  unmaps it when freed (its default, adaptive threshold lets freed blocks be reused from
  the heap depending on the history, which made the increase vary by 100+ MiB between
  identical runs); the RSS then follows the live tensors.
- CUDA: ``torch.cuda.max_memory_allocated()`` during the step minus the memory allocated
  before it, in this process.

Results go to ``benchmarks/results/rar.json``.

Examples::

    python benchmarks/bench_rar.py                       # quick size, CPU (or CUDA if present)
    python benchmarks/bench_rar.py --threads 1 --repeats 2
    python benchmarks/bench_rar.py --riemann-steps 50 --approx-factor 5 --attack-steps 10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mer_lib.attributions.rar import RarConfig, emotion_mse, rar_attack, rar_backward, uniform_linf_start
from mer_lib.data import split_indices
from mer_lib.experiments import Experiment
from mer_lib.extensions import rar_options
from mer_lib.models import build_model, frozen_normalisation, get_variant
from mer_lib.objectives import StepContext, make_objective
from mer_lib.profiles import get_profile
from mer_lib.runtime import resolve_device

RESULTS = Path(__file__).resolve().parent / "results" / "rar.json"
N_BANDS = 149
BATCH = 8


def make_batch(frames: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised-looking random spectrograms and ratings in [0.1, 0.7]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 1, frames, N_BANDS, generator=g)
    y = 0.1 + 0.6 * torch.rand(BATCH, 8, generator=g)
    return x.to(device), y.to(device)


def setup(width: float, frames: int, device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("a2e", width).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    x, y = make_batch(frames, device, seed)
    return model, optimizer, x, y


def plain_step(model, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    emotion_mse(model, x, y).mean().backward()
    optimizer.step()


def pgd_mse_step(model, optimizer, x, y, cfg: RarConfig, gen: torch.Generator) -> None:
    """k signed-gradient ascent steps on the MSE in the L-inf ball, then a plain step on them."""
    eps = cfg.epsilon
    x_adv = x + uniform_linf_start(x, eps, gen)
    with frozen_normalisation(model):
        for _ in range(cfg.attack_steps):
            xv = x_adv.requires_grad_(True)
            (g,) = torch.autograd.grad(emotion_mse(model, xv, y).sum(), xv)
            x_adv = x + (xv.detach() + cfg.step_size * g.sign() - x).clamp(-eps, eps)
    plain_step(model, optimizer, x_adv, y)


def ig_norm_inner(model, x, y, cfg: RarConfig, gen: torch.Generator) -> torch.Tensor:
    return rar_attack(model, x, y, cfg, generator=gen)


def ig_norm_outer(model, optimizer, x, x_adv, y, cfg: RarConfig) -> None:
    optimizer.zero_grad(set_to_none=True)
    rar_backward(model, x, x_adv, y, cfg)
    optimizer.step()


def ig_norm_step(model, optimizer, x, y, cfg: RarConfig, gen: torch.Generator) -> None:
    ig_norm_outer(model, optimizer, x, ig_norm_inner(model, x, y, cfg, gen), y, cfg)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def rar_config(args, m: int | None = None, chunk: int | None | str = "default") -> RarConfig:
    return RarConfig(objective="ig_norm", weight=args.weight, epsilon=args.epsilon,
                     riemann_steps=m or args.riemann_steps, attack_steps=args.attack_steps,
                     approx_factor=args.approx_factor,
                     chunk_size=args.chunk_size if chunk == "default" else chunk)


def timings(args, width: float, frames: int, device: torch.device) -> dict:
    cfg = rar_config(args)
    unchunked = rar_config(args, chunk=None)
    model, opt, x, y = setup(width, frames, device)
    gen = torch.Generator().manual_seed(1)
    x_adv = ig_norm_inner(model, x, y, cfg, gen)
    runs = {
        "plain": lambda: plain_step(model, opt, x, y),
        "pgd_mse": lambda: pgd_mse_step(model, opt, x, y, cfg, gen),
        "ig_norm": lambda: ig_norm_step(model, opt, x, y, cfg, gen),
        "ig_norm_inner": lambda: ig_norm_inner(model, x, y, cfg, gen),
        "ig_norm_outer": lambda: ig_norm_outer(model, opt, x, x_adv, y, cfg),
        "ig_norm_outer_unchunked": lambda: ig_norm_outer(model, opt, x, x_adv, y, unchunked),
    }
    for fn in runs.values():           # warm-up (allocator, kernel choice), not timed
        fn()
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            n = args.steps * (10 if name in ("plain", "pgd_mse") else 1)
            seconds[name].append(timed(fn, n, device))
    best = {k: min(v) for k, v in seconds.items()}
    return {
        "config": cfg.to_dict(), "attack_riemann_steps": cfg.attack_riemann_steps,
        "seconds_per_step": best,
        "seconds_per_step_median": {k: statistics.median(v) for k, v in seconds.items()},
        "seconds_all_repeats": seconds,
        "relative_to_plain": {k: v / best["plain"] for k, v in best.items()},
        "ig_norm_relative_to_pgd_mse": best["ig_norm"] / best["pgd_mse"],
    }


def epoch_costs(args, width: float, frames: int, device: torch.device) -> dict:
    """Seconds per quick epoch of each system's training objective (see the module docstring)."""
    from mer_lib.training import TrainConfig

    quick = Experiment.from_parameters(profile="quick")
    batches = math.ceil(len(split_indices(quick.profile_spec.n_clips)["train"]) / BATCH)
    systems = {
        "plain": ("a2e", None, 1),
        "adversarial": ("aa2e", None, quick.profile_spec.adv_every),
        "ig_norm": ("ignorm_a2e", rar_options(quick, "ignorm_a2e"), 1),
        "ig_sum_norm": ("igsumnorm_a2e", rar_options(quick, "igsumnorm_a2e"), 1),
        "ig_norm_full_batch": ("ignorm_a2e", rar_options(quick, "ignorm_a2e", reg_batch=None), 1),
    }
    x, y = make_batch(frames, device)
    steps = {}
    for name, (variant, options, epoch) in systems.items():
        torch.manual_seed(0)
        model = build_model(variant, width).to(device).train()
        cfg = TrainConfig.from_profile("quick", variant, seed=0, objective_options=options)
        ctx = StepContext(model, get_variant(variant), torch.optim.Adam(model.parameters(), lr=cfg.lr),
                          cfg, epoch, 1)
        objective = make_objective(variant, cfg.objective_options)
        objective.step(ctx, x, y, None)                     # warm-up
        steps[name] = (objective, ctx)
    seconds: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):
        for name, (objective, ctx) in steps.items():
            n = args.steps * (5 if name in ("plain", "adversarial") else 1)
            seconds[name].append(timed(lambda: objective.step(ctx, x, y, None), n, device))
    step = {k: min(v) for k, v in seconds.items()}
    every = quick.profile_spec.adv_every
    step["adversarial_mean"] = ((every - 1) * step["plain"] + step["adversarial"]) / every
    epoch = {k: v * batches for k, v in step.items()}
    return {"batches_per_epoch": batches, "options": {k: v[1] for k, v in systems.items()},
            "seconds_per_step": step, "seconds_all_repeats": seconds, "seconds_per_epoch": epoch,
            "relative_to_plain": {k: v / epoch["plain"] for k, v in epoch.items()},
            "relative_to_adversarial": {k: v / epoch["adversarial"] for k, v in epoch.items()}}


def _proc_status_bytes(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status`` (Linux), in bytes."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} line")
    return int(match.group(1)) * 1024


def _reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def memory_child(args, width: float, frames: int, m: int, chunk: int | None) -> dict:
    """One IG-NORM step's peak memory increase in this (fresh) process or on the GPU."""
    device = resolve_device(args.device)
    cfg = rar_config(args, m, chunk)
    model, opt, x, y = setup(width, frames, device)
    plain_step(model, opt, x, y)
    gen = torch.Generator().manual_seed(1)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        _reset_peak_rss()
        before = _proc_status_bytes("VmRSS")
    ig_norm_step(model, opt, x, y, cfg, gen)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _proc_status_bytes("VmHWM")
    return {"m": m, "chunk_size": chunk, "attack_riemann_steps": cfg.attack_riemann_steps,
            "peak_increase_mib": (peak - before) / 2**20}


def memory(args, width: float, frames: int, device: torch.device) -> list[dict]:
    rows = []
    for chunk in (None, args.chunk_size):
        for m in args.memory_m:
            if device.type == "cuda":
                rows.append(memory_child(args, width, frames, m, chunk))
                continue
            cmd = [sys.executable, __file__, "--memory-child", str(m), str(chunk or 0),
                   "--device", "cpu", "--width", str(width), "--frames", str(frames),
                   "--epsilon", str(args.epsilon), "--attack-steps", str(args.attack_steps),
                   "--approx-factor", str(args.approx_factor), "--weight", str(args.weight)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--width", type=float, default=None, help="default: the quick profile's")
    parser.add_argument("--frames", type=int, default=None, help="default: the quick profile's")
    parser.add_argument("--riemann-steps", type=int, default=10, help="m of the timed IG-NORM step")
    parser.add_argument("--attack-steps", type=int, default=5, help="k, PGD steps of the inner max")
    parser.add_argument("--approx-factor", type=int, default=2, help="inner max uses m // approx_factor steps")
    parser.add_argument("--chunk-size", type=int, default=5, help="Riemann steps per pass (chunked)")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--weight", type=float, default=1.0, help="lambda")
    parser.add_argument("--steps", type=int, default=2, help="IG-NORM steps per timed repeat (plain: 10x)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-m", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-steps", action="store_true", help="only the epoch costs (and memory)")
    parser.add_argument("--memory-child", type=int, nargs=2, metavar=("M", "CHUNK"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    quick = get_profile("quick")
    width = args.width or quick.width
    frames = args.frames or quick.excerpt_frames
    if args.memory_child:
        m, chunk = args.memory_child
        print(json.dumps(memory_child(args, width, frames, m, chunk or None)))
        return {}

    gpu = device.type == "cuda"
    result = {
        "benchmark": "RAR: IG-NORM training step vs plain and PGD-MSE steps; peak memory vs m",
        "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "model": "a2e", "width": width, "input": [BATCH, 1, frames, N_BANDS],
        "epoch": epoch_costs(args, width, frames, device),
        "memory_method": ("torch.cuda.max_memory_allocated - memory_allocated before the step" if gpu
                          else "VmHWM after one step (reset before it) - VmRSS before it, fresh "
                               "subprocess per row, MALLOC_MMAP_THRESHOLD_=65536"),
    }
    if not args.skip_steps:
        result["timing"] = timings(args, width, frames, device)
    if not args.skip_memory:
        result["memory"] = memory(args, width, frames, device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{result['device']}, {torch.get_num_threads()} threads, A2E width {width}, input {result['input']}")
    e = result["epoch"]
    print(f"  quick epoch ({e['batches_per_epoch']} batches), RAR options {e['options']['ig_norm']}:")
    for k, v in e["seconds_per_epoch"].items():
        print(f"  {k:<24} {v:8.2f} s/epoch  {e['relative_to_plain'][k]:6.1f}x plain  "
              f"{e['relative_to_adversarial'][k]:6.2f}x adversarial")
    if "timing" in result:
        t = result["timing"]
        print(f"  IG-NORM: m={t['config']['riemann_steps']}, k={t['config']['attack_steps']}, "
              f"inner m={t['attack_riemann_steps']}, chunk={t['config']['chunk_size']}")
        for k, v in t["seconds_per_step"].items():
            print(f"  {k:<24} {v * 1e3:9.1f} ms/step  {t['relative_to_plain'][k]:7.1f}x plain")
        print(f"  ig_norm / pgd_mse = {t['ig_norm_relative_to_pgd_mse']:.1f}")
    for row in result.get("memory", []):
        print(f"  memory m={row['m']:<3} (inner {row['attack_riemann_steps']:<2}) "
              f"chunk={str(row['chunk_size']):<5} +{row['peak_increase_mib']:8.1f} MiB")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
