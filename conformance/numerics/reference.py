"""The oracle: ``conv2d`` forward and its three gradients in float64, straight from the definition.

Written independently of ``impls/``. With ``xp`` the padded input, tap ``(i, j)`` reads the rows
``i*dh + sh*oh`` (``oh = 0..Ho-1``) and the columns ``j*dw + sw*ow``, so::

    y[n, g*Og+o, oh, ow]  = sum_{c, i, j} xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] * w[g*Og+o, c, i, j]
    dxp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] += sum_o dy[n, g*Og+o, oh, ow] * w[g*Og+o, c, i, j]
    dw[g*Og+o, c, i, j]  = sum_{n, oh, ow} xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] * dy[n, g*Og+o, oh, ow]
    db[o]                = sum_{n, oh, ow} dy[n, o, oh, ow]

Computed as: one loop over the ``kh*kw`` taps copies what each tap reads into ``cols`` (the unfolded
input), then one matrix product per (sample, group) contracts the ``K = Cg*kh*kw`` index ``(c, i, j)`` at once::

    cols[n, g, (c, i, j), (oh, ow)] = xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow]      (N, G, K, L = Ho*Wo)
    W[g, o, (c, i, j)]               = w[g*Og+o, c, i, j]                             (G, Og, K)
    y[n, g] = W[g] @ cols[n, g]       dcols[n, g] = W[g]^T @ dy[n, g]       dW[g] = sum_n dy[n, g] @ cols[n, g]^T

and ``dxp`` gathers ``dcols`` back tap by tap (``+=`` on the same slices; within one tap the positions are
distinct). ``dx`` is the adjoint of the padding applied to ``dxp``: the border cropped for zero padding, folded
back onto the input for reflect, replicate and circular padding (``conformance.numerics.padding``). Every function is
bilinear in its two operands, which ``conformance.numerics.tolerance`` uses to get magnitudes (``op(|a|, |b|)``) and
term counts (``op(1, 1)``) from the same code. It is validated in ``tests/test_reference.py`` against exact
integer arithmetic and the seed notebook's golden values.
"""

from __future__ import annotations

import numpy as np

from conformance.model.problem import ConvProblem
from conformance.numerics import padding


def _tap_slices(p: ConvProblem, i: int, j: int) -> tuple[slice, slice]:
    (sh, sw), (dh, dw) = p.stride, p.dilation
    r0, c0 = i * dh, j * dw
    return slice(r0, r0 + (p.out_h - 1) * sh + 1, sh), slice(c0, c0 + (p.out_w - 1) * sw + 1, sw)


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, H, W) -> (N, G, C/G, H*W)."""
    n, c, h, w = a.shape
    return a.reshape(n, groups, c // groups, h * w)


def _pad(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    """The padded input in float64 (``conformance.numerics.padding``: any padding mode, symmetric or not)."""
    return padding.pad(p, x)


def _weight_matrix(p: ConvProblem, w: np.ndarray) -> np.ndarray:
    """(C_out, Cg, kh, kw) -> (G, Og, Cg*kh*kw): row o of group g, columns in (c, i, j) order like ``cols``."""
    g = p.groups
    return np.ascontiguousarray(w, dtype=np.float64).reshape(g, p.c_out // g, -1)


def _unfold(p: ConvProblem, xp: np.ndarray) -> np.ndarray:
    """cols[n, g, (c, i, j), (oh, ow)] = xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow], shape (N, G, K, Ho*Wo)."""
    cols = np.empty((p.batch, p.c_in, p.kh, p.kw, p.out_h, p.out_w))
    for i in range(p.kh):
        for j in range(p.kw):
            rows, cols_ = _tap_slices(p, i, j)
            cols[:, :, i, j] = xp[:, :, rows, cols_]
    return cols.reshape(p.batch, p.groups, -1, p.out_h * p.out_w)


def forward(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    # y[n, g] = W[g] @ cols[n, g]: (G, Og, K) @ (N, G, K, L) -> (N, G, Og, L), one product per (n, g)
    y = (_weight_matrix(p, w) @ _unfold(p, _pad(p, x))).reshape(p.output_shape)
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def grad_input(p: ConvProblem, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    top, bottom, left, right = p.pads
    # dcols[n, g] = W[g]^T @ dy[n, g]: the gradient of every entry of cols, (N, G, K, L)
    dcols = _weight_matrix(p, w).swapaxes(-1, -2) @ _grouped(np.asarray(dy, dtype=np.float64), p.groups)
    dcols = dcols.reshape(p.batch, p.c_in, p.kh, p.kw, p.out_h, p.out_w)
    dxp = np.zeros((p.batch, p.c_in, p.h + top + bottom, p.w + left + right))
    for i in range(p.kh):
        for j in range(p.kw):
            rows, cols_ = _tap_slices(p, i, j)
            dxp[:, :, rows, cols_] += dcols[:, :, i, j]  # back to where tap (i, j) read xp
    # rows and columns that no tap reads (the stride's remainder) were never touched: they stay 0
    return np.ascontiguousarray(padding.pad_adjoint(p, dxp))


def grad_weight(p: ConvProblem, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # dW[g] = sum_n dy[n, g] @ cols[n, g]^T: (N, G, Og, L) @ (N, G, L, K), summed over the batch
    cols = _unfold(p, _pad(p, x))
    dyg = _grouped(np.asarray(dy, dtype=np.float64), p.groups)
    dw = (dyg @ cols.swapaxes(-1, -2)).sum(axis=0)  # (G, Og, K), K in (c, i, j) order
    return np.ascontiguousarray(dw.reshape(p.weight_shape))


def grad_bias(p: ConvProblem, dy: np.ndarray) -> np.ndarray:
    return np.asarray(dy, dtype=np.float64).sum(axis=(0, 2, 3))
