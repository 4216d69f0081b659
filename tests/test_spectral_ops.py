"""The front end's hand-written backward passes equal autograd's (float64) and finite differences."""
import pytest
import torch

from mer_lib.errors import ParameterError
from mer_lib.spectral_ops import FRAME_SIZE, N_BINS, frame_signal, magnitude_spectrum, overlap_add


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
