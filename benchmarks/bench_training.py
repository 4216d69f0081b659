"""Training throughput: mer_lib's trainer vs a reference-style loop, measured in the same run.

Both train the same model (variant a2e, same width, input size, seed) with Adam at batch 8
for the same number of epochs, each followed by a validation pass:

- **mer_lib**: :func:`mer_lib.training.train` — the training split is one tensor on the
  device, batches are index slices of a seeded permutation; validation, checkpointing
  (``state.pt`` + ``history.csv`` per epoch, ``model.pt`` at the end) included. Measured
  with the default settings (``mer_lib``), with ``channels_last=True``
  (``mer_lib_channels_last``) and, on CUDA, with ``bf16=True`` as well
  (``mer_lib_bf16_channels_last``).
- **reference-style**: as the original code — one ``.npy`` file per example (written to a
  temporary folder), a ``torch.utils.data.DataLoader`` (batch 8, shuffled) that loads and
  collates them, ``.to(device)`` per batch, ``loss.item()`` per batch for the running loss,
  a validation pass over a second per-file loader and ``torch.save`` of the best model.

Throughput = training examples seen / wall seconds of the whole loop (validation included
in both). The loops alternate ``--repeats`` times after a warm-up of each; throughput and
ratios use each loop's *fastest* run (as ``timeit`` does: on a shared machine the slower
runs measure the neighbours), the median run is reported too. Results go to
``benchmarks/results/training.json``.

Examples::

    python benchmarks/bench_training.py                    # quick size on CPU (or GPU size with CUDA)
    python benchmarks/bench_training.py --examples 96 --epochs 3 --threads 1
    python benchmarks/bench_training.py --device cuda --width 1.0 --frames 313
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mer_lib.data import MerTensors
from mer_lib.metrics import pearson_per_column
from mer_lib.models import build_model
from mer_lib.profiles import get_profile
from mer_lib.runtime import resolve_device, seed_everything
from mer_lib.training import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results" / "training.json"
N_BANDS = 149


def make_data(n_train: int, n_valid: int, frames: int, seed: int = 0) -> MerTensors:
    """Random spectrograms with emotions linear in three band-range means (learnable)."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_valid
    z = torch.rand(n, 3, generator=g)
    x = torch.randn(n, 1, frames, N_BANDS, generator=g)
    for k, (lo, hi) in enumerate(((0, 50), (50, 100), (100, N_BANDS))):
        x[:, :, :, lo:hi] += 2 * z[:, k, None, None, None]
    emotions = z @ torch.rand(3, 8, generator=g) / 3
    split = {"train": np.arange(n_train), "valid": np.arange(n_train, n),
             "test": np.arange(n_train, n)}
    return MerTensors(x, emotions, None, split, [str(i) for i in range(n)], 0.0, 1.0,
                      f"bench-{n_train}-{n_valid}-{frames}-{seed}")


class NpyFiles(Dataset):
    """One spectrogram per .npy file, labels in memory (the reference's data layout)."""

    def __init__(self, files: list[Path], labels: np.ndarray):
        self.files, self.labels = files, labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        x = torch.from_numpy(np.load(self.files[i]))
        return x, torch.from_numpy(self.labels[i])


def write_files(data: MerTensors, folder: Path) -> dict[str, NpyFiles]:
    out = {}
    for name in ("train", "valid"):
        idx = data.split[name]
        files = []
        for i in idx:
            path = folder / f"{name}_{i:05d}.npy"
            np.save(path, data.x[i].numpy())
            files.append(path)
        out[name] = NpyFiles(files, data.emotions[idx].numpy())
    return out


