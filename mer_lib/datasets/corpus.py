"""The corpus the models train on: Soundtracks Set 1 joined with its mid-level ratings.

Two ways to point at the data::

    <root>/soundtracks/   Soundtracks Set 1 (see mer_lib.datasets.soundtracks)
    <root>/midlevel/      optional: Mid-level Perceptual Features (see mer_lib.datasets.midlevel)

(the synthetic corpus is written this way), or ``soundtracks_dir=`` and ``midlevel_dir=``
separately, for real data that lives anywhere. The two datasets are joined by Soundtracks
number; clips are ordered by number.

Example:
    >>> from mer_lib.datasets.corpus import load_corpus
    >>> c = load_corpus("data/synthetic")                 # doctest: +SKIP
    >>> len(c), c.ids[:2], c.emotions.shape, c.midlevel.shape  # doctest: +SKIP
    (360, ['001', '002'], (360, 8), (360, 7))
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import EMOTIONS, MIDLEVEL
from ._csv import few, require_dir
from .midlevel import check_audio_files, extra_clips, load_midlevel, soundtracks_subset
from .soundtracks import load_soundtracks
from ..errors import DataLayoutError, ParameterError

SOUNDTRACKS_SUBDIR = "soundtracks"
MIDLEVEL_SUBDIR = "midlevel"

LAYOUT = f"""\
  <root>/{SOUNDTRACKS_SUBDIR}/   Soundtracks Set 1 (Set1/, mean_ratings_set1.csv)
  <root>/{MIDLEVEL_SUBDIR}/      optional: metadata.csv, annotations.csv, audio/"""


def file_digest(path: str | Path) -> str:
    """Short sha256 (20 hex digits) of a file's bytes: an audio file's identity.

    The corpus fingerprint and the spectrogram cache both name a clip by this digest, so a
    copied or moved data folder keeps its keys and a rewritten file gets a new one.
    Raises DataLayoutError naming the file if it is missing or cannot be read.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "a.bin"
        >>> _ = p.write_bytes(b"abc")
        >>> file_digest(p)
        'ba7816bf8f01cfea4141'
    """
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise DataLayoutError(f"audio file {path} does not exist") from None
    except OSError as err:
        raise DataLayoutError(f"cannot read audio file {path}: {err.strerror or err}") from None
    return h.hexdigest()[:20]


def _labels(values, n: int, width: int, what: str) -> np.ndarray | None:
    """``values`` as an (n, width) float32 array, or None; ParameterError on a wrong shape."""
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape != (n, width):
        raise ParameterError(f"Corpus.{what} must have shape ({n}, {width}), got {arr.shape}")
    return arr


@dataclass
class Corpus:
    """Clips with their labels, in a fixed order.

    Attributes:
        name: a short name (e.g. the data folder's name).
        ids: clip IDs; Soundtracks numbers zero-padded to 3 digits (``"001"``), or mid-level
            song ids for the extra clips.
        audio_paths: one audio file per clip.
        emotions: (N, 8) float32 ratings in ``EMOTIONS`` order, divided by 10; None for the
            extra (mid-level-only) clips.
        midlevel: (N, 7) float32 ratings in ``MIDLEVEL`` order, divided by 10; None when no
            mid-level data was given.
        target: the intended emotion per clip (``""`` where unknown).
        extra: mid-level-only clips (extra bottleneck training data), or None.
        root: the folder the corpus was loaded from.

    Example:
        >>> import numpy as np, tempfile
        >>> clip = Path(tempfile.mkdtemp()) / "001.mp3"
        >>> _ = clip.write_bytes(b"not really audio")
        >>> c = Corpus("demo", ["001"], [clip], np.full((1, 8), .5), None, ["HAPPY"])
        >>> len(c), c.emotions.dtype, len(c.fingerprint())
        (1, dtype('float32'), 16)
    """

    name: str
    ids: list[str]
    audio_paths: list[Path]
    emotions: np.ndarray | None
    midlevel: np.ndarray | None
    target: list[str]
    extra: Corpus | None = None
    root: Path | None = None
    _digests: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.ids = [str(i) for i in self.ids]
        self.audio_paths = [Path(p) for p in self.audio_paths]
        self.target = [str(t) for t in self.target]
        if len(self.audio_paths) != n or len(self.target) != n:
            raise ParameterError(
                f"Corpus {self.name!r}: {n} ids but {len(self.audio_paths)} audio paths and "
                f"{len(self.target)} targets")
        self.emotions = _labels(self.emotions, n, len(EMOTIONS), "emotions")
        self.midlevel = _labels(self.midlevel, n, len(MIDLEVEL), "midlevel")
        if self.root is not None:
            self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.ids)

    def audio_digests(self) -> list[str]:
        """:func:`file_digest` of every audio file, in clip order (hashed once, then reused).

        The spectrogram cache takes these too, so loading a corpus reads each file's bytes
        for hashing only once.
        """
        if self._digests is None:
            self._digests = [file_digest(p) for p in self.audio_paths]
        return list(self._digests)

    def fingerprint(self) -> str:
        """A short sha256 hex digest of the ids, audio contents and labels, for cache keys.

        Each audio file enters by the sha256 of its bytes (:meth:`audio_digests`), never by
        its path or modification time: a copied or moved data folder keeps its fingerprint,
        touching a file does not change it, and replacing a file's content does, as does any
        change of an id, a label or of the extra clips. Raises DataLayoutError naming an
        audio file that is missing or unreadable.
        """
        h = hashlib.sha256()

        def add(tag: str, data: bytes) -> None:
            h.update(tag.encode() + len(data).to_bytes(8, "little") + data)

        add("ids", "\n".join(self.ids).encode())
        add("audio", "\n".join(self.audio_digests()).encode())
        for what, arr in (("emotions", self.emotions), ("midlevel", self.midlevel)):
            add(what, b"none" if arr is None else
                str(arr.shape).encode() + np.ascontiguousarray(arr, dtype="<f4").tobytes())
        add("target", "\n".join(self.target).encode())
        add("extra", b"none" if self.extra is None else self.extra.fingerprint().encode())
        return h.hexdigest()[:16]


def _resolve_dirs(root, soundtracks_dir, midlevel_dir) -> tuple[Path, Path | None, Path]:
    """(soundtracks_dir, midlevel_dir or None, root) from load_corpus's arguments."""
    if root is not None:
        if soundtracks_dir is not None or midlevel_dir is not None:
            raise ParameterError("give either root or soundtracks_dir (and midlevel_dir), "
                                 "not both")
        root = require_dir(Path(root).expanduser(), "corpus folder", LAYOUT)
        sdir = require_dir(root / SOUNDTRACKS_SUBDIR, "Soundtracks folder", LAYOUT)
        mdir = root / MIDLEVEL_SUBDIR
        return sdir, (mdir if mdir.exists() else None), root
    if soundtracks_dir is None:
        raise ParameterError("load_corpus needs root, or soundtracks_dir (and optionally "
                             "midlevel_dir)")
    sdir = Path(soundtracks_dir).expanduser()
    return sdir, (None if midlevel_dir is None else Path(midlevel_dir).expanduser()), sdir


def load_corpus(root: str | Path | None = None, *, soundtracks_dir: str | Path | None = None,
                midlevel_dir: str | Path | None = None, with_extra: bool = False,
                check_audio: bool = True) -> Corpus:
    """Load Soundtracks Set 1, joined with its mid-level ratings when those are given.

    Args:
        root: a folder with ``soundtracks/`` and optionally ``midlevel/`` (the synthetic
            layout). Mutually exclusive with the next two.
        soundtracks_dir: the Soundtracks folder (``Set1/``, ``mean_ratings_set1.csv``).
        midlevel_dir: the mid-level folder; without it ``midlevel`` is None.
        with_extra: also load the mid-level clips that are not Soundtracks excerpts as
            ``corpus.extra`` (requires the mid-level data).
        check_audio: require every audio file to exist.

    Returns:
        A :class:`Corpus` ordered by Soundtracks number.

    Raises:
        DataLayoutError: anything the two loaders reject, or (with mid-level data) some
            Soundtracks numbers have no mid-level row or vice versa (a few are named on
            each side), or ``with_extra`` without mid-level data.
        ParameterError: both or neither of ``root`` and ``soundtracks_dir`` given.

    Example:
        >>> c = load_corpus(soundtracks_dir="~/data/Soundtracks",
        ...                 midlevel_dir="~/data/midlevel")  # doctest: +SKIP
        >>> c.midlevel.shape, c.extra is None  # doctest: +SKIP
        ((360, 7), True)
    """
    sdir, mdir, root = _resolve_dirs(root, soundtracks_dir, midlevel_dir)
    st = load_soundtracks(sdir, check_audio=check_audio)
    midlevel = extra = None
    if mdir is not None:
        ml = load_midlevel(mdir, check_audio=False)
        sub = soundtracks_subset(ml)
        only_st = sorted(set(st.index) - set(sub.index))
        only_ml = sorted(set(sub.index) - set(st.index))
        if only_st or only_ml:
            parts = []
            if only_st:
                parts.append(f"{len(only_st)} number(s) have no mid-level row (Source "
                             f"'soundtracks', 'ID at file source' = number), e.g. {few(only_st)}")
            if only_ml:
                parts.append(f"{len(only_ml)} mid-level soundtracks row(s) have no rating in "
                             f"mean_ratings_set1.csv, e.g. {few(only_ml)}")
            raise DataLayoutError(f"Soundtracks ({sdir}) and mid-level ({mdir}) data do not "
                                  f"join by Soundtracks number: {'; '.join(parts)}.")
        midlevel = sub.loc[st.index, list(MIDLEVEL)].to_numpy(np.float32)
        if with_extra:
            rest = extra_clips(ml)
            if check_audio:
                check_audio_files(rest, mdir)
            extra = Corpus(name=f"{root.name}-extra", ids=[str(i) for i in rest.index],
                           audio_paths=list(rest["audio_path"]), emotions=None,
                           midlevel=rest[list(MIDLEVEL)].to_numpy(np.float32),
                           target=[""] * len(rest), root=mdir)
    elif with_extra:
        where = f"{root / MIDLEVEL_SUBDIR}" if soundtracks_dir is None else "midlevel_dir"
        raise DataLayoutError(f"with_extra=True needs the mid-level dataset, but no {where} "
                              f"was given or found")
    return Corpus(name=root.name, ids=[f"{n:03d}" for n in st.index],
                  audio_paths=list(st["audio_path"]),
                  emotions=st[list(EMOTIONS)].to_numpy(np.float32), midlevel=midlevel,
                  target=list(st["target"]), extra=extra, root=root)
