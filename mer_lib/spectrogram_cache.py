"""The on-disk spectrogram cache: one ``.npy`` per audio file, keyed by the front end's version
and the file's content hash.

An entry is a function of the file's bytes alone: each clip is computed on its own, on the
CPU, with one torch intra-op thread (clips run in parallel worker threads, never in one
batch), so the entry does not depend on which other clips were missing from the cache, on
how a killed run partitioned the work, or on the thread count. Entries are written
atomically: an interrupted run leaves no half-written entry.

Example:
    >>> spectrogram_cache_dir("/tmp/home").parts[-3:]
    ('cache', 'spectrograms', 'logfilt-madmom0.16-v2')
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import load_waveform
from .datasets.corpus import file_digest
from .errors import ParameterError, check_int
from .frontend import LogFiltSpec
from .paths import StorageError, atomic_path, mer_home
from .versions import FRONTEND_VERSION


def spectrogram_cache_dir(home: str | Path | None = None) -> Path:
    """The folder of cached spectrograms for the current front-end settings."""
    return Path(home or mer_home()) / "cache" / "spectrograms" / FRONTEND_VERSION


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def compute_spectrograms(audio_paths: Sequence[str | Path], *, home: str | Path | None = None,
                         device: str | torch.device | None = None, progress: bool = True,
                         digests: Sequence[str] | None = None,
                         workers: int | None = None) -> list[torch.Tensor]:
    """Log-filtered spectrograms (frames, 149) of audio files, through the on-disk cache.

    Each entry is keyed by the front-end version and the file's content hash
    (:func:`~mer_lib.datasets.corpus.file_digest`) and written atomically, so an interrupted
    run leaves no half-written entry and a second run only reads ``.npy`` files. A missing
    entry is computed from its clip alone, on the CPU with one torch intra-op thread, so its
    bytes do not depend on the other clips, the partition of the work or the thread count;
    ``workers`` threads (default: up to 4) decode and compute different clips in parallel.

    Args:
        audio_paths: the audio files.
        home: the home folder (default :func:`~mer_lib.paths.mer_home`).
        device: accepted for compatibility and ignored: entries are always computed on the
            CPU, so a model trained on any device sees the same bytes (the front end takes
            well under 1 % of a clip's real time there).
        progress: show a progress bar while entries are computed.
        digests: the files' :func:`~mer_lib.datasets.corpus.file_digest` if already known
            (e.g. :meth:`Corpus.audio_digests`), so that no file is hashed twice.
        workers: number of worker threads.

    Example:
        >>> specs = compute_spectrograms(["clip.mp3"])          # doctest: +SKIP
        >>> specs[0].shape                                        # doctest: +SKIP
        torch.Size([313, 149])
    """
    paths = [Path(p) for p in audio_paths]
    if digests is None:
        digests = [file_digest(p) for p in paths]
    elif len(digests) != len(paths):
        raise ParameterError(f"digests must have one entry per audio path ({len(paths)}), "
                             f"got {len(digests)}")
    workers = _default_workers() if workers is None else check_int("workers", workers)
    cache = spectrogram_cache_dir(home)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create the spectrogram cache {cache}: "
                           f"{err.strerror or err}") from None
    entries = [cache / f"{d}.npy" for d in digests]
    todo: dict[Path, Path] = {}
    for path, entry in zip(paths, entries):
        if not entry.is_file():
            todo.setdefault(entry, path)
    if todo:
        _fill_cache(todo, workers, progress)
    out = []
    for path, entry in zip(paths, entries):
        try:
            out.append(torch.from_numpy(np.load(entry)))
        except (OSError, ValueError) as err:
            raise StorageError(f"cannot read the cached spectrogram {entry} of {path}: {err}; "
                               f"delete it to recompute it") from None
    return out


def _fill_cache(todo: dict[Path, Path], workers: int, progress: bool) -> None:
    """Compute and store the entries ``todo`` (entry -> audio file), one clip per task."""
    local = threading.local()

    def one(item: tuple[Path, Path]) -> None:
        entry, path = item
        torch.set_num_threads(1)  # this worker's OpenMP/MKL threads (the global is 1 too)
        wave = load_waveform(path)
        front = getattr(local, "front", None)
        if front is None:
            front = local.front = LogFiltSpec()
        with torch.no_grad():
            spec = front(wave).numpy().astype(np.float32)
        with atomic_path(entry, suffix=".npy") as tmp:
            np.save(tmp, spec)

    threads = torch.get_num_threads()
    workers = min(workers, len(todo))
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        torch.set_num_threads(1)
        with tqdm(total=len(todo), desc="spectrograms", disable=not progress, leave=False) as bar:
            for _ in (pool.map(one, todo.items()) if pool else map(one, todo.items())):
                bar.update()
    finally:  # on an error or Ctrl-C, drop the clips not yet started
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
