"""The front end's hand-written backward passes equal autograd's (float64) and finite differences."""
import pytest
import torch

from mer_lib.errors import ParameterError
from mer_lib.spectral_ops import FRAME_SIZE, N_BINS, frame_signal, magnitude_spectrum, overlap_add, peak_normalise


def _autograd_magnitude(frames):
    return torch.fft.rfft(frames, dim=-1)[..., :N_BINS].abs()


def test_magnitude_forward_is_the_plain_expression_bit_for_bit():
    frames = torch.randn(3, 5, FRAME_SIZE, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.equal(magnitude_spectrum(frames), _autograd_magnitude(frames))
    with torch.no_grad():
        assert torch.equal(magnitude_spectrum(frames), _autograd_magnitude(frames))


@pytest.mark.parametrize("kind", ["random", "constant", "zero", "sine"])
def test_magnitude_backward_equals_autograd_in_float64(kind):
    gen = torch.Generator().manual_seed(2)
    n = torch.arange(FRAME_SIZE, dtype=torch.float64)
    frames = {"random": torch.randn(2, 3, FRAME_SIZE, dtype=torch.float64, generator=gen),
              "constant": torch.ones(2, 3, FRAME_SIZE, dtype=torch.float64),       # only the DC bin is non-zero
              "zero": torch.zeros(2, 3, FRAME_SIZE, dtype=torch.float64),          # |z| = 0 everywhere: gradient 0
              "sine": torch.sin(2 * torch.pi * 5 * n / FRAME_SIZE).expand(2, 3, -1).clone()}[kind]
    weights = torch.randn(2, 3, N_BINS, dtype=torch.float64, generator=gen)
    x = frames.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad((magnitude_spectrum(x) * weights).sum(), x)
    x = frames.clone().requires_grad_(True)
    (theirs,) = torch.autograd.grad((_autograd_magnitude(x) * weights).sum(), x)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    if kind == "zero":
        assert not ours.any()


def test_magnitude_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, FRAME_SIZE, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(1, FRAME_SIZE, dtype=torch.float64, generator=gen)
    (g,) = torch.autograd.grad(magnitude_spectrum(x).sum(), x)
    h = 1e-6
    with torch.no_grad():
        numeric = (magnitude_spectrum(x + h * v).sum() - magnitude_spectrum(x - h * v).sum()) / (2 * h)
    assert float((g * v).sum()) == pytest.approx(float(numeric), rel=1e-7)


def test_framing_backward_is_the_adjoint():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4000, dtype=torch.float64, generator=gen, requires_grad=True)
    starts = torch.tensor([[0, 704, 1408], [10, 900, 1900]])
    g = torch.randn(2, 3, FRAME_SIZE, dtype=torch.float64, generator=gen)
    (grad,) = torch.autograd.grad(frame_signal(x, starts), x, g)
    # <frame(x), g> = <x, overlap_add(g)>
    assert float((frame_signal(x, starts) * g).sum()) == pytest.approx(float((x * overlap_add(g, starts, 4000)).sum()))
    torch.testing.assert_close(grad, overlap_add(g, starts, 4000))


def test_bad_frames_name_the_shape():
    with pytest.raises(ParameterError, match="2048 samples in their last dimension.*\\(3, 100\\)"):
        magnitude_spectrum(torch.zeros(3, 100))


def test_magnitude_is_bit_identical_to_complex_abs_in_both_precisions():
    for dtype in (torch.float32, torch.float64):
        frames = torch.randn(4, 7, FRAME_SIZE, dtype=dtype, generator=torch.Generator().manual_seed(5))
        window = torch.hann_window(FRAME_SIZE, periodic=False, dtype=dtype)
        expected = torch.fft.rfft(frames * window, dim=-1)[..., :N_BINS].abs()
        assert torch.equal(magnitude_spectrum(frames, window), expected)
        assert torch.equal(magnitude_spectrum(frames.clone().requires_grad_(True), window), expected)


def _autograd_peak_normalise(waves, peak_outside, in_clip):
    inside = waves if in_clip is None else waves * in_clip
    peak = torch.maximum(inside.abs().amax(dim=1), peak_outside.to(waves.dtype))
    return waves / peak.unsqueeze(1)


