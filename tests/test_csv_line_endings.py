"""Every CSV the loaders read is read the same whatever its line ends, BOM or quoting.

The tables the loaders read:

- ``mean_ratings_set1.csv`` (Soundtracks ratings, comma-separated) — :func:`load_soundtracks`;
- ``metadata.csv`` (mid-level metadata, semicolon-separated) — :func:`load_midlevel`;
- ``annotations.csv`` (mid-level ratings, comma-separated; with a header, or without one)
  — :func:`load_midlevel`;
- all three at once through :func:`load_corpus`;
- ``log.csv`` (the reference implementation's attack logs, comma-separated, with quoted
  cells that span lines) — :func:`read_reference_logs`, on the test fixture and on one of
  the published logs shipped with mer_lib.

Each is written as a known-good LF file, loaded, then rewritten with CRLF, CR-only (old
Mac) line ends, a UTF-8 BOM, and every cell quoted (with the separator and doubled quotes
inside cells where the format has free text), and loaded again: the parsed values must
equal those of the LF file exactly. Line ends are re-encoded everywhere, including inside
quoted cells, as a converting editor or tool would.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer_lib.attacks import read_reference_log, read_reference_logs
from mer_lib.datasets import EMOTIONS, MIDLEVEL
from mer_lib.datasets.corpus import load_corpus
from mer_lib.datasets.midlevel import load_midlevel
from mer_lib.datasets.soundtracks import load_soundtracks
from mer_lib.errors import DataLayoutError
from mer_lib.published import PUBLISHED_LOGS

FIXTURE_LOG = Path(__file__).parent / "fixtures" / "reference_log" / "6_abc123_a2e" / "log.csv"
PUBLISHED_LOG = sorted(PUBLISHED_LOGS.glob("*/log.csv"))[0]

NUMBERS = (3, 1, 5, 2, 4)           # Soundtracks numbers, out of order on purpose
EXTRA_IDS = (7, 8)                  # mid-level-only clips
BOM = b"\xef\xbb\xbf"
ENDS = {"lf": "\n", "crlf": "\r\n", "cr": "\r"}

#: (name, line end, BOM, every cell quoted)
VARIANTS = [
    ("lf", "lf", False, False),
    ("crlf", "crlf", False, False),
    ("cr", "cr", False, False),
    ("bom-lf", "lf", True, False),
    ("bom-crlf", "crlf", True, False),
    ("bom-cr", "cr", True, False),
    ("quoted-lf", "lf", False, True),
    ("quoted-crlf", "crlf", False, True),
    ("quoted-cr", "cr", False, True),
    ("quoted-bom-cr", "cr", True, True),
]

# ------------------------------------------------------------------ known-good LF files

def rating(n: int, j: int) -> float:
    return 1.0 + ((7 * n + j) % 80) / 10.0


def feature(s: int, k: int) -> float:
    return 1.0 + ((3 * s + k) % 80) / 10.0


def song_id(n: int) -> int:
    return 100 - n


def ratings_text() -> str:
    rows = ["number,valence,energy,tension,anger,fear,happy,sad,tender,TARGET"]
    rows += [",".join([str(n), *(f"{rating(n, j):g}" for j in range(8)), f"T{n}"])
             for n in NUMBERS]
    return "\n".join(rows) + "\n"


def clips() -> list[tuple[int, str, str]]:
    return ([(song_id(n), "soundtracks", f"{n:03d}") for n in NUMBERS]
            + [(s, "jamendo", f"track{s}") for s in EXTRA_IDS])


def metadata_text() -> str:
    rows = [" song id ; Source ;ID at file source; Title "]
    rows += [f"{s};{source};{at};a title, with a comma" for s, source, at in clips()]
    return "\n".join(rows) + "\n"


def annotations_text(header: bool = True) -> str:
    rows = (["song_id,Melodiousness,Articulation,Rhythm Complexity,Rhythm Stability,"
             "Dissonance,Tonal Stability,Minorness (mode)"] if header else [])
    rows += [",".join([str(s), *(f"{feature(s, k):g}" for k in range(7))]) for s, _, _ in clips()]
    return "\n".join(rows) + "\n"


# ------------------------------------------------------- quoted versions of those files

TARGET_SUFFIX = ', "very", much'        # the ratings separator and quotes inside a cell
META_SUFFIX = '; "b"'                   # the metadata separator and quotes inside a cell


def requote(text: str, sep: str, edit=None) -> str:
    """``text`` (LF) rewritten with every cell quoted, after ``edit(rows)`` if given."""
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    if edit is not None:
        edit(rows)
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=sep, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return out.getvalue()


def quote_ratings(text: str) -> str:
    def edit(rows):
        for row in rows[1:]:
            row[-1] += TARGET_SUFFIX
    return requote(text, ",", edit)


def quote_metadata(text: str) -> str:
    def edit(rows):
        for row in rows[1:]:
            row[3] = 'a title; with "quotes", and a comma'
            if row[1] != "soundtracks":
                row[2] += META_SUFFIX
    return requote(text, ";", edit)


def quote_annotations(text: str) -> str:
    def edit(rows):
        if not rows[0][0].strip().isdigit():            # a header: a name with , and "
            rows[0][-1] = 'Minorness (mode, "minor" or "major")'
    return requote(text, ",", edit)


def quote_log(text: str) -> str:
    """Every cell quoted; file names in double quotes, arrays printed with commas (and
    still wrapped over two lines)."""
    def edit(rows):
        header = rows[0]
        arrays = [header.index(c) for c in ("true-label", "orig-pred", "new-pred")]
        for row in rows[1:]:
            row[0] = row[0].replace("'", '"')
            for k in arrays:
                tokens = row[k].replace("[", " ").replace("]", " ").split()
                row[k] = f"[[{', '.join(tokens[:4])},\n  {', '.join(tokens[4:])}]]"
    return requote(text, ",", edit)


def encode(text: str, end: str, bom: bool) -> bytes:
    """LF ``text`` with every line end (inside quoted cells too) replaced by ``end``."""
    assert "\r" not in text
    data = text.replace("\n", ENDS[end]).encode("utf-8")
    return BOM + data if bom else data


# ------------------------------------------------------------------------ the CSV kinds

def frame_of_corpus(c) -> pd.DataFrame:
    """A corpus (and its extra clips) as one table, audio paths relative to its root."""
    parts = []
    for part in (c, c.extra):
        df = pd.DataFrame(part.midlevel, columns=list(MIDLEVEL))
        if part.emotions is not None:
            df[list(EMOTIONS)] = part.emotions
        df.insert(0, "id", part.ids)
        df["target"] = part.target
        df["audio"] = [str(p.relative_to(c.root)) for p in part.audio_paths]
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def fix_ratings(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(target=df.target + TARGET_SUFFIX)


def fix_midlevel(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    extra = df.source != "soundtracks"
    df.loc[extra, "id_at_source"] = df.loc[extra, "id_at_source"] + META_SUFFIX
    return df


def fix_corpus(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    rated = df.valence.notna()
    df.loc[rated, "target"] = df.loc[rated, "target"] + TARGET_SUFFIX
    return df


RATINGS = "soundtracks/mean_ratings_set1.csv"
METADATA = "midlevel/metadata.csv"
ANNOTATIONS = "midlevel/annotations.csv"
LOG = "logs/6_abc123_a2e/log.csv"

#: kind -> ({file: (LF text, quoting function)}, files rewritten per variant, loader,
#: how quoting changes the expected values)
KINDS = {
    "ratings": ({RATINGS: (ratings_text(), quote_ratings)}, [RATINGS],
                lambda root: load_soundtracks(root / "soundtracks", check_audio=False),
                fix_ratings),
    "metadata": ({METADATA: (metadata_text(), quote_metadata),
                  ANNOTATIONS: (annotations_text(), quote_annotations)}, [METADATA],
                 lambda root: load_midlevel(root / "midlevel"), fix_midlevel),
    "annotations": ({METADATA: (metadata_text(), quote_metadata),
                     ANNOTATIONS: (annotations_text(), quote_annotations)}, [ANNOTATIONS],
                    lambda root: load_midlevel(root / "midlevel"), None),
    "annotations-no-header": ({METADATA: (metadata_text(), quote_metadata),
                               ANNOTATIONS: (annotations_text(header=False), quote_annotations)},
                              [ANNOTATIONS], lambda root: load_midlevel(root / "midlevel"), None),
    "corpus": ({RATINGS: (ratings_text(), quote_ratings),
                METADATA: (metadata_text(), quote_metadata),
                ANNOTATIONS: (annotations_text(), quote_annotations)},
               [RATINGS, METADATA, ANNOTATIONS],
               lambda root: frame_of_corpus(load_corpus(root, with_extra=True, check_audio=False)),
               fix_corpus),
    "reference-log": ({LOG: (FIXTURE_LOG.read_text(encoding="utf-8"), quote_log)}, [LOG],
                      lambda root: read_reference_logs(root / "logs"), None),
    "published-log": ({LOG: (PUBLISHED_LOG.read_text(encoding="utf-8"), quote_log)}, [LOG],
                      lambda root: read_reference_logs(root / "logs"), None),
}


def write(root: Path, files: dict, rewrite: list[str] | None = None, end: str = "lf",
          bom: bool = False, quoted: bool = False) -> None:
    for name, (text, quote) in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if rewrite is not None and name in rewrite:
            path.write_bytes(encode(quote(text) if quoted else text, end, bom))
        else:
            path.write_bytes(text.encode("utf-8"))


@pytest.mark.parametrize("variant, end, bom, quoted", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_csv_reads_the_same_whatever_its_line_ends_bom_or_quoting(
        tmp_path, kind, variant, end, bom, quoted):
    files, rewrite, load, fix = KINDS[kind]
    root = tmp_path / "data"
    write(root, files)
    expected = load(root)
    if quoted and fix is not None:
        expected = fix(expected)

    write(root, files, rewrite, end, bom, quoted)
    for name in rewrite:                         # the file really is in the variant's form
        data = (root / name).read_bytes()
        assert data.startswith(BOM) == bom
        assert (b"\n" in data) == (end != "cr") and (b"\r" in data) == (end != "lf")
        assert (b'"' in data) or not quoted
    got = load(root)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


# ----------------------------------------- errors in such files still name file and row

def test_cr_only_ratings_with_a_bad_value_names_file_column_and_row(tmp_path):
    root = tmp_path / "soundtracks"
    root.mkdir()
    lines = ratings_text().splitlines()
    cells = lines[2].split(",")
    cells[3] = "oops"
    lines[2] = ",".join(cells)
    path = root / "mean_ratings_set1.csv"
    path.write_bytes(("\r".join(lines) + "\r").encode())
    with pytest.raises(DataLayoutError) as info:
        load_soundtracks(root, check_audio=False)
    message = str(info.value)
    assert str(path) in message and "'tension'" in message and "data row 2" in message
    assert info.value.__cause__ is None


def test_cr_only_ratings_with_an_extra_cell_names_file_and_line(tmp_path):
    root = tmp_path / "soundtracks"
    root.mkdir()
    lines = ratings_text().splitlines()
    lines[3] += ",extra"
    path = root / "mean_ratings_set1.csv"
    path.write_bytes(BOM + ("\r".join(lines) + "\r").encode())
    with pytest.raises(DataLayoutError) as info:
        load_soundtracks(root, check_audio=False)
    assert f"{path} cannot be parsed: line 4 has 11 cells but the header has 10" in str(info.value)


def test_cr_only_log_with_a_bad_value_names_file_row_and_column(tmp_path):
    text = FIXTURE_LOG.read_text(encoding="utf-8")
    old = "312,28.90412,57.11830520629883,True"
    assert old in text
    path = tmp_path / "log.csv"
    path.write_bytes(encode(text.replace(old, old.replace("True", "yes")), "cr", True))
    with pytest.raises(DataLayoutError) as info:
        read_reference_log(path)
    message = str(info.value)
    assert str(path) in message and "data row 2" in message and "'converged'" in message


def test_cr_inside_a_quoted_log_cell_is_whitespace(tmp_path):
    """An old-Mac log keeps the wrapped arrays' values (the break inside the quotes)."""
    path = tmp_path / "log.csv"
    path.write_bytes(encode(FIXTURE_LOG.read_text(encoding="utf-8"), "cr", False))
    log = read_reference_log(path)
    assert log.clean_sad[0] == pytest.approx(0.17719302)
    assert log.final_tender[1] == pytest.approx(-2.3041987)
    assert np.isnan(log.threshold[2])
