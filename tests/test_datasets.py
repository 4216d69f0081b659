"""Tests of the dataset loaders on tiny fixtures written in the real layouts.

Every bad-input test checks that a DataLayoutError names the offending path, column or
value, and that no pandas exception is chained to it.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mer_lib.datasets import EMOTIONS, MIDLEVEL
from mer_lib.datasets._csv import check_unique, numeric_columns, read_table
from mer_lib.datasets.corpus import Corpus, load_corpus
from mer_lib.datasets.midlevel import extra_clips, load_midlevel, soundtracks_subset
from mer_lib.datasets.soundtracks import load_soundtracks
from mer_lib.errors import DataLayoutError, ParameterError

NUMBERS = (3, 1, 5, 2, 4)           # written out of order on purpose
EXTRA_IDS = (7, 8)                  # mid-level-only clips
ST_HEADER = "number,valence,energy,tension,anger,fear,happy,sad,tender,TARGET"
# a copy of annotations.csv whose header is spelled differently from MIDLEVEL
ANN_HEADER = ("song_id,Melodiousness,Articulation,Rhythm Complexity,Rhythm Stability,"
              "Dissonance,Tonal Stability,Minorness (mode)")


def rating(n: int, j: int) -> float:
    """Raw emotion rating (1..9) of Soundtracks number n, emotion j."""
    return 1.0 + ((7 * n + j) % 80) / 10.0


def song_id(n: int) -> int:
    """Mid-level song id of Soundtracks number n (deliberately not in the same order)."""
    return 100 - n


def feature(s: int, k: int) -> float:
    """Raw mid-level rating (1..9) of song s, feature k."""
    return 1.0 + ((3 * s + k) % 80) / 10.0


def raises(match: str | Path, exc=DataLayoutError):
    """pytest.raises with the literal text (e.g. a path) escaped."""
    return pytest.raises(exc, match=re.escape(str(match)))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def mp3_bytes(tmp_path_factory) -> bytes:
    """0.1 s of a quiet tone as MP3 (written once, copied wherever a clip is needed)."""
    path = tmp_path_factory.mktemp("audio") / "tone.mp3"
    t = np.arange(2205) / 22050
    sf.write(path, 0.01 * np.sin(2 * np.pi * 440 * t), 22050, format="MP3")
    return path.read_bytes()


def write_soundtracks(root: Path, audio: bytes, numbers=NUMBERS, *, csv_in_set1=False,
                      padded=True, rows: list[str] | None = None) -> Path:
    """Soundtracks layout under root; returns the ratings csv."""
    set1 = root / "Set1"
    set1.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        (set1 / (f"{n:03d}.mp3" if padded else f"{n}.mp3")).write_bytes(audio)
    if rows is None:
        rows = [",".join([str(n), *(f"{rating(n, j):g}" for j in range(8)), f"T{n}"])
                for n in numbers]
    csv = (set1 if csv_in_set1 else root) / "mean_ratings_set1.csv"
    csv.write_text("\n".join([ST_HEADER, *rows]) + "\n")
    return csv


def write_midlevel(root: Path, audio: bytes, numbers=NUMBERS, extra=EXTRA_IDS, *,
                   meta_header=" song id ; Source ;ID at file source; Title ") -> Path:
    """Mid-level layout under root (soundtracks rows plus extra clips); returns root."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    meta = [meta_header]
    ann = [ANN_HEADER]
    clips = [(song_id(n), "soundtracks", f"{n:03d}") for n in numbers]
    clips += [(s, "jamendo", f"track{s}") for s in extra]
    for s, source, at_source in clips:
        meta.append(f"{s};{source};{at_source};a title, with a comma")
        ann.append(",".join([str(s), *(f"{feature(s, k):g}" for k in range(7))]))
        (root / "audio" / f"{s}.mp3").write_bytes(audio)
    (root / "metadata.csv").write_text("\n".join(meta) + "\n")
    (root / "annotations.csv").write_text("\n".join(ann) + "\n")
    return root


@pytest.fixture
def st_dir(tmp_path, mp3_bytes) -> Path:
    root = tmp_path / "corpus" / "soundtracks"
    write_soundtracks(root, mp3_bytes)
    return root


@pytest.fixture
def ml_dir(tmp_path, mp3_bytes) -> Path:
    return write_midlevel(tmp_path / "corpus" / "midlevel", mp3_bytes)


