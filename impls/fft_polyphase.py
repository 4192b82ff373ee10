"""The fft backend's fast path for transposed convolution (``conv_transpose1d/2d/3d``): ``impls/fft.py``'s method
(the convolution theorem on a grid where nothing wraps) split into the stride's phases, so that no transform ever
holds the zeros the stride inserts. ``FFTConv`` hands it the transposed problems of at least ``TILED_FROM_MACS``
multiply-adds (``impls/fft.py``), inside ``scipy.fft.set_workers(WORKERS)``; tests/test_fft_polyphase.py holds it to
the plain method. It applies to every transposed problem (any rank, stride, dilation, groups, padding, output
padding): with stride 1 on an axis that axis has one phase, and the method is the plain one there.

Polyphase (sub-pixel) decomposition. On one axis (the others are the same, independently), input ``x[i]``
(``i < H``) scatters through tap ``k`` to full-grid position ``t = i*s + k*d`` (the output is ``t - p``). Write
``k*d = m_k*s + r_k`` (``r_k = k*d mod s``, ``m_k = k*d // s``): the positions ``t = q*s + r`` of phase ``r`` receive
only the taps with ``r_k = r``, from ``i = q - m_k``::

    yf[q*s + r] = sum_{k: r_k = r} x[q - m_k] w[k] = (x * h_r)[q]     h_r[m_k] = w[k] for the taps of phase r

Each phase is a plain linear convolution of the ORIGINAL input with a small kernel ``h_r`` of ``K_r <= K = (k - 1)*d
// s + 1`` taps, ``H + K - 1`` long: on a grid ``G >= H + K - 1`` no index wraps, and one transform of ``x`` serves
all ``s`` phases (all ``s_1*...*s_r`` in ``r`` dimensions) while ``rfft(x)`` on the plain method's grid is ``s``
times as long per axis, three quarters zeros in 2-D at stride 2. Interleaving the phases, ``yf[q*s + r] = y_r[q]``, a
reshape of ``(G, s)`` to ``s*G >= F`` points, gives the full result of the plain method; the output is its window
``[p, p + Ho)`` (zeros past ``s*G``, where no input lands). The gradients are the same split of the plain method's
correlations: with ``dyf`` dy put back on the full grid and ``dyf_r[q] = dyf[q*s + r]``::

    dx[i]    = sum_k dyf[i*s + k*d] w[k] = sum_r sum_m dyf_r[i + m] h_r[m]    a correlation per phase, summed over them
    dh_r[m]  = sum_i x[i] dyf_r[i + m]                                        a correlation, read at lags m < K
    dw[k]    = dh_{r_k}[m_k]

Both read ``i + m <= H - 1 + K - 1 < G``: the same grid, no wrap. In frequency, with the phases stacked next to the
output channels (``P = s_1*...*s_r`` phases, columns ``(o, r)``), every channel sum is a matrix product per frequency
bin and group::

    Y[f]  = X[f] @ H[f]             (N, Cg) @ (Cg, Og*P)
    DX[f] = DYF[f] @ conj(H[f])^T   (N, Og*P) @ (Og*P, Cg)
    DH[f] = conj(X[f])^T @ DYF[f]   (Cg, N) @ (N, Og*P)

``G`` is ``next_fast_len(H + K - 1)`` per axis. A DCGAN layer (8x8 -> 16x16, 4x4 kernel, stride 2) has 2x2-tap phases
on a 9x9 grid: 4 phases x 45 bins of complex products, 720 real multiply-adds per (sample, input, output channel)
against the direct sum's 1024. The plain method's 18x18 grid has as many (180 bins of one phase); what the phases
save is transform work: ``x`` on 9x9 instead of zero-inserted on 18x18, each kernel's spectrum from its few taps. A
kernel of ``K`` taps has its spectrum computed as the DFT's sum over those taps (``_dft``, ``_kernel_spectra``: a
real matrix product, a block of bins at a time, ``BLOCK_BYTES``), not by an FFT of a mostly zero grid; only the few
lags of ``DH`` that are read are evaluated, by the inverse DFT's sum at those lags, not by an inverse transform of
``C_in*C_out*P`` planes.

Single-tap phases (every axis ``K = 1``, i.e. ``(k - 1)*d < s``, e.g. a U-Net up-convolution, k2 s2):
each ``h_r`` is one tap at ``m = 0``, whose spectrum is the same real number at every frequency, so the per-bin
products are one real matrix product over all bins together, the spectra's real and imaginary parts side by side
(``_mix_real``), and ``dh_r[0]``, the inverse DFT at lag 0, is the weighted sum over the bins (Parseval). The
transforms are still computed: on a 1x1-tap kernel they are what the FFT method adds to the direct sum, and what
it costs (docs/performance.md).

Error model: normwise per output plane, as ``impls/fft.py``'s (each phase's transform is of the plane's own data on
a grid ``G`` smaller than the plain method's ``F``); the kernels' spectra are direct DFT sums of their ``K`` taps,
the lag sums of ``prod(G)`` bins.
Precision: single precision stays single (complex64), nothing is upcast.
"""

