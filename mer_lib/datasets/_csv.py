"""Small helpers shared by the dataset loaders: read a table, check columns and values.

Every check raises :class:`~mer_lib.errors.DataLayoutError` with a message that names the
file, the column and the first offending row or value, never a pandas stack trace.
Tables are read with every cell as a string, so that the loaders decide (and report)
what a bad value is.

Example:
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("id,x\\n1,0.5\\n2,oops\\n")
    >>> df = read_table(p, ",", expected_columns=2, what="demo table")
    >>> numeric_columns(df, ["x"], p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mer_lib.errors.DataLayoutError: ...t.csv: column 'x' must hold finite numbers, but data row 2 has 'oops'
"""
from __future__ import annotations

import codecs
import csv
import re
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataLayoutError, MerError

#: Human names of the separators we know how to recognise.
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}

#: How many offending values an error message lists before it says "...".
SHOW = 5


def few(values: Iterable, n: int = SHOW) -> str:
    """``[1, 2, 3, ...]`` (at most ``n`` items, then the count of the rest)."""
    values = list(values)
    text = ", ".join(str(v) for v in values[:n])
    if len(values) > n:
        text += f", ... ({len(values) - n} more)"
    return f"[{text}]"


@contextmanager
def readable(what: str = "file") -> Iterator[None]:
    """Turn an OSError inside the block (permission denied, I/O error, ...) into a
    DataLayoutError naming the file; errors of mer_lib pass unchanged.

    Example:
        >>> with readable("ratings file"):
        ...     open("/no/such/ratings.csv")
        Traceback (most recent call last):
        ...
        mer_lib.errors.DataLayoutError: cannot read ratings file /no/such/ratings.csv: No such file or directory
    """
    try:
        yield
    except MerError:
        raise
    except OSError as err:
        name = err.filename if err.filename is not None else "(unknown file)"
        raise DataLayoutError(f"cannot read {what} {name}: {err.strerror or err}") from None


def _read_text(path: Path, what: str = "file") -> str:
    """The file's text, the same whatever editor or system wrote it; DataLayoutError if unreadable.

    UTF-8 (else Latin-1); a leading UTF-8 byte-order mark is dropped; Windows (CRLF) and
    old-Mac (CR-only) line ends become LF, inside quoted cells too, so that every reader
    of a table sees one line per row.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = p.write_bytes(b"\\xef\\xbb\\xbfid,x\\r1,0.5\\r\\n2,0.7\\r")
        >>> _read_text(p)
        'id,x\\n1,0.5\\n2,0.7\\n'
    """
    with readable(what):
        raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def first_row_is_numeric(path: str | Path, sep: str = ",", what: str = "table") -> bool:
    """True if every cell of the first non-blank line of ``path`` is a number (no header row).

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = p.write_text("1,5.5,2\\n")
        >>> first_row_is_numeric(p), (p.write_text("id,a,b\\n1,2,3\\n") and first_row_is_numeric(p))
        (True, False)
    """
    path = require_file(Path(path), f"{what} file")
    for line in _read_text(path, f"{what} file").splitlines():
        if line.strip():
            cells = [c.strip() for c in next(csv.reader([line], delimiter=sep))]
            cells = [c for c in cells if c] or [""]
            return all(_is_number(c) for c in cells)
    return False


def _is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def require_dir(path: Path, what: str, layout: str = "") -> Path:
    """Return ``path`` if it is a directory, else raise DataLayoutError naming it."""
    path = Path(path)
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise DataLayoutError(f"{what} {path} {state}.{_layout(layout)}")
    return path


def require_file(path: Path, what: str, layout: str = "") -> Path:
    """Return ``path`` if it is a file, else raise DataLayoutError naming it."""
    path = Path(path)
    if not path.is_file():
        state = "is not a file" if path.exists() else "is missing"
        raise DataLayoutError(f"{what} {path} {state}.{_layout(layout)}")
    return path