@pytest.mark.parametrize("masked", [True, False])
def test_peak_normalisation_equals_autograd_ties_and_all(masked):
    """Forward bit for bit; backward to 1e-13 in float64, for a clip whose own peak sets the
    gain, one whose peak outside the excerpt does, a tie between the two (autograd's
    ``maximum`` shares the gradient half and half), two equal in-clip peaks of opposite sign,
    a loud sample outside the clip (ignored) and a silent excerpt."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(6, 50, dtype=torch.float64, generator=gen)
    in_clip = torch.ones(6, 50, dtype=torch.bool)
    in_clip[:, 40:] = False
    w[0, 3], w[0, 7] = 5.0, -5.0                       # two in-clip peaks
    w[1, 45] = 9.0                                      # outside the clip
    w[5] = 0.0                                          # silent excerpt
    q = torch.tensor([0.5, 0.5, 10.0, 0.0, 0.2, 0.3], dtype=torch.float64)
    q[3] = (w[3] * in_clip[3]).abs().max() if masked else w[3].abs().max()   # a tie with the outside peak
    mask = in_clip if masked else None
    weights = torch.randn(6, 50, dtype=torch.float64, generator=gen)
    a, b = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ours, ref = peak_normalise(a, q, mask), _autograd_peak_normalise(b, q, mask)
    assert torch.equal(ours, ref)
    (ga,) = torch.autograd.grad((ours * weights).sum(), a)
    (gb,) = torch.autograd.grad((ref * weights).sum(), b)
    assert torch.allclose(ga, gb, rtol=0, atol=1e-13)
    assert ga[3].abs().max() > 0 and not torch.equal(ga[3], weights[3] / q[3])  # the tie's share is there


def test_peak_normalisation_refuses_mismatched_shapes():
    with pytest.raises(ParameterError, match=r"peak_outside \(B,\)"):
        peak_normalise(torch.zeros(2, 10), torch.zeros(3))


def test_overlap_add_in_row_chunks_equals_a_plain_loop(monkeypatch):
    import mer_lib.spectral_ops as ops

    gen = torch.Generator().manual_seed(7)
    frames = torch.randn(5, 3, FRAME_SIZE, dtype=torch.float64, generator=gen)
    starts = torch.tensor([[0, 704, 1408], [3, 700, 1500], [0, 1, 2], [10, 900, 1900], [0, 704, 1408]])
    expected = torch.zeros(5, 4000, dtype=torch.float64)
    for b in range(5):
        for t in range(3):
            expected[b, starts[b, t]:starts[b, t] + FRAME_SIZE] += frames[b, t]
    torch.testing.assert_close(overlap_add(frames, starts, 4000), expected, rtol=0, atol=1e-12)
    monkeypatch.setattr(ops, "_CPU_INDEX_ELEMENTS", 2 * 3 * FRAME_SIZE)        # two rows per chunk
    torch.testing.assert_close(overlap_add(frames, starts, 4000), expected, rtol=0, atol=1e-12)


def test_blocked_product_equals_the_dense_filterbank_product_and_its_gradient():
    from mer_lib.frontend import log_filterbank
    from mer_lib.spectral_ops import blocked_matmul, column_blocks

    fb = torch.from_numpy(log_filterbank()).double()
    blocks = column_blocks(fb)
    # the blocks tile the bands, and every non-zero weight lies inside its block
    assert [b[0] for b in blocks] == [0] + [b[1] for b in blocks[:-1]] and blocks[-1][1] == fb.shape[1]
    covered = torch.zeros_like(fb, dtype=torch.bool)
    for c0, c1, r0, r1 in blocks:
        covered[r0:r1, c0:c1] = True
    assert not (fb[~covered] != 0).any()
    assert sum((c1 - c0) * (r1 - r0) for c0, c1, r0, r1 in blocks) < fb.numel() / 3   # the point of it
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(2, 7, N_BINS, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(2, 7, fb.shape[1], dtype=torch.float64, generator=gen)
    ours = blocked_matmul(x, fb, blocks)
    torch.testing.assert_close(ours, x @ fb, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours, x, g)
    (g_dense,) = torch.autograd.grad(x @ fb, x, g)
    torch.testing.assert_close(g_ours, g_dense, rtol=1e-12, atol=1e-12)
    with pytest.raises(ParameterError, match="1023 columns"):
        blocked_matmul(x[..., :-1], fb, blocks)
    with pytest.raises(ParameterError, match="non-zero in every column"):
        column_blocks(torch.zeros(4, 2))
