"""``conv1d``/``conv2d``/``conv3d`` and their gradients by the convolution theorem: real FFTs (``scipy.fft``) of
whole planes over the 1, 2 or 3 spatial axes.

The method as a textbook states it. On one axis (the others are the same), with ``xp`` the zero-padded input
(length ``Hp = H + 2*ph``; ``ph + H + ph_end`` where the far side differs), ``wd`` the kernel dilated by ``dh``
(``dh - 1`` zeros between taps, length ``K = dh*(kh - 1) + 1``) and ``dys`` ``dy`` dilated by the stride (length
``L = (Ho - 1)*sh + 1``)::

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
``t + u <= Hp - 1`` again. Every spatial axis is one such axis, independently of the others: the transforms are
``rfftn`` over the spatial axes of whole planes (a line in 1-D, a volume in 3-D) on the grid ``Hp x Wp`` (``Dp x
Hp x Wp``, ``Wp``), and every slice below is taken on each axis. A convolution sums over the channels of a group,
and in frequency that is a sum of products, frequency by frequency (in 2-D)::

    Y[n, o]  = sum_c X[n, c] * conj(W[o, c])     y  = irfftn(Y)[::sh, ::sw], the first Ho x Wo lags
    DX[n, c] = sum_o DYS[n, o] * W[o, c]          dx = irfftn(DX)[ph:ph + H, pw:pw + W]
    DW[o, c] = sum_n X[n, c] * conj(DYS[n, o])   dw = irfftn(DW)[::dh, ::dw], the first kh x kw lags
    db[o]    = sum_{n, i, j} dy[n, o, i, j]

Inputs that no output reads (padding-only taps, rows a stride skips) have a gradient of exactly 0, where the
transform gives rounding noise: dx is masked there (``read_by_some_output``, an outer product of the axes').

Error model, and why it is ``normwise``: a transform of length ``F`` rounds with an error bounded by about
``u * log2(F) * ||x||_2 * ||w||_1`` for a whole output plane (``F`` the grid's points), not by
``u * sum |x||w|`` per element as direct summation is. Every output inherits a share of the error of the largest
ones, so on data of wide dynamic range small outputs get large relative errors (and exact zeros come back as
rounding noise); a NaN or Inf spreads over its whole plane. Precision: ``scipy.fft`` keeps single precision
(float32 -> complex64 -> float32).

Transposed convolution (``conv_transpose1d/2d/3d``, ``problem.transposed``): input element ``x[i]`` scatters through
tap ``t`` to ``i*sh + t*dh - ph``. On one axis, with ``xs`` the input dilated by the stride (``sh - 1`` zeros between
neighbours, length ``Ls = (H - 1)*sh + 1``), ``wd`` the dilated kernel as above (length ``K``), the full result is
their linear convolution, ``F = Ls + K - 1 = (H - 1)*sh + dh*(kh - 1) + 1`` long, and the output its window
``[ph, ph + Ho)`` (``Ho = F - ph - ph_end + oph``; the output padding may reach past ``F``: zeros there, as no input
lands so far). With ``dyf`` dy put back on the full grid (``dyf[ph + i] = dy[i]``, cropped to ``F``) the gradients are
the convolution's adjoints, correlations read at the stride and the dilation::

    yf[t]  = sum_u xs[t - u] wd[u]      a convolution: y = yf[ph:ph + Ho]
    dxs[t] = sum_u dyf[t + u] wd[u]     a correlation of dyf with wd: dx = dxs[::sh], the first H lags
    dwd[u] = sum_t xs[t] dyf[t + u]     a correlation of dyf with xs: dw = dwd[::dh], the first kh lags

The full convolution is ``F`` long, and both correlations read ``t + u <= (Ls - 1) + (K - 1) = F - 1``: on the grid
``F`` (per axis) no index wraps. Grouped, weight ``(C_in, C_out/G, *k)``, the channel sums frequency by frequency::

    Y[n, o]  = sum_c XS[n, c] * W[c, o]           DXS[n, c] = sum_o DYF[n, o] * conj(W[c, o])
    DW[c, o] = sum_n conj(XS[n, c]) * DYF[n, o]    db[o]     = sum_{n, i, j} dy[n, o, i, j]

The structural zeros are kept exact, as dx's above: outputs no input reaches (the stride's gaps wider than the
dilated kernel, output padding past ``F``) and inputs that reach no output (``_transposed_masks``). The error model
is the same (the normwise bound's grid is this ``F``). Three quarters of ``xs`` are zeros in 2-D at stride 2 (seven
eighths in 3-D), and the product with the kernel's spectrum is taken on the whole grid: large transposed problems
(``TILED_FROM_MACS``), in every rank, run the same method split into the stride's phases,
``impls/fft_polyphase.py``: each phase a convolution of the original input with a kernel of a few taps on a grid
``s`` times smaller per axis, one transform of ``x`` serving every phase, the channel sums as per-frequency matrix
products (tests/test_fft_polyphase.py holds it to this method). A DCGAN layer (512->256, 4x4, s2, 8x8 -> 16x16,
batch 64), on one thread of an AMD EPYC: forward 2.96 s by this method, 0.31 s by the phases (docs/performance.md).

Large convolutions (``TILED_FROM_MACS``), in every rank, run the same method engineered for speed,
``impls/fft_tiled.py``: overlap-save tiles chosen per axis by a cost model, channels-last spectra with the channel
sums as per-frequency matrix products, transforms pruned to the lines that hold data, a reused product buffer. Its
results are this method's up to rounding (tests/test_fft_speed_paths.py compares the two in 2-D). In 3-D it is what
makes FFT pay: with 7x7x7 kernels on 32^3 to 64^3 volumes, 16 channels in and out, on one thread, it runs 1.7-2.4x
as fast as torch's CPU conv3d forward and 2.2-3.8x backward (an AMD EPYC with AVX-512); this method alone, on the 38^3
grid of a 32^3 volume padded by 3, 0.24x and 0.49x (the kernel's 256 spectra on the whole grid dominate).
"""