def edit_line(path: Path, index: int, fn) -> None:
    """Replace line ``index`` (0 = header) of a text file by ``fn(line)``."""
    lines = path.read_text().splitlines()
    lines[index] = fn(lines[index])
    path.write_text("\n".join(lines) + "\n")


def set_cell(path: Path, index: int, col: int, value: str, sep: str = ",") -> None:
    def fn(line):
        cells = line.split(sep)
        cells[col] = value
        return sep.join(cells)
    edit_line(path, index, fn)


def no_pandas_chain(excinfo) -> None:
    err = excinfo.value
    assert err.__cause__ is None and err.__suppress_context__ or err.__context__ is None


# ----------------------------------------------------------------------------- soundtracks

def test_soundtracks_happy_path(st_dir):
    df = load_soundtracks(st_dir)
    assert df.index.name == "number" and df.index.tolist() == sorted(NUMBERS)
    assert df.index.dtype.kind == "i"
    assert list(df.columns) == [*EMOTIONS, "target", "audio_path"]
    for n in NUMBERS:
        np.testing.assert_allclose(df.loc[n, list(EMOTIONS)].to_numpy(float),
                                   [rating(n, j) / 10 for j in range(8)])
        assert df.loc[n, "target"] == f"T{n}"
        path = df.loc[n, "audio_path"]
        assert isinstance(path, Path) and path.name == f"{n:03d}.mp3" and path.is_file()
    assert all(df[e].dtype == float for e in EMOTIONS)


def test_soundtracks_audio_is_real(st_dir):
    x, sr = sf.read(load_soundtracks(st_dir)["audio_path"].iloc[0])
    assert sr == 22050 and 0 < np.abs(x).max() < 0.1


def test_soundtracks_unpadded_names(tmp_path, mp3_bytes):
    write_soundtracks(tmp_path, mp3_bytes, padded=False)
    df = load_soundtracks(tmp_path)
    assert df.loc[4, "audio_path"] == tmp_path / "Set1" / "4.mp3"


def test_soundtracks_csv_inside_set1(tmp_path, mp3_bytes):
    write_soundtracks(tmp_path, mp3_bytes, csv_in_set1=True)
    assert load_soundtracks(tmp_path).index.tolist() == sorted(NUMBERS)


def test_soundtracks_without_audio_check(tmp_path, mp3_bytes):
    write_soundtracks(tmp_path, mp3_bytes)
    shutil.rmtree(tmp_path / "Set1")
    df = load_soundtracks(tmp_path, check_audio=False)
    assert df.loc[1, "audio_path"] == tmp_path / "Set1" / "001.mp3"


def test_soundtracks_root_missing(tmp_path):
    with raises(tmp_path / "nope"):
        load_soundtracks(tmp_path / "nope")


def test_soundtracks_set1_missing(st_dir):
    shutil.rmtree(st_dir / "Set1")
    with raises(st_dir / "Set1"):
        load_soundtracks(st_dir)


def test_soundtracks_csv_missing(st_dir):
    (st_dir / "mean_ratings_set1.csv").unlink()
    with raises(st_dir / "mean_ratings_set1.csv") as exc:
        load_soundtracks(st_dir)
    assert "Expected layout" in str(exc.value)


def test_soundtracks_empty_csv(st_dir):
    (st_dir / "mean_ratings_set1.csv").write_text("")
    with raises("is empty"):
        load_soundtracks(st_dir)


def test_soundtracks_header_only_csv(st_dir):
    (st_dir / "mean_ratings_set1.csv").write_text(ST_HEADER + "\n")
    with raises("no data rows"):
        load_soundtracks(st_dir)


def test_soundtracks_wrong_separator(st_dir):
    csv = st_dir / "mean_ratings_set1.csv"
    csv.write_text(csv.read_text().replace(",", ";"))
    with raises("looks semicolon-separated, expected comma-separated") as exc:
        load_soundtracks(st_dir)
    assert str(csv) in str(exc.value)


def test_soundtracks_missing_columns(st_dir):
    csv = st_dir / "mean_ratings_set1.csv"
    edit_line(csv, 0, lambda h: h.replace("fear", "scared").replace("TARGET", "goal"))
    with raises("['fear', 'TARGET']"):
        load_soundtracks(st_dir)


@pytest.mark.parametrize("value, shown", [("abc", "'abc'"), ("", "an empty cell"),
                                          ("NaN", "'NaN'"), ("inf", "'inf'")])
