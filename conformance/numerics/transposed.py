"""The oracle of transposed convolution (``conv_transpose1d/2d/3d``), in float64, from the scatter definition.

Written independently of ``impls/``. Input element ``x[n, g*Cg+c, i]`` (``i`` a position of the input, one index per
spatial axis) scatters through tap ``t`` of the kernel to output position ``i*s + t*d - p`` (``p`` the near-side
padding, which crops the full result; ``s`` the stride, ``d`` the dilation), weight ``(C_in, C_out/G, *kernel)``::

    y[n, g*Og+o, i*s + t*d - p] += x[n, g*Cg+c, i] * w[g*Cg+c, o, t]           (where that position is in [0, out))
    dx[n, g*Cg+c, i]  = sum_{o, t} dy[n, g*Og+o, i*s + t*d - p] * w[g*Cg+c, o, t]
    dw[g*Cg+c, o, t]  = sum_{n, i} x[n, g*Cg+c, i] * dy[n, g*Og+o, i*s + t*d - p]
    db[o]             = sum_{n, out} dy[n, o, out]

Computed on the uncropped grid of ``(in - 1)*s + d*(k - 1) + 1`` positions per axis (longer where the output
padding reaches past it): one matrix product per (sample, group) gives every (output channel, tap) contribution at
once, ``cols[n, g, (o, t), i] = sum_c w[g*Cg+c, o, t] * x[n, g*Cg+c, i]``, and one loop over the taps adds each tap's
contributions at its strided positions; the output is the window ``[p, p + out)`` of that grid. The gradients gather
from the same grid: ``dcols[n, g, (o, t), i] = dy_grid[n, g*Og+o, i*s + t*d]``, then ``dx = W @ dcols`` and
``dw = sum_n x @ dcols^T``. Every function is bilinear in its two operands, as the convolution's
(``conformance.numerics.tolerance`` relies on it). Validated in ``tests/test_transposed.py`` against exact integer
arithmetic and torch float64.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from conformance.model.problem import ConvProblem


def grid(p: ConvProblem) -> tuple[int, ...]:
    """Per axis the uncropped scatter grid: every position an input element reaches, and the output window
    ``[padding, padding + out)`` (which the output padding may take past the last reached position)."""
    return tuple(max((n - 1) * s + d * (k - 1) + 1, b + o) for n, s, d, k, b, o in
                 zip(p.in_sizes, p.stride, p.dilation, p.kernel, p.padding, p.out_sizes))


def _taps(p: ConvProblem):  # type: ignore[no-untyped-def]
    """Every tap ``t`` (C order) with the slices of the grid its contributions land on: ``i*s + t*d``."""
    for t in itertools.product(*(range(k) for k in p.kernel)):
        yield t, tuple(slice(i * d, i * d + (n - 1) * s + 1, s)
                       for i, d, s, n in zip(t, p.dilation, p.stride, p.in_sizes))


def _window(p: ConvProblem) -> tuple[slice, ...]:
    return (slice(None), slice(None), *(slice(b, b + o) for b, o in zip(p.padding, p.out_sizes)))


def _weight(p: ConvProblem, w: np.ndarray) -> np.ndarray:
    """(C_in, Og, *kernel) -> (G, Cg, Og*K): row c of group g, columns in (o, t) order."""
    return np.ascontiguousarray(w, dtype=np.float64).reshape(p.groups, p.c_in // p.groups, -1)


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    n, c = a.shape[:2]
    return a.reshape(n, groups, c // groups, -1)


def _dcols(p: ConvProblem, dy: np.ndarray) -> np.ndarray:
    """dcols[n, g, (o, t), i] = dy on the grid at i*s + t*d, shape (N, G, Og*K, prod(in_sizes))."""
    full = np.zeros((p.batch, p.c_out, *grid(p)))
    full[_window(p)] = np.asarray(dy, dtype=np.float64)
    cols = np.empty((p.batch, p.c_out, *p.kernel, *p.in_sizes))
    for t, lands in _taps(p):
        cols[(slice(None), slice(None), *t)] = full[(slice(None), slice(None), *lands)]
    return cols.reshape(p.batch, p.groups, -1, math.prod(p.in_sizes))


def forward(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    # cols[n, g] = W[g]^T @ x[n, g]: (G, Og*K, Cg) @ (N, G, Cg, L_in) -> every (o, t) contribution of every input
    cols = _weight(p, w).swapaxes(-1, -2) @ _grouped(np.asarray(x, dtype=np.float64), p.groups)
    cols = cols.reshape(p.batch, p.c_out, *p.kernel, *p.in_sizes)
    full = np.zeros((p.batch, p.c_out, *grid(p)))
    for t, lands in _taps(p):
        full[(slice(None), slice(None), *lands)] += cols[(slice(None), slice(None), *t)]
    y = np.ascontiguousarray(full[_window(p)])
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape((-1,) + (1,) * p.rank)
    return y


def grad_input(p: ConvProblem, dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    # dx[n, g] = W[g] @ dcols[n, g]: (G, Cg, Og*K) @ (N, G, Og*K, L_in)
    return np.ascontiguousarray((_weight(p, w) @ _dcols(p, dy)).reshape(p.input_shape))


def grad_weight(p: ConvProblem, x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    # dW[g] = sum_n x[n, g] @ dcols[n, g]^T: (N, G, Cg, L_in) @ (N, G, L_in, Og*K), summed over the batch
    xg = _grouped(np.asarray(x, dtype=np.float64), p.groups)
    return np.ascontiguousarray((xg @ _dcols(p, dy).swapaxes(-1, -2)).sum(axis=0).reshape(p.weight_shape))


def grad_bias(p: ConvProblem, dy: np.ndarray) -> np.ndarray:
    return np.asarray(dy, dtype=np.float64).sum(axis=(0, *range(2, 2 + p.rank)))
