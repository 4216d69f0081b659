"""Chapter figure helpers: spectrogram cells and patch borders on time (s) x frequency (Hz) axes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mer_lib.errors import ParameterError  # noqa: E402
from mer_lib.explain import PatchGrid  # noqa: E402
from mer_lib.frontend import FPS, band_centres_hz  # noqa: E402
from mer_lib.plots import (band_edges_hz, patch_edges, show_patch_weights, show_spectrogram,  # noqa: E402
                           spectrogram_edges)


def test_band_edges_are_geometric_midpoints_around_every_centre():
    c, e = band_centres_hz(), band_edges_hz()
    assert e.shape == (150,) and np.all(np.diff(e) > 0)
    assert np.all((e[:-1] < c) & (c < e[1:]))
    np.testing.assert_allclose(e[1:-1], np.sqrt(c[1:] * c[:-1]))
    np.testing.assert_allclose(e[0] * e[1], c[0] ** 2)          # mirrored on a log axis


def test_patch_edges_follow_the_grid_split_sizes():
    t, f = spectrogram_edges(126, 149)
    np.testing.assert_allclose(t, np.arange(127) / FPS)
    ts, fs = patch_edges(PatchGrid(bands=2, segments=4), 126, 149)
    # 126 frames in 4 segments: 32, 32, 31, 31; 149 bands in 2: 75, 74
    np.testing.assert_allclose(ts, np.array([0, 32, 64, 95, 126]) / FPS)
    np.testing.assert_allclose(fs, f[[0, 75, 149]])


def test_drawings_carry_the_values_in_patch_order():
    grid = PatchGrid(bands=2, segments=3)
    w = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.0])        # k = band * segments + segment
    fig, (a, b) = plt.subplots(1, 2)
    mesh = show_patch_weights(a, w, grid, 30)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(2, 3), w.reshape(2, 3))
    assert mesh.get_clim() == (-3.0, 3.0) and a.get_yscale() == "log"
    image = np.arange(30 * 149, dtype=float).reshape(30, 149)
    mesh = show_spectrogram(b, image, grid=grid)
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(149, 30), image.T)
    assert len(b.lines) == (3 - 1) + (2 - 1)                  # inner patch borders
    plt.close(fig)


def test_bad_shapes_are_rejected():
    with pytest.raises(ParameterError, match="bins"):
        spectrogram_edges(10, 40)
    with pytest.raises(ParameterError, match="frames"):
        spectrogram_edges(0)
    fig, ax = plt.subplots()
    with pytest.raises(ParameterError, match="one value per patch"):
        show_patch_weights(ax, np.ones(5), PatchGrid(2, 3), 30)
    plt.close(fig)
