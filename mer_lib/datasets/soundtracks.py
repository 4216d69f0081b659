"""Soundtracks, Set 1 (Eerola & Vuoskoski 2011): 360 film-music excerpts with emotion ratings.

Layout (the real dataset and the synthetic one alike)::

    <root>/
        Set1/001.mp3 ... 360.mp3      the excerpts (unpadded names 1.mp3 ... are accepted too)
        mean_ratings_set1.csv         comma-separated, one row per excerpt; columns
                                      number, valence, energy, tension, anger, fear,
                                      happy, sad, tender, TARGET
                                      (mean ratings on a 1..9 scale; TARGET a string).
                                      May also lie inside Set1/.

The loader divides the ratings by 10, as the reference implementation does.

Example:
    >>> from mer_lib.datasets.soundtracks import load_soundtracks
    >>> df = load_soundtracks("data/soundtracks")          # doctest: +SKIP
    >>> df.loc[1, ["valence", "energy", "target", "audio_path"]].tolist()  # doctest: +SKIP
    [0.53, 0.41, 'HAPPY', PosixPath('data/soundtracks/Set1/001.mp3')]
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import EMOTIONS
from ._csv import (check_range, check_unique, integer_column, match_columns, numeric_columns,
                   read_table, require_dir, require_files_exist)
from ..errors import DataLayoutError

AUDIO_DIR = "Set1"
RATINGS_CSV = "mean_ratings_set1.csv"
#: Range of the raw mean ratings (before dividing by 10).
RATING_RANGE = (1.0, 9.0)

LAYOUT = f"""\
  <soundtracks_dir>/{AUDIO_DIR}/001.mp3 ... 360.mp3
  <soundtracks_dir>/{RATINGS_CSV}   (comma-separated; columns number, {', '.join(EMOTIONS)}, TARGET;
                                     ratings 1..9; may also lie inside {AUDIO_DIR}/)"""


def find_ratings_csv(root: str | Path) -> Path:
    """The ratings file ``<root>/mean_ratings_set1.csv``, else ``<root>/Set1/...``.

    Raises DataLayoutError naming both places if neither exists.
    """
    root = Path(root)
    candidates = [root / RATINGS_CSV, root / AUDIO_DIR / RATINGS_CSV]
    for path in candidates:
        if path.is_file():
            return path
    raise DataLayoutError(f"Soundtracks ratings file is missing: looked for {candidates[0]} and "
                          f"{candidates[1]}.\nExpected layout:\n{LAYOUT}")


def audio_path_for(audio_dir: Path, number: int) -> Path:
    """``Set1/007.mp3``; falls back to ``Set1/7.mp3`` if only the unpadded name exists."""
    padded = audio_dir / f"{number:03d}.mp3"
    if not padded.exists():
        plain = audio_dir / f"{number}.mp3"
        if plain.exists():
            return plain
    return padded


def load_soundtracks(root: str | Path, check_audio: bool = True) -> pd.DataFrame:
    """Load Soundtracks Set 1's ratings (and audio paths) from ``root``.

    Args:
        root: the folder holding ``Set1/`` and ``mean_ratings_set1.csv`` (see the module
            docstring for the layout).
        check_audio: if true, require ``Set1/`` and an audio file for every rated number.

    Returns:
        A DataFrame indexed by ``number`` (int, sorted) with the columns of ``EMOTIONS``
        (float, ratings divided by 10), ``target`` (str) and ``audio_path`` (Path).

    Raises:
        DataLayoutError: a folder, file or column is missing, the csv is empty or not
            comma-separated, a rating is not a finite number or lies outside [1, 9], a number
            is duplicated, or (with ``check_audio``) audio files are missing. The message
            names the path, column or value at fault.

    Example:
        >>> df = load_soundtracks("data/soundtracks", check_audio=False)  # doctest: +SKIP
        >>> list(df.columns)                                               # doctest: +SKIP
        ['valence', 'energy', 'tension', 'anger', 'fear', 'happy', 'sad', 'tender', 'target', 'audio_path']
    """
    root = require_dir(Path(root).expanduser(), "Soundtracks folder", LAYOUT)
    audio_dir = root / AUDIO_DIR
    if check_audio:
        require_dir(audio_dir, "Soundtracks audio folder", LAYOUT)
    csv = find_ratings_csv(root)
    df = read_table(csv, ",", min_columns=len(EMOTIONS) + 2, what="Soundtracks ratings",
                    layout=LAYOUT)
    names = {"number": "number", **{e: e for e in EMOTIONS}, "TARGET": "target"}
    df = match_columns(df, names, csv, "Soundtracks ratings", LAYOUT)
    df["number"] = integer_column(df, "number", csv)
    check_unique(df, "number", csv)
    df = numeric_columns(df, EMOTIONS, csv, id_col="number")
    check_range(df, EMOTIONS, *RATING_RANGE, csv, id_col="number")

    out = df[list(EMOTIONS)].astype(float) / 10.0
    out["target"] = df["target"].astype(str)
    out.index = pd.Index(df["number"].astype(int), name="number")
    out = out.sort_index()
    out["audio_path"] = [audio_path_for(audio_dir, int(n)) for n in out.index]
    if check_audio:
        require_files_exist(list(out["audio_path"]), f"Soundtracks audio files (for {csv.name})",
                            LAYOUT)
    return out