def require_files_exist(paths: Sequence[Path], what: str, layout: str = "") -> None:
    """Raise DataLayoutError naming the first few of ``paths`` that are not files."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataLayoutError(
            f"{len(missing)} of {len(paths)} {what} are missing, e.g. {few(missing)}."
            f"{_layout(layout)}")


def _layout(layout: str) -> str:
    return f"\nExpected layout:\n{layout.rstrip()}" if layout else ""


def read_table(path: str | Path, sep: str = ",", *, expected_columns: int | None = None,
               min_columns: int | None = None, what: str = "table",
               layout: str = "", header: bool = True) -> pd.DataFrame:
    """Read a delimited text table with every cell as a stripped string.

    Args:
        path: the file.
        sep: the separator the file must use (``","``, ``";"`` or ``"\\t"``).
        expected_columns: exact number of columns required, if given.
        min_columns: minimum number of columns required, if given.
        what: what the file is, for error messages (e.g. ``"mid-level metadata"``).
        layout: the expected dataset layout, appended to structural errors.
        header: whether the first row is a header; without one, the columns are named by
            their 1-based position (``"1"``, ``"2"``, ...).

    Cells and column names are stripped of surrounding whitespace; blank lines and a
    trailing delimiter at the end of lines are ignored; short rows are padded with empty
    cells. Raises DataLayoutError naming ``path`` if the file is missing or empty, uses
    another separator, has a row with more cells than the header, duplicated column
    names, the wrong number of columns, or cannot be read (e.g. permission denied).

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.csv"
        >>> _ = p.write_text("song id;Source\\n1;soundtracks\\n")
        >>> read_table(p, ",", min_columns=2, what="metadata")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mer_lib.errors.DataLayoutError: ...m.csv looks semicolon-separated, expected comma-separated ...
    """
    path = require_file(Path(path), f"{what} file", layout)
    sep_name = SEPARATORS.get(sep, repr(sep))
    text = _read_text(path, f"{what} file")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataLayoutError(f"{what} file {path} is empty; expected a {sep_name}-separated "
                              f"table with a header row.{_layout(layout)}")
    wanted = expected_columns or min_columns or 0
    first = lines[0]
    if wanted > 1 and sep not in first:
        others = [name for s, name in SEPARATORS.items() if s != sep and s in first]
        hint = f"looks {others[0]}-separated" if others else "has a single column"
        raise DataLayoutError(
            f"{what} file {path} {hint}, expected {sep_name}-separated with "
            f"{'at least ' if not expected_columns else ''}{wanted} columns "
            f"(first line: {first[:80]!r}).{_layout(layout)}")
    header, rows = _parse(text, sep, path, what, has_header=header)
    if expected_columns is not None and len(header) != expected_columns:
        raise DataLayoutError(
            f"{what} file {path} has {len(header)} columns {header}, expected exactly "
            f"{expected_columns}.{_layout(layout)}")
    if min_columns is not None and len(header) < min_columns:
        raise DataLayoutError(
            f"{what} file {path} has {len(header)} columns {header}, expected at "
            f"least {min_columns}.{_layout(layout)}")
    if not rows:
        raise DataLayoutError(f"{what} file {path} has a header but no data rows."
                              f"{_layout(layout)}")
    return pd.DataFrame(rows, columns=header, dtype=str)


def _parse(text: str, sep: str, path: Path, what: str,
           has_header: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a delimited text, cells stripped, blank lines skipped.

    Without a header row the header is the 1-based column numbers of the widest row.

    Trailing empty cells (a delimiter at the end of each line) are dropped; short rows are
    padded with empty cells (which the value checks then report); a row with more
    non-empty cells than the header, or a duplicated column name, is an error.
    """
    reader = csv.reader(StringIO(text), delimiter=sep, skipinitialspace=True)
    table: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                table.append((reader.line_num, cells))
    except csv.Error as err:
        raise DataLayoutError(f"{what} file {path} cannot be parsed as a "
                              f"{SEPARATORS.get(sep, repr(sep))}-separated table near line "
                              f"{reader.line_num}: {err}") from None
    if not table:
        raise DataLayoutError(f"{what} file {path} holds only empty cells")
    if not has_header:
        width = max(len(cells) - next((k for k, c in enumerate(reversed(cells)) if c), 0)
                    for _, cells in table)
        table.insert(0, (0, [str(k + 1) for k in range(width)]))
    header = table[0][1]
    while header and not header[-1]:
        header.pop()
    dups = sorted({c for c in header if header.count(c) > 1})
    if dups:
        raise DataLayoutError(f"{what} file {path} has duplicated column names {dups} in its "
                              f"header {header}")
    n = len(header)
    rows = []
    for line, cells in table[1:]:
        while len(cells) > n and not cells[-1]:
            cells.pop()
        if len(cells) > n:
            raise DataLayoutError(
                f"{what} file {path} cannot be parsed: line {line} has {len(cells)} cells but "
                f"the header has {n} ({header})")
        rows.append(cells + [""] * (n - len(cells)))
    return header, rows


def _norm(name: str) -> str:
    """Normalise a column name for matching: lower case, parenthesised remarks dropped, runs
    of spaces, underscores and hyphens collapsed to one space.

    >>> _norm(" Rhythm_Complexity "), _norm("Minorness (mode)"), _norm("tonal-stability")
    ('rhythm complexity', 'minorness', 'tonal stability')
    """
    text = re.sub(r"\([^)]*\)", " ", str(name).lower())
    return re.sub(r"[\s_\-]+", " ", text).strip()