def test_soundtracks_bad_rating(st_dir, value, shown):
    csv = st_dir / "mean_ratings_set1.csv"
    set_cell(csv, 2, 1 + EMOTIONS.index("tension"), value)  # data row 2 is number 1
    with raises(f"column 'tension' must hold finite numbers, but data row 2 (number=1) "
                f"has {shown}") as exc:
        load_soundtracks(st_dir)
    no_pandas_chain(exc)


def test_soundtracks_rating_out_of_range(st_dir):
    csv = st_dir / "mean_ratings_set1.csv"
    set_cell(csv, 3, 1 + EMOTIONS.index("sad"), "9.5")
    set_cell(csv, 1, 1 + EMOTIONS.index("valence"), "0")
    with raises("2 value(s) outside [1, 9]: [data row 1 (number=3): valence=0, "
                "data row 3 (number=5): sad=9.5]") as exc:
        load_soundtracks(st_dir)
    assert str(csv) in str(exc.value)


def test_soundtracks_duplicate_numbers(st_dir):
    set_cell(st_dir / "mean_ratings_set1.csv", 4, 0, "5")
    with raises("column 'number' must hold unique IDs, but these appear more than once: [5]"):
        load_soundtracks(st_dir)


def test_soundtracks_non_integer_number(st_dir):
    set_cell(st_dir / "mean_ratings_set1.csv", 4, 0, "two")
    with raises("column 'number' must hold integer IDs, but data row 4 has 'two'"):
        load_soundtracks(st_dir)


def test_soundtracks_missing_audio(st_dir):
    (st_dir / "Set1" / "002.mp3").unlink()
    (st_dir / "Set1" / "004.mp3").unlink()
    with raises("2 of 5 Soundtracks audio files") as exc:
        load_soundtracks(st_dir)
    assert str(st_dir / "Set1" / "002.mp3") in str(exc.value)
    assert str(st_dir / "Set1" / "004.mp3") in str(exc.value)


def test_soundtracks_malformed_row(st_dir):
    csv = st_dir / "mean_ratings_set1.csv"
    edit_line(csv, 3, lambda line: line + ",surplus")
    with raises(f"{csv} cannot be parsed: line 4 has 11 cells but the header has 10") as exc:
        load_soundtracks(st_dir)
    no_pandas_chain(exc)


def test_soundtracks_trailing_delimiters_and_blank_lines(st_dir):
    csv = st_dir / "mean_ratings_set1.csv"
    csv.write_text("\n".join(line + "," for line in csv.read_text().splitlines()) + "\n\n\n")
    df = load_soundtracks(st_dir)
    assert df.loc[1, "valence"] == pytest.approx(rating(1, 0) / 10)
    assert df.loc[1, "target"] == "T1"


def test_soundtracks_short_row(st_dir):
    csv = st_dir / "mean_ratings_set1.csv"
    edit_line(csv, 2, lambda line: line.rsplit(",", 1)[0])  # no TARGET: allowed, empty
    assert load_soundtracks(st_dir).loc[1, "target"] == ""
    edit_line(csv, 2, lambda line: line.rsplit(",", 1)[0])  # no 'tender' rating either
    with raises("column 'tender' must hold finite numbers, but data row 2 (number=1) has "
                "an empty cell"):
        load_soundtracks(st_dir)


def test_soundtracks_duplicate_column_names(st_dir):
    edit_line(st_dir / "mean_ratings_set1.csv", 0, lambda h: h.replace("anger", "fear"))
    with raises("duplicated column names ['fear']"):
        load_soundtracks(st_dir)


# ----------------------------------------------------------------------------- mid-level

def test_midlevel_happy_path_maps_by_name(ml_dir):
    df = load_midlevel(ml_dir, check_audio=True)
    ids = sorted([song_id(n) for n in NUMBERS] + list(EXTRA_IDS))
    assert df.index.name == "song_id" and df.index.tolist() == ids
    assert list(df.columns) == [*MIDLEVEL, "source", "id_at_source", "audio_path"]
    for s in ids:
        np.testing.assert_allclose(df.loc[s, list(MIDLEVEL)].to_numpy(float),
                                   [feature(s, k) / 10 for k in range(7)])
        assert df.loc[s, "audio_path"] == ml_dir / "audio" / f"{s}.mp3"
    assert df.loc[song_id(3), "id_at_source"] == "003"
    assert df.loc[7, "source"] == "jamendo"


