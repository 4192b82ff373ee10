"""``conv2d`` and its gradients by real 2-D FFTs (``scipy.fft``), vectorised over batch, groups and channels.

On one axis (the other is the same), with ``xp`` the zero-padded input (length ``Hp``), ``wd`` the kernel
dilated by ``dh`` (length ``K = dh*(kh - 1) + 1``), ``dys`` ``dy`` dilated by the stride (length
``L = (Ho - 1)*sh + 1``) and ``rev(a)[t] = a[len(a) - 1 - t]``, all three results are convolutions
(``conv(a, b)[t] = sum_u a[t - u] b[u]``, in frequency ``A * B``)::

    y[i]   = sum_u xp[i*sh + u] wd[u]          = conv(xp, rev(wd))[K - 1 + i*sh]
    dxp[t] = sum_u dys[t - u] wd[u]            = conv(dys, wd)[t]
    dw[p]  = sum_t xp[t + p*dh] dys[t]         = conv(xp, rev(dys))[L - 1 + p*dh]

(a correlation is the convolution with the reversed operand, read ``len - 1`` later; reversing is a free view,
so no spectrum is ever conjugated). The FFT computes them cyclically on a grid of ``F`` points, and one grid
``F >= Hp`` (``next_fast_len``) serves all three: what a linear convolution has beyond ``F`` wraps round onto
its lowest indices, and none of the entries kept is hit::

    result   linear length      wraps onto indices      entries kept
    y        Hp + K - 1         < K - 1                 K - 1 + i*sh   (<= Hp - 1)
    dxp      L + K - 1 <= Hp    none                    0 .. Hp - 1
    dw       Hp + L - 1         < L - 1                 L - 1 + p*dh   (<= Hp - 1)

(The textbook ``F >= Hp + K - 1`` would keep the discarded entries un-aliased too; nothing needs them.)

Layout: every array is transformed channels-last, ``(H, W, G, ...)``, so its spectrum is frequency-major,
``(Fh, Fw//2 + 1, G, a, b)`` with one small ``(a, b)`` matrix per frequency and group, and the sum over the
channels of a group (for dw also over the batch) is ``np.matmul`` batched over frequencies and groups::

    Y[f, g]  = X[f, g] @ Wrev[f, g]      (N, Cg) @ (Cg, Og)
    DX[f, g] = DY[f, g] @ W[f, g]^T      (N, Og) @ (Og, Cg)
    DW[f, g] = X[f, g]^T @ DYrev[f, g]   (Cg, N) @ (N, Og)

A 2-D real transform is two 1-D passes (``_spectrum``): the row pass (``rfft``, the last spatial axis) runs
over the rows that hold data only, the column pass (``fft``) zero-extends them to ``Fh``. For a kernel (``K``
rows on a grid of ``Fh``) that skips most of the work, with the very same arithmetic as ``rfft2``. The inverse
(``_inverse``) likewise runs its row pass only over the rows that are read.

Error model, and why it is ``normwise``: a transform of length ``F`` rounds with an error bounded by about
``u * log2(F) * ||x||_2 * ||w||_1`` for a whole output plane, not by ``u * sum |x||w|`` per element as direct
summation is. Every output inherits a share of the error of the largest ones, so on data of wide dynamic
range small outputs get large relative errors (and exact zeros come back as rounding noise). Inputs that
no output reads (padding, rows skipped by the stride) are masked to exact zeros in dx.
Precision: ``scipy.fft`` keeps single precision (float32 -> complex64 -> float32); nothing is upcast.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from conformance.backend import Capabilities, Grads
from conformance.problem import ConvProblem

#: scipy.fft threads per transform (-1: one per core); small transforms stay on one thread regardless
WORKERS = -1


def _spectrum(a: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """rfft2 over the first two axes of ``a`` (channels-last), zero-extended to ``grid``."""
    rows = sfft.rfft(a, n=grid[1], axis=1, workers=WORKERS)  # only the rows of a
    return sfft.fft(rows, n=grid[0], axis=0, workers=WORKERS)  # zero rows up to grid[0] added here


def _inverse(spec: np.ndarray, grid: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """``irfft2(spec, grid)[rows, cols]``, the row pass run over the kept rows only; ``spec`` is overwritten."""
    spec = sfft.ifft(spec, axis=0, overwrite_x=True, workers=WORKERS)  # in place: no second spectrum-sized array
    return sfft.irfft(spec[rows], n=grid[1], axis=1, workers=WORKERS)[:, cols]


def _dilated(a: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """``a`` (rows, cols, ...) with ``step - 1`` zeros between rows and between columns (dilation, stride)."""
    if step == (1, 1):
        return a
    up = np.zeros(((a.shape[0] - 1) * step[0] + 1, (a.shape[1] - 1) * step[1] + 1, *a.shape[2:]), a.dtype)
    up[::step[0], ::step[1]] = a
    return up


def _read(length: int, k: int, dilation: int, n_out: int, stride: int) -> np.ndarray:
    """Which padded rows some output reads: ``i*stride + p*dilation`` for ``i < n_out``, ``p < k``."""
    mask = np.zeros(length, dtype=bool)
    for p in range(k):
        mask[p * dilation:p * dilation + (n_out - 1) * stride + 1:stride] = True
    return mask


class FFTConv:
    """Real FFTs on one ``next_fast_len`` grid per problem; channel sums as per-frequency matrix products."""

    name = "fft"
    capabilities = Capabilities(dtypes=("float32", "float64"), error_model="normwise",
                                notes="scipy.fft rfft/fft passes; error bounded normwise per output plane")

    @staticmethod
    def _grid(problem: ConvProblem) -> tuple[int, int]:
        (ph, pw) = problem.padding
        return (sfft.next_fast_len(problem.h + 2 * ph, real=True),
                sfft.next_fast_len(problem.w + 2 * pw, real=True))

    @staticmethod
    def _last(a: np.ndarray, problem: ConvProblem, groups_first: bool = False) -> np.ndarray:
        """(N, C, H, W) -> the channels-last view (H, W, G, N, C/G); ``groups_first``: w's (H, W, G, C/G, O/G)."""
        a = np.asarray(a, dtype=problem.dtype)
        n, c = a.shape[:2]
        g = problem.groups
        if groups_first:  # the weight (C_out, Cg, kh, kw): -> (kh, kw, G, Cg, Og)
            return a.reshape(g, n // g, c, *a.shape[2:]).transpose(3, 4, 0, 2, 1)
        return a.reshape(n, g, c // g, *a.shape[2:]).transpose(3, 4, 1, 0, 2)

    def _x_spectrum(self, problem: ConvProblem, x: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        (ph, pw) = problem.padding
        xp = np.pad(self._last(x, problem), ((ph, ph), (pw, pw), (0, 0), (0, 0), (0, 0)))  # the one copy of x
        return _spectrum(xp, grid)  # (Fh, Fr, G, N, Cg)

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        grid, (sh, sw) = self._grid(problem), problem.stride
        kd = [d * (k - 1) + 1 for d, k in zip(problem.dilation, (problem.kh, problem.kw))]  # dilated extent
        wrev = _dilated(self._last(w, problem, groups_first=True), problem.dilation)[::-1, ::-1]
        yf = self._x_spectrum(problem, x, grid) @ _spectrum(wrev, grid)  # (Fh, Fr, G, N, Og)
        # y[i, j] = conv(xp, rev(wd))[K - 1 + i*sh, K - 1 + j*sw]
        rows = slice(kd[0] - 1, kd[0] - 1 + (problem.out_h - 1) * sh + 1, sh)
        cols = slice(kd[1] - 1, kd[1] - 1 + (problem.out_w - 1) * sw + 1, sw)
        y = _inverse(yf, grid, rows, cols)  # (Ho, Wo, G, N, Og)
        y = np.ascontiguousarray(y.transpose(3, 2, 4, 0, 1)).reshape(problem.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        (sh, sw), (ph, pw), (dil_h, dil_w) = problem.stride, problem.padding, problem.dilation
        grid, (hp, wp) = self._grid(problem), (problem.h + 2 * ph, problem.w + 2 * pw)
        dys = _dilated(self._last(dy, problem), problem.stride)  # (L_h, L_w, G, N, Og)
        dyf = _spectrum(dys, grid)

        # dx: conv(dys, wd), summed over the group's outputs; padded rows [ph, ph + h) are the input's.
        wf = _spectrum(_dilated(self._last(w, problem, groups_first=True), problem.dilation), grid)
        dxp = _inverse(dyf @ wf.swapaxes(-1, -2), grid, slice(ph, ph + problem.h), slice(pw, pw + problem.w))
        dx = np.ascontiguousarray(dxp.transpose(3, 2, 4, 0, 1)).reshape(problem.input_shape)
        # Padded position (a, b) is read iff a = i*sh + p*dh for some (i, p) and b likewise; the rows and
        # columns are independent. Elsewhere the true gradient is 0 and the FFT gives rounding noise: mask it.
        rows = _read(hp, problem.kh, dil_h, problem.out_h, sh)[ph:ph + problem.h]
        cols = _read(wp, problem.kw, dil_w, problem.out_w, sw)[pw:pw + problem.w]
        dx *= rows[:, None] & cols[None, :]

        # dw: conv(xp, rev(dys)) summed over the batch (inside the product); tap p is entry L - 1 + p*dh.
        dwf = self._x_spectrum(problem, x, grid).swapaxes(-1, -2) @ _spectrum(dys[::-1, ::-1], grid)
        ld = dys.shape[:2]
        lags = _inverse(dwf, grid, slice(ld[0] - 1, ld[0] + (problem.kh - 1) * dil_h, dil_h),
                        slice(ld[1] - 1, ld[1] + (problem.kw - 1) * dil_w, dil_w))  # (kh, kw, G, Cg, Og)
        dw = np.ascontiguousarray(lags.transpose(2, 4, 3, 0, 1)).reshape(problem.weight_shape)

        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, 2, 3)) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)