def reference_loop(data: MerTensors, files: dict[str, NpyFiles], width: float, epochs: int,
                   seed: int, device: torch.device, workdir: Path, workers: int) -> float:
    """The original code's structure; returns wall seconds."""
    t0 = time.perf_counter()
    seed_everything(seed)
    model = build_model("a2e", width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    train_loader = DataLoader(files["train"], batch_size=8, shuffle=True, num_workers=workers)
    valid_loader = DataLoader(files["valid"], batch_size=8, shuffle=False, num_workers=workers)
    best = -math.inf
    for _ in range(epochs):
        model.train()
        running = 0.0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item()
        model.eval()
        preds, trues = [], []
        with torch.no_grad():
            for x, y in valid_loader:
                preds.append(model(x.to(device)).cpu().numpy())
                trues.append(y.numpy())
        r = float(np.nanmean(pearson_per_column(np.concatenate(preds), np.concatenate(trues))))
        if r > best:
            best = r
            torch.save(model.state_dict(), workdir / "best.pt")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def mer_lib_loop(data: MerTensors, width: float, epochs: int, seed: int, device: torch.device,
                 workdir: Path, bf16: bool, channels_last: bool) -> float:
    """:func:`mer_lib.training.train` from scratch into a fresh folder; returns wall seconds."""
    cfg = TrainConfig("a2e", seed, width=width, epochs=epochs, patience=epochs + 1,
                      bf16=bf16, channels_last=channels_last)
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    t0 = time.perf_counter()
    train(cfg, data, run_dir, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--width", type=float, default=None, help="default: quick profile's (CPU) / 1.0 (CUDA)")
    parser.add_argument("--frames", type=int, default=None, help="default: quick profile's (CPU) / 313 (CUDA)")
    parser.add_argument("--examples", type=int, default=None, help="training examples (default 96 / 288)")
    parser.add_argument("--valid", type=int, default=16, help="validation examples")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per timed loop (default 2 / 3)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each loop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    quick = get_profile("quick")
    width = args.width or (1.0 if gpu else quick.width)
    frames = args.frames or (313 if gpu else quick.excerpt_frames)
    n_train = args.examples or (288 if gpu else 96)
    epochs = args.epochs or (3 if gpu else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = make_data(n_train, args.valid, frames)

    flags = {"mer_lib": (False, False), "mer_lib_channels_last": (False, True)}
    if gpu:
        flags["mer_lib_bf16_channels_last"] = (True, True)
    times: dict[str, list[float]] = {"reference": [], **{k: [] for k in flags}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_files(data, work)
        # warm-up of every loop (kernel selection, allocator), not timed
        small = make_data(16, 4, frames, 1)
        (work / "warm").mkdir()
        reference_loop(small, write_files(small, work / "warm"), width, 1, 0, device, work, args.workers)
        for bf16, cl in flags.values():
            mer_lib_loop(small, width, 1, 0, device, work, bf16, cl)
        for _ in range(args.repeats):
            times["reference"].append(reference_loop(data, files, width, epochs, 6, device, work,
                                                     args.workers))
            for name, (bf16, cl) in flags.items():
                times[name].append(mer_lib_loop(data, width, epochs, 6, device, work, bf16, cl))

    seen = n_train * epochs
    result = {
        "benchmark": "training throughput, mer_lib trainer vs reference-style DataLoader loop",
        "device": torch.cuda.get_device_name(device) if gpu else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "width": width, "frames": frames, "bands": N_BANDS, "batch_size": 8,
        "train_examples": n_train, "valid_examples": args.valid, "epochs": epochs,
        "repeats": args.repeats, "seconds": times,
        "examples_per_s": {k: seen / min(v) for k, v in times.items()},
        "examples_per_s_median": {k: seen / statistics.median(v) for k, v in times.items()},
    }
    ref = result["examples_per_s"]["reference"]
    result["speedup_vs_reference"] = {k: v / ref for k, v in result["examples_per_s"].items()
                                      if k != "reference"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['device']}, width {width}, {frames} frames, {n_train} examples x {epochs} epochs")
    for k, v in result["examples_per_s"].items():
        speed = result["speedup_vs_reference"].get(k)
        ratio = f"{speed:5.2f}x" if speed else "   1x"
        print(f"  {k:<28} {v:8.1f} examples/s {ratio}  (runs: {', '.join(f'{t:.2f}s' for t in times[k])})")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
