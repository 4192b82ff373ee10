"""The fft backend's fast path: ``impls/fft.py``'s method (the same correlations by the same theorem) on
overlap-save tiles, vectorised over batch, tiles, groups and channels. ``FFTConv`` hands it the problems where the
engineering pays (``TILED_FROM_MACS`` there), inside ``scipy.fft.set_workers(WORKERS)`` (``WORKERS`` there too: the
transforms here take scipy's default workers); tests/test_fft_speed_paths.py holds it to the plain method. It is
convolution-only: large transposed problems (``conv_transpose1d/2d/3d``) have their own fast path,
``impls/fft_polyphase.py``. Every rank (1, 2 or 3 spatial axes) runs the same code: each axis is tiled, padded and
transformed independently of the others, the formulas below hold on each, and the 2-D names (rows, columns, ``gh x
gw``) stand for any rank's.

On one axis (the others are the same), with ``xp`` the zero-padded input, ``wd`` the kernel dilated by ``dh``
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
(``_inverse``) likewise runs its row pass only over the rows that are read. In 3-D one more ``fft`` pass runs
along the outermost axis, last (the inverse's first), and each pass runs over the lines that hold data or are
read on the axes not yet transformed: a 7x7x7 kernel on a 24^3 grid transforms 7*7 rows, then 7*13 and 24*13
columns, 452 lines where ``rfftn`` would transform 24*24 + 2 * 24*13 = 1200. ``_plan`` counts every pass's lines so.

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
#: one int per spatial axis, outermost first
Axes = tuple[int, ...]

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


def _spectrum(a: np.ndarray, grid: Axes) -> np.ndarray:
    """rfftn over the first ``len(grid)`` axes of ``a`` (channels-last), zero-extended to ``grid``: the last spatial
    axis first, over the lines that hold data only, then each axis before it, outermost last."""
    spec = sfft.rfft(a, n=grid[-1], axis=len(grid) - 1)  # only the rows of a
    for axis in reversed(range(len(grid) - 1)):
        # zero rows up to grid[axis] added here; in place where there are none to add
        spec = sfft.fft(spec, n=grid[axis], axis=axis, overwrite_x=True)
    return spec


def _inverse(spec: np.ndarray, grid: Axes, keep: tuple[slice, ...]) -> np.ndarray:
    """``irfftn(spec, grid)[keep]``, the outermost axis first, each later pass run over the kept rows only; ``spec``
    is overwritten."""
    r = len(grid)
    for axis in range(r - 1):
        spec = sfft.ifft(spec, axis=axis, overwrite_x=True)  # in place: no second spectrum-sized array
        spec = spec[(slice(None),) * axis + (keep[axis],)]
    return sfft.irfft(spec, n=grid[-1], axis=r - 1)[(slice(None),) * (r - 1) + (keep[-1],)]


def _dilated(a: np.ndarray, step: Axes) -> np.ndarray:
    """``a`` (*spatial, ...) with ``step - 1`` zeros between neighbours on each spatial axis (dilation, stride)."""
    if step == (1,) * len(step):
        return a
    r = len(step)
    up = np.zeros((*[(n - 1) * s + 1 for n, s in zip(a.shape, step)], *a.shape[r:]), a.dtype)
    up[tuple([slice(None, None, s) for s in step])] = a
    return up


def _reversed(a: np.ndarray, rank: int) -> np.ndarray:
    """``a`` reversed along its first ``rank`` axes (a view)."""
    return a[(slice(None, None, -1),) * rank]


def _shifted(a: np.ndarray, start: Axes, size: Axes) -> np.ndarray:
    """``a[start_h + r, start_w + c]`` for ``r < size_h``, ``c < size_w`` (zero outside ``a``), and so on over the
    ``len(start)`` leading axes: one copy."""
    out = np.zeros((*size, *a.shape[len(start):]), a.dtype)
    src = [slice(min(max(s, 0), n), min(max(s + k, 0), n)) for s, k, n in zip(start, size, a.shape)]
    out[tuple([slice(c.start - s, c.stop - s) for c, s in zip(src, start)])] = a[tuple(src)]
    return out


def _axis_tilings(n_out: int, k: int, stride: int) -> list[Tiling]:
    """The ways to cut ``n_out`` outputs into tiles, ``(grid, outputs per tile, tiles)``, one per grid size."""
    ways: dict[int, Tiling] = {}
    for m in range(1, n_out + 1):
        t = -(-n_out // m)  # m tiles as even as they go
        grid = sfft.next_fast_len((t - 1) * stride + k, real=True)  # the window the tile reads, at least
        ways.setdefault(grid, (grid, t, -(-n_out // t)))  # the fewest tiles a grid can have
    return list(ways.values())


def _times(first: float, *factors: float) -> float:
    """``first * f1 * f2 * ...``, left to right (the cost model's float arithmetic, in this order)."""
    return functools.reduce(lambda p, f: p * f, factors, first)


@functools.lru_cache(maxsize=1024)
def _plan(out: Axes, k: Axes, stride: Axes, n: int, c_in: int, c_out: int, groups: int) -> tuple[Tiling, ...]:
    """The cheapest tiling by ``COST`` of a correlation from ``n*c_in`` planes (of ``a``) into ``n*c_out`` planes
    of ``out`` outputs (of ``z``), through ``c_in*c_out/groups`` planes of ``k`` taps."""
    a_planes, z_planes, k_planes = n * c_in, n * c_out, c_in * c_out // groups
    r = len(out)
    costs = {}
    for plan in itertools.product(*(_axis_tilings(*along) for along in zip(out, k, stride))):
        grid, t, m = (tuple(v) for v in zip(*plan))
        tiles, freq = math.prod(m), (*grid[:-1], grid[-1] // 2 + 1)

        # the 1-D transforms along each axis: the forward passes run the last axis first, over the lines that hold
        # data (whole windows; the taps' k rows), the inverse the outermost first, over the kept rows
        lines = [(tiles * math.prod(grid[:axis]) * a_planes + math.prod(k[:axis]) * k_planes
                  + tiles * math.prod(t[:axis]) * z_planes) * math.prod(freq[axis + 1:]) for axis in range(r)]
        rows = lines[-1]  # rfft of the windows' rows and the taps' rows, irfft of the kept rows
        cols = lines[:-1]  # fft/ifft along every other axis
        cost = _times(COST["real"], rows, grid[-1], math.log2(grid[-1]))
        for axis, count in enumerate(cols):
            cost += _times(COST["complex"], count, grid[axis], math.log2(grid[axis]))
        costs[plan] = (cost + COST["line"] * (rows + sum(cols))
                       + _times(COST["cmac"], *freq, tiles, n, c_in, c_out) / groups
                       + _times(COST["matmul"], *freq, groups))
    return min(costs, key=costs.__getitem__)


def _windows(a: np.ndarray, start: Axes, plan: tuple[Tiling, ...], step: Axes) -> np.ndarray:
    """The spectra of the windows ``a[start + j*step : start + j*step + g]`` (every spatial axis, ``j < m``) of
    ``a`` ``(*spatial, G, N, C)``: ``(*grid[:-1], grid[-1]//2 + 1, G, tiles*N, C)``, the tiles (row-major) ahead of
    the batch."""
    r = len(plan)
    grid, _, m = zip(*plan)
    ap = _shifted(a, start, tuple([(mi - 1) * s + g for mi, s, g in zip(m, step, grid)]))  # the one copy of a
    tiles = sliding_window_view(ap, grid, axis=tuple(range(r)))[tuple([slice(None, None, s) for s in step])]
    # (*m, G, N, C, *grid) -> (*grid, G, *m, N, C)
    tiles = tiles.transpose(*range(r + 3, 2 * r + 3), r, *range(r), r + 1, r + 2)
    spec = _spectrum(tiles, grid)  # (*grid[:-1], grid[-1]//2 + 1, G, *m, N, C)
    return spec.reshape(*spec.shape[:r], a.shape[r], math.prod(m) * a.shape[r + 1], a.shape[r + 2])


def _rev_tiles(a: np.ndarray, plan: tuple[Tiling, ...], stride: Axes) -> np.ndarray:
    """The spectra of ``rev(dilated tile)`` for the tiles ``a[j*t : j*t + t]`` (every spatial axis; zeros past
    ``a``) of ``a`` ``(*out, G, N, C)``: ``(*grid[:-1], grid[-1]//2 + 1, G, tiles*N, C)``, in ``_windows``' order."""
    r = len(plan)
    grid, t, m = zip(*plan)
    g, n, c = a.shape[r:]
    tiles = _shifted(a, (0,) * r, tuple([mi * ti for mi, ti in zip(m, t)]))
    # (m0, t0, m1, t1, ..., G, N, C) -> (*t, G, *m, N, C)
    tiles = tiles.reshape(*[v for mt in zip(m, t) for v in mt], g, n, c)
    tiles = tiles.transpose(*range(1, 2 * r, 2), 2 * r, *range(0, 2 * r, 2), 2 * r + 1, 2 * r + 2)
    spec = _spectrum(_reversed(_dilated(tiles, stride), r), grid)  # (*grid[:-1], grid[-1]//2 + 1, G, *m, N, C)
    return spec.reshape(*spec.shape[:r], g, math.prod(m) * n, c)


def _correlate(a: np.ndarray, start: Axes, taps: np.ndarray, stride: Axes, out: Axes) -> np.ndarray:
    """``z[n, g*Cb + o, i, j] = sum_{u, v, c} a[start_h + i*sh + u, start_w + j*sw + v, g, n, c] taps[u, v, g, c, o]``
    for ``i, j < out`` (and so on over every spatial axis), ``a`` ``(*spatial, G, N, Ca)`` zero outside, ``taps``
    ``(*K, G, Ca, Cb)``: by tiles."""
    r = len(out)
    k, (g, n, ca), cb = taps.shape[:r], a.shape[r:], taps.shape[-1]
    plan = _plan(out, k, stride, n, g * ca, g * cb, g)
    grid, t, m = zip(*plan)
    step = tuple([ti * s for ti, s in zip(t, stride)])  # tile j's window starts at a's row start + j*t*s
    # tile row i is conv(window, rev(taps))[K - 1 + i*s]; one expression, so each spectrum is freed once used
    # (and the product, in the scratch buffer, is transformed in place)
    keep = tuple([slice(kk - 1, kk + (ti - 1) * s, s) for kk, ti, s in zip(k, t, stride)])
    z = _inverse(_product(_windows(a, start, plan, step), _spectrum(_reversed(taps, r), grid)), grid,
                 keep)  # (*t, G, tiles*N, Cb)
    # (*t, G, *m, N, Cb) -> (N, G, Cb, m0, t0, m1, t1, ...)
    z = z.reshape(*t, g, *m, n, cb).transpose(2 * r + 1, r, 2 * r + 2, *[v for i in range(r) for v in (r + 1 + i, i)])
    return _untile(z, out)


def _untile(tiles: np.ndarray, out: Axes) -> np.ndarray:
    """(N, G, Cb, mh, th, mw, tw) -> (N, G*Cb, out_h, out_w), the tiles side by side, in one copy (likewise in every
    rank): the whole tiles, then the last row and column of tiles cut where they overhang the output."""
    n, g, cb = tiles.shape[:3]
    z = np.empty((n, g, cb, *out), tiles.dtype)

    def parts(size: int, t: int) -> list[tuple[slice, slice, slice]]:  # (output rows, tiles, rows of a tile)
        whole, rest = divmod(size, t)
        return [(slice(0, whole * t), slice(0, whole), slice(0, t))] + \
            [(slice(whole * t, size), slice(whole, whole + 1), slice(0, rest))] * (rest > 0)

    for pieces in itertools.product(*[parts(size, t) for size, t in zip(out, tiles.shape[4::2])]):
        src = tiles[(slice(None),) * 3 + tuple([s for _, a, rows in pieces for s in (a, rows)])]
        # splitting an axis in two never needs a copy, so reshape returns a view of z (numpy < 2.1 has no copy=False
        # to assert it; tests/test_fft_speed_paths.py checks the assembled output against the reference)
        z[(slice(None),) * 3 + tuple([o for o, _, _ in pieces])].reshape(src.shape)[...] = src
    return z.reshape(n, g * cb, *out)


def _last(a: np.ndarray, problem: ConvProblem, groups_first: bool = False) -> np.ndarray:
    """(N, C, *spatial) -> the channels-last view (*spatial, G, N, C/G); ``groups_first``: w's (*K, G, C/G, O/G)."""
    a = np.asarray(a, dtype=problem.dtype)
    n, c = a.shape[:2]
    g, spatial = problem.groups, range(3, 3 + problem.rank)
    if groups_first:  # the weight (C_out, Cg, *K): -> (*K, G, Cg, Og)
        return a.reshape(g, n // g, c, *a.shape[2:]).transpose(*spatial, 0, 2, 1)
    return a.reshape(n, g, c // g, *a.shape[2:]).transpose(*spatial, 1, 0, 2)


def forward(problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``FFTConv.forward``: the forward correlation of ``xp`` with ``wd``, by tiles."""
    wd = _dilated(_last(w, problem, groups_first=True), problem.dilation)  # (*K, G, Cg, Og)
    y = _correlate(_last(x, problem), tuple([-p for p in problem.padding]), wd, problem.stride, problem.out_sizes)
    if b is not None:
        y += np.asarray(b, dtype=problem.dtype).reshape(-1, *(1,) * problem.rank)
    return y


def backward(problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
    """``FFTConv.backward``: dx a tiled correlation of ``dys`` with ``rev(wd)``, dw summed over the forward's tiles."""
    r, stride, padding = problem.rank, problem.stride, problem.padding
    wd = _dilated(_last(w, problem, groups_first=True), problem.dilation)  # (*K, G, Cg, Og)
    k = wd.shape[:r]

    # dx: a stride-1 correlation of dys, from row ph - (K - 1), with rev(wd), C_out and C_in swapped.
    dys = _dilated(_last(dy, problem), stride)  # (*L, G, N, Og)
    dx = _correlate(dys, tuple([p - kk + 1 for p, kk in zip(padding, k)]), _reversed(wd, r).swapaxes(-1, -2),
                    (1,) * r, problem.in_sizes)
    del dys
    dx *= read_by_some_output(problem)  # elsewhere the true gradient is 0 and the FFT gives rounding noise

    # dw: over the forward's tiles, sum_j conv(window_j, rev(dys_j))[L_t - 1 + p*dh]; the sum over the tiles
    # and the batch is the matmul's inner dimension.
    plan = _plan(problem.out_sizes, k, stride, problem.batch, problem.c_in, problem.c_out, problem.groups)
    grid, t, _ = zip(*plan)
    xf = _windows(_last(x, problem), tuple([-p for p in padding]), plan,
                  tuple([ti * s for ti, s in zip(t, stride)]))  # (*grid[:-1], grid[-1]//2+1, G, M*N, Cg)
    dwf = _product(xf.swapaxes(-1, -2), _rev_tiles(_last(dy, problem), plan, stride))
    del xf
    lt = tuple([(ti - 1) * s + 1 for ti, s in zip(t, stride)])  # a tile of dys
    lags = _inverse(dwf, grid, tuple([slice(n - 1, n + (kk - 1) * d, d) for n, kk, d in
                                      zip(lt, problem.kernel, problem.dilation)]))  # (*K, G, Cg, Og)
    dw = np.ascontiguousarray(lags.transpose(r, r + 2, r + 1, *range(r))).reshape(problem.weight_shape)

    db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + r))) if problem.bias else None
    return Grads(dx=dx, dw=dw, db=db)
