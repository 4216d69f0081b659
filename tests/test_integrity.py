"""Data integrity end to end: identical bytes for identical inputs, data identities that follow
file contents, degenerate or unreadable files as clear errors, no leftovers after a kill.

Every test has a known answer: equal bytes, equal (or different) identities, an exact message,
an exact folder listing.
"""
from __future__ import annotations

import builtins
import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mer_lib import data as D
from mer_lib.cli import main as cli_main
from mer_lib.datasets.corpus import load_corpus
from mer_lib.datasets.synthetic import generate_corpus
from mer_lib.errors import DataLayoutError, MerError
from mer_lib.paths import atomic_path, temporary_prefix

ROOT = Path(__file__).resolve().parents[1]
SR = 22050


def _python(code: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the project importable, one line of output)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    """A small synthetic corpus (12 clips of 3 s) in the real layout."""
    return generate_corpus(tmp_path_factory.mktemp("data") / "corpus", n_clips=12,
                           clip_seconds=3.0, progress=False)


def _copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest)
    return dest


# ------------------------------------------------------------------ 1. identical bytes

def _clips(folder: Path) -> list[Path]:
    """Ten clips of different lengths (1 s to 3 s), noise plus a tone, WAV and MP3."""
    rng = np.random.default_rng(7)
    out = []
    for i, secs in enumerate(np.linspace(1.0, 3.0, 10)):
        n = int(secs * SR)
        t = np.arange(n) / SR
        x = 0.3 * rng.standard_normal(n) + 0.5 * np.sin(2 * np.pi * (200 + 40 * i) * t)
        path = folder / f"clip{i}.{'mp3' if i % 2 else 'wav'}"
        sf.write(path, (0.9 * x / np.abs(x).max()).astype(np.float32), SR)
        out.append(path)
    return out


def _entries(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(D.spectrogram_cache_dir(home).glob("*.npy"))}


def test_cache_bytes_do_not_depend_on_partition_threads_or_process(tmp_path):
    clips = _clips(tmp_path)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)               # A: all at once, one thread, one worker
        D.compute_spectrograms(clips, home=tmp_path / "a", progress=False, workers=1)
        torch.set_num_threads(2)               # B: 7 then the rest (a killed run), two threads
        D.compute_spectrograms(clips[:7], home=tmp_path / "b", progress=False, workers=2)
        D.compute_spectrograms(clips, home=tmp_path / "b", progress=False, workers=2)
        assert torch.get_num_threads() == 2    # the caller's setting is restored
    finally:
        torch.set_num_threads(old)
    # C: a fresh process with two threads, clips one by one in reverse order
    run = _python("""
        import sys, torch
        from mer_lib.data import compute_spectrograms
        torch.set_num_threads(2)
        for clip in reversed(sys.argv[2:]):
            compute_spectrograms([clip], home=sys.argv[1], progress=False, workers=2)
        """, str(tmp_path / "c"), *map(str, clips))
    assert run.returncode == 0, run.stderr
    a, b, c = (_entries(tmp_path / k) for k in "abc")
    assert len(a) == len(clips) and a == b == c


def test_identity_survives_a_copied_data_folder_with_new_mtimes(corpus_root, tmp_path):
    ds = D.load_dataset("smoke", corpus_root, home=tmp_path / "home1", progress=False)
    copy = _copy(corpus_root, tmp_path / "elsewhere" / "my data")
    for p in copy.rglob("*"):
        os.utime(p, ns=(2 * 10**18, 2 * 10**18))
    # another home: the spectrograms are recomputed from scratch, and come out the same
    moved = D.load_dataset("smoke", copy, home=tmp_path / "home2", progress=False)
    assert moved.identity == ds.identity and torch.equal(moved.x, ds.x)
    clip = copy / "soundtracks" / "Set1" / "004.mp3"
    clip.write_bytes(clip.read_bytes() + b"\0")               # new content, same audio
    changed = D.load_dataset("smoke", copy, home=tmp_path / "home2", progress=False)
    assert changed.identity != ds.identity


