"""Figures and tables for the book's page: legible at the column's width, numbered, formatted once.

The book's text column is about 690 px wide in a 1280-px window. A figure drawn
:data:`PAGE_WIDTH_IN` inches wide at :data:`DPI` dots per inch is shown at its natural size, so a
font of :data:`MIN_FONT_PT` points stays that size on screen; a wider figure would be scaled down
and its labels with it. :func:`book_style` sets matplotlib's defaults to those sizes,
:func:`page_figure` makes a figure of the page's width, and :func:`glue_figure` refuses (with a
:class:`~mer_lib.errors.ParameterError` naming the figure) one that is wider than the page or
has text smaller than the minimum, then glues it for a ``{glue:figure}`` directive with a caption
and a ``:name:`` (Sphinx numbers it).

Tables go to the page as Markdown (:func:`glue_table`), inside a ``{table}`` directive that gives
them a number and a caption; their numbers are formatted by :func:`number` (significant digits)
and :func:`p_value` (``< 1e−4``, ``3.1e−3``, ``0.042``), so every page prints them alike. An
exponent is written with a minus sign (U+2212) and ``<`` is followed by a no-break space, so a
narrow table column never breaks a number over two lines.

Example:
    >>> number(0.000123456), number(1234.5), number(1.84e-06, 2), number(float("nan"))
    ('0.000123', '1.23e+03', '1.8e−06', '–')
    >>> [p.replace(NBSP, " ") for p in (p_value(4.567e-32), p_value(0.00312), p_value(0.0456), p_value(0.57))]
    ['< 1e−4', '3.1e−3', '0.046', '0.57']
    >>> import pandas as pd
    >>> print(markdown_table(pd.DataFrame({"system": ["A2E"], "r": [0.6789]}), {"system": "system", "r": "avg r"}))
    | system   |   avg r |
    |:---------|--------:|
    | A2E      |   0.679 |
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from .errors import ParameterError
from .words import count  # noqa: F401 (re-exported: the chapters use layout.count)

#: The widest figure (inches) shown at its natural size in the text column.
PAGE_WIDTH_IN = 7.0
#: Dots per inch of the book's figures (with PAGE_WIDTH_IN: 700 px, about the column's width).
DPI = 100
#: The smallest font (points) a book figure may use.
MIN_FONT_PT = 9.0
#: A no-break space and the minus sign: numbers are never broken over two lines.
NBSP, MINUS = "\u00a0", "\u2212"

STYLE = {"figure.dpi": DPI, "savefig.dpi": DPI, "figure.figsize": (PAGE_WIDTH_IN, 3.2),
         "font.size": 9.5, "axes.titlesize": 10, "axes.labelsize": 9.5, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 9,
         "figure.titlesize": 10.5}


def book_style() -> None:
    """Set matplotlib's defaults to the book's figure sizes and fonts (call once per chapter)."""
    import matplotlib as mpl   # lazy: plotting and glue only where a page needs them

    mpl.rcParams.update(STYLE)


def page_figure(nrows: int = 1, ncols: int = 1, *, height: float = 3.2, **kwargs):
    """``plt.subplots`` at the page's width (constrained layout); returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt   # lazy: plotting and glue only where a page needs them

    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(PAGE_WIDTH_IN, height), **kwargs)


