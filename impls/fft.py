"""``conv2d`` and its gradients by the convolution theorem: real 2-D FFTs (``scipy.fft``) of whole planes.

The method as a textbook states it. On one axis (the other is the same), with ``xp`` the zero-padded input
(length ``Hp = H + 2*ph``), ``wd`` the kernel dilated by ``dh`` (``dh - 1`` zeros between taps, length
``K = dh*(kh - 1) + 1``) and ``dys`` ``dy`` dilated by the stride (length ``L = (Ho - 1)*sh + 1``)::

    y[i]   = sum_u xp[i*sh + u] wd[u]      a correlation of xp with wd, read at the lags i*sh
    dxp[t] = sum_i dys[i] wd[t - i]        a convolution of dys with wd, cropped to the input: dx = dxp[ph:ph + H]
    dwd[u] = sum_t xp[t + u] dys[t]        a correlation of xp with dys, read at the lags u = p*dh: dw[p] = dwd[p*dh]

The discrete Fourier transform of length ``F`` turns a cyclic convolution into a product of spectra, and a cyclic
correlation of real sequences into the product with the conjugate spectrum (the correlation theorem)::

    conv(a, k)[t] = sum_u a[t - u] k[u] = irfft(rfft(a) * rfft(k))
    corr(a, k)[t] = sum_u a[t + u] k[u] = irfft(rfft(a) * conj(rfft(k)))

The cyclic result is the linear one wherever no index wraps around ``F``, and ``F = Hp`` is enough for all three:
the forward reads lags ``i*sh <= Hp - K``, so ``i*sh + u <= Hp - 1``; the convolution is ``L + K - 1 <= Hp`` long
(``Ho`` is the largest count with ``(Ho - 1)*sh + K <= Hp``); dw reads lags ``u < K`` over ``t < L``, so
``t + u <= Hp - 1`` again. In 2-D the transforms are ``rfft2`` of whole planes; a convolution sums over the
channels of a group, and in frequency that is a sum of products, frequency by frequency::

    Y[n, o]  = sum_c X[n, c] * conj(W[o, c])     y  = irfft2(Y)[::sh, ::sw], the first Ho x Wo lags
    DX[n, c] = sum_o DYS[n, o] * W[o, c]          dx = irfft2(DX)[ph:ph + H, pw:pw + W]
    DW[o, c] = sum_n X[n, c] * conj(DYS[n, o])   dw = irfft2(DW)[::dh, ::dw], the first kh x kw lags
    db[o]    = sum_{n, i, j} dy[n, o, i, j]

Inputs that no output reads (padding-only taps, rows a stride skips) have a gradient of exactly 0, where the
transform gives rounding noise: dx is masked there (``read_by_some_output``).

Error model, and why it is ``normwise``: a transform of length ``F`` rounds with an error bounded by about
``u * log2(F) * ||x||_2 * ||w||_1`` for a whole output plane, not by ``u * sum |x||w|`` per element as direct
summation is. Every output inherits a share of the error of the largest ones, so on data of wide dynamic range
small outputs get large relative errors (and exact zeros come back as rounding noise); a NaN or Inf spreads over
its whole plane. Precision: ``scipy.fft`` keeps single precision (float32 -> complex64 -> float32).

Large problems run the same method engineered for speed, ``impls/fft_tiled.py``: overlap-save tiles chosen by a
cost model, channels-last spectra with the channel sums as per-frequency matrix products, a reused product buffer.
Its results are this method's up to rounding (tests/test_fft_speed_paths.py compares the two).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import scipy.fft as sfft

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem

#: scipy.fft threads per transform (-1: one per core); small transforms stay on one thread regardless
WORKERS = -1

#: problems of at least this many multiply-adds a pass go to ``impls/fft_tiled.py``. Below it the whole-plane
#: method is as fast or faster: its few numpy calls cost less than planning and assembling tiles, and a small
#: problem has little to gain from them; above it, the tiles and per-frequency matrix products pay more and more
#: (measured: docs/performance.md)
TILED_FROM_MACS = 100_000


def _dilated(a: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """``a`` with ``step - 1`` zeros between neighbours along its last two axes (a kernel's dilation, dy's stride)."""
    out = np.zeros((*a.shape[:-2], (a.shape[-2] - 1) * step[0] + 1, (a.shape[-1] - 1) * step[1] + 1), a.dtype)
    out[..., ::step[0], ::step[1]] = a
    return out


def read_by_some_output(problem: ConvProblem) -> np.ndarray:
    """Which inputs ``(H, W)`` some output reads: padded row ``a`` is read iff ``a = i*sh + p*dh`` for an output row
    ``i`` and a tap ``p``, and columns likewise (independently of the rows)."""

    def axis(size: int, pad: int, k: int, dilation: int, n_out: int, stride: int) -> np.ndarray:
        read = np.zeros(size + 2 * pad, dtype=bool)
        for p in range(k):
            read[p * dilation:p * dilation + (n_out - 1) * stride + 1:stride] = True
        return read[pad:pad + size]

    (sh, sw), (ph, pw), (dh, dw) = problem.stride, problem.padding, problem.dilation
    rows = axis(problem.h, ph, problem.kh, dh, problem.out_h, sh)
    cols = axis(problem.w, pw, problem.kw, dw, problem.out_w, sw)
    return rows[:, None] & cols[None, :]


def _tiled() -> ModuleType:
    """``impls/fft_tiled.py``, imported on first use (it imports ``read_by_some_output`` from here)."""
    from . import fft_tiled

    return fft_tiled


class FFTConv:
    """Correlations by ``rfft2``; large problems by overlap-save tiles (``impls/fft_tiled.py``)."""

    name = "fft"
    capabilities = Capabilities(dtypes=("float32", "float64"), error_model="normwise",
                                notes="scipy.fft rfft/fft passes; error bounded normwise per output plane")

    @staticmethod
    def _grouped(a: np.ndarray, problem: ConvProblem, weight: bool = False) -> np.ndarray:
        """(N, C, H, W) -> (N, G, C/G, H, W); ``weight``: (C_out, Cg, kh, kw) -> (G, Og, Cg, kh, kw)."""
        a = np.asarray(a, dtype=problem.dtype)
        if weight:
            return a.reshape(problem.groups, -1, *a.shape[1:])
        return a.reshape(a.shape[0], problem.groups, -1, *a.shape[2:])

    @staticmethod
    def _spectra(problem: ConvProblem, x: np.ndarray,
                 w: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """``X = rfft2(xp)`` ``(N, G, Cg, ...)`` and ``W = rfft2(wd)`` ``(G, Og, Cg, ...)`` on the grid ``Hp x Wp``."""
        (ph, pw) = problem.padding
        grid = (problem.h + 2 * ph, problem.w + 2 * pw)
        xp = np.pad(FFTConv._grouped(x, problem), ((0, 0),) * 3 + ((ph, ph), (pw, pw)))
        wd = _dilated(FFTConv._grouped(w, problem, weight=True), problem.dilation)
        return sfft.rfft2(xp, workers=WORKERS), sfft.rfft2(wd, s=grid, workers=WORKERS), grid

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if problem.macs >= TILED_FROM_MACS:  # the same method, engineered for large problems
            with sfft.set_workers(WORKERS):
                return _tiled().forward(problem, x, w, b)
        (sh, sw) = problem.stride
        X, W, grid = self._spectra(problem, x, w)
        Y = np.einsum("ngcuv,gocuv->ngouv", X, W.conj())  # correlation theorem, summed over the group's channels
        lags = sfft.irfft2(Y, s=grid, workers=WORKERS)
        y = np.ascontiguousarray(lags[..., :problem.out_h * sh:sh, :problem.out_w * sw:sw])
        y = y.reshape(problem.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if problem.macs >= TILED_FROM_MACS:  # the same method, engineered for large problems
            with sfft.set_workers(WORKERS):
                return _tiled().backward(problem, x, w, dy)
        (ph, pw), (dil_h, dil_w) = problem.padding, problem.dilation
        X, W, grid = self._spectra(problem, x, w)
        DYS = sfft.rfft2(_dilated(self._grouped(dy, problem), problem.stride), s=grid, workers=WORKERS)

        DX = np.einsum("ngouv,gocuv->ngcuv", DYS, W)  # convolution theorem, summed over the group's outputs
        dxp = sfft.irfft2(DX, s=grid, workers=WORKERS)
        dx = dxp[..., ph:ph + problem.h, pw:pw + problem.w].reshape(problem.input_shape)
        dx = dx * read_by_some_output(problem)  # exact zeros where the transform left rounding noise (a new array)

        DW = np.einsum("ngcuv,ngouv->gocuv", X, DYS.conj())  # correlation theorem, summed over the batch
        lags = sfft.irfft2(DW, s=grid, workers=WORKERS)[..., :problem.kh * dil_h:dil_h, :problem.kw * dil_w:dil_w]
        dw = np.ascontiguousarray(lags).reshape(problem.weight_shape)

        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, 2, 3)) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)
