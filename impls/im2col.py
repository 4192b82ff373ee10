"""``conv1d/2d/3d`` as im2col (vol2col in 3-D) + one batched GEMM per group, and its gradients as the transposed
GEMMs + col2im; ``conv_transpose1d/2d/3d`` as the same two steps the other way round.

With ``xp`` the zero-padded input and ``r`` spatial axes ``a = 1..r`` (outermost first), output position
``(o_1, ..., o_r)`` reads tap ``(t_1, ..., t_r)`` from ``xp[n, c, ..., o_a*s_a + t_a*dil_a, ...]``: for a fixed
tap that is a strided slice of ``xp``, so all of them together are one ``as_strided`` view::

    cols[n, c, t_1, ..., t_r, o_1, ..., o_r] = xp[n, c, o_1*s_1 + t_1*dil_1, ..., o_r*s_r + t_r*dil_r]
    strides: (sN, sC, sX_1*dil_1, ..., sX_r*dil_r, sX_1*s_1, ..., sX_r*s_r)

(``sX_a`` the byte stride of spatial axis ``a`` of ``xp``; in 2-D ``(sN, sC, sH*dh, sW*dw, sH*sh, sW*sw)``).
Reshaped to ``(N, G, K, L)`` with ``K = Cg * k_1*...*k_r`` and ``L = o_1*...*o_r`` (this reshape is the one
copy, the "im2col"), the forward is a matrix product per (sample, group) with the weight as ``(G, Og, K)``::

    y[n, g] = W[g] @ cols[n, g]                  (Og, L)
    dcols[n, g] = W[g]^T @ dy[n, g]              (K, L)   the adjoint of the product in cols
    dW[g] = sum_n dy[n, g] @ cols[n, g]^T        (Og, K)  the adjoint of the product in W

``dx`` is the adjoint of the unfolding (col2im): every column entry is added back to the ``xp`` position it
was read from. Tap by tap that is a strided slice again, so ``k_1*...*k_r`` vectorised ``+=`` do it (the taps
from ``itertools.product``); within one tap the positions are distinct, so no scatter-add (``np.add.at``, slow)
is needed. What lands on the padding is cropped away with it; trailing positions that a stride which does not
divide evenly never reads receive nothing and stay zero.

The transposed convolution (``problem.transposed``) is the convolution's input gradient taken as a forward pass:
input position ``i`` scatters through tap ``t`` to ``i*s + t*dil - pad``, with the weight ``(C_in, Og, *kernel)``
as ``(G, Cg, Og*k_1*...*k_r)`` (rows the input channels of a group, columns (o, t_1..t_r)). On the uncropped grid
(``(n_a - 1)*s_a + dil_a*(k_a - 1) + 1`` per axis, or ``pad_a + out_a`` where the output padding reaches past it),
with ``L_in = n_1*...*n_r`` and ``dyg`` the zero grid holding ``dy`` at ``[pad_a, pad_a + out_a)``::

    cols[n, g] = W[g]^T @ x[n, g]                (Og*K', L_in)  every (o, t) contribution of every input position
    yg = col2im(cols)                            tap t of input position i lands on yg[i*s + t*dil]
    y = yg[..., pad_a:pad_a + out_a, ...]        the padding crops; output padding past the result reads zeros
    dcols[n, g] = im2col(dyg)[n, g]              (Og*K', L_in)  dcols[(o, t), i] = dyg[i*s + t*dil]
    dx[n, g] = W[g] @ dcols[n, g]                (Cg, L_in)
    dW[g] = sum_n x[n, g] @ dcols[n, g]^T        (Cg, Og*K')

(``K' = k_1*...*k_r``): the same unfold (``as_strided`` over ``dyg``, the input sizes in place of the output
sizes) and the same col2im as the convolution's, in the opposite passes. Every sample uses the same ``W[g]``, so
the transposed passes put the batch inside the columns, ``(n, i)``, ``x`` as ``(G, Cg, N*L_in)`` and the unfolded
``dyg`` as ``(G, Og*K', N*L_in)`` (``_unfold_batch_inner``): each product above is then one GEMM per group for the
whole batch, and dW's sum over ``n`` is that GEMM's inner dimension (no per-sample ``(Cg, Og*K')`` products to sum
afterwards: 537 MB of them on a DCGAN layer of batch 64, docs/performance.md).
Byte strides and sizes are Python ints (numpy's ``intp``, 64-bit), so large problems do not overflow.
All arithmetic is in the problem dtype; the GEMMs are BLAS (direct sums: componentwise error model).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem

_ALL = slice(None)


def _unfold(a: np.ndarray, groups: int, kernel: Sequence[int], sizes: Sequence[int], stride: Sequence[int],
            dilation: Sequence[int]) -> np.ndarray:
    """im2col: ``cols[n, c, t, q] = a[n, c, q*s + t*dil]`` for every tap ``t < kernel`` and position ``q < sizes``,
    as a fresh C-contiguous ``(N, G, C/G * prod(kernel), prod(sizes))``."""
    s_n, s_c, *s_x = a.strides
    batch, channels = a.shape[:2]
    view = as_strided(a, shape=(batch, channels, *kernel, *sizes),
                      strides=(s_n, s_c, *(s * d for s, d in zip(s_x, dilation)),
                               *(s * st for s, st in zip(s_x, stride))),
                      writeable=False)
    size_k = channels // groups * math.prod(kernel)
    size_l = math.prod(sizes)
    # The reshape copies unless the view happens to be mergeable (e.g. one output row); ascontiguousarray then
    # makes the copy, so BLAS always sees plain C-ordered matrices and matmul allocates C-ordered outputs.
    return np.ascontiguousarray(view.reshape(batch, groups, size_k, size_l))


def _unfold_batch_inner(a: np.ndarray, groups: int, kernel: Sequence[int], sizes: Sequence[int],
                        stride: Sequence[int], dilation: Sequence[int]) -> np.ndarray:
    """``_unfold`` with the batch inside the columns: ``cols[g, (c, t), (n, q)] = a[n, g*Cg + c, q*s + t*dil]``, a
    fresh C-contiguous ``(G, C/G * prod(kernel), N * prod(sizes))``: one matrix per group for the whole batch."""
    s_n, s_c, *s_x = a.strides
    batch, channels = a.shape[:2]
    r = len(kernel)
    view = as_strided(a, shape=(groups, channels // groups, *kernel, batch, *sizes),
                      strides=(s_c * (channels // groups), s_c, *(s * d for s, d in zip(s_x, dilation)), s_n,
                               *(s * st for s, st in zip(s_x, stride))),
                      writeable=False)
    assert view.ndim == 3 + 2 * r
    return np.ascontiguousarray(view).reshape(groups, channels // groups * math.prod(kernel), -1)


def _fold(cols: np.ndarray, shape: Sequence[int], kernel: Sequence[int], sizes: Sequence[int],
          stride: Sequence[int], dilation: Sequence[int]) -> np.ndarray:
    """col2im, the adjoint of ``_unfold``: ``out[n, c, q*s + t*dil] += cols[n, c, t, q]`` into zeros of ``shape``,
    ``cols`` as ``(N, C, prod(kernel), *sizes)``. Along axis a, tap t_a covers positions t_a*dil_a,
    t_a*dil_a + s_a, ..., t_a*dil_a + (q_a-1)*s_a; the taps in C order (the order of itertools.product) are the
    rows of ``cols`` within one channel."""
    lands = [[slice(t * dil, t * dil + (q - 1) * s + 1, s) for t in range(k)]
             for k, dil, q, s in zip(kernel, dilation, sizes, stride)]
    out = np.zeros(shape, dtype=cols.dtype)
    for tap, window in enumerate(itertools.product(*lands)):
        out[(_ALL, _ALL, *window)] += cols[:, :, tap]
    return out


class Im2col:
    """Unfold with ``as_strided``, multiply with ``np.matmul``; the vectorised numpy backend (1, 2, 3 spatial axes)."""

    name = "im2col"
    capabilities = Capabilities(dtypes=("float32", "float64"), ranks=(1, 2, 3), transposed=True,
                                notes="numpy as_strided unfold + batched GEMM")

    @staticmethod
    def _padded(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
        pads = tuple(zip(problem.padding, problem.pad_end))
        return np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), *pads))

    @staticmethod
    def _columns(problem: ConvProblem, xp: np.ndarray) -> np.ndarray:
        """The unfolded input ``(N, G, Cg*k_1*...*k_r, o_1*...*o_r)``, a fresh C-contiguous array."""
        return _unfold(xp, problem.groups, problem.kernel, problem.out_sizes, problem.stride, problem.dilation)

    @staticmethod
    def _weight(problem: ConvProblem, w: np.ndarray) -> np.ndarray:
        """The weight as ``(G, Og, Cg*k_1*...*k_r)``; its column order (c, t_1..t_r) matches the rows of ``cols``.
        Transposed: ``(G, Cg, Og*k_1*...*k_r)``, columns (o, t_1..t_r)."""
        rows = (problem.c_in if problem.transposed else problem.c_out) // problem.groups
        return np.asarray(w, dtype=problem.dtype).reshape(problem.groups, rows, -1)

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if problem.transposed:
            y = self._transposed_forward(problem, x, w)
        else:
            cols = self._columns(problem, self._padded(problem, x))
            y = np.matmul(self._weight(problem, w), cols)  # (G, Og, K) broadcast over n: (N, G, Og, L)
            y = y.reshape(problem.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype).reshape((-1,) + (1,) * problem.rank)
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if problem.transposed:
            return self._transposed_backward(problem, x, w, dy)
        out = problem.out_sizes
        xp = self._padded(problem, x)
        wm = self._weight(problem, w)
        dym = np.asarray(dy, dtype=problem.dtype).reshape(problem.batch, problem.groups, -1, math.prod(out))

        # dW = dy @ cols^T per (n, g), then summed over the batch: every sample used the same weight.
        cols = self._columns(problem, xp)
        dwm = np.matmul(dym, cols.transpose(0, 1, 3, 2)).sum(axis=0)

        # col2im: tap t_a read positions t_a*dil_a, ..., t_a*dil_a + (o_a-1)*s_a of xp along axis a; its column
        # gradients go back to exactly those positions.
        # dcols has the shape of cols, (N, G, K, L), and cols is no longer needed: its memory takes dcols, so the
        # largest array of the backward is allocated (its pages faulted in) once, not twice. Not where cols is
        # the read-only unfolded view itself (a view that needed no copy, e.g. a 1x1 kernel).
        dcols = np.matmul(wm.transpose(0, 2, 1), dym, out=cols if cols.flags.writeable else None)
        dcols = dcols.reshape(problem.batch, problem.c_in, math.prod(problem.kernel), *out)
        dxp = _fold(dcols, xp.shape, problem.kernel, out, problem.stride, problem.dilation)
        inside = tuple(slice(pad, pad + n) for pad, n in zip(problem.padding, problem.in_sizes))
        dx = np.ascontiguousarray(dxp[(_ALL, _ALL, *inside)])

        db = dym.sum(axis=(0, 3)).reshape(problem.c_out) if problem.bias else None
        return Grads(dx=dx, dw=np.ascontiguousarray(dwm.reshape(problem.weight_shape)), db=db)

    # -- transposed ---------------------------------------------------------------------------------------------

    @staticmethod
    def _grid(problem: ConvProblem) -> tuple[int, ...]:
        """The uncropped result per axis: every position an input element reaches, ``(n_a - 1)*s_a +
        dil_a*(k_a - 1) + 1``, or up to the output's far end ``pad_a + out_a`` where the output padding reaches past
        that."""
        return tuple(max((n - 1) * s + d * (k - 1) + 1, p + m) for n, s, d, k, p, m in
                     zip(problem.in_sizes, problem.stride, problem.dilation, problem.kernel, problem.padding,
                         problem.out_sizes))

    @staticmethod
    def _inputs(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
        """The input as ``(G, Cg, N*n_1*...*n_r)``, the batch inside the columns: one operand of the transposed
        products, which then run once per group for the whole batch (a copy)."""
        xg = np.asarray(x, dtype=problem.dtype).reshape(problem.batch, problem.groups, -1, math.prod(problem.in_sizes))
        return np.ascontiguousarray(xg.transpose(1, 2, 0, 3)).reshape(problem.groups, xg.shape[2], -1)

    def _transposed_forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        # cols[g] = W[g]^T @ x[g]: (G, Og*K', Cg) @ (G, Cg, N*L_in) -> (G, Og*K', N*L_in), the whole batch at once
        cols = np.matmul(self._weight(problem, w).transpose(0, 2, 1), self._inputs(problem, x))
        # viewed as _fold's (N, C_out, K', *in): the batch axis moved ahead, no copy
        cols = cols.reshape(problem.c_out, math.prod(problem.kernel), problem.batch, *problem.in_sizes)
        cols = cols.transpose(2, 0, 1, *range(3, 3 + problem.rank))
        yg = _fold(cols, (problem.batch, problem.c_out, *self._grid(problem)), problem.kernel, problem.in_sizes,
                   problem.stride, problem.dilation)
        window = tuple(slice(pad, pad + m) for pad, m in zip(problem.padding, problem.out_sizes))
        return np.ascontiguousarray(yg[(_ALL, _ALL, *window)])

    def _transposed_backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        # dyg: dy in the zero grid at [pad_a, pad_a + out_a); the cropped positions have no gradient
        grid = self._grid(problem)
        pads = tuple((pad, g - pad - m) for pad, g, m in zip(problem.padding, grid, problem.out_sizes))
        dyg = np.pad(np.asarray(dy, dtype=problem.dtype), ((0, 0), (0, 0), *pads))
        # im2col of dyg at the input positions, the batch inside the columns:
        # dcols[g, (o, t), (n, i)] = dyg[n, g*Og + o, i*s + t*dil]
        dcols = _unfold_batch_inner(dyg, problem.groups, problem.kernel, problem.in_sizes, problem.stride,
                                    problem.dilation)
        wm, xm = self._weight(problem, w), self._inputs(problem, x)
        dx = np.matmul(wm, dcols)  # (G, Cg, Og*K') @ (G, Og*K', N*L_in) -> (G, Cg, N*L_in)
        dx = dx.reshape(problem.c_in, problem.batch, *problem.in_sizes).swapaxes(0, 1)
        # dW[g] = x[g] @ dcols[g]^T: every sample used the same weight, the sum over the batch is the product's
        dwm = np.matmul(xm, dcols.transpose(0, 2, 1))  # (G, Cg, N*L_in) @ (G, N*L_in, Og*K') -> (G, Cg, Og*K')
        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + problem.rank))) if problem.bias else None
        return Grads(dx=np.ascontiguousarray(dx), dw=dwm.reshape(problem.weight_shape), db=db)
