"""Mid-level Perceptual Features (Aljanaki & Soleymani 2018): 5000 clips, seven ratings each.

Layout (the real dataset and the synthetic one alike)::

    <root>/
        metadata.csv        SEMICOLON-separated; columns include "song id", "Source" and
                            "ID at file source" (more columns are ignored)
        annotations.csv     comma-separated, exactly 8 columns: the song id and the seven
                            features melodiousness, articulation, rhythm_complexity,
                            rhythm_stability, dissonance, tonal_stability, minorness
                            (raw ratings on the 1..10 scale)
        audio/<song id>.mp3 the clips (only needed for the extra, non-Soundtracks clips)

**How annotation columns are mapped** (copies of the dataset spell the header differently):

1. *By name* when the header names all seven features, in any order. Names are compared
   ignoring case, parenthesised remarks and the difference between spaces, underscores
   and hyphens, so ``rhythm_complexity``, ``Rhythm Complexity`` and ``rhythm-complexity``
   are the same column, as are ``minorness`` and ``Minorness (mode)``. The eighth column, whatever it is called and wherever it stands, is the song id.
2. *By position* (song id first, then the features in the order above) only when there is
   no header (the first line holds numbers only) or the header numbers the feature columns
   (e.g. ``song_id,1,2,3,4,5,6,7``).
3. Any other header (a feature missing, misspelt beyond the variants above, or named twice)
   is an error that names the file, the features not found and the columns not recognised.

The ratings must lie on the 1..10 scale; a value below 1 or above 10 is rejected with the
file, column and row (a file already divided by 10, on the 0..1 scale, is reported as such).
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
from ._csv import (_norm, check_range, check_unique, few, first_row_is_numeric, integer_column,
                   match_columns, numeric_columns, read_table, require_dir, require_file,
                   require_files_exist)
from ..errors import DataLayoutError

METADATA_CSV = "metadata.csv"
ANNOTATIONS_CSV = "annotations.csv"
AUDIO_DIR = "audio"
SOUNDTRACKS_SOURCE = "soundtracks"
#: Accepted range of the raw ratings (before dividing by 10): the 1..10 rating scale.
RATING_RANGE = (1.0, 10.0)

LAYOUT = f"""\
  <midlevel_dir>/{METADATA_CSV}     (SEMICOLON-separated; columns include "song id", "Source", "ID at file source")
  <midlevel_dir>/{ANNOTATIONS_CSV}  (comma-separated; song id and {', '.join(MIDLEVEL)}, ratings 1..10;
                                mapped by name, or by position without a header or with numbered columns)
  <midlevel_dir>/{AUDIO_DIR}/<song id>.mp3"""


def _read_metadata(path: Path) -> pd.DataFrame:
    df = read_table(path, ";", min_columns=3, what="mid-level metadata", layout=LAYOUT)
    names = {"song id": "song_id", "Source": "source", "ID at file source": "id_at_source"}
    df = match_columns(df, names, path, "mid-level metadata", LAYOUT)
    df["song_id"] = integer_column(df, "song_id", path)
    check_unique(df, "song_id", path)
    return df[["song_id", "source", "id_at_source"]].astype({"source": str, "id_at_source": str})


def _annotation_columns(header: list[str], path: Path) -> list[str] | None:
    """How the header maps onto ``["song_id", *MIDLEVEL]``: the renamed header when the
    seven features are named, None when the columns are numbered (map by position);
    DataLayoutError otherwise (see the module docstring)."""
    wanted = {_norm(f): f for f in MIDLEVEL}
    normed = [_norm(c) for c in header]
    twice = sorted({header[k] for k, n in enumerate(normed) if n in wanted and normed.count(n) > 1})
    if twice:
        raise DataLayoutError(
            f"mid-level annotations file {path} names a feature more than once: {twice} "
            f"(header {header}); each of {list(MIDLEVEL)} must appear exactly once.\n"
            f"Expected layout:\n{LAYOUT}")
    if all(n in normed for n in wanted):
        return [wanted.get(n, "song_id") for n in normed]
    if all(re.fullmatch(r"\d+", c.strip()) for c in header[1:]):
        return None
    missing = [f for f in MIDLEVEL if _norm(f) not in normed]
    unknown = [c for c, n in zip(header, normed) if n not in wanted]
    raise DataLayoutError(
        f"mid-level annotations file {path}: cannot tell which column holds which feature: "
        f"the header {header} does not name {missing} (columns not recognised: {unknown}). "
        f"Name the seven features {list(MIDLEVEL)} in the header (any order; case, spaces, "
        f"underscores and hyphens do not matter), or number the feature columns 1-7 or drop "
        f"the header to map them by position (song id first, then the order above).\n"
        f"Expected layout:\n{LAYOUT}")


def _read_annotations(path: Path) -> pd.DataFrame:
    has_header = not first_row_is_numeric(path, ",", what="mid-level annotations")
    df = read_table(path, ",", min_columns=2, what="mid-level annotations", layout=LAYOUT,
                    header=has_header)
    expected = 1 + len(MIDLEVEL)
    if df.shape[1] != expected:
        raise DataLayoutError(
            f"mid-level annotations file {path} has {df.shape[1]} columns {list(df.columns)}, "
            f"expected exactly {expected}: the song id and the {len(MIDLEVEL)} features "
            f"{list(MIDLEVEL)}.\nExpected layout:\n{LAYOUT}")
    by_name = _annotation_columns(list(df.columns), path) if has_header else None
    df.columns = by_name if by_name is not None else ["song_id", *MIDLEVEL]
    df = df[["song_id", *MIDLEVEL]]
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
            a metadata column is missing, annotations.csv does not have exactly 8 columns or
            a header that cannot be mapped (see the module docstring), a rating is not a
            finite number or lies outside [1, 10], a song id is duplicated or has no
            metadata row, a file cannot be read, or (with ``check_audio``) audio files are
            missing.

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
