"""Reading audio files and preparing waveforms for the front end.

The reference's preprocessing: mono, 22 050 Hz, leading and trailing exactly-zero samples
dropped, peak-normalised to ``max |x| = 1``.

**Degenerate clips.** :func:`load_waveform` (a file as model input) rejects, naming the file,
a clip whose decoded duration is below :data:`MIN_SECONDS` (1 s, i.e. 32 spectrogram
frames: anything shorter would be tiled many times into a training excerpt) and a clip
whose sound, between its first and last non-zero sample, is shorter than one 2048-sample
frame. Clips much shorter than the rest of their corpus (e.g. a truncated MP3) are reported
by :func:`mer_lib.data.load_dataset`. A file that cannot be read (missing, no permission,
corrupt) raises DataLayoutError naming it.

Example:
    >>> import numpy as np
    >>> t = np.arange(44100) / 44100
    >>> w = prepare_waveform(0.5 * np.cos(2 * np.pi * 440 * t), 44100)
    >>> w.shape[0], round(float(w.abs().max()), 6)
    (22050, 1.0)
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from mer_lib.errors import DataLayoutError, ParameterError, check_positive
from mer_lib.frontend import FRAME_SIZE, SAMPLE_RATE

__all__ = ["MIN_SECONDS", "load_audio", "prepare_waveform", "load_waveform"]

#: Shortest decoded duration (seconds) of a clip that :func:`load_waveform` accepts.
MIN_SECONDS = 1.0


def _soundfile_formats() -> set[str]:
    """Lower-case file extensions that libsndfile decodes itself."""
    import soundfile as sf   # lazy: only the decoder in use is loaded

    formats = {f.lower() for f in sf.available_formats()}
    aliases = {"aiff": {"aif", "aifc"}, "ogg": {"oga", "opus"}}  # extensions of those formats
    return formats.union(*(names for fmt, names in aliases.items() if fmt in formats))


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Decode ``path`` to a float32 array (samples, channels) and its rate; raise on failure.

    soundfile is tried first. If it fails on a format it supports (WAV, FLAC, OGG, MP3, ...)
    the file is corrupt; only for other formats (e.g. M4A) is ``librosa.load`` tried.
    """
    import soundfile as sf   # lazy: only the decoder in use is loaded

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(sr)
    except Exception as err:
        sf_error = err
    if path.suffix.lower().lstrip(".") in _soundfile_formats():
        raise DataLayoutError(
            f"cannot read audio file {path}: it is corrupt or not a valid "
            f"{path.suffix.lstrip('.').upper()} file (libsndfile reports: {sf_error})")
    try:
        import librosa   # lazy: only the decoder in use is loaded

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception as lr_error:
        raise DataLayoutError(
            f"cannot read audio file {path}: expected an MP3/WAV/FLAC/OGG file or another "
            f"format librosa can decode (soundfile: {sf_error}; librosa: "
            f"{type(lr_error).__name__}: {lr_error})") from None
    data = np.atleast_2d(np.asarray(data, dtype=np.float32)).T  # -> (samples, channels)
    return data, int(sr)


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as a mono float32 signal; returns ``(signal, sample_rate)``.

    Uses soundfile (WAV, FLAC, OGG, MP3 with libsndfile >= 1.1), falling back to
    ``librosa.load(sr=None)``. Channels are averaged. Raises ``DataLayoutError`` naming the
    path if the file is missing, empty, unreadable, has no samples or is all zeros.

    Example:
        >>> load_audio("no/such/file.mp3")
        Traceback (most recent call last):
        ...
        mer_lib.errors.DataLayoutError: audio file no/such/file.mp3 does not exist
    """
    path = Path(path)
    try:
        if not path.exists():
            raise DataLayoutError(f"audio file {path} does not exist")
        if not path.is_file():
            raise DataLayoutError(f"audio file {path} is not a file (expected an MP3/WAV/FLAC file)")
        if path.stat().st_size == 0:
            raise DataLayoutError(f"audio file {path} is empty (0 bytes)")
        with open(path, "rb") as fh:  # a clear message for permission errors (libsndfile's is not)
            fh.read(1)
    except OSError as err:
        raise DataLayoutError(f"cannot read audio file {path}: {err.strerror or err}") from None
    data, sr = _read(path)
    if sr <= 0:
        raise DataLayoutError(f"audio file {path} reports an invalid sample rate {sr}")
    if data.shape[0] == 0:
        raise DataLayoutError(f"audio file {path} contains no audio samples")
    signal = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    if not np.isfinite(signal).all():
        raise DataLayoutError(f"audio file {path} contains NaN or infinite samples")
    if not np.any(signal):
        raise DataLayoutError(f"audio file {path} is silent (all {signal.size} samples are zero)")
    return signal, sr


def prepare_waveform(signal: np.ndarray | torch.Tensor, sr: int,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Turn a mono signal into the front end's input.

    Converts to float32 torch (on ``device`` if given, else the tensor's own device / CPU),
    resamples to 22 050 Hz with ``torchaudio.functional.resample`` (skipped if ``sr`` is
    already 22 050), drops leading and trailing exactly-zero samples and divides by the
    peak absolute value. Zeros are dropped *after* resampling (the order of the reference
    pipeline), so the resampler's ringing into a silent edge counts as signal.

    Example:
        >>> prepare_waveform(np.array([0.0, 0.0, 0.5, -0.25, 0.0]), 22050).tolist()
        [1.0, -0.5]
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr must be a positive integer sample rate in Hz, got {sr!r}")
    sr = int(sr)
    if isinstance(signal, np.ndarray):
        x = torch.from_numpy(np.asarray(signal, dtype=np.float32))
    elif isinstance(signal, torch.Tensor):
        x = signal.detach() if signal.requires_grad else signal
    else:
        raise ParameterError(
            f"signal must be a numpy array or torch tensor, got {type(signal).__name__}")
    if x.dim() != 1:
        raise ParameterError(
            f"signal must be 1-D (mono samples), got shape {tuple(x.shape)}; mix channels first")
    x = x.to(device=device if device is not None else x.device, dtype=torch.float32)
    if x.numel() == 0:
        raise DataLayoutError("signal is empty (0 samples); expected a non-empty mono signal")
    if not torch.isfinite(x).all():
        raise DataLayoutError("signal contains NaN or infinite samples")
    if sr != SAMPLE_RATE:
        import torchaudio.functional as taf   # lazy: only the decoder in use is loaded

        x = taf.resample(x, orig_freq=sr, new_freq=SAMPLE_RATE)
    nz = torch.nonzero(x).flatten()
    if nz.numel() == 0:
        raise DataLayoutError(
            f"signal is silent (all {x.numel()} samples are zero); cannot peak-normalise it")
    x = x[int(nz[0]):int(nz[-1]) + 1]
    return x / x.abs().max()


def load_waveform(path: str | os.PathLike, device: torch.device | str | None = None,
                  min_seconds: float = MIN_SECONDS) -> torch.Tensor:
    """``prepare_waveform(*load_audio(path), device)``: a file as front-end input.

    Raises DataLayoutError naming the file if it cannot be read, if its decoded duration
    is below ``min_seconds`` (default :data:`MIN_SECONDS`), or if less than one 2048-sample
    frame lies between its first and last non-zero sample.

    Example:
        >>> load_waveform("missing.wav")
        Traceback (most recent call last):
        ...
        mer_lib.errors.DataLayoutError: audio file missing.wav does not exist
    """
    check_positive("min_seconds", min_seconds, allow_zero=True)
    signal, sr = load_audio(path)
    if signal.size < min_seconds * sr:
        raise DataLayoutError(
            f"audio file {path} is too short: {signal.size} samples at {sr} Hz "
            f"({signal.size / sr:.3g} s); clips must last at least {min_seconds:g} s")
    try:
        wave = prepare_waveform(signal, sr, device=device)
    except DataLayoutError as err:
        raise DataLayoutError(f"audio file {path}: {err}") from None
    if wave.numel() < FRAME_SIZE:
        raise DataLayoutError(
            f"audio file {path} holds only {wave.numel()} samples (at {SAMPLE_RATE} Hz) between "
            f"its first and last non-zero sample, less than one {FRAME_SIZE}-sample frame")
    return wave
