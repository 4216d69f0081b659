"""The sound of the synthetic corpus: seven mid-level controls in, a music-like clip out.

:func:`render_clip` turns one clip's controls into audio (melody, harmony, rhythm, timbre, and
an optional spurious cue), :func:`emotions_from_midlevel` maps the controls to the eight emotion
ratings through :data:`EMOTION_MAP`. :mod:`mer_lib.datasets.synthetic` writes a whole corpus
from them; its docstring describes what every control does to the audio.

Example:
    >>> import numpy as np
    >>> audio, info = render_clip(np.full(7, 0.5), seconds=1.0, rng=np.random.default_rng(0))
    >>> audio.shape, float(np.abs(audio).max()) <= 1.0
    ((22050,), True)
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..errors import ParameterError, check_int, check_positive
from ..versions import GENERATOR_VERSION  # noqa: F401  (re-exported)
from . import MIDLEVEL


#: Sample rate of every synthetic clip (Hz).
SR = 22050
#: Frequency (Hz) of the spurious-cue hum; below the MP3 encoder's ~9.7 kHz low-pass.
CUE_FREQ = 9000.0
#: Amplitude of the hum at level 1 and strength 1 (the music peaks at 0.9).
CUE_AMP = 0.05
#: Standard deviation of the mid-level rating noise, on the 0..1 scale.
MIDLEVEL_NOISE = 0.03

_DISCRETE = ("anger", "fear", "happy", "sad", "tender")

#: The fixed linear map from mid-level controls (rows, MIDLEVEL order) to emotions (columns,
#: EMOTIONS order); see the table in the module docstring.
EMOTION_MAP = np.array([
    # val    ener   tens   ang    fear   happy  sad    tender
    [0.25, -0.10, 0.00, -0.15, 0.00, 0.10, 0.00, 0.30],   # melodiousness
    [0.00, 0.40, 0.00, 0.25, 0.00, 0.15, -0.30, -0.25],   # articulation
    [0.00, 0.35, 0.00, 0.15, 0.00, 0.00, -0.15, 0.00],    # rhythm_complexity
    [0.00, 0.00, -0.20, 0.00, -0.15, 0.00, 0.00, 0.00],   # rhythm_stability
    [-0.15, 0.00, 0.35, 0.30, 0.25, -0.15, 0.00, -0.20],  # dissonance
    [0.20, 0.00, -0.25, 0.00, -0.25, 0.00, 0.00, 0.10],   # tonal_stability
    [-0.30, 0.00, 0.00, 0.00, 0.20, -0.35, 0.35, 0.00],   # minorness
])
#: Bias that puts every emotion at 0.5 (rating 5) when all controls are 0.5.
EMOTION_BIAS = 0.5 - 0.5 * EMOTION_MAP.sum(axis=0)
EMOTION_MAP.setflags(write=False)
EMOTION_BIAS.setflags(write=False)

_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_CHROMATIC_ROOTS = {False: np.array([1, 3, 6, 8, 10]),   # outside the major key
                    True: np.array([1, 4, 6, 9, 11])}    # outside the natural-minor key
_PROGRESSIONS = ((0, 5, 7, 0), (0, 7, 5, 0), (0, 5, 0, 7), (0, 0, 5, 7), (0, 5, 7, 5))
_TABLE_LEN = 4096


def _wavetable(weights: Mapping[int, float]) -> np.ndarray:
    """One period of a sum of harmonics ``{k: amplitude}``."""
    phase = np.arange(_TABLE_LEN) / _TABLE_LEN
    return sum(a * np.sin(2 * np.pi * k * phase) for k, a in weights.items()).astype(np.float32)


# (low partials, upper partials): the upper ones are stretched by the dissonance control
_TIMBRES = {
    "pad": (_wavetable({1: 1.0, 2: 0.35}), _wavetable({k: k ** -1.5 for k in range(3, 7)})),
    "bass": (_wavetable({1: 1.0, 2: 0.5}), _wavetable({3: 0.25, 4: 0.12})),
    "lead": (_wavetable({1: 1.0, 2: 0.5}), _wavetable({3: 0.33, 4: 0.25, 5: 0.2})),
}


def _as_controls(controls: Mapping[str, float] | np.ndarray | list) -> np.ndarray:
    """Controls as a float array in MIDLEVEL order, checked to lie in [0, 1]."""
    if isinstance(controls, Mapping):
        missing = [k for k in MIDLEVEL if k not in controls]
        unknown = [k for k in controls if k not in MIDLEVEL]
        if missing or unknown:
            raise ParameterError(f"controls must have exactly the keys {list(MIDLEVEL)}; "
                                 f"missing {missing}, unknown {unknown}")
        controls = [controls[k] for k in MIDLEVEL]
    m = np.asarray(controls, dtype=float)
    if m.shape != (len(MIDLEVEL),) or not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ParameterError(f"controls must be {len(MIDLEVEL)} numbers in [0, 1] "
                             f"({', '.join(MIDLEVEL)}), got {controls!r}")
    return m


def emotions_from_midlevel(m: np.ndarray, rng: np.random.Generator | int | None = None,
                           noise: float = 0.05) -> np.ndarray:
    """Emotion ratings (1-9) from mid-level controls on the 0..1 scale by the fixed map.

    ``rating = clip(1 + 8 (m @ EMOTION_MAP + EMOTION_BIAS + N(0, noise)), 1, 9)``.

    Args:
        m: controls, shape (N, 7) or (7,), in MIDLEVEL order, values in [0, 1].
        rng: generator or seed for the noise (None: fresh, non-reproducible noise).
        noise: standard deviation of the noise on the 0..1 scale (0 gives the clean map).

    Returns:
        Ratings, shape (N, 8) (or (8,) for a single clip), in EMOTIONS order.

    Example:
        >>> emotions_from_midlevel(np.full(7, 0.5), noise=0.0)
        array([5., 5., 5., 5., 5., 5., 5., 5.])
    """
    m = np.asarray(m, dtype=float)
    if m.shape[-1:] != (len(MIDLEVEL),) or m.ndim > 2:
        raise ParameterError(f"m must have shape (N, {len(MIDLEVEL)}) or ({len(MIDLEVEL)},), "
                             f"got {m.shape}")
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ParameterError("m must hold mid-level controls in [0, 1]")
    check_positive("noise", noise, allow_zero=True)
    z = m @ EMOTION_MAP + EMOTION_BIAS
    if noise > 0:
        z = z + np.random.default_rng(rng).normal(0.0, noise, size=z.shape)
    return np.clip(1.0 + 8.0 * z, 1.0, 9.0)


def _tempo_grid(n_beats: int, beat: float, stability: float, rng: np.random.Generator
                ) -> np.ndarray:
    """Start time (s) of every 16th-note slot, with a slow tempo drift (rhythm stability)."""
    g = np.convolve(rng.normal(size=n_beats + 4), np.ones(5) / math.sqrt(5), mode="valid")
    durations = beat * np.clip(1.0 + 0.4 * (1.0 - stability) * g[:n_beats], 0.5, 1.6)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    return (starts[:, None] + durations[:, None] * np.arange(4) / 4).ravel()


def _pattern(n_slots: int, complexity: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of sounding 16th slots: a two-bar pattern, repeated (rhythm complexity)."""
    k = np.arange(32)
    p = np.where(k % 4 == 0, 1.0 - 0.35 * complexity,
                 np.where(k % 4 == 2, 0.9 * complexity,
                          0.75 * max(0.0, complexity - 0.25) / 0.75))
    bar = rng.random(32) < p
    bar[0] = True
    return np.flatnonzero(np.resize(bar, n_slots))