from __future__ import annotations

import math
from types import EllipsisType
from typing import Any

import numpy as np
import scipy.fft as sfft

from conformance.backends.backend import Grads
from conformance.model.problem import ConvProblem

from .fft import _transposed_masks

Index = tuple[EllipsisType | slice | np.ndarray, ...]


def _phase_taps(problem: ConvProblem) -> tuple[Index, tuple[int, ...]]:
    """Where each tap goes among the phase kernels: the index ``(..., r_1..r_R, m_1..m_R)`` of every tap
    ``(k_1..k_R)`` (broadcast index arrays over the kernel's axes, ``r = k*d mod s``, ``m = k*d // s``), and the
    phase kernels' taps per axis, ``K = (k - 1)*d // s + 1``."""
    r = problem.rank
    grids = np.ix_(*[np.arange(k) * d for k, d in zip(problem.kernel, problem.dilation)])
    phase = tuple(kd % s for kd, s in zip(grids, problem.stride))
    shift = tuple(kd // s for kd, s in zip(grids, problem.stride))
    taps = tuple((k - 1) * d // s + 1 for k, d, s in zip(problem.kernel, problem.dilation, problem.stride))
    assert len(phase) == len(shift) == r
    return (..., *phase, *shift), taps


def _grid(problem: ConvProblem, taps: tuple[int, ...]) -> tuple[int, ...]:
    """Per axis the transform grid ``G >= H + K - 1`` (a fast length)."""
    return tuple(sfft.next_fast_len(n + k - 1, real=True) for n, k in zip(problem.in_sizes, taps))


def _phase_kernels(problem: ConvProblem, w: np.ndarray, taps: tuple[int, ...], where: Index) -> np.ndarray:
    """``h[c, o, r_1..r_R, m_1..m_R]``: the weight ``(C_in, Og, *k)`` split into its phases' kernels."""
    h = np.zeros((problem.c_in, problem.c_out // problem.groups, *problem.stride, *taps), problem.dtype)
    h[where] = np.asarray(w, dtype=problem.dtype)
    return h


def _hermitian_weights(grid: tuple[int, ...]) -> np.ndarray:
    """``c_f / prod(G)`` per bin of an ``rfftn`` spectrum: the inverse DFT at lag 0 of a real signal is
    ``sum_f c_f Re(Z[f]) / prod(G)``, ``c_f = 2`` for the half spectrum's bins that stand for a conjugate pair too
    (the last axis' bins ``0 < f < G/2``), 1 for the others."""
    last = np.full(grid[-1] // 2 + 1, 2.0)
    last[0] = 1.0
    if grid[-1] % 2 == 0:
        last[-1] = 1.0
    return np.broadcast_to(last, (*grid[:-1], last.size)) / math.prod(grid)


def _dft(grid: tuple[int, ...], taps: tuple[int, ...], sign: int) -> np.ndarray:
    """``e^{sign 2 pi i f.m / G}`` for every bin ``f`` of an ``rfftn`` spectrum on ``grid`` (rows, C order) and every
    lag ``m < taps`` (columns, C order): ``rfftn`` of a signal of ``taps`` points is ``_dft(grid, taps, -1) @ a``."""
    r = len(grid)
    freqs = [np.fft.fftfreq(g) * g for g in grid[:-1]] + [np.arange(grid[-1] // 2 + 1)]
    phase = np.zeros((*(len(f) for f in freqs), *taps))
    for axis, (f, g, k) in enumerate(zip(freqs, grid, taps)):
        shape = [1] * (2 * r)
        shape[axis], shape[r + axis] = len(f), k
        phase = phase + (f[:, None] * np.arange(k)[None, :] / g).reshape(shape)
    return np.exp(sign * 2j * np.pi * phase).reshape(math.prod(phase.shape[:r]), math.prod(taps))


def _kernel_spectra(h: np.ndarray, dft: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The spectra of the phase kernels ``h`` ``(J, taps)`` at the bins of ``dft`` ``(bins, taps)``, into ``out``
    ``(bins, J)`` complex, bins-major: the pruned transform of a kernel of a few taps, as one real product of ``h``
    with the DFT's real and imaginary parts side by side."""
    parts = np.stack([dft.real, dft.imag], axis=-1).astype(h.dtype)  # (bins, taps, 2)
    np.matmul(h, parts, out=out.view(h.dtype).reshape(*out.shape, 2))
    return out


def _mix_real(a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``m @ a`` for a real ``m`` ``(..., P, Q)`` and a complex ``a`` ``(..., Q, B)``: one real product of ``m`` with
    ``a``'s real and imaginary parts side by side (``(..., Q, 2B)``, the complex numbers' own layout)."""
    return (m @ a.view(m.dtype)).view(a.dtype)


#: the kernels' spectra are made a block of bins at a time, in blocks of at most this many bytes
BLOCK_BYTES = 16 * 2**20


def _chunk(row: int, itemsize: int) -> int:
    """Bins per block: rows of ``row`` complex numbers of ``itemsize`` bytes within ``BLOCK_BYTES``, at least one."""
    return max(1, BLOCK_BYTES // (row * itemsize))


def _bin_blocks(bins: int, size: int) -> list[slice]:
    """``range(bins)`` in consecutive slices of ``size``."""
    return [slice(f, min(f + size, bins)) for f in range(0, bins, size)]


def _spectrum(a: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """``rfftn`` over the last ``len(grid)`` axes, zero-extended to ``grid``."""
    return sfft.rfftn(a, s=grid, axes=tuple(range(-len(grid), 0)))


def _spatial_first_spectrum(xg: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """``xg`` ``(N, G, Cg, *in)`` -> its spectra bins-major, ``(bins, G, N, Cg)``: transformed spatial axes first
    (many short transforms side by side, one matrix per bin as they come out)."""
    r = len(grid)
    xl = np.zeros((*grid, *xg.shape[1::-1], xg.shape[2]), xg.dtype)  # (*grid, G, N, Cg), zero-extended
    xl[tuple(slice(0, m) for m in xg.shape[3:])] = xg.transpose(*range(3, 3 + r), 1, 0, 2)
    spec = sfft.rfftn(xl, axes=tuple(range(r)), overwrite_x=True)
    return spec.reshape(-1, *spec.shape[r:])


def _phase_slices(problem: ConvProblem, grid: tuple[int, ...]) -> list[tuple[tuple[int, ...], Index, Index]]:
    """Per phase ``(r_1..r_R)``: the outputs that are its positions and the grid points that hold them, as slices,
    ``(phase, output slices, grid slices)``. Output ``o`` is full-grid position ``o + p = q*s + r``: phase ``r``'s
    outputs start at ``(r - p) mod s``, step ``s``, from ``q = (o + p) // s``; those past the phase's ``G`` points
    are beyond every input's reach (zeros) and are left out."""
    out = []
    for phase in np.ndindex(*problem.stride):
        o_slices, q_slices = [], []
        for r, p, s, n, g in zip(phase, problem.padding, problem.stride, problem.out_sizes, grid):
            first = (r - p) % s
            q = (first + p) // s
            count = max(0, min(-(-(n - first) // s), g - q))
            o_slices.append(slice(first, first + (count - 1) * s + 1, s) if count else slice(0, 0))
            q_slices.append(slice(q, q + count))
        out.append((phase, (..., *o_slices), (..., *q_slices)))
    return out


def _interleave(phases: np.ndarray, problem: ConvProblem, grid: tuple[int, ...]) -> np.ndarray:
    """``(N, G, Og, *P, *grid)`` phase results (any layout) -> the output ``(N, C_out, *out)``: ``y[o] = y_r[q]``
    where ``o + p = q*s + r`` on each axis (zeros past the grid, where no input lands), exact zeros where no input
    lands."""
    y = np.zeros(problem.output_shape, phases.dtype)
    yg = y.reshape(*phases.shape[:3], *problem.out_sizes)
    for phase, o_slices, q_slices in _phase_slices(problem, grid):
        yg[o_slices] = phases[(slice(None),) * 3 + phase][q_slices]
    reached = _transposed_masks(problem)[0]
    if not reached.all():
        y *= reached
    return y


def _dy_phases(problem: ConvProblem, dy: np.ndarray, grid: tuple[int, ...], spatial_first: bool) -> np.ndarray:
    """``dyf_r[q] = dyf[q*s + r]``: dy put back on the full grid (``dyf[p + o] = dy[o]``) and split into its phases,
    zeros where no output lies: ``(N, G, Og, *P, *grid)``, or ``spatial_first`` ``(*grid, G, N, Og, *P)``."""
    r, g = problem.rank, problem.groups
    dy = np.asarray(dy, dtype=problem.dtype).reshape(problem.batch, g, -1, *problem.out_sizes)
    lead = (problem.batch, g, dy.shape[2], *problem.stride)
    if spatial_first:  # the phases' view (N, G, Og, *P, *grid) of (*grid, G, N, Og, *P)
        dyf = np.zeros((*grid, *lead[1::-1], *lead[2:]), problem.dtype)
        view = dyf.transpose(r + 1, r, *range(r + 2, 2 * r + 3), *range(r))
    else:
        dyf = view = np.zeros((*lead, *grid), problem.dtype)
    for phase, o_slices, q_slices in _phase_slices(problem, grid):
        view[(slice(None),) * 3 + phase][q_slices] = dy[o_slices]
    return dyf


def _operands(problem: ConvProblem, x: np.ndarray, w: np.ndarray) -> tuple[Any, tuple[int, ...], tuple[int, ...],
                                                                       np.ndarray, np.ndarray]:
    """What both passes start from: where each phase's taps sit in w and their counts, the transform grid, the
    phases' kernels (C_in, Og, *P, *K) and x by groups (N, G, Cg, *in)."""
    where, taps = _phase_taps(problem)
    h = _phase_kernels(problem, w, taps, where)
    xg = np.asarray(x, dtype=problem.dtype).reshape(problem.batch, problem.groups, problem.c_in // problem.groups,
                                                    *problem.in_sizes)
    return where, taps, _grid(problem, taps), h, xg


def forward(problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``FFTConv.forward`` of a transposed problem: every phase's convolution from one transform of ``x``."""
    r, g, n = problem.rank, problem.groups, problem.batch
    cg, og, phases = problem.c_in // g, problem.c_out // g, math.prod(problem.stride)
    where, taps, grid, h, xg = _operands(problem, x, w)
    if taps == (1,) * r:  # one tap per phase: its spectrum is h at every bin
        hm = h.reshape(g, cg, og * phases).swapaxes(-1, -2)  # (G, Og*P, Cg)
        Y = _mix_real(_spectrum(xg, grid).reshape(n, g, cg, -1), hm)  # (N, G, Og*P, bins)
        Y = Y.reshape(n, g, og, *problem.stride, *grid[:-1], grid[-1] // 2 + 1)
        y_phases = sfft.irfftn(Y, s=grid, axes=tuple(range(-r, 0)))  # (N, G, Og, *P, *grid)
    else:
        X = _spatial_first_spectrum(xg, grid)  # (bins, G, N, Cg)
        hm, dft = h.reshape(-1, math.prod(taps)), _dft(grid, taps, -1)  # (C_in*Og*P, K), (bins, K)
        Y = np.empty((X.shape[0], g, n, og * phases), X.dtype)
        H = np.empty((_chunk(hm.shape[0], X.itemsize), hm.shape[0]), X.dtype)
        for f in _bin_blocks(X.shape[0], H.shape[0]):  # the kernels' spectra a block of bins at a time
            Hf = _kernel_spectra(hm, dft[f], H[:f.stop - f.start]).reshape(-1, g, cg, og * phases)
            np.matmul(X[f], Hf, out=Y[f])  # (bins, G, N, Cg) @ (bins, G, Cg, Og*P)
        del H, X
        Y = Y.reshape(*grid[:-1], grid[-1] // 2 + 1, g, n, og, *problem.stride)
        Y = Y.transpose(r + 1, r, *range(r + 2, 2 * r + 3), *range(r))  # (N, G, Og, *P, *bins), a view
        # the inverse comes out (N, G, Og, *P, *grid), each phase's rows contiguous for the interleaving
        y_phases = sfft.irfftn(Y, s=grid, axes=tuple(range(-r, 0)))
    y = _interleave(y_phases, problem, grid)
    if b is not None:
        y += np.asarray(b, dtype=problem.dtype).reshape(-1, *(1,) * r)
    return y


def backward(problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
    """``FFTConv.backward`` of a transposed problem: dx and every phase's kernel gradient from one transform of
    ``x`` and one of dy's phases."""
    r, g, n = problem.rank, problem.groups, problem.batch
    cg, og, phases = problem.c_in // g, problem.c_out // g, math.prod(problem.stride)
    where, taps, grid, h, xg = _operands(problem, x, w)
    if taps == (1,) * r:  # one tap per phase: its spectrum is h at every bin
        DYF = _spectrum(_dy_phases(problem, dy, grid, spatial_first=False), grid).reshape(n, g, og * phases, -1)
        hm = h.reshape(g, cg, og * phases)  # (G, Cg, Og*P)
        DX = _mix_real(DYF, hm).reshape(n, g, cg, *grid[:-1], grid[-1] // 2 + 1)
        dx = sfft.irfftn(DX, s=grid, axes=tuple(range(-r, 0)))[(..., *(slice(0, m) for m in problem.in_sizes))]
        del DX
        # dh_r[0] = sum_n sum_f c_f Re(conj(X[f]) DYF[f]) / prod(G): one real product over the bins and the batch
        X = _spectrum(xg, grid).reshape(n, g, cg, -1) * _hermitian_weights(grid).reshape(-1).astype(problem.dtype)
        dh = np.einsum("ngcb,ngob->gco", X.view(problem.dtype), DYF.view(problem.dtype), optimize=True)
        dh = dh.reshape(problem.c_in, og, *problem.stride, *taps)
    else:
        DYF = sfft.rfftn(_dy_phases(problem, dy, grid, spatial_first=True), s=grid, axes=tuple(range(r)),
                         overwrite_x=True).reshape(-1, g, n, og * phases)  # (bins, G, N, Og*P)
        X = _spatial_first_spectrum(xg, grid).swapaxes(-1, -2)  # (bins, G, Cg, N)
        hm, dft = h.reshape(-1, math.prod(taps)), _dft(grid, taps, -1)  # (C_in*Og*P, K), (bins, K)
        lags = _dft(grid, taps, 1) * _hermitian_weights(grid).reshape(-1, 1)  # (bins, K): the inverse at m < K
        DX = np.empty((X.shape[0], g, n, cg), X.dtype)
        dh = np.zeros((math.prod(taps), hm.shape[0]), X.dtype)
        H = np.empty((_chunk(hm.shape[0], X.itemsize), hm.shape[0]), X.dtype)
        for f in _bin_blocks(X.shape[0], H.shape[0]):  # the kernels' spectra a block of bins at a time
            Hf = _kernel_spectra(hm, dft[f], H[:f.stop - f.start]).reshape(-1, g, cg, og * phases)
            # DX = DYF @ conj(H)^T = conj(conj(DYF) @ H^T): conjugate the small operands, not the kernels' spectra
            np.matmul(np.conj(DYF[f]), Hf.swapaxes(-1, -2), out=DX[f])
            # DH = conj(X)^T @ DYF, into the same block (its spectra are used), then summed at the lags m < K
            DH = np.matmul(np.conj(X[f]), DYF[f], out=Hf)  # (bins, G, Cg, Og*P)
            dh += lags[f].T.astype(X.dtype) @ DH.reshape(DH.shape[0], -1)
        del H, X, DYF
        np.conj(DX, out=DX)
        DX = DX.reshape(*grid[:-1], grid[-1] // 2 + 1, g, n, cg).transpose(r + 1, r, r + 2, *range(r))  # a view
        dx = sfft.irfftn(DX, s=grid, axes=tuple(range(-r, 0)))[(..., *(slice(0, m) for m in problem.in_sizes))]
        del DX
        dh = np.ascontiguousarray(dh.real).reshape(*taps, problem.c_in, og, *problem.stride)
        dh = dh.transpose(r, r + 1, *range(r + 2, 2 * r + 2), *range(r))  # (C_in, Og, *P, *K)
    dx = np.ascontiguousarray(dx).reshape(problem.input_shape)
    reaching = _transposed_masks(problem)[1]
    if not reaching.all():
        dx *= reaching  # exact zeros where the input reaches no output
    dw = np.ascontiguousarray(dh[where]).astype(problem.dtype, copy=False)
    db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + r))) if problem.bias else None
    return Grads(dx=dx, dw=dw, db=db)