def test_midlevel_subset_and_extra(ml_dir):
    df = load_midlevel(ml_dir)
    sub = soundtracks_subset(df)
    assert sub.index.name == "number" and sub.index.tolist() == sorted(NUMBERS)
    assert sub.loc[2, "song_id"] == song_id(2)
    assert sub.loc[2, "minorness"] == pytest.approx(feature(song_id(2), 6) / 10)
    assert extra_clips(df).index.tolist() == list(EXTRA_IDS)


def test_midlevel_source_case_and_whitespace(ml_dir):
    meta = ml_dir / "metadata.csv"
    meta.write_text(meta.read_text().replace(";soundtracks;", "; SoundTracks ;"))
    assert soundtracks_subset(load_midlevel(ml_dir)).index.tolist() == sorted(NUMBERS)


def test_midlevel_root_missing(tmp_path):
    with raises(tmp_path / "absent"):
        load_midlevel(tmp_path / "absent")


@pytest.mark.parametrize("name", ["metadata.csv", "annotations.csv"])
def test_midlevel_file_missing(ml_dir, name):
    (ml_dir / name).unlink()
    with raises(ml_dir / name):
        load_midlevel(ml_dir)


@pytest.mark.parametrize("name", ["metadata.csv", "annotations.csv"])
def test_midlevel_file_empty(ml_dir, name):
    (ml_dir / name).write_text("\n")
    with raises(f"{ml_dir / name} is empty"):
        load_midlevel(ml_dir)


def test_midlevel_metadata_comma_separated(ml_dir):
    meta = ml_dir / "metadata.csv"
    meta.write_text(meta.read_text().replace(",", " ").replace(";", ","))
    with raises(f"{meta} looks comma-separated, expected semicolon-separated"):
        load_midlevel(ml_dir)


def test_midlevel_annotations_semicolon_separated(ml_dir):
    ann = ml_dir / "annotations.csv"
    ann.write_text(ann.read_text().replace(",", ";"))
    with raises(f"{ann} looks semicolon-separated, expected comma-separated"):
        load_midlevel(ml_dir)


def test_midlevel_metadata_missing_columns(ml_dir):
    edit_line(ml_dir / "metadata.csv", 0, lambda h: h.replace("ID at file source", "ext id"))
    with raises("lacks the column(s) ['ID at file source']"):
        load_midlevel(ml_dir)


@pytest.mark.parametrize("drop", [True, False])
def test_midlevel_annotations_column_count(ml_dir, drop):
    ann = ml_dir / "annotations.csv"
    lines = ann.read_text().splitlines()
    if drop:
        lines = [line.rsplit(",", 1)[0] for line in lines]
    else:
        lines = [line + ",1" for line in lines]
    ann.write_text("\n".join(lines) + "\n")
    count = 7 if drop else 9
    with raises(f"{ann} has {count} columns") as exc:
        load_midlevel(ml_dir)
    assert "expected exactly 8" in str(exc.value) and "song id and the 7 features" in str(exc.value)


@pytest.mark.parametrize("value, shown", [("high", "'high'"), ("nan", "'nan'"),
                                          ("-inf", "'-inf'")])
def test_midlevel_bad_rating(ml_dir, value, shown):
    set_cell(ml_dir / "annotations.csv", 1, 1 + MIDLEVEL.index("dissonance"), value)
    with raises(f"column 'dissonance' must hold finite numbers, but data row 1 "
                f"(song_id={song_id(3)}) has {shown}"):
        load_midlevel(ml_dir)


def test_midlevel_rating_out_of_range(ml_dir):
    set_cell(ml_dir / "annotations.csv", 2, 1, "10.5")
    with raises(f"outside [1, 10]: [data row 2 (song_id={song_id(1)}): melodiousness=10.5]"):
        load_midlevel(ml_dir)


def test_midlevel_accepts_one_and_ten_rejects_below_one(ml_dir):
    set_cell(ml_dir / "annotations.csv", 1, 1, "1")
    set_cell(ml_dir / "annotations.csv", 2, 1, "10")
    df = load_midlevel(ml_dir)
    assert df["melodiousness"].min() == pytest.approx(0.1) and df["melodiousness"].max() == 1
    set_cell(ml_dir / "annotations.csv", 1, 1 + MIDLEVEL.index("minorness"), "0.5")
    with raises(f"outside [1, 10]: [data row 1 (song_id={song_id(3)}): minorness=0.5]") as exc:
        load_midlevel(ml_dir)
    assert "0-1 scale" not in str(exc.value)  # one bad value, not a rescaled file


