"""``conv1d/2d/3d`` as im2col (vol2col in 3-D) + one batched GEMM per group, and its gradients as the transposed
GEMMs + col2im.

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
Byte strides and sizes are Python ints (numpy's ``intp``, 64-bit), so large problems do not overflow.
All arithmetic is in the problem dtype; the GEMMs are BLAS (direct sums: componentwise error model).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem

_ALL = slice(None)


class Im2col:
    """Unfold with ``as_strided``, multiply with ``np.matmul``; the vectorised numpy backend (1, 2, 3 spatial axes)."""

    name = "im2col"
    capabilities = Capabilities(dtypes=("float32", "float64"), ranks=(1, 2, 3),
                                notes="numpy as_strided unfold + batched GEMM")

    @staticmethod
    def _padded(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
        pads = tuple(zip(problem.padding, problem.pad_end))
        return np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), *pads))

    @staticmethod
    def _columns(problem: ConvProblem, xp: np.ndarray) -> np.ndarray:
        """The unfolded input ``(N, G, Cg*k_1*...*k_r, o_1*...*o_r)``, a fresh C-contiguous array."""
        s_n, s_c, *s_x = xp.strides
        view = as_strided(xp, shape=(problem.batch, problem.c_in, *problem.kernel, *problem.out_sizes),
                          strides=(s_n, s_c, *(s * d for s, d in zip(s_x, problem.dilation)),
                                   *(s * st for s, st in zip(s_x, problem.stride))),
                          writeable=False)
        size_k = problem.c_in // problem.groups * math.prod(problem.kernel)
        size_l = math.prod(problem.out_sizes)
        # The reshape copies unless the view happens to be mergeable (e.g. one output row); ascontiguousarray then
        # makes the copy, so BLAS always sees plain C-ordered matrices and matmul allocates C-ordered outputs.
        return np.ascontiguousarray(view.reshape(problem.batch, problem.groups, size_k, size_l))

    @staticmethod
    def _weight(problem: ConvProblem, w: np.ndarray) -> np.ndarray:
        """The weight as ``(G, Og, Cg*k_1*...*k_r)``; its column order (c, t_1..t_r) matches the rows of ``cols``."""
        return np.asarray(w, dtype=problem.dtype).reshape(problem.groups, problem.c_out // problem.groups, -1)

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        cols = self._columns(problem, self._padded(problem, x))
        y = np.matmul(self._weight(problem, w), cols)  # (G, Og, K) broadcast over n: (N, G, Og, L)
        y = y.reshape(problem.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype).reshape((-1,) + (1,) * problem.rank)
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        out = problem.out_sizes
        xp = self._padded(problem, x)
        wm = self._weight(problem, w)
        dym = np.asarray(dy, dtype=problem.dtype).reshape(problem.batch, problem.groups, -1, math.prod(out))

        # dW = dy @ cols^T per (n, g), then summed over the batch: every sample used the same weight.
        cols = self._columns(problem, xp)
        dwm = np.matmul(dym, cols.transpose(0, 1, 3, 2)).sum(axis=0)

        # col2im: along axis a, tap t_a read positions t_a*dil_a, t_a*dil_a + s_a, ..., t_a*dil_a + (o_a-1)*s_a
        # of xp; its column gradients go back to exactly those positions. The taps in C order (the order of
        # itertools.product) are the rows of dcols within one channel.
        reads = [[slice(t * dil, t * dil + (o - 1) * s + 1, s) for t in range(k)]
                 for k, dil, o, s in zip(problem.kernel, problem.dilation, out, problem.stride)]
        # dcols has the shape of cols, (N, G, K, L), and cols is no longer needed: its memory takes dcols, so the
        # largest array of the backward is allocated (its pages faulted in) once, not twice. Not where cols is
        # the read-only unfolded view itself (a view that needed no copy, e.g. a 1x1 kernel).
        dcols = np.matmul(wm.transpose(0, 2, 1), dym, out=cols if cols.flags.writeable else None)
        dcols = dcols.reshape(problem.batch, problem.c_in, math.prod(problem.kernel), *out)
        dxp = np.zeros(xp.shape, dtype=problem.dtype)
        for tap, window in enumerate(itertools.product(*reads)):
            dxp[(_ALL, _ALL, *window)] += dcols[:, :, tap]
        inside = tuple(slice(pad, pad + n) for pad, n in zip(problem.padding, problem.in_sizes))
        dx = np.ascontiguousarray(dxp[(_ALL, _ALL, *inside)])

        db = dym.sum(axis=(0, 3)).reshape(problem.c_out) if problem.bias else None
        return Grads(dx=dx, dw=np.ascontiguousarray(dwm.reshape(problem.weight_shape)), db=db)
