"""Batched attack engine vs. a per-example loop of the same algorithm.

Usage::

    python benchmarks/bench_attack.py [--device cpu|cuda] [--examples N] [--frames T]
                                      [--width W] [--iterations K] [--adv-iterations K]
                                      [--repeats R] [--threads P]

Two measurements on the same model (``build_model("a2e", width)`` in eval mode) and the
same random standardised inputs:

1. **evaluation attack** — projected L-inf BIM, ``--iterations`` steps, early stopping off:
   :func:`mer_lib.attacks.attack` on all examples at once vs. an explicit Python loop
   attacking one example at a time (:func:`per_example_attack`, written independently of
   the engine: its own sign step and projection, ``torch.optim.Adam`` for reference mode);
2. **adversary generation for one adversarial-training epoch** — the trainer's inner
   attack (:func:`mer_lib.training.default_adv_attack`: reference mode, Adam lr 0.002,
   correlation-ladder early stopping, ``--adv-iterations`` steps) on the epoch's batches of
   8 (the trainer attacks each batch at once) vs. one example at a time, as the reference
   implementation did.

Times are the minimum over ``--repeats`` interleaved float32 runs (robust to other load on
the machine; wall and process CPU time are both recorded). Exactness: both runs are then
repeated in float64 and must agree to 1e-5 (they agree to 0 on CPU). In float32 they agree
except for a few elements: the attack steps along ``sign(grad)``, and the convolution
kernels chosen for a batch of 36 and for a batch of 1 round differently (~1e-7 relative),
which flips the sign of gradient components that are almost zero; the float32 maximum
difference and the fraction of differing elements are reported as well. Defaults: CPU at the ``quick``
size (its width and excerpt length, as many examples as its test split); on CUDA the paper size (width 1.0, 313
frames). Targets: >= 1.5x on CPU, >= 30x on GPU. Writes ``benchmarks/results/attack.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mer_lib.attacks import AttackConfig, attack
from mer_lib.attacks.ladder import CorrelationLadder, pearson_rows
from mer_lib.attacks.reference_ladder import ReferenceLadder
from mer_lib.models import build_model
from mer_lib.profiles import get_profile
from mer_lib.training import default_adv_attack

RESULTS = Path(__file__).resolve().parent / "results" / "attack.json"
_QUICK = get_profile("quick")
DEFAULTS = {"cpu": dict(width=_QUICK.width, frames=_QUICK.excerpt_frames,
                        examples=_QUICK.n_clips - int(0.9 * _QUICK.n_clips)),   # the quick test split
            "cuda": dict(width=1.0, frames=313, examples=128)}
TARGETS = {"cpu": 1.5, "cuda": 30.0}


def per_example_reference_attack(model, x, y, cfg: AttackConfig) -> torch.Tensor:
    """Reference mode one example at a time, as the original attacker runs it.

    ``max_iterations`` forward passes; the threshold rule of
    :class:`~mer_lib.attacks.reference_ladder.ReferenceLadder`; each pass that reaches its
    threshold keeps the current perturbation (the start at the first pass); an update with
    Adam on ``-sign(grad)`` after every pass that does not stop.
    """
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        delta = torch.zeros_like(xi, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=cfg.step_size)
        ladder = ReferenceLadder(1, device=x.device)
        kept = delta.detach().clone()
        for t in range(cfg.max_iterations):
            pred = model(xi + delta)
            reached, stop = ladder.update(pearson_rows(pred, yi), t)
            if bool(reached[0]):
                kept = delta.detach().clone()
            if cfg.early_stop and bool(stop[0]):
                break
            (grad,) = torch.autograd.grad(((pred - yi) ** 2).mean(), delta)
            delta.grad = -grad.sign()
            opt.step()
        out.append(kept)
    return torch.cat(out)


def per_example_attack(model, x, y, cfg: AttackConfig) -> torch.Tensor:
    """The same attack, one example at a time (the reference implementation's structure)."""
    if not cfg.projected:
        return per_example_reference_attack(model, x, y, cfg)
    out = []
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        delta = torch.zeros_like(xi, requires_grad=True)
        opt = None if cfg.projected else torch.optim.Adam([delta], lr=cfg.step_size)
        ladder = CorrelationLadder(1, device=x.device)
        best, best_t = None, -1
        for t in range(cfg.max_iterations + 1):
            last = t == cfg.max_iterations
            with torch.set_grad_enabled(not last):
                pred = model(xi + delta)
            if bool(ladder.update(pearson_rows(pred, yi), t)[0]) and cfg.early_stop:
                best, best_t = delta.detach().clone(), t
            if last or (cfg.early_stop and bool(ladder.converged[0])):
                break
            (grad,) = torch.autograd.grad(((pred - yi) ** 2).mean(), delta)
            if cfg.projected:
                with torch.no_grad():
                    delta += cfg.step_size * grad.sign()
                    delta.clamp_(-cfg.epsilon, cfg.epsilon)
            else:
                delta.grad = -grad.sign()
                opt.step()
        out.append(best if best_t >= 1 else delta.detach().clone())
    return torch.cat(out)


def batched_attack(model, x, y, cfg: AttackConfig, batch_size: int | None) -> torch.Tensor:
    return attack(model, x, y, cfg, batch_size=batch_size).delta


def _timed(fn, sync) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, CPU seconds of this process, result)."""
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def compare(name, model, x, y, cfg, batch_size, repeats, sync) -> dict:
    """Interleaved float32 timing of the batched engine and the per-example loop, then the
    exactness check of both in float64 (see the module docstring)."""
    times = {"batched": [], "per_example": []}
    for _ in range(repeats):
        wall, cpu, d_b = _timed(lambda: batched_attack(model, x, y, cfg, batch_size), sync)
        times["batched"].append((wall, cpu))
        wall, cpu, d_l = _timed(lambda: per_example_attack(model, x, y, cfg), sync)
        times["per_example"].append((wall, cpu))
    diff32 = (d_b - d_l).abs()
    model64, x64, y64 = model.double(), x.double(), y.double()
    try:
        diff64 = float((batched_attack(model64, x64, y64, cfg, batch_size)
                        - per_example_attack(model64, x64, y64, cfg)).abs().max())
    finally:
        model.float()
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    row = {"name": name, "config": cfg.to_dict(), "batch_size": batch_size or x.shape[0],
           "seconds_batched": best["batched"][0], "seconds_per_example": best["per_example"][0],
           "cpu_seconds_batched": best["batched"][1],
           "cpu_seconds_per_example": best["per_example"][1],
           "speedup": best["per_example"][0] / best["batched"][0],
           "max_abs_diff_delta_float64": diff64, "identical": diff64 <= 1e-5,
           "max_abs_diff_delta_float32": float(diff32.max()),
           "fraction_elements_differing_float32": float((diff32 > 1e-5).double().mean()),
           "max_abs_delta": float(d_b.abs().max())}
    print(f"{name:<34} batched {row['seconds_batched']:7.2f} s   per-example "
          f"{row['seconds_per_example']:7.2f} s   speed-up {row['speedup']:5.2f}x   "
          f"max |diff| float64 {diff64:.1e}, float32 {row['max_abs_diff_delta_float32']:.1e} "
          f"({100 * row['fraction_elements_differing_float32']:.4f}% of elements)", flush=True)
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"])
    parser.add_argument("--examples", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--width", type=float)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--adv-iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    size = {k: getattr(args, k) if getattr(args, k) is not None else v
            for k, v in DEFAULTS[device].items()}
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    torch.manual_seed(0)
    model = build_model("a2e", width=size["width"]).to(device).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(size["examples"], 1, size["frames"], 149, generator=g).to(device)
    y = (0.1 + 0.7 * torch.rand(size["examples"], 8, generator=g)).to(device)

    evaluation = AttackConfig(mode="projected", epsilon=0.001, step_size=0.0002,
                              max_iterations=args.iterations, early_stop=False)
    adversary = AttackConfig.from_dict(default_adv_attack(args.adv_iterations))
    print(f"device {device}, {size}, torch threads {torch.get_num_threads()}")
    rows = [compare("evaluation attack (projected)", model, x, y, evaluation, None,
                    args.repeats, sync),
            compare("adversaries of one epoch (batch 8)", model, x, y, adversary, 8,
                    args.repeats, sync)]
    report = {
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
        or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), **size,
        "target_speedup": TARGETS[device], "results": rows,
        "meets_target": all(r["speedup"] >= TARGETS[device] for r in rows),
        "all_identical": all(r["identical"] for r in rows),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    existing[device] = report
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return report


if __name__ == "__main__":
    main()