from __future__ import annotations

from types import EllipsisType, ModuleType

import numpy as np
import scipy.fft as sfft

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem

#: scipy.fft threads per transform (-1: one per core); small transforms stay on one thread regardless
WORKERS = -1

#: problems of at least this many multiply-adds a pass go to ``impls/fft_tiled.py``. Below it the whole-plane
#: method is as fast or faster: its few numpy calls cost less than planning and assembling tiles, and a small
#: problem has little to gain from them; above it, the tiles and per-frequency matrix products pay more and more
#: (measured in 2-D: docs/performance.md; the same threshold serves 1-D and 3-D)
TILED_FROM_MACS = 100_000

#: the einsum letters of the spatial axes (frequencies), outermost first, by rank
_SPATIAL = {1: "v", 2: "uv", 3: "tuv"}


def _dilated(a: np.ndarray, step: tuple[int, ...]) -> np.ndarray:
    """``a`` with ``step - 1`` zeros between neighbours along its last ``len(step)`` axes (a kernel's dilation,
    dy's stride)."""
    r = len(step)
    out = np.zeros((*a.shape[:-r], *((n - 1) * s + 1 for n, s in zip(a.shape[-r:], step))), a.dtype)
    out[_every(step, a.shape[-r:])] = a
    return out


def _every(step: tuple[int, ...], count: tuple[int, ...]) -> tuple[EllipsisType | slice, ...]:
    """The index of ``count`` lags ``0, step, 2*step, ...`` on each of the last ``len(step)`` axes."""
    return (..., *(slice(0, n * s, s) for n, s in zip(count, step)))


def read_by_some_output(problem: ConvProblem) -> np.ndarray:
    """Which inputs (``problem.in_sizes``) some output reads: padded row ``a`` is read iff ``a = i*sh + p*dh`` for
    an output row ``i`` and a tap ``p``, and every other axis likewise (independently of the rest)."""

    def axis(size: int, pad: int, pad_end: int, k: int, dilation: int, n_out: int, stride: int) -> np.ndarray:
        read = np.zeros(pad + size + pad_end, dtype=bool)
        for p in range(k):
            read[p * dilation:p * dilation + (n_out - 1) * stride + 1:stride] = True
        return read[pad:pad + size]

    read = np.ones((), dtype=bool)
    for along in zip(problem.in_sizes, problem.padding, problem.pad_end, problem.kernel, problem.dilation,
                     problem.out_sizes, problem.stride):
        read = read[..., None] & axis(*along)  # the outer product, one axis at a time
    return read