def _write_annotations(ml_dir: Path, header: list[str] | None, order: list[int | str],
                       scale: float = 1.0) -> Path:
    """annotations.csv with the columns in ``order`` ("id" or a feature index); the values
    are always the right ones for the column (``feature(s, k) * scale``)."""
    ids = sorted([song_id(n) for n in NUMBERS] + list(EXTRA_IDS))
    lines = [] if header is None else [",".join(header)]
    for s in ids:
        lines.append(",".join(str(s) if c == "id" else f"{feature(s, c) * scale:g}"
                              for c in order))
    path = ml_dir / "annotations.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_features(df) -> None:
    for s in df.index:
        np.testing.assert_allclose(df.loc[s, list(MIDLEVEL)].to_numpy(float),
                                   [feature(s, k) / 10 for k in range(7)], atol=1e-12)


def test_midlevel_shuffled_header_maps_by_name(ml_dir):
    # features in another order, the id column in the middle, real-copy spellings
    order = [6, 2, "id", 0, 5, 1, 4, 3]
    spelled = {0: "Melodiousness", 1: "articulation", 2: "Rhythm Complexity",
               3: "rhythm-stability", 4: "DISSONANCE", 5: "tonal_stability", 6: "Minorness (mode)"}
    _write_annotations(ml_dir, [("song id" if c == "id" else spelled[c]) for c in order], order)
    df = load_midlevel(ml_dir)
    _check_features(df)
    # known answer for one cell: song 97 (Soundtracks number 3), rhythm_complexity = k 2
    assert df.loc[song_id(3), "rhythm_complexity"] == pytest.approx(feature(97, 2) / 10)


@pytest.mark.parametrize("header", [None, ["song_id", *map(str, range(1, 8))],
                                    ["id", *map(str, range(7))]])
def test_midlevel_headerless_or_numbered_maps_by_position(ml_dir, header):
    _write_annotations(ml_dir, header, ["id", *range(7)])
    df = load_midlevel(ml_dir)
    _check_features(df)
    assert len(df) == len(NUMBERS) + len(EXTRA_IDS)  # a header-less first row is data


@pytest.mark.parametrize("header, missing", [
    (["song_id", "mel", "art", "rc", "rs", "dis", "ton", "min"], "does not name ['melodiousness'"),
    (["song_id", "melodiousness", "articulation", "rhythm complexity", "rhythm stability",
      "dissonance", "tonal stability", "major"], "does not name ['minorness']"),
])
def test_midlevel_unmappable_header_is_an_error(ml_dir, header, missing):
    ann = _write_annotations(ml_dir, header, ["id", *range(7)])
    with raises(f"{ann}: cannot tell which column holds which feature") as exc:
        load_midlevel(ml_dir)
    assert missing in str(exc.value)


def test_midlevel_feature_named_twice_is_an_error(ml_dir):
    header = ["song_id", "melodiousness", "articulation", "rhythm_complexity",
              "Rhythm Complexity", "dissonance", "tonal stability", "minorness"]
    ann = _write_annotations(ml_dir, header, ["id", *range(7)])
    with raises(f"{ann} names a feature more than once: ['Rhythm Complexity', 'rhythm_complexity']"):
        load_midlevel(ml_dir)


def test_midlevel_zero_to_one_scale_file_is_rejected(ml_dir):
    ann = _write_annotations(ml_dir, list(ANN_HEADER.split(",")), ["id", *range(7)], scale=0.1)
    with raises(f"{ann}: ") as exc:
        load_midlevel(ml_dir)
    text = str(exc.value)
    assert "outside [1, 10]" in text and "melodiousness=" in text
    assert "looks already divided by 10 (0-1 scale)" in text


@pytest.mark.parametrize("name, sep", [("annotations.csv", ","), ("metadata.csv", ";")])
def test_midlevel_duplicate_song_ids(ml_dir, name, sep):
    set_cell(ml_dir / name, 2, 0, str(song_id(3)), sep)
    with raises(f"{ml_dir / name}: column 'song_id' must hold unique IDs, but these appear "
                f"more than once: [{song_id(3)}]"):
        load_midlevel(ml_dir)


