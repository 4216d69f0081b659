"""Figure helpers the chapters share: a model input drawn on time (s) x frequency (Hz) axes.

A model input (or any map of its shape, such as a patch explanation) has ``frames`` rows at
:data:`mer_lib.frontend.FPS` frames per second and the 149 filterbank bands as columns.
:func:`spectrogram_edges` gives the cell edges for ``pcolormesh``: frame ``i`` spans
``[i, i + 1] / FPS`` seconds (:func:`mer_lib.frontend.frame_times`), and band ``b`` spans the
geometric midpoints between its centre frequency and its neighbours'
(:func:`band_edges_hz`, the first and last edge mirrored), so a log-frequency axis shows every
band with its own height. :func:`patch_edges` places the borders of a
:class:`~mer_lib.explain.PatchGrid` on the same axes, and :func:`show_spectrogram` draws both.

Example:
    >>> from mer_lib.explain import PatchGrid
    >>> t, f = spectrogram_edges(126, 149)
    >>> t.shape, f.shape, round(float(t[-1]), 3)
    ((127,), (150,), 4.026)
    >>> ts, fs = patch_edges(PatchGrid(bands=2, segments=4), 126, 149)
    >>> [round(float(v), 3) for v in ts], len(fs)
    ([0.0, 1.022, 2.045, 3.035, 4.026], 3)
"""
from __future__ import annotations

import numpy as np

from .errors import ParameterError
from .frontend import N_BANDS, band_centres_hz, frame_times


def band_edges_hz() -> np.ndarray:
    """The ``N_BANDS + 1`` band edges (Hz): geometric midpoints of neighbouring band centres."""
    c = band_centres_hz().astype(float)
    mid = np.sqrt(c[1:] * c[:-1])
    return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])


def spectrogram_edges(frames: int, bins: int = N_BANDS) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges of a ``(frames, bins)`` input: times (s, ``frames + 1``), frequencies (Hz, ``bins + 1``)."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ParameterError(f"frames must be an integer >= 1, got {frames!r}")
    if bins != N_BANDS:
        raise ParameterError(f"bins must be the front end's {N_BANDS} bands to be drawn in Hz, got {bins!r}")
    return frame_times(int(frames) + 1), band_edges_hz()


def patch_edges(grid, frames: int, bins: int = N_BANDS) -> tuple[np.ndarray, np.ndarray]:
    """Borders of the patches of ``grid`` on an input ``(frames, bins)``: times (s,
    ``segments + 1``) and frequencies (Hz, ``bands + 1``), outer borders included."""
    t, f = spectrogram_edges(frames, bins)
    rows = np.concatenate([[0], np.cumsum(grid.segment_sizes(frames))])
    cols = np.concatenate([[0], np.cumsum(grid.band_sizes(bins))])
    return t[rows], f[cols]


def show_spectrogram(ax, image, *, grid=None, cmap: str = "magma", vmin=None, vmax=None,
                     grid_color: str = "white"):
    """Draw ``image (frames, bins)`` on ``ax`` with time (s) and log frequency (Hz) axes.

    With a ``grid`` (:class:`~mer_lib.explain.PatchGrid`), its patch borders are drawn as
    dashed lines. Returns the ``QuadMesh`` (for a colour bar).
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ParameterError(f"image must be 2-D (frames, bins), got shape {image.shape}")
    t, f = spectrogram_edges(image.shape[0], image.shape[1])
    mesh = ax.pcolormesh(t, f, image.T, shading="flat", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if grid is not None:
        ts, fs = patch_edges(grid, image.shape[0], image.shape[1])
        for v in ts[1:-1]:
            ax.axvline(v, color=grid_color, lw=0.8, ls="--")
        for v in fs[1:-1]:
            ax.axhline(v, color=grid_color, lw=0.8, ls="--")
    return mesh


def show_patch_weights(ax, weights, grid, frames: int, bins: int = N_BANDS, *, cmap: str = "RdBu_r",
                       vmax: float | None = None):
    """Draw one weight per patch (``weights (K,)``, patch ``k = band * segments + segment``) at
    the patches' places on time (s) x log frequency (Hz) axes, colours symmetric around 0.

    ``vmax`` defaults to the largest ``|weight|``. Returns the ``QuadMesh`` (for a colour bar).
    """
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.size != grid.n_patches:
        raise ParameterError(f"weights must have one value per patch ({grid.n_patches}), got {w.size}")
    ts, fs = patch_edges(grid, frames, bins)
    lim = float(np.abs(w).max()) if vmax is None else float(vmax)
    lim = lim if lim > 0 else 1.0
    mesh = ax.pcolormesh(ts, fs, w.reshape(grid.bands, grid.segments), shading="flat", cmap=cmap,
                         vmin=-lim, vmax=lim)
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    return mesh


def show_intervals(ax, rows, *, labels: str = "label", zero: bool = False, xlabel: str = "",
                   title: str = "") -> None:
    """A forest plot: one row per entry of ``rows`` (a DataFrame with ``estimate``, ``low``,
    ``high`` and the column ``labels``), the point estimate with its interval as a bar.

    With ``zero=True`` (differences) a line marks 0. Rows with an ``outcome`` column are coloured
    by it: ``"better"`` blue, ``"worse"`` red, ``"unresolved"`` grey (others black); a row without
    a finite interval (not computable) is drawn as "n/c" at the axis.
    """
    colours = {"better": "tab:blue", "worse": "tab:red", "unresolved": "0.55"}
    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows()):
        outcome = r.get("outcome", "resolved")
        if not (np.isfinite(r["estimate"]) and np.isfinite(r["low"]) and np.isfinite(r["high"])):
            ax.annotate("n/c", (0, yi), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=9, color="0.4")
            continue
        colour = colours.get(outcome, "k")
        ax.plot([r["low"], r["high"]], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
        ax.plot([r["estimate"]], [yi], "o", color=colour, ms=5)
    if zero:
        ax.axvline(0, color="k", lw=0.8, ls="--")
    ax.set_yticks(y, [str(v) for v in rows[labels]])
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.margins(y=0.08)
    ax.grid(axis="x", alpha=0.3)
