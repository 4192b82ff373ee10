"""The oracle: ``conv2d`` forward and its three gradients in float64, straight from the definition.

Written independently of ``impls/``: one loop over the ``kh*kw`` kernel taps, and for each tap one batched
matrix product over channels. With ``xp`` the zero-padded input, tap ``(i, j)`` reads the rows
``i*dh + sh*oh`` (``oh = 0..Ho-1``) and the columns ``j*dw + sw*ow``, so::

    y[n, g*Og+o, oh, ow]  = sum_{c, i, j} xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] * w[g*Og+o, c, i, j]
    dxp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] += sum_o dy[n, g*Og+o, oh, ow] * w[g*Og+o, c, i, j]
    dw[g*Og+o, c, i, j]  = sum_{n, oh, ow} xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] * dy[n, g*Og+o, oh, ow]
    db[o]                = sum_{n, oh, ow} dy[n, o, oh, ow]

and ``dx`` is ``dxp`` without its padding border. Every function is bilinear in its two operands, which
``conformance.tolerance`` uses to get magnitudes (``op(|a|, |b|)``) and term counts (``op(1, 1)``) from the
same code. It is validated in ``tests/test_reference.py`` against exact integer arithmetic and the seed
notebook's golden values.
"""

from __future__ import annotations

import numpy as np

from .problem import ConvProblem


def _tap_slices(p: ConvProblem, i: int, j: int) -> tuple[slice, slice]:
    (sh, sw), (dh, dw) = p.stride, p.dilation
    r0, c0 = i * dh, j * dw
    return slice(r0, r0 + (p.out_h - 1) * sh + 1, sh), slice(c0, c0 + (p.out_w - 1) * sw + 1, sw)


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, H, W) -> (N, G, C/G, H*W)."""
    n, c, h, w = a.shape
    return a.reshape(n, groups, c // groups, h * w)


def _pad(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    ph, pw = p.padding
    return np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _weight_taps(p: ConvProblem, w: np.ndarray) -> np.ndarray:
    """(C_out, Cg, kh, kw) -> (kh, kw, G, Og, Cg), one (G, Og, Cg) matrix stack per tap."""
    g = p.groups
    w = np.asarray(w, dtype=np.float64)
    return w.reshape(g, p.c_out // g, p.c_in // g, p.kh, p.kw).transpose(3, 4, 0, 1, 2)


def forward(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    xp = _pad(p, x)
    wt = _weight_taps(p, w)
    y = np.zeros((p.batch, p.groups, p.c_out // p.groups, p.out_h * p.out_w))
    for i in range(p.kh):
        for j in range(p.kw):
            rows, cols = _tap_slices(p, i, j)
            y += wt[i, j] @ _grouped(xp[:, :, rows, cols], p.groups)
    y = y.reshape(p.output_shape)
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def grad_input(p: ConvProblem, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    ph, pw = p.padding
    wt = _weight_taps(p, w).swapaxes(-1, -2)  # (kh, kw, G, Cg, Og): the transposed map
    dyg = _grouped(np.asarray(dy, dtype=np.float64), p.groups)
    dxp = np.zeros((p.batch, p.c_in, p.h + 2 * ph, p.w + 2 * pw))
    for i in range(p.kh):
        for j in range(p.kw):
            rows, cols = _tap_slices(p, i, j)
            dxp[:, :, rows, cols] += (wt[i, j] @ dyg).reshape(p.batch, p.c_in, p.out_h, p.out_w)
    # rows and columns that no tap reads (the stride's remainder) were never touched: they stay 0
    return np.ascontiguousarray(dxp[:, :, ph:ph + p.h, pw:pw + p.w])


def grad_weight(p: ConvProblem, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    xp = _pad(p, x)
    dyg = _grouped(np.asarray(dy, dtype=np.float64), p.groups)
    dw = np.zeros((p.kh, p.kw, p.groups, p.c_out // p.groups, p.c_in // p.groups))
    for i in range(p.kh):
        for j in range(p.kw):
            rows, cols = _tap_slices(p, i, j)
            xs = _grouped(xp[:, :, rows, cols], p.groups)
            dw[i, j] = (dyg @ xs.swapaxes(-1, -2)).sum(axis=0)
    return np.ascontiguousarray(dw.transpose(2, 3, 4, 0, 1).reshape(p.weight_shape))


def grad_bias(p: ConvProblem, dy: np.ndarray) -> np.ndarray:
    return np.asarray(dy, dtype=np.float64).sum(axis=(0, 2, 3))
