"""Mid-level Perceptual Features (Aljanaki & Soleymani 2018): 5000 clips, seven ratings each.

Layout (the real dataset and the synthetic one alike)::

    <root>/
        metadata.csv        SEMICOLON-separated; columns include "song id", "Source" and
                            "ID at file source" (more columns are ignored)
        annotations.csv     comma-separated; first column the song id, then the seven
                            features melodiousness, articulation, rhythm_complexity,
                            rhythm_stability, dissonance, tonal_stability, minorness
                            (header spellings vary between copies: mapped BY POSITION)
        audio/<song id>.mp3 the clips (only needed for the extra, non-Soundtracks clips)

The 360 Soundtracks excerpts are the rows with ``Source == "soundtracks"``, whose
``ID at file source`` is the Soundtracks number. Ratings are divided by 10, as the
reference implementation does.

Example:
    >>> from mer_lib.datasets.midlevel import load_midlevel, soundtracks_subset
    >>> ml = load_midlevel("data/midlevel")          # doctest: +SKIP
    >>> soundtracks_subset(ml).loc[1, "minorness"]   # doctest: +SKIP
    0.41
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import MIDLEVEL
from ._csv import (check_range, check_unique, few, integer_column, match_columns,
                   numeric_columns, read_table, require_dir, require_file, require_files_exist)
from ..errors import DataLayoutError

METADATA_CSV = "metadata.csv"
ANNOTATIONS_CSV = "annotations.csv"
AUDIO_DIR = "audio"
SOUNDTRACKS_SOURCE = "soundtracks"
#: Accepted range of the raw ratings (before dividing by 10); the scale is about 1..9.
RATING_RANGE = (0.0, 10.0)

LAYOUT = f"""\
  <midlevel_dir>/{METADATA_CSV}     (SEMICOLON-separated; columns include "song id", "Source", "ID at file source")
  <midlevel_dir>/{ANNOTATIONS_CSV}  (comma-separated; song id, then {', '.join(MIDLEVEL)}; mapped by position)
  <midlevel_dir>/{AUDIO_DIR}/<song id>.mp3"""


def _read_metadata(path: Path) -> pd.DataFrame:
    df = read_table(path, ";", min_columns=3, what="mid-level metadata", layout=LAYOUT)
    names = {"song id": "song_id", "Source": "source", "ID at file source": "id_at_source"}
    df = match_columns(df, names, path, "mid-level metadata", LAYOUT)
    df["song_id"] = integer_column(df, "song_id", path)
    check_unique(df, "song_id", path)
    return df[["song_id", "source", "id_at_source"]].astype({"source": str, "id_at_source": str})


def _read_annotations(path: Path) -> pd.DataFrame:
    df = read_table(path, ",", min_columns=2, what="mid-level annotations", layout=LAYOUT)
    expected = 1 + len(MIDLEVEL)
    if df.shape[1] != expected:
        raise DataLayoutError(
            f"mid-level annotations file {path} has {df.shape[1]} columns {list(df.columns)}, "
            f"expected exactly {expected}: the song id, then the {len(MIDLEVEL)} features "
            f"{list(MIDLEVEL)} (mapped by position, whatever the header says).\n"
            f"Expected layout:\n{LAYOUT}")
    df.columns = ["song_id", *MIDLEVEL]
    df["song_id"] = integer_column(df, "song_id", path)
    check_unique(df, "song_id", path)
    df = numeric_columns(df, MIDLEVEL, path, id_col="song_id")
    check_range(df, MIDLEVEL, *RATING_RANGE, path, id_col="song_id")
    return df


def load_midlevel(root: str | Path, check_audio: bool = False) -> pd.DataFrame:
    """Load the Mid-level Perceptual Features dataset from ``root``.

    Args:
        root: the folder holding ``metadata.csv``, ``annotations.csv`` and ``audio/``
            (see the module docstring for the layout).
        check_audio: if true, require ``audio/<song id>.mp3`` for every annotated clip.

    Returns:
        A DataFrame indexed by ``song_id`` (int, sorted) with the columns of ``MIDLEVEL``
        (float, ratings divided by 10), ``source`` (str, as in the file), ``id_at_source``
        (str) and ``audio_path`` (Path). Metadata rows without annotations are dropped.

    Raises:
        DataLayoutError: a file is missing or empty, metadata.csv is not semicolon-separated,
            a metadata column is missing, annotations.csv does not have exactly 8 columns,
            a rating is not a finite number or lies outside [0, 10], a song id is duplicated
            or has no metadata row, or (with ``check_audio``) audio files are missing.

    Example:
        >>> ml = load_midlevel("data/midlevel")   # doctest: +SKIP
        >>> list(ml.columns)[:3]                  # doctest: +SKIP
        ['melodiousness', 'articulation', 'rhythm_complexity']
    """
    root = require_dir(Path(root).expanduser(), "mid-level folder", LAYOUT)
    meta_path = require_file(root / METADATA_CSV, "mid-level metadata file", LAYOUT)
    ann_path = require_file(root / ANNOTATIONS_CSV, "mid-level annotations file", LAYOUT)
    meta = _read_metadata(meta_path)
    ann = _read_annotations(ann_path)

    orphans = sorted(set(ann["song_id"]) - set(meta["song_id"]))
    if orphans:
        raise DataLayoutError(
            f"{len(orphans)} song id(s) of {ann_path} have no row in {meta_path}, e.g. "
            f"{few(orphans)}.")
    df = ann.merge(meta, on="song_id", how="left").set_index("song_id").sort_index()
    df[list(MIDLEVEL)] = df[list(MIDLEVEL)].astype(float) / 10.0
    df.index = df.index.astype(int)
    df["audio_path"] = [root / AUDIO_DIR / f"{i}.mp3" for i in df.index]
    if check_audio:
        check_audio_files(df, root)
    return df[[*MIDLEVEL, "source", "id_at_source", "audio_path"]]


def check_audio_files(df: pd.DataFrame, root: str | Path) -> None:
    """Raise DataLayoutError unless every ``audio_path`` of ``df`` exists (names a few)."""
    require_dir(Path(root) / AUDIO_DIR, "mid-level audio folder", LAYOUT)
    require_files_exist(list(df["audio_path"]), "mid-level audio files", LAYOUT)


def _is_soundtracks(df: pd.DataFrame) -> pd.Series:
    return df["source"].astype(str).str.strip().str.lower() == SOUNDTRACKS_SOURCE


def soundtracks_subset(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of Source "soundtracks", re-indexed by Soundtracks number (int, sorted).

    The original song id is kept in a column ``song_id``. ``ID at file source`` may be
    written ``7``, ``007`` or ``007.mp3``. Raises DataLayoutError naming the song id of a
    soundtracks row whose ID is not a number, or the numbers that occur twice.

    Example:
        >>> ml = pd.DataFrame({"source": ["soundtracks", "other"], "id_at_source": ["007", "x"]},
        ...                   index=pd.Index([10, 11], name="song_id"))
        >>> soundtracks_subset(ml).index.tolist()
        [7]
    """
    sub = df[_is_soundtracks(df)].copy()
    numbers = []
    for song_id, raw in zip(sub.index, sub["id_at_source"].astype(str)):
        match = re.fullmatch(r"\s*(\d+)(\.\w+)?\s*", raw)
        if not match:
            raise DataLayoutError(
                f"mid-level metadata: the soundtracks row of song id {song_id} has 'ID at file "
                f"source' {raw!r}; expected a Soundtracks number such as 7 or 007")
        numbers.append(int(match.group(1)))
    sub = sub.reset_index()
    sub["number"] = np.asarray(numbers, dtype=np.int64)
    check_unique(sub, "number", "mid-level metadata (soundtracks rows, 'ID at file source')")
    return sub.set_index("number").sort_index()


def extra_clips(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are not Soundtracks excerpts (extra bottleneck training data).

    Example:
        >>> ml = pd.DataFrame({"source": [" Soundtracks", "other"]}, index=[10, 11])
        >>> extra_clips(ml).index.tolist()
        [11]
    """
    return df[~_is_soundtracks(df)].copy()