def _jitter(slots: np.ndarray, slot_time: np.ndarray, stability: float, seconds: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Onset times of ``slots`` with timing jitter (std 0.1 (1 - stability) s).

    Returns the sorted onsets inside the clip and the slot each of them came from.
    """
    sd = 0.1 * (1.0 - stability)
    t = slot_time[slots] + np.clip(rng.normal(0.0, 1.0, slots.shape), -2.5, 2.5) * sd
    t = np.clip(t, 0.0, None)
    order = np.argsort(t, kind="stable")
    keep = t[order] < seconds
    return t[order][keep], slots[order][keep]


def _envelope(n: int, sr: int, onsets: np.ndarray, amps: np.ndarray, gate_frac: float,
              tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample envelope of a monophonic voice and the index of the sounding note.

    Each note starts at its onset (5-ms attack), decays with time constant ``tau`` and is
    released (20 ms) after ``gate_frac`` of the interval to the next onset.
    """
    start = np.minimum(np.round(onsets * sr).astype(np.int64), n)
    lead_in = start.size == 0 or start[0] > 0
    if lead_in:  # a silent note before the first onset
        start = np.concatenate([[0], start])
        amps = np.concatenate([[0.0], amps])
    lengths = np.diff(start, append=n)
    idx = np.repeat(np.arange(start.size), lengths)
    t = (np.arange(n, dtype=np.float32) - start[idx].astype(np.float32)) / np.float32(sr)
    gate = (gate_frac * np.diff(start, append=n + sr) / sr).astype(np.float32)
    env = np.exp(t * np.float32(-1.0 / tau))
    env *= np.minimum(np.float32(1.0), t * np.float32(200.0))
    env *= np.clip(np.float32(1.0) - (t - gate[idx]) * np.float32(50.0), 0.0, 1.0)
    env *= amps.astype(np.float32)[idx]
    return env, np.maximum(idx - 1, 0) if lead_in else idx


def _oscillator(pitches: np.ndarray, idx: np.ndarray, sr: int, timbre: str,
                stretch: float) -> np.ndarray:
    """Phase-continuous wavetable oscillator playing MIDI ``pitches[idx]`` sample by sample."""
    if pitches.size == 0:
        return np.zeros(idx.size, dtype=np.float32)
    low, high = _TIMBRES[timbre]
    phase = np.cumsum(_hz(pitches)[idx] * (_TABLE_LEN / sr))  # in table samples
    mask = _TABLE_LEN - 1
    out = low[phase.astype(np.int64) & mask]
    out += high[(phase * (1.0 + stretch)).astype(np.int64) & mask]
    return out


def _hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=float) - 69.0) / 12.0)