def test_identity_includes_the_tensors(corpus_root, tmp_path):
    home = tmp_path / "home"
    ds = D.load_dataset("smoke", corpus_root, home=home, progress=False)
    # the same cache key holding other bytes (what the old batched front end could produce)
    entry = D.spectrogram_cache_dir(home) / f"{load_corpus(corpus_root).audio_digests()[0]}.npy"
    np.save(entry, np.load(entry) + np.float32(1e-6))  # a few ulps in every bin
    other = D.load_dataset("smoke", corpus_root, home=home, progress=False)
    assert not torch.equal(other.x, ds.x)
    assert other.identity != ds.identity
    assert D.tensor_digest(other.x, other.emotions, other.midlevel) != \
        D.tensor_digest(ds.x, ds.emotions, ds.midlevel)


# ------------------------------------------------------------------ 3. degenerate audio

def test_a_one_sample_clip_is_rejected_naming_the_file(corpus_root, tmp_path):
    copy = _copy(corpus_root, tmp_path / "data")
    clip = copy / "soundtracks" / "Set1" / "005.mp3"
    sf.write(clip, np.array([0.5], np.float32), SR, format="MP3")
    with pytest.raises(DataLayoutError) as info:
        D.load_dataset("smoke", copy, home=tmp_path / "home", progress=False)
    assert str(info.value) == (f"audio file {clip} is too short: 1 samples at 22050 Hz "
                               f"(4.54e-05 s); clips must last at least 1 s")


def test_a_truncated_clip_is_reported(corpus_root, tmp_path):
    copy = _copy(corpus_root, tmp_path / "data")
    clip = copy / "soundtracks" / "Set1" / "003.mp3"
    audio, sr = sf.read(clip, dtype="float32")
    sf.write(clip, audio[:int(1.2 * sr)], sr, format="MP3")        # 1.2 s of 3 s
    with pytest.warns(D.ShortClipWarning) as record:
        ds = D.load_dataset("smoke", copy, home=tmp_path / "home", progress=False)
    text = str(record[0].message)
    assert text.startswith("1 clip(s) last less than 50% of the median duration (3.0 s)")
    assert f"{clip} (1.21 s)" in text
    assert ds.info["short_clips"] == [(str(clip), 1.21)]


# ------------------------------------------------------------------ 4. unreadable files

def _make_unreadable(monkeypatch, path: Path) -> None:
    """chmod 000, or (as root, where chmod does not stop reading) an open() that refuses."""
    if os.geteuid() != 0:
        _RESTORE[str(path)] = path.stat().st_mode   # restored after the test
        path.chmod(0)
        return
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)


_RESTORE: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _restore_modes():
    yield
    for name, mode in _RESTORE.items():
        Path(name).chmod(mode)
    _RESTORE.clear()


@pytest.mark.parametrize("relative, what", [
    ("soundtracks/Set1/002.mp3", "audio file"),
    ("soundtracks/mean_ratings_set1.csv", "Soundtracks ratings file"),
    ("midlevel/annotations.csv", "mid-level annotations file"),
])
def test_an_unreadable_file_is_a_mer_error_naming_it(corpus_root, tmp_path, monkeypatch,
                                                     relative, what):
    copy = _copy(corpus_root, tmp_path / "data")
    path = copy / relative
    _make_unreadable(monkeypatch, path)
    with pytest.raises(MerError) as info:
        D.load_dataset("smoke", copy, home=tmp_path / "home", progress=False)
    assert str(info.value) == f"cannot read {what} {path}: Permission denied"


def test_the_cli_prints_one_line_and_exits_2(corpus_root, tmp_path, monkeypatch, capsys):
    copy = _copy(corpus_root, tmp_path / "data")
    clip = copy / "soundtracks" / "Set1" / "002.mp3"
    _make_unreadable(monkeypatch, clip)
    monkeypatch.setenv("MER_HOME", str(tmp_path / "home"))
    args = ["train", "--variant", "a2e", "--seed", "0", "--profile", "smoke", "--data", str(copy),
            "--device", "cpu", "--no-progress"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot read audio file {clip}: Permission denied\n"


def test_the_cli_turns_any_os_error_into_one_line(monkeypatch, capsys):
    import mer_lib.cli as cli

    def broken(*args):
        raise PermissionError(13, "Permission denied", "/somewhere/state.pt")

    monkeypatch.setattr(cli, "_list_variants", broken)
    assert cli_main(["list-variants"]) == 2
    assert capsys.readouterr().err == "error: cannot access /somewhere/state.pt: Permission denied\n"


# ------------------------------------------------------------------ 5. no leftovers

def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")
                  and not p.name.endswith(".lock"))


