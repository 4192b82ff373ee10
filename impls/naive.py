"""The textbook definition of ``conv1d``/``conv2d``/``conv3d`` and its three gradients, as nested Python loops.

This backend is the readable oracle: every output is one explicit sum, and every gradient is the adjoint of
that sum written beside it. The layouts are NCL (1-D), NCHW (2-D) and NCDHW (3-D): ``r`` = 1, 2 or 3 spatial
axes, outermost first. With ``s_a`` the stride, ``pad_a`` the (leading) padding and ``dil_a`` the dilation along
axis ``a``, ``G`` the groups, ``Cg = C_in / G`` and ``Og = C_out / G``, output channel ``o`` belongs to group
``g = o // Og`` and reads input channels ``g*Cg .. g*Cg + Cg - 1``. An output position is ``q = (q_1, .., q_r)``,
a tap ``t = (t_1, .., t_r)`` with ``t_a < k_a``, and::

    y[n, o, q] = b[o] + sum_{c < Cg} sum_{t} x[n, g*Cg + c, i] * w[o, c, t]
    i_a = q_a*s_a - pad_a + t_a*dil_a          (along every axis a = 1..r)

In 2-D that is ``ih = i*sh - ph + p*dh, iw = j*sw - pw + q*dw``. The taps are summed in C order (the innermost
axis fastest), channel by channel. A tap with some ``i_a`` outside the input reads the padding: for zero padding
it is still multiplied, as a 0.0, rather than skipped: ``0 * inf`` and ``0 * nan`` are NaN in IEEE arithmetic,
and torch (which multiplies the padding) propagates them so; skipping the padding would silently turn those NaNs
into numbers. reflect, replicate and circular padding read the input element they copy (``_source``).
Sums are accumulated in Python floats (IEEE double), so a
float32 problem is computed more accurately than its dtype and rounded once at the end.

The transposed convolution (``conv_transpose1d/2d/3d``, ``problem.transposed``) is the same sum read the other
way round: every input element scatters through every tap of its group's output channels. The weight is
``(C_in, Og, *kernel)``, input channel ``g*Cg + c`` belongs to group ``g`` and writes output channels
``g*Og .. g*Og + Og - 1``, the padding crops the near side of the result and the output padding extends its far
side::

    y[n, g*Og + o, q] += x[n, g*Cg + c, i] * w[g*Cg + c, o, t]      (only where q lies inside the output)
    q_a = i_a*s_a - pad_a + t_a*dil_a          (along every axis a = 1..r)

so the same index relation links input, tap and output position; only which side the sum runs over changes. A
contribution that lands outside the output (cropped by the padding) is dropped. Its gradients gather where the
forward scattered: ``dx[n, g*Cg + c, i] = sum_{o, t} dy[n, g*Og + o, q] * w[g*Cg + c, o, t]`` and
``dw[g*Cg + c, o, t] = sum_{n, i} x[n, g*Cg + c, i] * dy[n, g*Og + o, q]``, where a ``q`` outside the output
reads a zero (the gradient of a cropped element), multiplied as the convolution's padding is. Sums accumulate in
Python floats, rounded once, as the convolution's.

To index a position of any rank with one integer, the loops work on the arrays flattened over their spatial axes
(C order): ``x`` as (N, C_in, prod(in_sizes)), ``w`` as (C_out, Cg, prod(kernel)) (transposed: (C_in, Og,
prod(kernel))), ``y`` as (N, C_out, prod(out_sizes)).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem

#: one tap of one output position: (flat tap index into w, flat input index into x, whether it reads the input)
Tap = tuple[int, int, bool]


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


def _flat(index: Sequence[int], sizes: Sequence[int]) -> int:
    """The C-order position of ``index`` in an array of shape ``sizes``."""
    flat = 0
    for i, n in zip(index, sizes):
        flat = flat * n + i
    return flat


def _taps(problem: ConvProblem) -> list[list[Tap]]:
    """For every output position ``q`` (in C order), its taps ``t`` (in C order) with the input position ``i`` each
    reads (``i_a = q_a*s_a - pad_a + t_a*dil_a``, through ``_source``) and whether it reads one at all (False: a
    zero of the padding; its input index is then a placeholder, never read)."""
    mode = problem.padding_mode
    taps = []
    for q in itertools.product(*(range(n) for n in problem.out_sizes)):
        out = []
        for t in itertools.product(*(range(k) for k in problem.kernel)):
            # the far sides' padding only matters through the output size
            i = [_source(q_a * s - pad + t_a * dil, n, mode) for q_a, t_a, s, pad, dil, n
                 in zip(q, t, problem.stride, problem.padding, problem.dilation, problem.in_sizes)]
            inside = None not in i
            out.append((_flat(t, problem.kernel), _flat([i_a or 0 for i_a in i], problem.in_sizes), inside))
        taps.append(out)
    return taps


def _scatter_taps(problem: ConvProblem) -> list[list[Tap]]:
    """Transposed: for every input position ``i`` (in C order), its taps ``t`` (in C order) with the output position
    ``q`` each writes (``q_a = i_a*s_a - pad_a + t_a*dil_a``) and whether ``q`` lies inside the output (False:
    cropped by the padding, or past the output; its output index is then a placeholder, never used). The far side's
    padding and the output padding enter through the output size."""
    taps = []
    for i in itertools.product(*(range(n) for n in problem.in_sizes)):
        out = []
        for t in itertools.product(*(range(k) for k in problem.kernel)):
            q = [i_a * s - pad + t_a * dil for i_a, t_a, s, pad, dil
                 in zip(i, t, problem.stride, problem.padding, problem.dilation)]
            inside = all(0 <= q_a < m for q_a, m in zip(q, problem.out_sizes))
            out.append((_flat(t, problem.kernel), _flat(q, problem.out_sizes) if inside else 0, inside))
        taps.append(out)
    return taps


def _spatial_flat(a: np.ndarray) -> list[list[list[float]]]:
    """(A, B, *spatial) -> nested lists [A][B][prod(spatial)] of Python floats (exact copies of the entries)."""
    return a.reshape(a.shape[0], a.shape[1], -1).tolist()


class NaiveLoops:
    """``conv1d``/``conv2d``/``conv3d`` as the definition reads: one Python loop per index (the spatial ones through
    ``itertools.product``)."""

    name = "naive"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"), max_macs=50_000,
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                ranks=(1, 2, 3), transposed=True, notes="pure Python loops; only small problems")

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if problem.transposed:
            return self._transposed_forward(problem, x, w, b)
        xs, ws = _spatial_flat(x), _spatial_flat(w)
        bs = b.tolist() if b is not None else [0.0] * problem.c_out
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        taps = _taps(problem)
        y = np.zeros((problem.batch, problem.c_out, len(taps)), dtype=np.float64)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg  # first input channel of o's group
                for q, q_taps in enumerate(taps):
                    acc = float(bs[o])
                    for c in range(cg):
                        xc, wc = xs[n][first + c], ws[o][c]
                        for t, i, inside in q_taps:
                            acc += (xc[i] if inside else 0.0) * wc[t]
                    y[n, o, q] = acc
        return np.ascontiguousarray(y.reshape(problem.output_shape), dtype=problem.np_dtype)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        # L = sum(y * dy). Each multiply-add of the forward, y[n,o,q] += x[n,first+c,i] * w[o,c,t], contributes
        # dy[n,o,q] * w[o,c,t] to dL/dx[n,first+c,i] and dy[n,o,q] * x[n,first+c,i] to dL/dw[o,c,t]; so the
        # backward is the forward's loop nest with the two adjoint updates in its body.
        # Input positions that no output reads (padding-only taps, positions skipped by a stride that does not
        # divide evenly) are never visited and keep their zero gradient.
        if problem.transposed:
            return self._transposed_backward(problem, x, w, dy)
        xs, ws, dys = _spatial_flat(x), _spatial_flat(w), _spatial_flat(dy)
        dx = _spatial_flat(np.zeros(problem.input_shape))  # nested lists of 0.0: Python-float accumulators
        dw = _spatial_flat(np.zeros(problem.weight_shape))
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        taps = _taps(problem)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg
                for q, q_taps in enumerate(taps):
                    g = dys[n][o][q]
                    for c in range(cg):
                        xc, wc, dxc, dwc = xs[n][first + c], ws[o][c], dx[n][first + c], dw[o][c]
                        for t, i, inside in q_taps:
                            if inside:  # a zero of the padding has no input to send its gradient to;
                                # a reflected/replicated/wrapped tap sends it to the input it copied
                                dxc[i] += g * wc[t]
                            dwc[t] += g * (xc[i] if inside else 0.0)
        # The bias is added once to every output of its channel: db[o] = sum over n and q of dy[n, o, q].
        db = None
        if problem.bias:
            db = [sum(dys[n][o][q] for n in range(problem.batch) for q in range(len(taps)))
                  for o in range(problem.c_out)]
        return Grads(dx=np.array(dx, dtype=problem.np_dtype).reshape(problem.input_shape),
                     dw=np.array(dw, dtype=problem.np_dtype).reshape(problem.weight_shape),
                     db=None if db is None else np.array(db, dtype=problem.np_dtype))

    def _transposed_forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray,
                            b: np.ndarray | None) -> np.ndarray:
        # The scatter: every input element, through every tap, into every output channel of its group.
        xs, ws = _spatial_flat(x), _spatial_flat(w)
        bs = b.tolist() if b is not None else [0.0] * problem.c_out
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        taps = _scatter_taps(problem)
        size = math.prod(problem.out_sizes)
        # Python-float accumulators, each starting at its channel's bias; rounded once at the end
        y = [[[float(bs[o])] * size for o in range(problem.c_out)] for _ in range(problem.batch)]
        for n in range(problem.batch):
            for ci in range(problem.c_in):
                first = (ci // cg) * og  # first output channel of ci's group
                xc = xs[n][ci]
                for i, i_taps in enumerate(taps):
                    v = xc[i]
                    for o in range(og):
                        yo, wo = y[n][first + o], ws[ci][o]
                        for t, q, inside in i_taps:
                            if inside:  # a contribution cropped by the padding lands nowhere
                                yo[q] += v * wo[t]
        return np.array(y, dtype=problem.np_dtype).reshape(problem.output_shape)

    def _transposed_backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        # The forward's loop nest again: its multiply-add y[n, first+o, q] += x[n, ci, i] * w[ci, o, t] contributes
        # dy[n, first+o, q] * w[ci, o, t] to dL/dx[n, ci, i] (the gather: dx sums over o and t) and
        # dy[n, first+o, q] * x[n, ci, i] to dL/dw[ci, o, t]. A cropped q (outside the output) has the gradient 0.0,
        # still multiplied (0 * inf is NaN, as in the padding of the convolution's backward).
        xs, ws, dys = _spatial_flat(x), _spatial_flat(w), _spatial_flat(dy)
        dx = _spatial_flat(np.zeros(problem.input_shape))
        dw = _spatial_flat(np.zeros(problem.weight_shape))
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        taps = _scatter_taps(problem)
        for n in range(problem.batch):
            for ci in range(problem.c_in):
                first = (ci // cg) * og
                xc, dxc = xs[n][ci], dx[n][ci]
                for i, i_taps in enumerate(taps):
                    v, acc = xc[i], dxc[i]
                    for o in range(og):
                        dyo, wo, dwo = dys[n][first + o], ws[ci][o], dw[ci][o]
                        for t, q, inside in i_taps:
                            g = dyo[q] if inside else 0.0
                            acc += g * wo[t]
                            dwo[t] += g * v
                    dxc[i] = acc
        db = None
        if problem.bias:
            size = len(dys[0][0])
            db = [sum(dys[n][o][q] for n in range(problem.batch) for q in range(size)) for o in range(problem.c_out)]
        return Grads(dx=np.array(dx, dtype=problem.np_dtype).reshape(problem.input_shape),
                     dw=np.array(dw, dtype=problem.np_dtype).reshape(problem.weight_shape),
                     db=None if db is None else np.array(db, dtype=problem.np_dtype))