def match_columns(df: pd.DataFrame, required: Mapping[str, str], path: str | Path,
                  what: str = "table", layout: str = "") -> pd.DataFrame:
    """Rename the columns of ``df`` named like ``required``'s keys to its values.

    Matching ignores case, surrounding whitespace, parenthesised remarks and the difference
    between spaces, underscores and hyphens (``"song_id"`` matches ``"song id"``). Columns not asked for are kept
    unchanged. Raises DataLayoutError listing every required column that is missing.

    Example:
        >>> df = pd.DataFrame({"Song_ID": ["1"], "Source": ["x"]})
        >>> list(match_columns(df, {"song id": "song_id", "source": "source"}, "m.csv").columns)
        ['song_id', 'source']
    """
    found = {_norm(c): c for c in df.columns}
    missing = [name for name in required if _norm(name) not in found]
    if missing:
        raise DataLayoutError(
            f"{what} file {path} lacks the column(s) {missing}; it has {list(df.columns)}."
            f"{_layout(layout)}")
    return df.rename(columns={found[_norm(k)]: v for k, v in required.items()})


def _where(df: pd.DataFrame, i: int, id_col: str | None) -> str:
    """'data row 3 (number=17)' for the i-th (0-based) row."""
    text = f"data row {i + 1}"
    if id_col is not None and id_col in df.columns:
        text += f" ({id_col}={df[id_col].iloc[i]})"
    return text


def _show(value: str) -> str:
    """A cell's value for an error message: quoted, or 'an empty cell'."""
    return repr(value) if value else "an empty cell"


def numeric_columns(df: pd.DataFrame, cols: Iterable[str], path: str | Path, *,
                    id_col: str | None = None) -> pd.DataFrame:
    """Return a copy of ``df`` with ``cols`` converted to float.

    Raises DataLayoutError naming the file, the column and the first row whose value is
    empty, not a number, NaN or infinite.

    Example:
        >>> numeric_columns(pd.DataFrame({"x": ["1", " 2.5"]}), ["x"], "t.csv")["x"].tolist()
        [1.0, 2.5]
    """
    out = df.copy()
    for col in cols:
        raw = df[col].astype(str).str.strip()
        num = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = ~np.isfinite(num.to_numpy())
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            more = f" ({int(bad.sum())} bad values in this column)" if bad.sum() > 1 else ""
            raise DataLayoutError(
                f"{path}: column {col!r} must hold finite numbers, but {_where(df, i, id_col)} "
                f"has {_show(raw.iloc[i])}{more}")
        out[col] = num
    return out


def integer_column(df: pd.DataFrame, col: str, path: str | Path) -> np.ndarray:
    """The values of ``col`` as int64; raises DataLayoutError naming the first non-integer.

    Example:
        >>> integer_column(pd.DataFrame({"n": ["1", "02", "3.0"]}), "n", "t.csv").tolist()
        [1, 2, 3]
    """
    raw = df[col].astype(str).str.strip()
    num = pd.to_numeric(raw, errors="coerce").astype(float).to_numpy()
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataLayoutError(f"{path}: column {col!r} must hold integer IDs, but data row "
                              f"{i + 1} has {_show(raw.iloc[i])}")
    return num.astype(np.int64)


def check_range(df: pd.DataFrame, cols: Iterable[str], lo: float, hi: float,
                path: str | Path, *, id_col: str | None = None) -> None:
    """Raise DataLayoutError naming the (first few) values of ``cols`` outside [lo, hi].

    If the scale starts at 1 or more but every value lies in [0, 1], the message adds that
    the file looks already divided by 10 (the loaders divide by 10 themselves).

    Example:
        >>> check_range(pd.DataFrame({"x": [1.0, 12.0]}), ["x"], 1, 9, "t.csv")
        Traceback (most recent call last):
        ...
        mer_lib.errors.DataLayoutError: t.csv: 1 value(s) outside [1, 9]: [data row 2: x=12]
    """
    cols = list(cols)
    bad = []
    for col in cols:
        values = df[col].to_numpy(dtype=float)
        for i in np.flatnonzero((values < lo) | (values > hi)):
            bad.append(f"{_where(df, int(i), id_col)}: {col}={values[i]:g}")
    if bad:
        hint = ""
        everything = df[cols].to_numpy(dtype=float)
        if lo >= 1 and everything.size and everything.min() >= 0 and everything.max() <= 1:
            hint = (f"; every value lies in [0, 1], so the file looks already divided by 10 "
                    f"(0-1 scale): give the raw ratings on the {lo:g}-{hi:g} scale")
        raise DataLayoutError(f"{path}: {len(bad)} value(s) outside [{lo:g}, {hi:g}]: "
                              f"{few(bad)}{hint}")


def check_unique(df: pd.DataFrame, col: str, path: str | Path) -> None:
    """Raise DataLayoutError naming the duplicated values of ``col``, if any.

    Example:
        >>> check_unique(pd.DataFrame({"id": [1, 2, 2]}), "id", "t.csv")
        Traceback (most recent call last):
        ...
        mer_lib.errors.DataLayoutError: t.csv: column 'id' must hold unique IDs, but these appear more than once: [2]
    """
    values = df[col]
    dups = pd.unique(values[values.duplicated()])
    if len(dups):
        raise DataLayoutError(f"{path}: column {col!r} must hold unique IDs, but these appear "
                              f"more than once: {few(dups)}")
