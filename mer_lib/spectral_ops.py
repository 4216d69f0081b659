"""The waveform path's expensive differentiable steps, with hand-written backward passes.

- :func:`frame_signal`: frames of ``FRAME_SIZE`` samples at given starts; backward = one
  overlap-add (:func:`overlap_add`, a per-row ``scatter_add_``), many times faster on the CPU
  than the backward of advanced indexing and without the (B, S, 2048) gradient of a strided view.
- :func:`magnitude_spectrum`: ``|rfft(frame)|`` without the Nyquist bin; backward = one
  real inverse FFT of the half spectrum. Autograd's own chain (slice -> abs -> rfft) pads
  the gradient to a full complex spectrum and runs a complex-to-complex FFT, about 3x the
  work, plus two large zero fills; on the CPU that made the waveform attacks' front end cost
  more than the model itself.
- :func:`blocked_matmul`: the product with a sparse constant matrix such as the filterbank
  (each band reads a few neighbouring bins), as a few dense products of its non-zero blocks
  (:func:`column_blocks`): a fifth of the dense product's work, about 2x faster each way.
- :func:`peak_normalise`: a clip divided by its peak (the larger of its peak outside the
  excerpt and the excerpt's own in-clip peak); backward = one division plus a correction at
  the peak sample(s). Autograd's chain (mask -> abs -> amax -> maximum -> divide) makes
  about ten passes over the excerpt and cost as much as the rest of the front end's
  backward without the FFT.

All are exact: the forward values are the ones of the plain torch expressions, and the
gradients equal autograd's up to float rounding, ties included (tests compare them in float64).

Example:
    >>> import torch
    >>> x = torch.randn(1, 3000, dtype=torch.float64, requires_grad=True)
    >>> frames = frame_signal(x, torch.tensor([[0, 704]]))                 # (1, 2, 2048)
    >>> mag = magnitude_spectrum(frames)                                   # (1, 2, 1024)
    >>> ref = torch.fft.rfft(frames, dim=-1)[..., :N_BINS].abs()
    >>> bool(torch.equal(mag, ref))
    True
    >>> g1, = torch.autograd.grad(mag.sum(), x, retain_graph=True)   # the framing is shared
    >>> g2, = torch.autograd.grad(ref.sum(), x)
    >>> bool(torch.allclose(g1, g2))
    True
"""
from __future__ import annotations

import torch

from mer_lib.errors import ParameterError

__all__ = ["FRAME_SIZE", "N_BINS", "frame_signal", "overlap_add", "magnitude_spectrum", "peak_normalise",
           "column_blocks", "blocked_matmul"]

FRAME_SIZE = 2048
N_BINS = FRAME_SIZE // 2  # rfft bins without the Nyquist bin
_CPU_INDEX_ELEMENTS = 2 ** 21  # overlap-add index entries per CPU chunk (16 MB of int64)


