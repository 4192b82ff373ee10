"""The oracle: ``conv1d``/``conv2d``/``conv3d`` forward and its three gradients in float64, from the definition.

Written independently of ``impls/``. In 2-D, with ``xp`` the padded input, tap ``(i, j)`` reads the rows
``i*dh + sh*oh`` (``oh = 0..Ho-1``) and the columns ``j*dw + sw*ow``, so::

    y[n, g*Og+o, oh, ow]  = sum_{c, i, j} xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] * w[g*Og+o, c, i, j]
    dxp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] += sum_o dy[n, g*Og+o, oh, ow] * w[g*Og+o, c, i, j]
    dw[g*Og+o, c, i, j]  = sum_{n, oh, ow} xp[n, g*Cg+c, i*dh + sh*oh, j*dw + sw*ow] * dy[n, g*Og+o, oh, ow]
    db[o]                = sum_{n, oh, ow} dy[n, o, oh, ow]

Every rank is the same with one index per spatial axis: a tap is ``t = (t_1, ..., t_r)`` (``r`` = 1, 2, 3; the
axes outermost first, ``(d, h, w)`` in 3-D), and along axis ``a`` it reads ``t_a*dil_a + s_a*o_a``.

Computed as: one loop over the taps (``prod(kernel)`` of them) copies what each tap reads into ``cols`` (the
unfolded input), then one matrix product per (sample, group) contracts the ``K = Cg*prod(kernel)`` index
``(c, t)`` at once::

    cols[n, g, (c, t), o]  = xp[n, g*Cg+c, t*dil + s*o]           (N, G, K, L = prod(out_sizes)), o the output index
    W[g, oc, (c, t)]       = w[g*Og+oc, c, t]                      (G, Og, K)
    y[n, g] = W[g] @ cols[n, g]       dcols[n, g] = W[g]^T @ dy[n, g]       dW[g] = sum_n dy[n, g] @ cols[n, g]^T

and ``dxp`` gathers ``dcols`` back tap by tap (``+=`` on the same slices; within one tap the positions are
distinct). ``dx`` is the adjoint of the padding applied to ``dxp``: the border cropped for zero padding, folded
back onto the input for reflect, replicate and circular padding (``conformance.numerics.padding``). Every function is
bilinear in its two operands, which ``conformance.numerics.tolerance`` uses to get magnitudes (``op(|a|, |b|)``) and
term counts (``op(1, 1)``) from the same code. A transposed problem (``p.transposed``) goes to its own oracle,
``conformance.numerics.transposed``, written from the scatter definition. It is validated in
``tests/test_reference.py`` (2-D) and ``tests/test_reference_nd.py`` (1-D, 3-D) against exact integer arithmetic,
torch float64 and the seed notebook's golden values.
"""

from __future__ import annotations

import itertools

import numpy as np

from conformance.model.problem import ConvProblem
from conformance.numerics import padding, transposed


def _taps(p: ConvProblem):  # type: ignore[no-untyped-def]
    """Every tap ``t`` (one index per spatial axis, in C order: the innermost axis fastest) with the slices of the
    padded input it reads: along axis ``a``, ``t_a*dil_a + s_a*o_a`` for ``o_a = 0..out_a-1``."""
    for t in itertools.product(*(range(k) for k in p.kernel)):
        yield t, tuple(slice(i * d, i * d + (o - 1) * s + 1, s)
                       for i, d, s, o in zip(t, p.dilation, p.stride, p.out_sizes))


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, *spatial) -> (N, G, C/G, prod(spatial))."""
    n, c = a.shape[:2]
    return a.reshape(n, groups, c // groups, -1)


def _pad(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    """The padded input in float64 (``conformance.numerics.padding``: any padding mode, symmetric or not)."""
    return padding.pad(p, x)


def _weight_matrix(p: ConvProblem, w: np.ndarray) -> np.ndarray:
    """(C_out, Cg, *kernel) -> (G, Og, Cg*prod(kernel)): row o of group g, columns in (c, t) order like ``cols``."""
    g = p.groups
    return np.ascontiguousarray(w, dtype=np.float64).reshape(g, p.c_out // g, -1)


def _unfold(p: ConvProblem, xp: np.ndarray) -> np.ndarray:
    """cols[n, g, (c, t), o] = xp[n, g*Cg+c, t*dil + s*o], shape (N, G, K, prod(out_sizes))."""
    cols = np.empty((p.batch, p.c_in, *p.kernel, *p.out_sizes))
    for t, reads in _taps(p):
        cols[(slice(None), slice(None), *t)] = xp[(slice(None), slice(None), *reads)]
    return cols.reshape(p.batch, p.groups, -1, int(np.prod(p.out_sizes)))


def forward(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    if p.transposed:  # each function serves both operations: conformance.numerics.transposed has its own derivation
        return transposed.forward(p, x, w, b)
    # y[n, g] = W[g] @ cols[n, g]: (G, Og, K) @ (N, G, K, L) -> (N, G, Og, L), one product per (n, g)
    y = (_weight_matrix(p, w) @ _unfold(p, _pad(p, x))).reshape(p.output_shape)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape((-1,) + (1,) * p.rank)
    return y


def grad_input(p: ConvProblem, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    if p.transposed:
        return transposed.grad_input(p, dy, w)
    # dcols[n, g] = W[g]^T @ dy[n, g]: the gradient of every entry of cols, (N, G, K, L)
    dcols = _weight_matrix(p, w).swapaxes(-1, -2) @ _grouped(np.asarray(dy, dtype=np.float64), p.groups)
    dcols = dcols.reshape(p.batch, p.c_in, *p.kernel, *p.out_sizes)
    padded = tuple(n + b + e for n, b, e in zip(p.in_sizes, p.padding, p.pad_end))
    dxp = np.zeros((p.batch, p.c_in, *padded))
    for t, reads in _taps(p):
        dxp[(slice(None), slice(None), *reads)] += dcols[(slice(None), slice(None), *t)]  # back to where t read xp
    # positions that no tap reads (the stride's remainder) were never touched: they stay 0
    return np.ascontiguousarray(padding.pad_adjoint(p, dxp))


def grad_weight(p: ConvProblem, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    if p.transposed:
        return transposed.grad_weight(p, x, dy)
    # dW[g] = sum_n dy[n, g] @ cols[n, g]^T: (N, G, Og, L) @ (N, G, L, K), summed over the batch
    cols = _unfold(p, _pad(p, x))
    dyg = _grouped(np.asarray(dy, dtype=np.float64), p.groups)
    dw = (dyg @ cols.swapaxes(-1, -2)).sum(axis=0)  # (G, Og, K), K in (c, t) order
    return np.ascontiguousarray(dw.reshape(p.weight_shape))


def grad_bias(p: ConvProblem, dy: np.ndarray) -> np.ndarray:
    return np.asarray(dy, dtype=np.float64).sum(axis=(0, *range(2, 2 + p.rank)))
