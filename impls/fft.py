"""``conv2d`` and its gradients by real 2-D FFTs (``scipy.fft``), vectorised over batch, groups and channels.

On one axis (the other is the same), with ``xp`` the zero-padded input (length ``Hp``), ``wd`` the kernel
dilated by ``dh`` (length ``K = dh*(kh - 1) + 1``) and ``dys`` ``dy`` dilated by the stride (length
``(Ho - 1)*sh + 1``), the three results are a correlation, a convolution and a correlation::

    y[i]   = corr(xp, wd)[i*sh]      corr(a, b)[t] = sum_u a[t + u] b[u]  ->  FFT: A * conj(B)
    dxp[t] = conv(dys, wd)[t]        conv(a, b)[t] = sum_u a[t - u] b[u]  ->  FFT: A * B
    dw[p]  = corr(xp, dys)[p*dh]

The FFT computes them cyclically on a grid of ``F`` points. One grid ``F >= Hp`` (``next_fast_len``)
serves all three without aliasing: every lag that is kept reads indices ``t + u <= Hp - 1`` (forward:
``t <= Hp - K``, ``u < K``; grad weight: ``t < K``, ``u <= (Ho - 1)*sh``), and the convolution's linear
length ``(Ho - 1)*sh + K <= Hp`` fits without wrapping round. (The textbook ``F >= Hp + K - 1`` would also
keep the lags we discard un-aliased; nothing needs them.) The sum over the channels of a group (and, for dw,
over the batch) is taken in the frequency domain, one complex product-sum per frequency.

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


def _every(a: np.ndarray, step: tuple[int, int], count: tuple[int, int]) -> np.ndarray:
    """Entries ``0, step, ..., (count - 1)*step`` of the last two axes: undoes dilating by ``step``."""
    return a[..., :(count[0] - 1) * step[0] + 1:step[0], :(count[1] - 1) * step[1] + 1:step[1]]


def _read(length: int, k: int, dilation: int, n_out: int, stride: int) -> np.ndarray:
    """Which padded rows some output reads: ``i*stride + p*dilation`` for ``i < n_out``, ``p < k``."""
    mask = np.zeros(length, dtype=bool)
    for p in range(k):
        mask[p * dilation:p * dilation + (n_out - 1) * stride + 1:stride] = True
    return mask


class FFTConv:
    """Real FFTs on one ``next_fast_len`` grid per problem; frequency-domain sums over channels."""

    name = "fft"
    capabilities = Capabilities(dtypes=("float32", "float64"), error_model="normwise",
                                notes="scipy.fft rfft2/irfft2; error bounded normwise per output plane")

    @staticmethod
    def _grid(problem: ConvProblem) -> tuple[int, int]:
        (ph, pw) = problem.padding
        return (sfft.next_fast_len(problem.h + 2 * ph, real=True),
                sfft.next_fast_len(problem.w + 2 * pw, real=True))

    @staticmethod
    def _spectrum(a: np.ndarray, step: tuple[int, int], grid: tuple[int, int], groups: int) -> np.ndarray:
        """rfft2 of ``a`` dilated by ``step`` on ``grid``, channels split as ``(groups, per group)``."""
        up = np.zeros((*a.shape[:2], (a.shape[2] - 1) * step[0] + 1, (a.shape[3] - 1) * step[1] + 1), a.dtype)
        up[:, :, ::step[0], ::step[1]] = a  # the zeros between taps (dilation) or between rows of dy (stride)
        spec = sfft.rfft2(up, s=grid)  # zero-extended to the grid; float32 in, complex64 out
        return spec.reshape(a.shape[0], groups, a.shape[1] // groups, *spec.shape[2:])

    def _inputs(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spectra of the padded input ``(N, G, Cg, F)`` and of the dilated weight ``(G, Og, Cg, F)``."""
        (ph, pw), grid = problem.padding, self._grid(problem)
        xp = np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        xf = self._spectrum(xp, (1, 1), grid, problem.groups)
        wf = self._spectrum(np.asarray(w, dtype=problem.dtype), problem.dilation, grid, 1)
        return xf, wf.reshape(problem.groups, problem.c_out // problem.groups, *wf.shape[2:])

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        grid = self._grid(problem)
        xf, wf = self._inputs(problem, x, w)
        yf = np.einsum("ngcuv,gocuv->ngouv", xf, wf.conj())  # correlation: X * conj(W), summed over c
        full = sfft.irfft2(yf.reshape(problem.batch, problem.c_out, *yf.shape[3:]), s=grid)
        y = np.ascontiguousarray(_every(full, problem.stride, problem.output_shape[2:]))
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        (sh, sw), (ph, pw), (dil_h, dil_w) = problem.stride, problem.padding, problem.dilation
        grid, (hp, wp) = self._grid(problem), (problem.h + 2 * ph, problem.w + 2 * pw)
        dy = np.asarray(dy, dtype=problem.dtype)
        xf, wf = self._inputs(problem, x, w)
        dyf = self._spectrum(dy, problem.stride, grid, problem.groups)  # (N, G, Og, F)

        # dx: convolution of the stride-dilated dy with the dilated kernel, summed over the group's outputs.
        dxf = np.einsum("ngouv,gocuv->ngcuv", dyf, wf)
        dxp = sfft.irfft2(dxf.reshape(problem.batch, problem.c_in, *dxf.shape[3:]), s=grid)[:, :, :hp, :wp]
        # Padded position (a, b) is read iff a = i*sh + p*dh for some (i, p) and b likewise; the rows and
        # columns are independent. Elsewhere the true gradient is 0 and the FFT gives rounding noise: mask it.
        rows = _read(hp, problem.kh, dil_h, problem.out_h, sh)
        cols = _read(wp, problem.kw, dil_w, problem.out_w, sw)
        dxp = dxp * (rows[:, None] & cols[None, :])
        dx = np.ascontiguousarray(dxp[:, :, ph:ph + problem.h, pw:pw + problem.w])

        # dw: correlation of padded x with stride-dilated dy, summed over the batch; tap p is lag p*dh.
        dwf = np.einsum("ngcuv,ngouv->gocuv", xf, dyf.conj())
        lags = sfft.irfft2(dwf.reshape(problem.c_out, -1, *dwf.shape[3:]), s=grid)
        dw = np.ascontiguousarray(_every(lags, problem.dilation, (problem.kh, problem.kw)))

        db = dy.sum(axis=(0, 2, 3)) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)