class _Frames(torch.autograd.Function):
    """Rows of the strided view of all windows; backward: one ``index_add_`` (overlap-add)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        ctx.save_for_backward(starts)
        ctx.signal_shape = tuple(x.shape)
        return x.unfold(-1, FRAME_SIZE, 1)[rows, starts]                 # a copy, (B, T, 2048)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (starts,) = ctx.saved_tensors
        return overlap_add(grad, starts, ctx.signal_shape[1]), None


def overlap_add(frames: torch.Tensor, starts: torch.Tensor, samples: int) -> torch.Tensor:
    """Sum frames back into signals: (B, T, 2048) at (B, T) starts -> (B, ``samples``).

    The adjoint of :func:`frame_signal` (its backward pass); with windowed frames divided by
    the summed squared window it inverts a short-time Fourier transform. One ``scatter_add_``
    per row (each row's frames are added in their order, so the sums are deterministic on the
    CPU); about 3x faster on the CPU than a flat ``index_add_``, which is not parallelised.

    Example:
        >>> overlap_add(torch.ones(1, 2, 2048), torch.tensor([[0, 704]]), 3000)[0, [0, 704, 2047, 2752]].tolist()
        [1.0, 2.0, 2.0, 0.0]
    """
    batch, dev = frames.shape[0], frames.device
    out = frames.new_zeros(batch, samples)
    # on the CPU a few rows at a time: an int64 index of more than 32 MB is a fresh mmap
    # (page faults on every call); a smaller one is reused by the allocator
    per_row = frames.shape[1] * frames.shape[2]
    rows = batch if dev.type != "cpu" else max(1, _CPU_INDEX_ELEMENTS // max(1, per_row))
    offsets = torch.arange(FRAME_SIZE, device=dev)
    for first in range(0, batch, rows):
        part = slice(first, first + rows)
        index = (starts[part].to(dev, torch.long).unsqueeze(-1) + offsets).flatten(1)
        out[part].scatter_add_(1, index, frames[part].flatten(1))
    return out


def frame_signal(x: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Frames of ``FRAME_SIZE`` samples of each signal at its own starts: (B, S), (B, T) -> (B, T, 2048).

    Differentiable with respect to ``x`` (once); the backward pass is one overlap-add.
    Every frame must fit in its signal.

    Example:
        >>> x = torch.arange(3000.).unsqueeze(0)
        >>> frame_signal(x, torch.tensor([[0, 704]]))[0, :, 0].tolist()
        [0.0, 704.0]
    """
    if x.dim() != 2 or starts.dim() != 2 or starts.shape[0] != x.shape[0]:
        raise ParameterError(f"x must be (B, samples) and starts (B, frames), got {tuple(x.shape)} "
                             f"and {tuple(starts.shape)}")
    if starts.numel() and (int(starts.min()) < 0 or int(starts.max()) + FRAME_SIZE > x.shape[1]):
        raise ParameterError(f"every frame must lie inside the {x.shape[1]}-sample signals; starts run "
                             f"from {int(starts.min())} to {int(starts.max())} (+ {FRAME_SIZE} samples)")
    return _Frames.apply(x, starts.to(device=x.device, dtype=torch.long))


def _parts(spectrum: torch.Tensor) -> torch.Tensor:
    """``(2, ..., N_BINS)``: the real and imaginary parts of ``spectrum[..., :N_BINS]``, contiguous."""
    return torch.view_as_real(spectrum)[..., :N_BINS, :].movedim(-1, 0).contiguous()


def _abs(parts: torch.Tensor) -> torch.Tensor:
    """``|re + i im|`` of :func:`_parts`' output, as ``hypot(re, im)``.

    The same values bit for bit as the complex tensor's ``abs`` (which is a ``hypot``; the
    tests check it in float32 and float64), about 2x faster on the CPU, where the complex
    kernel is not vectorised.
    """
    return torch.hypot(parts[0], parts[1])


