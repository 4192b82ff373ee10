"""``conv2d`` as im2col + one batched GEMM per group, and its gradients as the transposed GEMMs + col2im.

With ``xp`` the zero-padded input, the convolution reads ``xp[n, c, i*sh + p*dh, j*sw + q*dw]``: for a fixed
tap ``(p, q)`` that is a strided slice of ``xp``, so all of them together are one ``as_strided`` view::

    cols[n, c, p, q, i, j] = xp[n, c, i*sh + p*dh, j*sw + q*dw]
    strides: (sN, sC, sH*dh, sW*dw, sH*sh, sW*sw)

Reshaped to ``(N, G, K, L)`` with ``K = Cg*kh*kw`` and ``L = Ho*Wo`` (this reshape is the one copy, the
"im2col"), the forward is a matrix product per (sample, group) with the weight as ``(G, Og, K)``::

    y[n, g] = W[g] @ cols[n, g]                  (Og, L)
    dcols[n, g] = W[g]^T @ dy[n, g]              (K, L)   the adjoint of the product in cols
    dW[g] = sum_n dy[n, g] @ cols[n, g]^T        (Og, K)  the adjoint of the product in W

``dx`` is the adjoint of the unfolding (col2im): every column entry is added back to the ``xp`` position it
was read from. Tap by tap that is a strided slice again, so ``kh*kw`` vectorised ``+=`` do it; within one
tap the positions are distinct, so no scatter-add (``np.add.at``, slow) is needed. What lands on the padding
is cropped away with it; trailing rows that a stride which does not divide evenly never reads receive
nothing and stay zero.
All arithmetic is in the problem dtype; the GEMMs are BLAS (direct sums: componentwise error model).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem


class Im2col:
    """Unfold with ``as_strided``, multiply with ``np.matmul``; the vectorised numpy backend."""

    name = "im2col"
    capabilities = Capabilities(dtypes=("float32", "float64"), notes="numpy as_strided unfold + batched GEMM")

    @staticmethod
    def _padded(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
        (ph, pw) = problem.padding
        return np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), (ph, ph), (pw, pw)))

    @staticmethod
    def _columns(problem: ConvProblem, xp: np.ndarray) -> np.ndarray:
        """The unfolded input ``(N, G, Cg*kh*kw, Ho*Wo)``, a fresh C-contiguous array."""
        (sh, sw), (dh, dw) = problem.stride, problem.dilation
        s_n, s_c, s_h, s_w = xp.strides
        view = as_strided(xp, shape=(problem.batch, problem.c_in, problem.kh, problem.kw, problem.out_h,
                                     problem.out_w),
                          strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw), writeable=False)
        size_k = problem.c_in // problem.groups * problem.kh * problem.kw
        size_l = problem.out_h * problem.out_w
        # The reshape copies unless the view happens to be mergeable (e.g. Ho = 1); ascontiguousarray then
        # makes the copy, so BLAS always sees plain C-ordered matrices and matmul allocates C-ordered outputs.
        return np.ascontiguousarray(view.reshape(problem.batch, problem.groups, size_k, size_l))

    @staticmethod
    def _weight(problem: ConvProblem, w: np.ndarray) -> np.ndarray:
        """The weight as ``(G, Og, Cg*kh*kw)``; its column order (c, p, q) matches the rows of ``cols``."""
        return np.asarray(w, dtype=problem.dtype).reshape(problem.groups, problem.c_out // problem.groups, -1)

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        cols = self._columns(problem, self._padded(problem, x))
        y = np.matmul(self._weight(problem, w), cols)  # (G, Og, K) broadcast over n: (N, G, Og, L)
        y = y.reshape(problem.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        (sh, sw), (ph, pw), (dh, dw) = problem.stride, problem.padding, problem.dilation
        ho, wo = problem.out_h, problem.out_w
        xp = self._padded(problem, x)
        wm = self._weight(problem, w)
        dym = np.asarray(dy, dtype=problem.dtype).reshape(problem.batch, problem.groups, -1, ho * wo)

        # dW = dy @ cols^T per (n, g), then summed over the batch: every sample used the same weight.
        cols = self._columns(problem, xp)
        dwm = np.matmul(dym, cols.transpose(0, 1, 3, 2)).sum(axis=0)
        del cols

        # col2im: tap (p, q) read rows p*dh, p*dh + sh, ..., p*dh + (Ho-1)*sh of xp (and likewise columns);
        # its column gradients go back to exactly those positions.
        dcols = np.matmul(wm.transpose(0, 2, 1), dym)  # (N, G, K, L)
        dcols = dcols.reshape(problem.batch, problem.c_in, problem.kh, problem.kw, ho, wo)
        dxp = np.zeros(xp.shape, dtype=problem.dtype)
        for p in range(problem.kh):
            rows = slice(p * dh, p * dh + (ho - 1) * sh + 1, sh)
            for q in range(problem.kw):
                dxp[:, :, rows, q * dw:q * dw + (wo - 1) * sw + 1:sw] += dcols[:, :, p, q]
        dx = np.ascontiguousarray(dxp[:, :, ph:ph + problem.h, pw:pw + problem.w])

        db = dym.sum(axis=(0, 3)).reshape(problem.c_out) if problem.bias else None
        return Grads(dx=dx, dw=np.ascontiguousarray(dwm.reshape(problem.weight_shape)), db=db)