def _melody(n_notes: int, mel: float, minor: float, tonal: float, key: int,
            rng: np.random.Generator) -> np.ndarray:
    """MIDI pitches of the lead line (melodiousness, minorness, tonal stability)."""
    degree, direction = int(rng.choice([0, 2, 4])), 1
    degrees = np.empty(n_notes, dtype=int)
    for i in range(n_notes):
        if i > 0:
            if rng.random() < mel:
                if rng.random() > 0.75 or not -3 <= degree + direction <= 9:
                    direction = -direction
                degree += direction * int(rng.choice([1, 1, 1, 2]))
            else:
                degree = int(rng.integers(-3, 10))
        degrees[i] = degree
    pcs = _MAJOR[degrees % 7]
    lowered = np.isin(degrees % 7, (2, 5, 6)) & (rng.random(n_notes) < minor)
    pcs = pcs - lowered
    # chromatic notes: a semitone away, to a pitch class outside this note's scale
    chroma = rng.random(n_notes) < 0.6 * (1.0 - tonal)
    up_in_scale = np.isin((pcs + 1) % 12, _MAJOR) & ~lowered
    shift = np.where(up_in_scale, -1, 1)
    pcs = pcs + np.where(chroma, shift, 0)
    return 70 + key + 12 * np.floor_divide(degrees, 7) + pcs - 12 * (key >= 6)