def _window(a: np.ndarray, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """``a[..., start + i]`` for ``i < size`` on each of the last ``len(size)`` axes, zeros where that lies outside
    ``a`` (a negative ``start`` shifts ``a`` the other way: ``_window(dy, -ph, F)`` puts dy back on the full grid)."""
    r = len(size)
    out = np.zeros((*a.shape[:-r], *size), a.dtype)
    inside = [slice(min(max(b, 0), n), min(max(b + k, 0), n)) for b, k, n in zip(start, size, a.shape[-r:])]
    src: tuple[EllipsisType | slice, ...] = (..., *inside)
    dst: tuple[EllipsisType | slice, ...] = (..., *(slice(c.start - b, c.stop - b) for c, b in zip(inside, start)))
    out[dst] = a[src]
    return out


def _transposed_masks(problem: ConvProblem) -> tuple[np.ndarray, np.ndarray]:
    """Of a transposed problem: which outputs (``out_sizes``) some input reaches, and which inputs (``in_sizes``)
    reach some output. Input ``i`` lands through tap ``t`` on output ``i*sh + t*dh - ph``, on every axis
    independently of the others."""
    reached, reaching = np.ones((), dtype=bool), np.ones((), dtype=bool)
    for n, k, s, d, p, out in zip(problem.in_sizes, problem.kernel, problem.stride, problem.dilation,
                                  problem.padding, problem.out_sizes):
        lands = np.arange(n)[:, None] * s + np.arange(k)[None, :] * d - p  # (inputs, taps)
        inside = (lands >= 0) & (lands < out)
        hit = np.zeros(out, dtype=bool)
        hit[lands[inside]] = True
        reached = reached[..., None] & hit  # the outer products, one axis at a time
        reaching = reaching[..., None] & inside.any(axis=1)
    return reached, reaching


def _tiled() -> ModuleType:
    """``impls/fft_tiled.py``, imported on first use (it imports ``read_by_some_output`` from here)."""
    from . import fft_tiled

    return fft_tiled


def _polyphase() -> ModuleType:
    """``impls/fft_polyphase.py``, imported on first use (it imports ``_window`` and ``_transposed_masks`` from
    here)."""
    from . import fft_polyphase

    return fft_polyphase


class FFTConv:
    """Correlations by ``rfftn`` over the spatial axes (1, 2 or 3); large problems by overlap-save tiles
    (``impls/fft_tiled.py``)."""

    name = "fft"
    capabilities = Capabilities(dtypes=("float32", "float64"), error_model="normwise", ranks=(1, 2, 3),
                                transposed=True,
                                notes="scipy.fft rfft/fft passes; error bounded normwise per output plane")

    @staticmethod
    def _grouped(a: np.ndarray, problem: ConvProblem, weight: bool = False) -> np.ndarray:
        """(N, C, *sizes) -> (N, G, C/G, *sizes); ``weight``: (C_out, Cg, *kernel) -> (G, Og, Cg, *kernel)."""
        a = np.asarray(a, dtype=problem.dtype)
        if weight:
            return a.reshape(problem.groups, -1, *a.shape[1:])
        return a.reshape(a.shape[0], problem.groups, -1, *a.shape[2:])

    @staticmethod
    def _spectra(problem: ConvProblem, x: np.ndarray,
                 w: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """``X = rfftn(xp)`` ``(N, G, Cg, ...)`` and ``W = rfftn(wd)`` ``(G, Og, Cg, ...)`` on the grid of the padded
        input, ``Hp x Wp`` in 2-D."""
        grid = tuple(b + n + e for n, b, e in zip(problem.in_sizes, problem.padding, problem.pad_end))
        axes = tuple(range(-problem.rank, 0))
        xp = np.pad(FFTConv._grouped(x, problem), ((0, 0),) * 3 + tuple(zip(problem.padding, problem.pad_end)))
        wd = _dilated(FFTConv._grouped(w, problem, weight=True), problem.dilation)
        return (sfft.rfftn(xp, axes=axes, workers=WORKERS), sfft.rfftn(wd, s=grid, axes=axes, workers=WORKERS),
                grid)

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if problem.transposed:
            if problem.macs >= TILED_FROM_MACS:  # the same method split into the stride's phases
                with sfft.set_workers(WORKERS):
                    return _polyphase().forward(problem, x, w, b)
            return self._forward_transposed(problem, x, w, b)
        if problem.macs >= TILED_FROM_MACS:  # the same method, engineered for large problems
            with sfft.set_workers(WORKERS):
                return _tiled().forward(problem, x, w, b)
        f, axes = _SPATIAL[problem.rank], tuple(range(-problem.rank, 0))
        X, W, grid = self._spectra(problem, x, w)
        # correlation theorem, summed over the group's channels
        Y = np.einsum(f"ngc{f},goc{f}->ngo{f}", X, W.conj())
        lags = sfft.irfftn(Y, s=grid, axes=axes, workers=WORKERS)
        y = np.ascontiguousarray(lags[_every(problem.stride, problem.out_sizes)]).reshape(problem.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype).reshape(-1, *(1,) * problem.rank)
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if problem.transposed:
            if problem.macs >= TILED_FROM_MACS:  # the same method split into the stride's phases
                with sfft.set_workers(WORKERS):
                    return _polyphase().backward(problem, x, w, dy)
            return self._backward_transposed(problem, x, w, dy)
        if problem.macs >= TILED_FROM_MACS:  # the same method, engineered for large problems
            with sfft.set_workers(WORKERS):
                return _tiled().backward(problem, x, w, dy)
        f, axes = _SPATIAL[problem.rank], tuple(range(-problem.rank, 0))
        X, W, grid = self._spectra(problem, x, w)
        DYS = sfft.rfftn(_dilated(self._grouped(dy, problem), problem.stride), s=grid, axes=axes, workers=WORKERS)

        DX = np.einsum(f"ngo{f},goc{f}->ngc{f}", DYS, W)  # convolution theorem, summed over the group's outputs
        dxp = sfft.irfftn(DX, s=grid, axes=axes, workers=WORKERS)
        dx = dxp[(..., *(slice(b, b + n) for b, n in zip(problem.padding, problem.in_sizes)))]
        dx = dx.reshape(problem.input_shape)
        dx = dx * read_by_some_output(problem)  # exact zeros where the transform left rounding noise (a new array)

        DW = np.einsum(f"ngc{f},ngo{f}->goc{f}", X, DYS.conj())  # correlation theorem, summed over the batch
        lags = sfft.irfftn(DW, s=grid, axes=axes, workers=WORKERS)[_every(problem.dilation, problem.kernel)]
        dw = np.ascontiguousarray(lags).reshape(problem.weight_shape)

        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + problem.rank))) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)

    @staticmethod
    def _full_spectra(problem: ConvProblem, x: np.ndarray,
                      w: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """Transposed: ``XS = rfftn(xs)`` ``(N, G, Cg, ...)`` and ``W = rfftn(wd)`` ``(G, Cg, Og, ...)`` on the full
        grid ``F`` (per axis ``(H - 1)*sh + dh*(kh - 1) + 1``)."""
        grid = tuple((n - 1) * s + d * (k - 1) + 1 for n, s, d, k in
                     zip(problem.in_sizes, problem.stride, problem.dilation, problem.kernel))
        axes = tuple(range(-problem.rank, 0))
        xs = _dilated(FFTConv._grouped(x, problem), problem.stride)
        wd = _dilated(FFTConv._grouped(w, problem, weight=True), problem.dilation)  # (C_in, Og, ...) grouped
        return (sfft.rfftn(xs, s=grid, axes=axes, workers=WORKERS), sfft.rfftn(wd, s=grid, axes=axes, workers=WORKERS),
                grid)

    def _forward_transposed(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray,
                            b: np.ndarray | None) -> np.ndarray:
        f, axes = _SPATIAL[problem.rank], tuple(range(-problem.rank, 0))
        XS, W, grid = self._full_spectra(problem, x, w)
        Y = np.einsum(f"ngc{f},gco{f}->ngo{f}", XS, W)  # convolution theorem, summed over the group's inputs
        full = sfft.irfftn(Y, s=grid, axes=axes, workers=WORKERS)
        y = _window(full, problem.padding, problem.out_sizes).reshape(problem.output_shape)
        y *= _transposed_masks(problem)[0]  # exact zeros where no input lands
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype).reshape(-1, *(1,) * problem.rank)
        return y

    def _backward_transposed(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        f, axes = _SPATIAL[problem.rank], tuple(range(-problem.rank, 0))
        XS, W, grid = self._full_spectra(problem, x, w)
        dyf = _window(self._grouped(dy, problem), tuple(-p for p in problem.padding), grid)  # dy on the full grid
        DYF = sfft.rfftn(dyf, axes=axes, workers=WORKERS)
        del dyf

        DXS = np.einsum(f"ngo{f},gco{f}->ngc{f}", DYF, W.conj())  # correlation theorem, summed over the outputs
        dxs = sfft.irfftn(DXS, s=grid, axes=axes, workers=WORKERS)
        dx = dxs[_every(problem.stride, problem.in_sizes)].reshape(problem.input_shape)
        dx = dx * _transposed_masks(problem)[1]  # exact zeros where the input reaches no output (a new array)

        DW = np.einsum(f"ngc{f},ngo{f}->gco{f}", XS.conj(), DYF)  # correlation theorem, summed over the batch
        lags = sfft.irfftn(DW, s=grid, axes=axes, workers=WORKERS)[_every(problem.dilation, problem.kernel)]
        dw = np.ascontiguousarray(lags).reshape(problem.weight_shape)

        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + problem.rank))) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)