def test_midlevel_annotation_without_metadata(ml_dir):
    ann = ml_dir / "annotations.csv"
    ann.write_text(ann.read_text() + "555," + ",".join(["5"] * 7) + "\n")
    with raises("1 song id(s) of") as exc:
        load_midlevel(ml_dir)
    assert "[555]" in str(exc.value) and str(ml_dir / "metadata.csv") in str(exc.value)


def test_midlevel_missing_audio_when_checked(ml_dir):
    (ml_dir / "audio" / "8.mp3").unlink()
    load_midlevel(ml_dir)  # not checked by default
    with raises(ml_dir / "audio" / "8.mp3"):
        load_midlevel(ml_dir, check_audio=True)


def test_midlevel_bad_soundtracks_number(ml_dir):
    meta = ml_dir / "metadata.csv"
    meta.write_text(meta.read_text().replace(";soundtracks;001;", ";soundtracks;one;"))
    with raises(f"song id {song_id(1)} has 'ID at file source' 'one'"):
        soundtracks_subset(load_midlevel(ml_dir))


def test_midlevel_duplicate_soundtracks_number(ml_dir):
    meta = ml_dir / "metadata.csv"
    meta.write_text(meta.read_text().replace(";soundtracks;001;", ";soundtracks;2.mp3;"))
    with raises("appear more than once: [2]"):
        soundtracks_subset(load_midlevel(ml_dir))


# ----------------------------------------------------------------------------- corpus

def test_corpus_from_root(st_dir, ml_dir):
    c = load_corpus(st_dir.parent, with_extra=True)
    assert isinstance(c, Corpus) and len(c) == len(NUMBERS)
    assert c.ids == ["001", "002", "003", "004", "005"]
    assert c.name == "corpus" and c.root == st_dir.parent
    assert c.emotions.dtype == np.float32 and c.emotions.shape == (5, 8)
    assert c.midlevel.dtype == np.float32 and c.midlevel.shape == (5, 7)
    for i, n in enumerate(range(1, 6)):
        np.testing.assert_allclose(c.emotions[i], [rating(n, j) / 10 for j in range(8)],
                                   rtol=1e-6)
        np.testing.assert_allclose(c.midlevel[i], [feature(song_id(n), k) / 10
                                                   for k in range(7)], rtol=1e-6)
        assert c.audio_paths[i] == st_dir / "Set1" / f"{n:03d}.mp3"
        assert c.target[i] == f"T{n}"
    assert c.extra is not None and c.extra.ids == ["7", "8"] and c.extra.emotions is None
    assert c.extra.midlevel.shape == (2, 7) and all(p.is_file() for p in c.extra.audio_paths)


def test_corpus_separate_dirs_and_without_midlevel(st_dir, ml_dir):
    c = load_corpus(soundtracks_dir=st_dir, midlevel_dir=ml_dir)
    assert c.midlevel.shape == (5, 7) and c.extra is None
    c = load_corpus(soundtracks_dir=st_dir)
    assert c.midlevel is None and c.emotions.shape == (5, 8)
    shutil.rmtree(ml_dir)
    assert load_corpus(st_dir.parent).midlevel is None


def test_corpus_join_mismatch(tmp_path, mp3_bytes):
    write_soundtracks(tmp_path / "soundtracks", mp3_bytes, numbers=(1, 2, 3))
    write_midlevel(tmp_path / "midlevel", mp3_bytes, numbers=(2, 3, 4, 6))
    with raises("1 number(s) have no mid-level row") as exc:
        load_corpus(tmp_path)
    msg = str(exc.value)
    assert "e.g. [1]" in msg and "2 mid-level soundtracks row(s)" in msg and "[4, 6]" in msg


def test_corpus_join_mismatch_one_side(tmp_path, mp3_bytes):
    write_soundtracks(tmp_path / "soundtracks", mp3_bytes, numbers=(1, 2, 3))
    write_midlevel(tmp_path / "midlevel", mp3_bytes, numbers=(1, 2))
    with raises("do not join by Soundtracks number: 1 number(s) have no mid-level row") as exc:
        load_corpus(tmp_path)
    assert "e.g. [3]" in str(exc.value) and "have no rating" not in str(exc.value)


def test_corpus_with_extra_needs_midlevel(st_dir):
    with raises("with_extra=True needs the mid-level dataset"):
        load_corpus(st_dir.parent, with_extra=True)


def test_corpus_extra_audio_missing(st_dir, ml_dir):
    (ml_dir / "audio" / "7.mp3").unlink()
    load_corpus(st_dir.parent)  # extra audio is only needed with_extra
    with raises(ml_dir / "audio" / "7.mp3"):
        load_corpus(st_dir.parent, with_extra=True)