def render_clip(controls: Mapping[str, float] | np.ndarray, seconds: float = 10.0,
                sr: int = SR, rng: np.random.Generator | int | None = None, *,
                tempo: float | None = None, key: int | None = None,
                cue_level: float = 0.0) -> tuple[np.ndarray, dict]:
    """Synthesise one clip whose musical properties follow the seven mid-level controls.

    Args:
        controls: dict by MIDLEVEL name or array in MIDLEVEL order, values in [0, 1].
        seconds: clip length in seconds; sr: sample rate.
        rng: generator or seed for every random choice (None: fresh randomness).
        tempo: beats per minute (default: drawn from U(70, 160)).
        key: pitch class of the tonic, 0 = C (default: drawn uniformly).
        cue_level: amplitude factor of the spurious-cue hum (0 = none); the hum has amplitude
            ``CUE_AMP * cue_level`` relative to the music's 0.9 peak.

    Returns:
        ``(audio, notes)``: float32 mono audio of ``round(seconds * sr)`` samples peaking at
        0.9, and a dict of what was played: ``tempo``, ``key``, ``chords`` (root pitch class per
        chord, relative to the key), ``chord_times`` and, per part (``pad``, ``bass``, ``lead``,
        ``hats``), ``onsets`` in seconds (and ``pitches`` as MIDI numbers for bass and lead).

    Example:
        >>> audio, notes = render_clip(np.full(7, 0.5), seconds=2.0, rng=0)
        >>> audio.shape, round(float(abs(audio).max()), 2)
        ((44100,), 0.9)
    """
    m = dict(zip(MIDLEVEL, _as_controls(controls)))
    check_positive("seconds", seconds)
    check_int("sr", sr, minimum=16000)
    check_positive("cue_level", cue_level, allow_zero=True)
    if cue_level > 0 and sr <= 2 * CUE_FREQ:
        raise ParameterError(f"a spurious cue at {CUE_FREQ:.0f} Hz needs sr > {2 * CUE_FREQ:.0f}, "
                             f"got {sr}")
    rng = np.random.default_rng(rng)
    tempo = float(rng.uniform(70, 160)) if tempo is None else check_positive("tempo", tempo)
    key = int(rng.integers(12)) if key is None else int(key) % 12
    n = int(round(seconds * sr))
    beat = 60.0 / tempo
    n_beats = int(math.ceil(seconds / beat)) + 2
    slot_time = _tempo_grid(n_beats, beat, m["rhythm_stability"], rng)
    n_slots = slot_time.size

    # harmony: one chord per bar (per half bar below 110 BPM)
    chord_slots = 8 if tempo < 110 else 16
    n_chords = int(math.ceil(n_slots / chord_slots))
    prog = np.array(_PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))])
    roots = np.resize(prog, n_chords)
    chromatic = rng.random(n_chords) < 0.7 * (1.0 - m["tonal_stability"])
    chrom_set = _CHROMATIC_ROOTS[bool(m["minorness"] >= 0.5)]
    roots = np.where(chromatic, rng.choice(chrom_set, n_chords), roots)

    # articulation: gate fraction and decay time of every pitched note
    art = m["articulation"]
    gate_frac, tau = 1.0 - 0.85 * art, 0.06 + 2.0 * (1.0 - art) ** 2
    stretch = 0.06 * m["dissonance"]
    mix = np.zeros(n)
    stab = m["rhythm_stability"]

    # pad: root, fifth, thirds (minorness), minor second and tritone (dissonance)
    pad_slots = _pattern(n_slots, m["rhythm_complexity"], rng)
    pad_on, slots = _jitter(pad_slots, slot_time, stab, seconds, rng)
    pad_chord = slots // chord_slots
    env, idx = _envelope(n, sr, pad_on, np.ones(pad_on.size), gate_frac, tau)
    minor = m["minorness"]
    diss = m["dissonance"]
    pad_root = 55 + (key + roots - 55) % 12  # MIDI 55..66
    intervals = {0: 0.30, 7: 0.26, 4: 0.30 * np.clip(1.2 - 2 * minor, 0, 1),
                 3: 0.30 * np.clip(2 * minor - 0.8, 0, 1), 1: 0.30 * diss, 6: 0.26 * diss}
    for interval, level in intervals.items():
        if level > 0:
            mix += level * env * _oscillator(pad_root[pad_chord] + interval, idx, sr, "pad",
                                             stretch)

    # bass: chord root on even 16ths of the pad pattern, alternating root and fifth
    bass_slots = np.union1d(pad_slots[pad_slots % 2 == 0], np.arange(0, n_slots, chord_slots))
    bass_on, slots = _jitter(bass_slots, slot_time, stab, seconds, rng)
    bass_chord = slots // chord_slots
    bass_pitch = 36 + (key + roots[bass_chord]) % 12 + 7 * (np.arange(bass_on.size) % 2)
    env, idx = _envelope(n, sr, bass_on, np.ones(bass_on.size), gate_frac, tau)
    mix += 0.45 * env * _oscillator(bass_pitch, idx, sr, "bass", stretch)

    # lead: its own pattern, pitches from the melody model
    lead_slots = _pattern(n_slots, m["rhythm_complexity"], rng)
    lead_on, _ = _jitter(lead_slots, slot_time, stab, seconds, rng)
    lead_pitch = _melody(lead_on.size, m["melodiousness"], minor, m["tonal_stability"], key, rng)
    env, idx = _envelope(n, sr, lead_on, np.ones(lead_on.size), gate_frac, tau)
    level = 0.15 + 0.35 * m["melodiousness"]
    mix += level * env * _oscillator(lead_pitch, idx, sr, "lead", stretch)

    # hats: band-limited noise clicks on the pad pattern, accented on the beat
    hat_on, slots = _jitter(pad_slots, slot_time, stab, seconds, rng)
    accents = np.where(slots % 4 == 0, 1.0, 0.6)
    env, _ = _envelope(n, sr, hat_on, accents, 1.0, 0.03)
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spec *= np.exp(-0.5 * ((f - 4500.0) / 1000.0) ** 2)
    noise = np.fft.irfft(spec, n)
    mix += 0.6 * env * noise / (noise.std() + 1e-12)

    floor = 1e-3 * max(float(np.abs(mix).max()), 1e-3)
    mix += floor * rng.normal(size=n)  # -60 dB floor: no digital silence
    mix *= 0.9 / np.abs(mix).max()
    if cue_level > 0:
        mix += CUE_AMP * cue_level * np.sin(2 * np.pi * CUE_FREQ * np.arange(n) / sr)
        mix *= 0.9 / np.abs(mix).max()
    notes = {
        "tempo": tempo, "key": key, "chords": roots,
        "chord_times": slot_time[np.arange(0, n_slots, chord_slots)],
        "pad": {"onsets": pad_on}, "bass": {"onsets": bass_on, "pitches": bass_pitch},
        "lead": {"onsets": lead_on, "pitches": lead_pitch}, "hats": {"onsets": hat_on},
    }
    return mix.astype(np.float32), notes
