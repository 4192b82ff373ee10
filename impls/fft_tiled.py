"""The fft backend's fast path: ``impls/fft.py``'s method (the same correlations by the same theorem) on
overlap-save tiles, vectorised over batch, tiles, groups and channels. ``FFTConv`` hands it the problems where the
engineering pays (``TILED_FROM_MACS`` there), inside ``scipy.fft.set_workers(WORKERS)`` (``WORKERS`` there too: the
transforms here take scipy's default workers); tests/test_fft_speed_paths.py holds it to the plain method.

On one axis (the other is the same), with ``xp`` the zero-padded input, ``wd`` the kernel dilated by ``dh``
(length ``K = dh*(kh - 1) + 1``), ``dys`` ``dy`` dilated by the stride (length ``L = (Ho - 1)*sh + 1``) and
``rev(a)[t] = a[len(a) - 1 - t]``, the forward and dx are strided correlations ``z[i] = sum_u a[i*s + u] k[u]``
and dw is a sum of products::

    y[i]   = sum_u xp[i*sh + u] wd[u]                                 a = xp, k = wd, s = sh
    dxp[t] = sum_u dys[t - u] wd[u] = sum_v dys[t - (K-1) + v] rev(wd)[v]   a = dys from -(K-1), k = rev(wd), s = 1
    dw[p]  = sum_t xp[t + p*dh] dys[t]

(dx is kept for ``t`` in ``[ph, ph + h)``, so its ``a`` starts at ``dys[ph - (K - 1)]``; entries outside an array
are zeros.) One primitive, ``_correlate``, computes a correlation by overlap-save: the outputs are cut into tiles of
``t``; tile ``j`` reads only the window ``a[j*t*s : j*t*s + g]`` of ``g >= (t - 1)*s + K`` points, and on it the
correlation is a cyclic convolution of ``g`` points (in frequency ``A * B``) read at::

    z[j*t + i] = conv(window_j, rev(k))[K - 1 + i*s]                 i < t

The linear convolution is ``g + K - 1`` long; the cyclic one wraps what lies beyond ``g`` onto indices ``< K - 1``,
and the entries kept, ``K - 1 + i*s <= (t - 1)*s + K - 1 <= g - 1``, are not hit. (So the window may hold more data
than the tile reads: overlap-save's windows are full grids, strided views of one padded copy, no copy each.) dw is
split along the sum by the same tiles; with ``dys_j`` tile ``j`` of ``dy`` dilated (length ``L_t = (t - 1)*sh + 1``)::

    dw[p] = sum_j sum_t window_j[t + p*dh] dys_j[t] = sum_j conv(window_j, rev(dys_j))[L_t - 1 + p*dh]

read at ``L_t - 1 + p*dh <= g - 1``, wrapped below ``L_t - 1``: the forward's windows, on the forward's grid. (A
correlation is the convolution with the reversed operand, read ``len - 1`` later; reversing is a free view, so no
spectrum is ever conjugated.)

Tiles (``_plan``, per correlation: the forward's serve dw too): per axis a grid ``g`` (``next_fast_len``), ``t``
outputs per tile and ``m`` tiles. One tile with ``g >= Hp`` is the plain FFT convolution on one grid; smaller tiles
shrink the kernel's spectra (``C_in*C_out/G`` planes, the most when channels are many) and the number of
per-frequency products, at the price of ``m*g`` instead of ``Hp`` points for the planes of ``x`` and ``y`` (the
windows overlap by ``g - t*s``). ``_plan`` takes the cheapest by a cost model of scipy's pocketfft (``COST``). On
11x11 kernels over 64x64 images with 8 channels in and out that is 3 x 3 tiles on 32-point grids, in place of one
75-point grid: a fifth of the kernel's spectrum. The tiling changes no result beyond rounding.

Layout: every array is transformed channels-last, ``(H, W, G, ...)``, so its spectrum is frequency-major,
``(gh, gw//2 + 1, G, a, b)`` with one small ``(a, b)`` matrix per frequency and group. The tiles are batch rows:
the sum over the channels of a group (for dw also over the tiles and the batch) is ``np.matmul`` batched over
frequencies and groups::

    Z[f, g]  = A[f, g] @ Krev[f, g]       (tiles*N, Ca) @ (Ca, Cb)         forward (and dx, with the roles of
    DW[f, g] = X[f, g]^T @ DYrev[f, g]    (Cg, tiles*N) @ (tiles*N, Og)    C_in and C_out swapped)

A 2-D real transform is two 1-D passes (``_spectrum``): the row pass (``rfft``, the last spatial axis) runs
over the rows that hold data only, the column pass (``fft``) zero-extends them to ``gh``. For a kernel (``K``
rows on a grid of ``gh``) that skips most of the work, with the very same arithmetic as ``rfft2``. The inverse
(``_inverse``) likewise runs its row pass only over the rows that are read.

Memory: each spectrum is freed as soon as it is used, and the product, the largest of the three alive at once, is
written into a buffer kept per thread (``_product``). Freshly allocated, it would lift the heap past what glibc
keeps between calls, and every call would fault its pages in again, zero-filled one by one: as costly as the
transforms themselves (docs/performance.md).

Error model (normwise, per output plane, as ``impls/fft.py`` says why): a tile is bounded by its window's norms,
which are at most the plane's, on a grid ``g <= F``; dw adds its tiles' errors, and as the dy tiles partition dy,
``sum_j ||x_j||_2 ||dy_j||_1 <= ||x||_2 ||dy||_1``. A NaN or Inf spreads over its tiles' outputs (not the whole
plane). Precision: ``scipy.fft`` keeps single precision (float32 -> complex64 -> float32); nothing is upcast.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from conformance.backends.backend import Grads
from conformance.model.problem import ConvProblem

from .fft import read_by_some_output

#: (grid, outputs per tile, tiles) on one axis
Tiling = tuple[int, int, int]

#: ``_plan``'s cost model, in ns on one core: per point of a 1-D transform of length n, times log2(n), real
#: (rfft/irfft) and complex (fft/ifft); per 1-D transform; per complex multiply-add of the channel sums; per
#: (frequency, group) matrix product (the call, not the arithmetic: these matrices are 8 x 8 or so). Only the ratios
#: matter (they pick a tiling); fitted to scipy's pocketfft and numpy's matmul (complex64): docs/performance.md
COST = {"real": 0.15, "complex": 0.27, "line": 8.0, "cmac": 0.1, "matmul": 30.0}


#: products of at most this many bytes are written into a buffer kept per thread (``_product``)
SCRATCH_MAX = 32 * 2**20
_scratch = threading.local()


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in this thread's scratch buffer, valid until the next ``_product`` in this thread.

    Why a buffer: alive together with both operands, a fresh product would take the heap past what glibc keeps (it
    trims the heap's top above twice the largest mmap'd block freed so far), and every page of it would be faulted
    in again on the next call. ``_inverse`` then transforms the buffer in place; what it returns is a new array."""
    shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
    dtype = np.result_type(a, b)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > SCRATCH_MAX:
        return a @ b
    if getattr(_scratch, "buf", None) is None or _scratch.buf.nbytes < nbytes:
        _scratch.buf = np.empty(nbytes, np.uint8)
    return np.matmul(a, b, out=_scratch.buf[:nbytes].view(dtype).reshape(shape))


