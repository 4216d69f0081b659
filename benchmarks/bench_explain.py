"""Cost of the ExpO regularisers per training step, and throughput of the explanation metrics.

Model and input as the quick profile trains them: variant a2e at the quick width on
``(8, 1, frames, 149)`` batches (quick: 126 frames), Adam, one optimiser step per timed call.
All step kinds are timed in the same run, interleaved, ``--repeats`` times ``--steps`` steps
after a warm-up; the step time is each kind's fastest repeat (as ``timeit``: on a shared
machine slower runs measure the neighbours), the median is reported too.

Step kinds (the cost ratio is relative to ``plain``):

- ``plain``: MSE on the batch, backward, step.
- ``fidelity_rb<R>``: MSE + w * ExpO-Fidelity on the first R inputs of the batch (R = the
  regularisation batch), grid ``--bands`` x ``--segments`` (K patches), N = 2(K+1)
  neighbours, sigma 0.5, one graph (:func:`fidelity_regulariser`).
- ``fidelity_rb<R>_chunked``: the same through :func:`fidelity_regulariser_backward`
  (chunks of 64 neighbours: one extra no-grad pass, bounded memory).
- ``fidelity_small_grid_rb<R>``: a 2 x 4 grid (K = 8, N = 18) on the whole batch.
- ``stability``: MSE + w * ExpO-Stability (per-patch box, radius 0.1) on the whole batch.

Metric throughput (model in eval mode, examples per second): NF + S
(:func:`explanation_quality`, 5 neighbours, n_fit = 2(K+1): (5+1)*66+5 = 401 evaluations per
example), NF only, the Gaussian explainer, and captum LIME (4(K+1) masked copies) for one
emotion and for all eight. Results go to ``benchmarks/results/explain.json``.

Examples::

    python benchmarks/bench_explain.py                       # quick size on CPU
    python benchmarks/bench_explain.py --repeats 2 --steps 2 --threads 1
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from mer_lib.explain import (PatchGrid, default_fit_neighbours, explain_local_linear, explanation_quality,
                             lime_explanations)
from mer_lib.models import build_model, get_variant
from mer_lib.objectives import (SIGMA_REG, fidelity_regulariser, fidelity_regulariser_backward,
                                regulariser_weight, stability_regulariser)
from mer_lib.profiles import get_profile
from mer_lib.runtime import resolve_device, seed_everything

RESULTS = Path(__file__).resolve().parent / "results" / "explain.json"
N_BANDS = 149
BATCH = 8


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_steps(model, optimizer, x, y, grid: PatchGrid, reg_batches: list[int]) -> dict[str, Callable[[], None]]:
    """One optimiser step per call for every step kind (weights c * L(init) / R(init), c = 1)."""
    small = PatchGrid(2, 4)
    gen = torch.Generator(device=x.device)
    with torch.no_grad():
        model.train()
        loss0 = F.mse_loss(model(x), y)
        w_fid = regulariser_weight(1.0, loss0, fidelity_regulariser(model, x[:1], grid, SIGMA_REG, generator=gen))
        w_small = regulariser_weight(1.0, loss0, fidelity_regulariser(model, x, small, SIGMA_REG, generator=gen))
        w_stab = regulariser_weight(1.0, loss0, stability_regulariser(model, x, generator=gen, grid=grid))

    def step(extra: Callable[[], torch.Tensor] | None = None, after: Callable[[], None] | None = None):
        def run() -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            if extra is not None:
                loss = loss + extra()
            loss.backward()
            if after is not None:
                after()
            optimizer.step()
        return run

    steps = {"plain": step()}
    for rb in reg_batches:
        xr = x[:rb]
        steps[f"fidelity_rb{rb}"] = step(lambda xr=xr: w_fid * fidelity_regulariser(
            model, xr, grid, SIGMA_REG, generator=gen))
        steps[f"fidelity_rb{rb}_chunked"] = step(after=lambda xr=xr: fidelity_regulariser_backward(
            model, xr, grid, w_fid, SIGMA_REG, generator=gen, chunk_size=64))
    steps[f"fidelity_small_grid_rb{BATCH}"] = step(lambda: w_small * fidelity_regulariser(
        model, x, small, SIGMA_REG, generator=gen))
    steps["stability"] = step(lambda: w_stab * stability_regulariser(model, x, generator=gen, grid=grid))
    return steps


def time_calls(fn: Callable[[], object], n: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--width", type=float, default=None, help="default: quick profile's")
    parser.add_argument("--frames", type=int, default=None, help="default: quick profile's")
    parser.add_argument("--bands", type=int, default=4, help="patch grid: frequency bands")
    parser.add_argument("--segments", type=int, default=8, help="patch grid: time segments")
    parser.add_argument("--reg-batches", type=int, nargs="+", default=[1, 2, BATCH],
                        help="regularisation batch sizes to time (inputs regularised per step)")
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed repeats")
    parser.add_argument("--metric-examples", type=int, default=4, help="examples per metric call")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    quick = get_profile("quick")
    width, frames = args.width or quick.width, args.frames or quick.excerpt_frames
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = PatchGrid(args.bands, args.segments)
    seed_everything(0)
    model = build_model(get_variant("a2e"), width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 1, frames, N_BANDS, generator=g).to(device)
    y = torch.rand(BATCH, 8, generator=g).to(device)

    steps = make_steps(model, optimizer, x, y, grid, args.reg_batches)
    step_times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():          # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in steps.items():
            step_times[name].append(time_calls(fn, args.steps, device))

    model.eval()
    xm = x[:args.metric_examples]
    n_ex = xm.shape[0]
    metrics: dict[str, Callable[[], object]] = {
        "nf_and_stability": lambda: explanation_quality(model, xm, grid, seed=0),
        "nf_only": lambda: explanation_quality(model, xm, grid, seed=0, with_stability=False),
        "explainer_all_emotions": lambda: explain_local_linear(model, xm, grid, seed=0),
        "lime_one_emotion": lambda: lime_explanations(model, xm[:1], grid, seed=0, outputs=0),
        "lime_all_emotions": lambda: lime_explanations(model, xm[:1], grid, seed=0),
    }
    examples = {k: (1 if k.startswith("lime") else n_ex) for k in metrics}
    metric_times: dict[str, list[float]] = {k: [] for k in metrics}
    for fn in metrics.values():
        fn()
    for _ in range(args.repeats):
        for name, fn in metrics.items():
            metric_times[name].append(time_calls(fn, 1, device))
    model.train()

    plain = min(step_times["plain"])
    k = grid.n_patches
    result = {
        "benchmark": "ExpO regulariser step cost vs a plain step; explanation-metric throughput",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "variant": "a2e", "width": width, "input": [BATCH, 1, frames, N_BANDS],
        "grid": grid.to_dict(), "n_patches": k, "n_neighbours": default_fit_neighbours(grid),
        "sigma_reg": SIGMA_REG, "steps": args.steps, "repeats": args.repeats,
        "step_seconds": {name: min(v) for name, v in step_times.items()},
        "step_seconds_median": {name: statistics.median(v) for name, v in step_times.items()},
        "step_cost_vs_plain": {name: min(v) / plain for name, v in step_times.items()},
        "metric_examples": examples,
        "metric_examples_per_s": {name: examples[name] / min(v) for name, v in metric_times.items()},
        "metric_model_evaluations_per_example": {
            "nf_and_stability": 6 * default_fit_neighbours(grid) + 5, "nf_only": default_fit_neighbours(grid) + 5,
            "explainer_all_emotions": default_fit_neighbours(grid),
            "lime_one_emotion": 4 * (k + 1), "lime_all_emotions": 8 * 4 * (k + 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, {torch.get_num_threads()} threads, a2e width {width}, input {result['input']}, "
          f"grid {grid.bands}x{grid.segments} (K={k}, N={default_fit_neighbours(grid)})")
    for name in steps:
        print(f"  step {name:<28} {result['step_seconds'][name] * 1e3:9.1f} ms  "
              f"{result['step_cost_vs_plain'][name]:6.2f}x plain")
    for name in metrics:
        print(f"  metric {name:<26} {result['metric_examples_per_s'][name]:9.2f} examples/s")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