def test_corpus_root_without_soundtracks(tmp_path):
    with raises(tmp_path / "soundtracks") as exc:
        load_corpus(tmp_path)
    assert "midlevel" in str(exc.value)


def test_corpus_bad_arguments(st_dir):
    with raises("either root or soundtracks_dir", ParameterError):
        load_corpus(st_dir.parent, soundtracks_dir=st_dir)
    with raises("needs root", ParameterError):
        load_corpus()


def test_corpus_shape_check():
    with raises("must have shape (1, 8)", ParameterError):
        Corpus("x", ["001"], [Path("a.mp3")], np.zeros((1, 7)), None, ["T"])


def test_fingerprint_stable_and_sensitive(st_dir, ml_dir):
    fp = load_corpus(st_dir.parent).fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert load_corpus(st_dir.parent).fingerprint() == fp

    csv = st_dir / "mean_ratings_set1.csv"
    original = csv.read_text()
    set_cell(csv, 1, 1, "8.8")
    assert load_corpus(st_dir.parent).fingerprint() != fp
    csv.write_text(original)
    assert load_corpus(st_dir.parent).fingerprint() == fp

    ann = ml_dir / "annotations.csv"
    set_cell(ann, 1, 3, "4.4")
    fp_ml = load_corpus(st_dir.parent).fingerprint()
    assert fp_ml != fp

    clip = st_dir / "Set1" / "003.mp3"
    st = clip.stat()
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert load_corpus(st_dir.parent).fingerprint() == fp_ml  # touching changes nothing
    clip.write_bytes(clip.read_bytes() + b"\0")
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))      # same mtime, new content
    assert load_corpus(st_dir.parent).fingerprint() != fp_ml


def test_fingerprint_survives_a_copy_with_new_mtimes(st_dir, ml_dir, tmp_path):
    corpus = load_corpus(st_dir.parent)
    copy = tmp_path / "elsewhere" / "data"
    shutil.copytree(st_dir.parent, copy)          # new absolute paths, new mtimes
    for p in copy.rglob("*"):
        os.utime(p, ns=(10**18, 10**18))
    moved = load_corpus(copy)
    assert moved.audio_paths[0] != corpus.audio_paths[0]
    assert moved.fingerprint() == corpus.fingerprint()
    assert moved.audio_digests() == corpus.audio_digests()


def test_audio_digests_are_hashed_once(st_dir, ml_dir, monkeypatch):
    import mer_lib.datasets.corpus as C
    corpus = load_corpus(st_dir.parent)
    calls = []
    real = C.file_digest
    monkeypatch.setattr(C, "file_digest", lambda p: calls.append(p) or real(p))
    corpus.fingerprint()
    corpus.audio_digests()
    corpus.fingerprint()
    assert len(calls) == len(NUMBERS)


def test_fingerprint_covers_extra(st_dir, ml_dir):
    assert (load_corpus(st_dir.parent).fingerprint()
            != load_corpus(st_dir.parent, with_extra=True).fingerprint())


# ----------------------------------------------------------------------------- helpers

def test_read_table_column_counts(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,c\n1,2,3\n")
    assert read_table(p, ",", expected_columns=3).shape == (1, 3)
    with raises(f"{p} has 3 columns ['a', 'b', 'c'], expected exactly 4"):
        read_table(p, ",", expected_columns=4)
    with raises("expected at least 5"):
        read_table(p, ",", min_columns=5)
    p.write_text("a\tb\n1\t2\n")
    with raises("looks tab-separated, expected comma-separated"):
        read_table(p, ",", min_columns=2)


def test_read_table_strips_and_handles_bom(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("\ufeff a , b \n 1 , x \n".encode("utf-8"))
    df = read_table(p, ",", expected_columns=2)
    assert list(df.columns) == ["a", "b"] and df.iloc[0].tolist() == ["1", "x"]


def test_helpers_name_file_and_value():
    df = pd.DataFrame({"id": ["1", "1", "2"], "x": ["0.5", "1", "?"]})
    with raises("t.csv: column 'x' must hold finite numbers, but data row 3 (id=2) has '?'"):
        numeric_columns(df, ["x"], "t.csv", id_col="id")
    with raises("t.csv: column 'id' must hold unique IDs, but these appear more than once: [1]"):
        check_unique(df, "id", "t.csv")