def _spectrum(a: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """rfft2 over the first two axes of ``a`` (channels-last), zero-extended to ``grid``."""
    rows = sfft.rfft(a, n=grid[1], axis=1)  # only the rows of a
    # zero rows up to grid[0] added here; in place where there are none to add
    return sfft.fft(rows, n=grid[0], axis=0, overwrite_x=True)


def _inverse(spec: np.ndarray, grid: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    """``irfft2(spec, grid)[rows, cols]``, the row pass run over the kept rows only; ``spec`` is overwritten."""
    spec = sfft.ifft(spec, axis=0, overwrite_x=True)  # in place: no second spectrum-sized array
    return sfft.irfft(spec[rows], n=grid[1], axis=1)[:, cols]


def _dilated(a: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """``a`` (rows, cols, ...) with ``step - 1`` zeros between rows and between columns (dilation, stride)."""
    if step == (1, 1):
        return a
    up = np.zeros(((a.shape[0] - 1) * step[0] + 1, (a.shape[1] - 1) * step[1] + 1, *a.shape[2:]), a.dtype)
    up[::step[0], ::step[1]] = a
    return up


def _shifted(a: np.ndarray, start: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``a[start_h + r, start_w + c]`` for ``r < size_h``, ``c < size_w`` (zero outside ``a``): one copy."""
    out = np.zeros((*size, *a.shape[2:]), a.dtype)
    src = [slice(min(max(s, 0), n), min(max(s + k, 0), n)) for s, k, n in zip(start, size, a.shape)]
    out[src[0].start - start[0]:src[0].stop - start[0], src[1].start - start[1]:src[1].stop - start[1]] = \
        a[src[0], src[1]]
    return out


def _axis_tilings(n_out: int, k: int, stride: int) -> list[Tiling]:
    """The ways to cut ``n_out`` outputs into tiles, ``(grid, outputs per tile, tiles)``, one per grid size."""
    ways: dict[int, Tiling] = {}
    for m in range(1, n_out + 1):
        t = -(-n_out // m)  # m tiles as even as they go
        grid = sfft.next_fast_len((t - 1) * stride + k, real=True)  # the window the tile reads, at least
        ways.setdefault(grid, (grid, t, -(-n_out // t)))  # the fewest tiles a grid can have
    return list(ways.values())


@functools.lru_cache(maxsize=1024)
def _plan(out: tuple[int, int], k: tuple[int, int], stride: tuple[int, int], n: int, c_in: int, c_out: int,
          groups: int) -> tuple[Tiling, Tiling]:
    """The cheapest tiling by ``COST`` of a correlation from ``n*c_in`` planes (of ``a``) into ``n*c_out`` planes
    of ``out`` outputs (of ``z``), through ``c_in*c_out/groups`` planes of ``k`` taps."""
    a_planes, z_planes, k_planes = n * c_in, n * c_out, c_in * c_out // groups
    costs = {}
    for gh, th, mh in _axis_tilings(out[0], k[0], stride[0]):
        for gw, tw, mw in _axis_tilings(out[1], k[1], stride[1]):
            m, fr = mh * mw, gw // 2 + 1
            # rfft of the windows' rows and the taps' rows, irfft of the kept rows; fft/ifft of every column
            rows = m * gh * a_planes + k[0] * k_planes + m * th * z_planes
            cols = fr * (m * a_planes + k_planes + m * z_planes)
            costs[(gh, th, mh), (gw, tw, mw)] = (
                COST["real"] * rows * gw * math.log2(gw) + COST["complex"] * cols * gh * math.log2(gh)
                + COST["line"] * (rows + cols) + COST["cmac"] * gh * fr * m * n * c_in * c_out / groups
                + COST["matmul"] * gh * fr * groups)
    return min(costs, key=costs.__getitem__)


def _windows(a: np.ndarray, start: tuple[int, int], plan: tuple[Tiling, Tiling],
             step: tuple[int, int]) -> np.ndarray:
    """The spectra of the windows ``a[start + j*step : start + j*step + g]`` (both axes, ``j < m``) of ``a``
    ``(H, W, G, N, C)``: ``(gh, gw//2 + 1, G, mh*mw*N, C)``, the tiles (row-major) ahead of the batch."""
    (gh, _, mh), (gw, _, mw) = plan
    ap = _shifted(a, start, ((mh - 1) * step[0] + gh, (mw - 1) * step[1] + gw))  # the one copy of a
    tiles = sliding_window_view(ap, (gh, gw), axis=(0, 1))[::step[0], ::step[1]]  # (mh, mw, G, N, C, gh, gw)
    spec = _spectrum(tiles.transpose(5, 6, 2, 0, 1, 3, 4), (gh, gw))  # (gh, gw//2 + 1, G, mh, mw, N, C)
    return spec.reshape(gh, gw // 2 + 1, a.shape[2], mh * mw * a.shape[3], a.shape[4])


def _rev_tiles(a: np.ndarray, plan: tuple[Tiling, Tiling], stride: tuple[int, int]) -> np.ndarray:
    """The spectra of ``rev(dilated tile)`` for the tiles ``a[j*t : j*t + t]`` (both axes; zeros past ``a``) of
    ``a`` ``(Ho, Wo, G, N, C)``: ``(gh, gw//2 + 1, G, mh*mw*N, C)``, in ``_windows``' order."""
    (gh, th, mh), (gw, tw, mw) = plan
    g, n, c = a.shape[2:]
    tiles = _shifted(a, (0, 0), (mh * th, mw * tw)).reshape(mh, th, mw, tw, g, n, c).transpose(1, 3, 4, 0, 2, 5, 6)
    spec = _spectrum(_dilated(tiles, stride)[::-1, ::-1], (gh, gw))  # (gh, gw//2 + 1, G, mh, mw, N, C)
    return spec.reshape(gh, gw // 2 + 1, g, mh * mw * n, c)


def _correlate(a: np.ndarray, start: tuple[int, int], taps: np.ndarray, stride: tuple[int, int],
               out: tuple[int, int]) -> np.ndarray:
    """``z[n, g*Cb + o, i, j] = sum_{u, v, c} a[start_h + i*sh + u, start_w + j*sw + v, g, n, c] taps[u, v, g, c, o]``
    for ``i, j < out``, ``a`` ``(H, W, G, N, Ca)`` zero outside, ``taps`` ``(K_h, K_w, G, Ca, Cb)``: by tiles."""
    k, (g, n, ca), cb = taps.shape[:2], a.shape[2:], taps.shape[-1]
    plan = _plan(out, k, stride, n, g * ca, g * cb, g)
    (gh, th, mh), (gw, tw, mw) = plan
    step = (th * stride[0], tw * stride[1])  # tile j's window starts at a's row start + j*t*s
    # tile row i is conv(window, rev(taps))[K - 1 + i*s]; one expression, so each spectrum is freed once used
    # (and the product, in the scratch buffer, is transformed in place)
    z = _inverse(_product(_windows(a, start, plan, step), _spectrum(taps[::-1, ::-1], (gh, gw))), (gh, gw),
                 slice(k[0] - 1, k[0] + (th - 1) * stride[0], stride[0]),
                 slice(k[1] - 1, k[1] + (tw - 1) * stride[1], stride[1]))  # (th, tw, G, mh*mw*N, Cb)
    return _untile(z.reshape(th, tw, g, mh, mw, n, cb).transpose(5, 2, 6, 3, 0, 4, 1), out)


def _untile(tiles: np.ndarray, out: tuple[int, int]) -> np.ndarray:
    """(N, G, Cb, mh, th, mw, tw) -> (N, G*Cb, out_h, out_w), the tiles side by side, in one copy: the whole
    tiles, then the last row and column of tiles cut where they overhang the output."""
    n, g, cb, _, th, _, tw = tiles.shape
    z = np.empty((n, g, cb, *out), tiles.dtype)

    def parts(size: int, t: int) -> list[tuple[slice, slice, slice]]:  # (output rows, tiles, rows of a tile)
        whole, rest = divmod(size, t)
        return [(slice(0, whole * t), slice(0, whole), slice(0, t))] + \
            [(slice(whole * t, size), slice(whole, whole + 1), slice(0, rest))] * (rest > 0)

    for (oh, ah, rh), (ow, aw, rw) in itertools.product(parts(out[0], th), parts(out[1], tw)):
        src = tiles[:, :, :, ah, rh, aw, rw]
        # splitting an axis in two never needs a copy, so reshape returns a view of z (numpy < 2.1 has no copy=False
        # to assert it; tests/test_fft_speed_paths.py checks the assembled output against the reference)
        z[:, :, :, oh, ow].reshape(src.shape)[...] = src
    return z.reshape(n, g * cb, *out)


def _last(a: np.ndarray, problem: ConvProblem, groups_first: bool = False) -> np.ndarray:
    """(N, C, H, W) -> the channels-last view (H, W, G, N, C/G); ``groups_first``: w's (H, W, G, C/G, O/G)."""
    a = np.asarray(a, dtype=problem.dtype)
    n, c = a.shape[:2]
    g = problem.groups
    if groups_first:  # the weight (C_out, Cg, kh, kw): -> (kh, kw, G, Cg, Og)
        return a.reshape(g, n // g, c, *a.shape[2:]).transpose(3, 4, 0, 2, 1)
    return a.reshape(n, g, c // g, *a.shape[2:]).transpose(3, 4, 1, 0, 2)


def forward(problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``FFTConv.forward``: the forward correlation of ``xp`` with ``wd``, by tiles."""
    (ph, pw) = problem.padding
    wd = _dilated(_last(w, problem, groups_first=True), problem.dilation)  # (K_h, K_w, G, Cg, Og)
    y = _correlate(_last(x, problem), (-ph, -pw), wd, problem.stride, (problem.out_h, problem.out_w))
    if b is not None:
        y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
    return y


def backward(problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
    """``FFTConv.backward``: dx a tiled correlation of ``dys`` with ``rev(wd)``, dw summed over the forward's tiles."""
    (sh, sw), (ph, pw), (dil_h, dil_w) = problem.stride, problem.padding, problem.dilation
    wd = _dilated(_last(w, problem, groups_first=True), problem.dilation)  # (K_h, K_w, G, Cg, Og)
    k = wd.shape[:2]

    # dx: a stride-1 correlation of dys, from row ph - (K - 1), with rev(wd), C_out and C_in swapped.
    dys = _dilated(_last(dy, problem), problem.stride)  # (L_h, L_w, G, N, Og)
    dx = _correlate(dys, (ph - k[0] + 1, pw - k[1] + 1), wd[::-1, ::-1].swapaxes(-1, -2), (1, 1),
                    (problem.h, problem.w))
    del dys
    dx *= read_by_some_output(problem)  # elsewhere the true gradient is 0 and the FFT gives rounding noise

    # dw: over the forward's tiles, sum_j conv(window_j, rev(dys_j))[L_t - 1 + p*dh]; the sum over the tiles
    # and the batch is the matmul's inner dimension.
    plan = _plan((problem.out_h, problem.out_w), k, problem.stride, problem.batch, problem.c_in,
                 problem.c_out, problem.groups)
    (gh, th, _), (gw, tw, _) = plan
    xf = _windows(_last(x, problem), (-ph, -pw), plan, (th * sh, tw * sw))  # (gh, gw//2+1, G, M*N, Cg)
    dwf = _product(xf.swapaxes(-1, -2), _rev_tiles(_last(dy, problem), plan, problem.stride))
    del xf
    lt = ((th - 1) * sh + 1, (tw - 1) * sw + 1)  # a tile of dys
    lags = _inverse(dwf, (gh, gw), slice(lt[0] - 1, lt[0] + (problem.kh - 1) * dil_h, dil_h),
                    slice(lt[1] - 1, lt[1] + (problem.kw - 1) * dil_w, dil_w))  # (kh, kw, G, Cg, Og)
    dw = np.ascontiguousarray(lags.transpose(2, 4, 3, 0, 1)).reshape(problem.weight_shape)

    db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, 2, 3)) if problem.bias else None
    return Grads(dx=dx, dw=dw, db=db)