class _Magnitude(torch.autograd.Function):
    """``|rfft(x * window)|[..., :N_BINS]``; backward: ``N * irfft`` of the half spectrum, times the window.

    With ``z_k = sum_n window_n x_n exp(-2 pi i k n / N)`` and ``w_k = g_k z_k / |z_k|`` (0
    where ``z_k = 0``, as autograd's ``abs`` does), ``dL/dx_n = window_n sum_{k < N/2}
    Re(w_k exp(2 pi i k n / N))`` -- which is ``window_n (N / 2) irfft(X)_n`` for
    ``X_0 = 2 Re(w_0)``, ``X_k = w_k`` (0 < k < N/2) and no Nyquist term. ``N / 2`` is a
    power of two, so the order of the scalings does not change a bit.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
        parts = _parts(torch.fft.rfft(x if window is None else x * window, dim=-1))
        mag = _abs(parts)
        ctx.save_for_backward(parts, mag, window)
        return mag

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        parts, mag, window = ctx.saved_tensors
        scale = torch.where(mag > 0, grad / mag, mag.new_zeros(()))              # g / |z|, 0 where z = 0
        # X = z * scale as interleaved (re, im) pairs, with a zero Nyquist term: two real
        # products written in place (a complex-by-real product first copies the scale to complex)
        spectrum = mag.new_empty(*mag.shape[:-1], N_BINS + 1, 2)
        spectrum[..., N_BINS, :] = 0
        torch.mul(parts[0], scale, out=spectrum[..., :N_BINS, 0])
        torch.mul(parts[1], scale, out=spectrum[..., :N_BINS, 1])
        spectrum[..., 0, 0] *= 2                                                  # X_0 = 2 Re(w_0)
        spectrum[..., 0, 1] = 0
        out = torch.fft.irfft(torch.view_as_complex(spectrum), n=FRAME_SIZE, dim=-1)
        half = FRAME_SIZE // 2
        return out.mul_(half if window is None else window * half), None


def magnitude_spectrum(frames: torch.Tensor, window: torch.Tensor | None = None) -> torch.Tensor:
    """``|rfft|`` of ``(..., 2048)`` real frames (times ``window``, if given) without the Nyquist bin: ``(..., 1024)``.

    Equal to ``torch.fft.rfft(frames * window, dim=-1)[..., :N_BINS].abs()``, with a backward
    pass of one inverse real FFT (see the module docstring). The window is a constant: no
    gradient flows to it.

    Example:
        >>> magnitude_spectrum(torch.ones(2048))[:2].tolist()
        [2048.0, 0.0]
    """
    if frames.shape[-1] != FRAME_SIZE:
        raise ParameterError(f"frames must have {FRAME_SIZE} samples in their last dimension, "
                             f"got shape {tuple(frames.shape)}")
    if window is not None and window.shape != (FRAME_SIZE,):
        raise ParameterError(f"window must have shape ({FRAME_SIZE},), got {tuple(window.shape)}")
    if not (torch.is_grad_enabled() and frames.requires_grad):
        windowed = frames if window is None else frames * window
        return _abs(_parts(torch.fft.rfft(windowed, dim=-1)))
    return _Magnitude.apply(frames, None if window is None else window.detach())


class _PeakNormalise(torch.autograd.Function):
    """``waves / max(peak_outside, max |waves * in_clip|)`` per row; backward as autograd's, ties shared.

    With ``p = max(q, c)`` and ``c = max_i |m_i w_i|``: ``dL/dw = g / p - (sum_i g_i w_i) / p^2
    * dp/dw``, where ``dp/dw_i = a sign(w_i) / n`` at the ``n`` in-clip samples that reach ``c``
    (0 elsewhere) and ``a`` is 1 when ``c > q``, 1/2 when ``c == q`` (autograd's ``maximum``)
    and 0 otherwise.
    """

    @staticmethod
    def forward(ctx, waves: torch.Tensor, peak_outside: torch.Tensor, in_clip: torch.Tensor | None):
        magnitude = (waves if in_clip is None else torch.where(in_clip, waves, 0.0)).abs()
        clip_peak = magnitude.amax(dim=1)
        outside = peak_outside.to(waves.dtype)
        peak = torch.maximum(clip_peak, outside)
        # the sample(s) at the clip's own peak (ties included) as (row, column) indices; none
        # for a row that is silent in the clip
        at_peak = torch.nonzero(magnitude == clip_peak.unsqueeze(1))
        at_peak = at_peak[clip_peak[at_peak[:, 0]] > 0]
        ctx.save_for_backward(waves, clip_peak, outside, peak, at_peak)
        return waves / peak.unsqueeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        waves, clip_peak, outside, peak, at_peak = ctx.saved_tensors
        out = grad / peak.unsqueeze(1)
        share = torch.where(clip_peak > outside, 1.0, torch.where(clip_peak == outside, 0.5, 0.0)).to(grad.dtype)
        # dL/dp per row: a row-wise dot product, without a (B, S) temporary
        d_peak = -torch.bmm(grad.unsqueeze(1), waves.unsqueeze(2)).view(-1) / (peak * peak)
        row, col = at_peak[:, 0], at_peak[:, 1]
        ties = torch.zeros_like(peak).index_add_(0, row, torch.ones_like(row, dtype=peak.dtype))
        out[row, col] += (share * d_peak)[row] * torch.sign(waves[row, col]) / ties[row]
        return out, None, None


def peak_normalise(waves: torch.Tensor, peak_outside: torch.Tensor,
                   in_clip: torch.Tensor | None = None) -> torch.Tensor:
    """Each row of ``waves`` (B, S) divided by its clip's peak, differentiable with respect to ``waves``.

    The peak is ``max(peak_outside, max |waves * in_clip|)``: ``peak_outside`` (B,) is the
    clip's peak outside the excerpt and ``in_clip`` (B, S, bool) marks the samples that
    belong to the clip (None: all). Equal to the plain torch expression, with a backward
    pass of a few passes over the excerpt instead of about ten.

    Example:
        >>> w = torch.tensor([[0.5, -2.0, 1.0]])
        >>> peak_normalise(w, torch.tensor([1.0])).tolist()
        [[0.25, -1.0, 0.5]]
    """
    if waves.dim() != 2 or peak_outside.shape != waves.shape[:1]:
        raise ParameterError(f"waves must be (B, samples) and peak_outside (B,), got {tuple(waves.shape)} "
                             f"and {tuple(peak_outside.shape)}")
    return _PeakNormalise.apply(waves, peak_outside, in_clip)


Block = tuple[int, int, int, int]


def column_blocks(matrix, max_rows: int = 256) -> tuple[Block, ...]:
    """Split a sparse ``(rows, cols)`` matrix into blocks ``(col_start, col_stop, row_start, row_stop)``.

    Consecutive columns are grouped while the rows their non-zeros span stay within
    ``max_rows``; every non-zero lies in its column group's row span, so
    ``x @ matrix == concat(x[:, r0:r1] @ matrix[r0:r1, c0:c1])`` up to rounding.

    Example:
        >>> m = torch.tensor([[1., 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
        >>> column_blocks(m, max_rows=2)
        ((0, 1, 0, 2), (1, 2, 1, 3), (2, 3, 3, 4))
    """
    nonzero = torch.as_tensor(matrix) != 0
    if nonzero.dim() != 2 or not bool(nonzero.any(dim=0).all()):
        raise ParameterError(f"matrix must be 2-D with a non-zero in every column, got shape {tuple(nonzero.shape)}")
    rows = nonzero.shape[0]
    lo = nonzero.int().argmax(dim=0).tolist()
    hi = (rows - nonzero.flip(0).int().argmax(dim=0)).tolist()
    blocks, start = [], 0
    while start < len(lo):
        stop = start + 1
        while stop < len(lo) and max(hi[start:stop + 1]) - min(lo[start:stop + 1]) <= max_rows:
            stop += 1
        blocks.append((start, stop, min(lo[start:stop]), max(hi[start:stop])))
        start = stop
    return tuple(blocks)


class _BlockedMatmul(torch.autograd.Function):
    """``x @ matrix`` from the matrix's blocks; backward: the transposed blocks, added into their rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor, blocks: tuple[Block, ...]) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = x.new_empty(*x.shape[:-1], matrix.shape[1])   # not a view: callers may add to it in place
        flat_out = out.view(-1, matrix.shape[1])
        for c0, c1, r0, r1 in blocks:
            flat_out[:, c0:c1].addmm_(flat[:, r0:r1], matrix[r0:r1, c0:c1], beta=0)
        ctx.save_for_backward(matrix)
        ctx.blocks, ctx.in_shape = blocks, tuple(x.shape)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (matrix,) = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        out = flat.new_zeros(flat.shape[0], ctx.in_shape[-1])
        for c0, c1, r0, r1 in ctx.blocks:
            out[:, r0:r1].addmm_(flat[:, c0:c1], matrix[r0:r1, c0:c1].T)
        return out.view(ctx.in_shape), None, None


def blocked_matmul(x: torch.Tensor, matrix: torch.Tensor, blocks: tuple[Block, ...]) -> torch.Tensor:
    """``x @ matrix`` for a constant sparse ``matrix`` split by :func:`column_blocks`; differentiable in ``x``.

    Equal to the dense product up to float rounding (the sums skip the zeros).

    Example:
        >>> m = torch.tensor([[1., 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
        >>> x = torch.arange(8.).view(2, 4)
        >>> bool(torch.equal(blocked_matmul(x, m, column_blocks(m, 2)), x @ m))
        True
    """
    if x.shape[-1] != matrix.shape[0]:
        raise ParameterError(f"x has {x.shape[-1]} columns but the matrix {matrix.shape[0]} rows")
    return _BlockedMatmul.apply(x, matrix.detach(), blocks)
