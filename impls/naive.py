"""The textbook definition of ``conv2d`` and its three gradients, as nested Python loops.

This backend is the readable oracle: every output is one explicit sum, and every gradient is the adjoint of
that sum written beside it. With ``sh, sw`` the stride, ``ph, pw`` the padding, ``dh, dw`` the dilation,
``G`` the groups, ``Cg = C_in / G`` and ``Og = C_out / G``, output channel ``o`` belongs to group
``g = o // Og`` and reads input channels ``g*Cg .. g*Cg + Cg - 1``::

    y[n, o, i, j] = b[o] + sum_{c < Cg, p < kh, q < kw} x[n, g*Cg + c, ih, iw] * w[o, c, p, q]
    ih = i*sh - ph + p*dh,   iw = j*sw - pw + q*dw

A tap with ``ih`` or ``iw`` outside the input reads the zero padding. It is still multiplied, as a 0.0, rather
than skipped: ``0 * inf`` and ``0 * nan`` are NaN in IEEE arithmetic, and torch (which multiplies the padding)
propagates them so; skipping the padding would silently turn those NaNs into numbers.
Sums are accumulated in Python floats (IEEE double), so a
float32 problem is computed more accurately than its dtype and rounded once at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem


def _source(k: int, n: int, mode: str) -> int | None:
    """The input index a padded coordinate ``k`` (``k < 0`` or ``k >= n``: in the border) reads, or None for a
    zero. reflect mirrors about the first and last element without repeating them (``-1 -> 1``); replicate repeats
    the edge; circular wraps around."""
    if 0 <= k < n:
        return k
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if k < 0 else n - 1
    if mode == "circular":
        return k % n
    k = -k if k < 0 else 2 * (n - 1) - k  # reflect; the problem guarantees the padding is smaller than n
    return k


def _taps(problem: ConvProblem, i: int, j: int) -> Iterator[tuple[int, int, int, int, bool]]:
    """Every tap ``(p, q)`` of output ``(i, j)`` with the input position ``(ih, iw)`` it reads and whether it
    reads one at all (False: a zero of the padding)."""
    (sh, sw), (dh, dw), mode = problem.stride, problem.dilation, problem.padding_mode
    top, left = problem.padding  # the far sides only matter through the output size
    for p in range(problem.kh):
        ih = _source(i * sh - top + p * dh, problem.h, mode)
        for q in range(problem.kw):
            iw = _source(j * sw - left + q * dw, problem.w, mode)
            inside = ih is not None and iw is not None
            yield p, q, ih or 0, iw or 0, inside


class NaiveLoops:
    """``conv2d`` as the definition reads: one Python loop per index."""

    name = "naive"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"), max_macs=50_000,
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                notes="pure Python loops; only small problems")

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        xs, ws = x.tolist(), w.tolist()  # nested lists of Python floats: exact copies of the inputs
        bs = b.tolist() if b is not None else [0.0] * problem.c_out
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        y = np.zeros(problem.output_shape, dtype=np.float64)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg  # first input channel of o's group
                for i in range(problem.out_h):
                    for j in range(problem.out_w):
                        acc = float(bs[o])
                        for c in range(cg):
                            for p, q, ih, iw, inside in _taps(problem, i, j):
                                acc += (xs[n][first + c][ih][iw] if inside else 0.0) * ws[o][c][p][q]
                        y[n, o, i, j] = acc
        return np.ascontiguousarray(y, dtype=problem.np_dtype)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        # L = sum(y * dy). Each multiply-add of the forward, y[n,o,i,j] += x[n,first+c,ih,iw] * w[o,c,p,q],
        # contributes dy[n,o,i,j] * w[o,c,p,q] to dL/dx[n,first+c,ih,iw] and dy[n,o,i,j] * x[...] to
        # dL/dw[o,c,p,q]; so the backward is the forward's loop nest with the two adjoint updates in its body.
        # Input positions that no output reads (padding-only taps, rows skipped by a stride that does not
        # divide evenly) are never visited and keep their zero gradient.
        xs, ws, dys = x.tolist(), w.tolist(), dy.tolist()
        dx = np.zeros(problem.input_shape).tolist()  # nested lists of 0.0: Python-float accumulators
        dw = np.zeros(problem.weight_shape).tolist()
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg
                for i in range(problem.out_h):
                    for j in range(problem.out_w):
                        g = dys[n][o][i][j]
                        for c in range(cg):
                            for p, q, ih, iw, inside in _taps(problem, i, j):
                                if inside:  # a zero of the padding has no input to send its gradient to;
                                    # a reflected/replicated/wrapped tap sends it to the input it copied
                                    dx[n][first + c][ih][iw] += g * ws[o][c][p][q]
                                dw[o][c][p][q] += g * (xs[n][first + c][ih][iw] if inside else 0.0)
        # The bias is added once to every output of its channel: db[o] = sum over n, i, j of dy[n, o, i, j].
        db = None
        if problem.bias:
            db = [sum(dys[n][o][i][j] for n in range(problem.batch)
                      for i in range(problem.out_h) for j in range(problem.out_w))
                  for o in range(problem.c_out)]
        return Grads(dx=np.array(dx, dtype=problem.np_dtype),
                     dw=np.array(dw, dtype=problem.np_dtype),
                     db=None if db is None else np.array(db, dtype=problem.np_dtype))