def test_a_killed_atomic_write_is_cleaned_up_by_the_next_writer(tmp_path):
    run = _python("""
        import os, signal, sys
        from mer_lib.paths import atomic_path
        with atomic_path(sys.argv[1] + "/state.pt") as tmp:
            tmp.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        """, str(tmp_path))
    assert run.returncode == -signal.SIGKILL
    left = _hidden(tmp_path)
    assert len(left) == 1 and left[0].startswith(".state.pt.tmp-")   # what a kill leaves
    with atomic_path(tmp_path / "state.pt") as tmp:                  # the next run
        tmp.write_bytes(b"a whole checkpoint")
    assert _hidden(tmp_path) == [] and (tmp_path / "state.pt").read_bytes() == b"a whole checkpoint"


def test_a_live_writers_temporary_is_never_removed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from mer_lib.paths import atomic_path
        with atomic_path(sys.argv[1] + "/model.pt") as tmp:
            tmp.write_bytes(b"in progress")
            print("writing", flush=True)
            sys.stdin.readline()
        """), str(tmp_path)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "writing\n"
        before = _hidden(tmp_path)
        assert len(before) == 1 and f"-{child.pid}-" in before[0]
        with atomic_path(tmp_path / "history.csv") as tmp:           # another writer, same folder
            tmp.write_text("epoch\n")
        assert _hidden(tmp_path) == before                           # the live one's file stays
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert _hidden(tmp_path) == [] and (tmp_path / "model.pt").read_bytes() == b"in progress"


_GENERATE = """
    import os, signal, sys, time
    import mer_lib.datasets.synthetic as S
    real, calls = S._write_clip, []
    def write(job):
        calls.append(job["index"])
        if sys.argv[2] == "kill" and len(calls) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(job)
    S._write_clip = write
    if sys.argv[2] == "go":
        # Announce this process, and hold the first clip until the other process is also past
        # its imports: then it is certainly blocked on the lock while this one writes.
        ready = os.path.join(sys.argv[3], f"ready-{os.getpid()}")
        open(ready, "w").close()
        def write(job, _write=write):
            if len(calls) == 0:
                deadline = time.time() + 240
                while len(os.listdir(sys.argv[3])) < 2 and time.time() < deadline:
                    time.sleep(0.01)
                time.sleep(2.0)
            return _write(job)
        S._write_clip = write
    S.generate_corpus(sys.argv[1], n_clips=10, clip_seconds=1.0, progress=False, workers=1)
    print(len(calls))
    """


def test_a_killed_corpus_generation_is_cleaned_up_by_the_next_one(tmp_path):
    root = tmp_path / "data" / "corpus"
    run = _python(_GENERATE, str(root), "kill", "-")
    assert run.returncode == -signal.SIGKILL
    assert not root.exists()
    left = [n for n in _hidden(root.parent) if not n.endswith(".lock.owner")]  # see locks.py
    assert [n.split("-")[0] for n in left] == [".corpus.partial"]
    generate_corpus(root, n_clips=10, clip_seconds=1.0, progress=False)
    assert _hidden(root.parent) == []
    assert sorted(p.name for p in root.parent.iterdir()) == [".corpus.lock", "corpus"]
    assert len(list((root / "soundtracks" / "Set1").glob("*.mp3"))) == 10


def test_two_processes_generate_one_corpus_once(tmp_path):
    root = tmp_path / "data" / "corpus"
    marks = tmp_path / "ready"
    marks.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_GENERATE), str(root), "go",
                               str(marks)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    rendered = sorted(int(o[0]) for o in outs)
    assert rendered == [0, 10]                          # one generated, the other waited
    assert any("waiting for process" in o[1] for o in outs)
    assert _hidden(root.parent) == []
    assert len(load_corpus(root)) == 10


def test_temporary_names_identify_the_writer():
    prefix = temporary_prefix("state.pt", "tmp")
    assert prefix.startswith(".state.pt.tmp-") and prefix.endswith(f"-{os.getpid()}-")
