"""Model stacks: K models trained and attacked as one network vs one at a time, in the same run.

Training (variant a2e, Adam at batch 8, the same data, sizes and epochs for every loop;
validation and checkpoint writing included, as in ``bench_training.py``):

- ``single``:   K calls of :func:`mer_lib.training.train` (seeds 0 .. K-1), one after the other;
- ``stack``:    one :func:`mer_lib.stack_training.train_stack` of the same K configurations;
- ``batch_k8``: one ``train`` at batch ``8 K`` (one model, K times fewer steps: a ceiling for
  what K models at batch 8 can reach, as the issue's "one model at batch 80").

Throughput = training examples seen / wall seconds (``stack`` and ``single`` see K times the
examples of ``batch_k8`` per epoch).

Attack (the evaluation attack, projected L-inf, ``--attack-iterations`` steps with the
correlation ladder's per-example early stopping, on ``--valid`` clips):

- ``single``: :func:`mer_lib.attacks.attack` of each of the K models;
- ``stack``:  :func:`mer_lib.attacks.stacked.stacked_attack` of their stack.

Throughput = forward passes made (iterations x examples, summed over models) / wall seconds.

The loops alternate ``--repeats`` times after a warm-up; ratios use each loop's fastest run.
Results go to ``benchmarks/results/stack.json``.

Examples::

    python benchmarks/bench_stack.py                          # quick size, K = 3 (CPU)
    python benchmarks/bench_stack.py --device cuda            # paper size (width 1.0, 313 frames), K = 10
    python benchmarks/bench_stack.py --k 3 --threads 2 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import N_BANDS, make_data  # noqa: E402  (the same synthetic data)

from mer_lib.attacks import AttackConfig, attack  # noqa: E402
from mer_lib.models import build_model  # noqa: E402
from mer_lib.profiles import get_profile  # noqa: E402
from mer_lib.runtime import resolve_device  # noqa: E402
from mer_lib.attacks.stacked import stacked_attack  # noqa: E402
from mer_lib.stack import stack_models  # noqa: E402
from mer_lib.stack_training import train_stack  # noqa: E402
from mer_lib.training import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "stack.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_loops(data, k: int, width: float, epochs: int, device, work: Path, tag: str,
                bf16: bool, channels_last: bool) -> dict[str, float]:
    """Seconds of the three training loops (see the module docstring)."""
    kw = dict(width=width, epochs=epochs, patience=epochs + 1, bf16=bf16, channels_last=channels_last)
    configs = [TrainConfig("a2e", seed, **kw) for seed in range(k)]
    out = {}
    _sync(device)
    t0 = time.perf_counter()
    for c in configs:
        train(c, data, work / f"single-{tag}", device=device, progress=False)
    _sync(device)
    out["single"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_stack(configs, data, work / f"stack-{tag}", device=device, progress=False)
    _sync(device)
    out["stack"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train(TrainConfig("a2e", 0, batch_size=8 * k, **kw), data, work / f"batch-{tag}", device=device,
          progress=False)
    _sync(device)
    out["batch_k8"] = time.perf_counter() - t0
    return out


def attack_loops(models, stack, x, y, config) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and forward passes of K single attacks and of one stacked attack."""
    device = x.device
    _sync(device)
    t0 = time.perf_counter()
    single = [attack(m, x, y, config) for m in models]
    _sync(device)
    seconds = {"single": time.perf_counter() - t0}
    t0 = time.perf_counter()
    stacked = stacked_attack(stack, x, y, config)
    _sync(device)
    seconds["stack"] = time.perf_counter() - t0
    passes = {"single": int(sum(int(r.forward_passes.sum()) for r in single)),
              "stack": int(sum(int(r.forward_passes.sum()) for r in stacked))}
    return seconds, passes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--k", type=int, default=None, help="models per stack (default 3 on CPU, 10 on CUDA)")
    parser.add_argument("--width", type=float, default=None, help="default: quick profile's (CPU) / 1.0 (CUDA)")
    parser.add_argument("--frames", type=int, default=None, help="default: quick profile's (CPU) / 313 (CUDA)")
    parser.add_argument("--examples", type=int, default=None, help="training examples (default 96 / 288)")
    parser.add_argument("--valid", type=int, default=16, help="validation (and attacked) examples")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per timed loop (default 2 / 3)")
    parser.add_argument("--attack-iterations", type=int, default=None, help="default 30 (CPU) / 200 (CUDA)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed runs of each loop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in training (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last in training")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    quick = get_profile("quick")
    k = args.k or (10 if gpu else 3)
    width = args.width or (1.0 if gpu else quick.width)
    frames = args.frames or (313 if gpu else quick.excerpt_frames)
    n_train = args.examples or (288 if gpu else 96)
    epochs = args.epochs or (3 if gpu else 2)
    iterations = args.attack_iterations or (200 if gpu else 30)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = make_data(n_train, args.valid, frames)

    # attack setup: K fresh models (trained or not changes the passes, not their cost)
    torch.manual_seed(0)
    models = [build_model("a2e", width).to(device).eval() for _ in range(k)]
    stack = stack_models(models).eval()
    x, y, _ = data.subset("valid")
    x, y = x.to(device), y.to(device)
    config = AttackConfig(mode="projected", epsilon=0.001, max_iterations=iterations)

    train_times: dict[str, list[float]] = {"single": [], "stack": [], "batch_k8": []}
    attack_times: dict[str, list[float]] = {"single": [], "stack": []}
    passes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small = make_data(16, 4, frames, 1)
        train_loops(small, k, width, 1, device, work, "warm", args.bf16, args.channels_last)
        attack_loops(models, stack, x[:2], y[:2], AttackConfig(mode="projected", epsilon=0.001, max_iterations=2))
        for r in range(args.repeats):
            for name, s in train_loops(data, k, width, epochs, device, work, str(r), args.bf16,
                                       args.channels_last).items():
                train_times[name].append(s)
            seconds, passes = attack_loops(models, stack, x, y, config)
            for name, s in seconds.items():
                attack_times[name].append(s)

    seen = {"single": k * n_train * epochs, "stack": k * n_train * epochs, "batch_k8": n_train * epochs}
    train_eps = {name: seen[name] / min(v) for name, v in train_times.items()}
    attack_ps = {name: passes[name] / min(v) for name, v in attack_times.items()}
    result = {
        "benchmark": "model stacks: K models trained / attacked as one network vs one at a time",
        "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "k": k, "width": width, "frames": frames, "bands": N_BANDS, "batch_size": 8,
        "train_examples": n_train, "valid_examples": args.valid, "epochs": epochs,
        "bf16": args.bf16, "channels_last": args.channels_last,
        "attack": config.to_dict(), "repeats": args.repeats,
        "train_seconds": train_times, "attack_seconds": attack_times, "attack_forward_passes": passes,
        "train_examples_per_s": train_eps,
        "train_examples_per_s_median": {n: seen[n] / statistics.median(v) for n, v in train_times.items()},
        "attack_passes_per_s": attack_ps,
        "ratios": {
            "train_stack_vs_single": train_eps["stack"] / train_eps["single"],
            "train_stack_vs_batch_k8": train_eps["stack"] / train_eps["batch_k8"],
            "attack_stack_vs_single": attack_ps["stack"] / attack_ps["single"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, K={k}, width {width}, {frames} frames, {n_train} examples x {epochs} epochs, "
          f"{torch.get_num_threads()} threads")
    for name, v in train_eps.items():
        print(f"  train  {name:<9} {v:9.1f} examples/s  (runs: {', '.join(f'{t:.2f}s' for t in train_times[name])})")
    for name, v in attack_ps.items():
        print(f"  attack {name:<9} {v:9.1f} passes x examples/s  (runs: "
              f"{', '.join(f'{t:.2f}s' for t in attack_times[name])})")
    for name, v in result["ratios"].items():
        print(f"  {name:<26} {v:5.2f}x")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