def figure_problems(fig) -> list[str]:
    """What keeps ``fig`` from being legible on the page: too wide, or text below the minimum."""
    from matplotlib.text import Text   # lazy: plotting and glue only where a page needs them

    problems = []
    width = fig.get_size_inches()[0]
    if width > PAGE_WIDTH_IN + 1e-6:
        problems.append(f"it is {width:.2f} in wide (the page takes {PAGE_WIDTH_IN} in)")
    small = sorted({round(t.get_fontsize(), 1) for t in fig.findobj(Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT - 1e-6})
    if small:
        problems.append(f"it has text at {small} pt (at least {MIN_FONT_PT:g} pt is legible)")
    return problems


def glue_figure(name: str, fig) -> None:
    """Check ``fig`` (:func:`figure_problems`), glue it as ``name`` and close it."""
    import matplotlib.pyplot as plt   # lazy: plotting and glue only where a page needs them
    from myst_nb import glue   # lazy: plotting and glue only where a page needs them

    problems = figure_problems(fig)
    if problems:
        plt.close(fig)
        raise ParameterError(f"figure {name!r} is not legible on the page: {'; '.join(problems)}")
    glue(name, fig, display=False)
    plt.close(fig)


def listing(items) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"`` (``"none"`` for no items).

    Example:
        >>> listing(["A2E"]), listing(["A2E", "A2M2E", "aA2E"]), listing([])
        ('A2E', 'A2E, A2M2E and aA2E', 'none')
    """
    items = [str(i) for i in items]
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def number(value, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits; ``"–"`` for NaN or None; integers as they are."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}".replace("e-", "e" + MINUS)
    return str(value)


def p_value(p: float) -> str:
    """A p-value for a table or the prose: ``< 1e−4``, two digits with a short exponent below 0.01,
    else two significant digits; ``"–"`` for NaN."""
    if p is None or not np.isfinite(p):
        return "–"
    if p < 1e-4:
        return f"<{NBSP}1e{MINUS}4"
    if p < 0.01:
        mantissa, exponent = f"{p:.1e}".split("e")
        return f"{mantissa}e{MINUS}{-int(exponent)}"
    return f"{p:.2g}"


def spread(mean: float, std: float, digits: int = 3) -> str:
    """A table cell ``"mean ± std"`` (the std to 2 digits); the mean alone where there is no spread
    (one seed: NaN std).

    Example:
        >>> spread(0.66412, 0.0123), spread(0.5, float("nan"))
        ('0.664 ± 0.012', '0.5')
    """
    if std is None or not np.isfinite(std):
        return number(mean, digits)
    return f"{number(mean, digits)} ± {number(std, 2)}"


def lookup(frame: pd.DataFrame | pd.Series, row, column: str | None = None) -> float:
    """``frame.loc[row, column]`` (a Series: ``frame[row]``) as a float, NaN where the row is
    missing (a system not in this run).

    >>> t = pd.DataFrame({"mae": [0.1]}, index=["a2e"])
    >>> lookup(t, "a2e", "mae"), lookup(t, "a2m2e", "mae"), lookup(t["mae"], "a2e")
    (0.1, nan, 0.1)
    """
    if row not in frame.index:
        return float("nan")
    return float(frame.loc[row] if column is None else frame.loc[row, column])


def spread_at(frame: pd.DataFrame, row, column: str, digits: int = 3) -> str:
    """:func:`spread` of the ``<column>_mean`` and ``<column>_std`` columns at ``row``; ``"–"`` where
    the row is missing.

    >>> spread_at(pd.DataFrame({"mae_mean": [0.1012], "mae_std": [0.004]}, index=["a2e"]), "a2e", "mae")
    '0.101 ± 0.004'
    """
    return spread(lookup(frame, row, f"{column}_mean"), lookup(frame, row, f"{column}_std"), digits)


def interval_text(low: float, high: float, digits: int = 2) -> str:
    """An interval for a table cell, ``"[low, high]"``; ``"–"`` where an end is missing.

    >>> interval_text(-0.0123, 0.5), interval_text(float("nan"), 1.0)
    ('[-0.012, 0.5]', '–')
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "–"
    return f"[{number(low, digits)}, {number(high, digits)}]"


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN where either is missing or ``b`` is 0."""
    return a / b if np.isfinite(a) and np.isfinite(b) and b != 0 else float("nan")


def markdown_table(frame: pd.DataFrame, columns: Mapping[str, str] | None = None, *,
                   formats: Mapping[str, Callable] | None = None, digits: int = 3,
                   index: bool = False) -> str:
    """``frame`` as a Markdown table: columns renamed by ``columns`` (only those, in that order,
    when given), each cell formatted by ``formats[column]`` or :func:`number`."""
    frame = frame.reset_index() if index else frame
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ParameterError(f"markdown_table: no column(s) {missing}; the table has {list(frame.columns)}")
        frame = frame[list(columns)]
    formats = dict(formats or {})
    shown = pd.DataFrame({c: [formats[c](v) if c in formats else number(v, digits) for v in frame[c]]
                          for c in frame.columns})
    align = ["right" if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
             else "left" for c in frame.columns]
    if columns is not None:
        shown.columns = [columns[c] for c in frame.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align)


def glue_number(name: str, value, digits: int = 3, *, fmt: str | None = None) -> None:
    """Glue ``value`` for the prose (``{glue:md}`name```) formatted as the tables format it
    (:func:`number`), or with the format spec ``fmt`` (e.g. ``".2f"``); ``"–"`` for NaN."""
    from IPython.display import Markdown   # lazy: plotting and glue only where a page needs them
    from myst_nb import glue   # lazy: plotting and glue only where a page needs them

    missing = value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value))
    text = number(value, digits) if fmt is None or missing else format(value, fmt).replace("e-", "e" + MINUS)
    glue(name, Markdown(text), display=False)


def glue_p(name: str, p: float) -> None:
    """Glue a p-value for the prose, written after "p": ``"< 1e-4"`` or ``"= 0.046"``."""
    from IPython.display import Markdown   # lazy: plotting and glue only where a page needs them
    from myst_nb import glue   # lazy: plotting and glue only where a page needs them

    text = p_value(p)
    glue(name, Markdown(text if text.startswith("<") else f"= {text}"), display=False)


def placeholder_figure(text: str):
    """A one-line figure standing in for a plot this run cannot draw (its data lack what it needs),
    so that every numbered figure of the page exists."""
    fig, ax = page_figure(height=0.8)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def log_x(ax, values) -> None:
    """A log x axis with 3–4 ticks in plain numbers (``values`` may span less than a decade)."""
    from matplotlib.ticker import FuncFormatter, NullLocator   # lazy: plotting and glue only where a page needs them

    ax.set_xscale("log")
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_xticks(sorted({float(f"{t:.2g}") for t in np.geomspace(v.min(), v.max(), 4)}))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{t:.2g}"))


def glue_table(name: str, frame: pd.DataFrame, columns: Mapping[str, str] | None = None, **kwargs) -> None:
    """Glue ``frame`` as the Markdown table ``name`` (see :func:`markdown_table`). Nothing is
    returned, so a call that ends a cell prints nothing on the page.

    The page shows it with a number and a caption::

        :::{table} What the rows and columns are.
        :name: tbl-name
        ```{glue:md} name
        :format: myst
        ```
        :::
    """
    from IPython.display import Markdown   # lazy: plotting and glue only where a page needs them
    from myst_nb import glue   # lazy: plotting and glue only where a page needs them

    glue(name, Markdown(markdown_table(frame, columns, **kwargs)), display=False)
