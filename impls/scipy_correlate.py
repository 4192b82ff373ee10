"""``conv1d``/``conv2d``/``conv3d`` from ``scipy.signal.correlate`` / ``convolve`` on whole 1-D/2-D/3-D signals
(the spatial part of NCL/NCHW/NCDHW), stride and dilation as zeros.

``scipy.signal`` correlates N-d arrays directly, and the N-d correlation is the 1-D one along every axis at once,
so it suffices to write one axis ``a`` (the others are the same). Write ``xp`` for the zero-padded input (length
``P_a = n_a + 2*pad_a``), ``wd`` for the kernel dilated by ``dil_a`` (``dil_a - 1`` zeros between taps, length
``K_a = dil_a*(k_a - 1) + 1``) and ``dys`` for ``dy`` dilated by the stride (``s_a - 1`` zeros between
entries, length ``(out_a - 1)*s_a + 1``)::

    y[q]   = sum_t xp[q*s + t*dil] w[t]          = correlate(xp, wd, "valid")[q*s]      forward
    dxp[i] = sum_{q*s + t*dil = i} dy[q] w[t]    = convolve(dys, wd, "full")[i]         grad input
    dw[t]  = sum_q dy[q] xp[q*s + t*dil]         = correlate(xp, dys, "valid")[t*dil]   grad weight

with ``q = (q_1..q_r)`` the output position, ``t = (t_1..t_r)`` the tap and ``q*s + t*dil`` the input position
``q_a*s_a + t_a*dil_a`` along each axis (of the padded input: ``q_a*s_a - pad_a + t_a*dil_a`` of the input).
The full convolution has length ``(out_a - 1)*s_a + K_a <= P_a``; padded positions beyond it are read by no
output and keep a zero gradient, and cropping ``dxp[pad_a:pad_a + n_a]`` drops the padding. A signal pair is
correlated for every (sample, output channel, input channel of its group) and the results are summed over channels.

The transposed convolution (``problem.transposed``, weight ``(C_in, Og, *kernel)``) scatters input position ``i``
through tap ``t`` to ``i*s + t*dil - pad``. Write ``xs`` for the input dilated by the stride (the zero
insertion, length ``(n_a - 1)*s_a + 1``) and ``dyg`` for ``dy`` placed at ``[pad_a, pad_a + out_a)`` of a zero
grid (the uncropped result, ``G_a = (n_a - 1)*s_a + K_a`` long, longer where the output padding reaches past
it)::

    yg[j]  = sum_{i*s + t*dil = j} x[i] w[t]     = convolve(xs, wd, "full")[j]          forward, uncropped
    y[q]   = yg[q + pad]                                                                 the crop
    dx[i]  = sum_t dyg[i*s + t*dil] w[t]         = correlate(dyg, wd, "valid")[i*s]     grad input
    dw[t]  = sum_i x[i] dyg[i*s + t*dil]         = correlate(dyg, xs, "valid")[t*dil]   grad weight

(the convolution's three rows with the roles of ``x`` and ``dy`` exchanged: the transposed convolution is the
convolution's input gradient). The full convolution is ``(n_a - 1)*s_a + K_a`` long; output padding past it
reads zeros of the grid. The far side's padding (``pad_end``, asymmetric) enters only through ``out_a``. Input
channel ``g*Cg + c`` pairs with every output channel ``g*Og + o`` of its group.

``method="direct"`` is pinned in every call: the default ``method="auto"`` silently switches to FFT
convolution for large enough signals, whose rounding error is normwise rather than per element; this backend
declares the componentwise (direct summation) error model, so it must never take that path.
"""

from __future__ import annotations

import numpy as np
from conformance.impls import explicit_padding

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem


def _dilate(a: np.ndarray, step: tuple[int, ...]) -> np.ndarray:
    """``a`` with ``step_a - 1`` zeros inserted between neighbouring entries along each of its last ``len(step)``
    axes."""
    r = len(step)
    lead, sizes = a.shape[:-r], a.shape[-r:]
    out = np.zeros((*lead, *((n - 1) * s + 1 for n, s in zip(sizes, step))), dtype=a.dtype)
    out[(slice(None),) * len(lead) + tuple(slice(None, None, s) for s in step)] = a
    return out


def _grid(problem: ConvProblem) -> tuple[int, ...]:
    """Transposed: per axis the uncropped result, ``(n_a - 1)*s_a + K_a``, or ``pad_a + out_a`` where the output
    padding reaches past it."""
    return tuple(max((n - 1) * s + d * (k - 1) + 1, p + m) for n, s, d, k, p, m in
                 zip(problem.in_sizes, problem.stride, problem.dilation, problem.kernel, problem.padding,
                     problem.out_sizes))


def _window(problem: ConvProblem) -> tuple[slice, ...]:
    """Transposed: the output's place in the grid, ``[pad_a, pad_a + out_a)`` per spatial axis."""
    return tuple(slice(p, p + m) for p, m in zip(problem.padding, problem.out_sizes))


def _pad(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
    """``x`` with ``pad_a`` zeros on both sides of each spatial axis (symmetric zero padding only)."""
    return np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), *((p, p) for p in problem.padding)))


class ScipyCorrelate:
    """One ``scipy.signal`` direct correlation per pair of 1-D/2-D/3-D signals."""

    name = "scipy"
    capabilities = Capabilities(dtypes=("float32", "float64"), max_macs=2_000_000,
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                ranks=(1, 2, 3), transposed=True,
                                notes="scipy.signal.correlate per signal, method='direct'; float16/bfloat16: "
                                      "scipy.signal computes them through other precisions")

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if problem.transposed:
            return self._transposed_forward(problem, x, w, b)
        if explicit_padding.needed(problem):  # reflect/replicate/circular or asymmetric: pad first, as torch does
            return self.forward(explicit_padding.unpadded_problem(problem),
                                explicit_padding.pad_input(problem, x), w, b)
        from scipy import signal  # here, not at the top: importing it takes ~0.4 s that a process which only
        # registers this backend (the suite's parent; its worker imports it on the first call) need not pay
        xp = _pad(problem, x)
        wd = _dilate(np.asarray(w, dtype=problem.dtype), problem.dilation)
        strided = tuple(slice(None, None, s) for s in problem.stride)
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        y = np.zeros(problem.output_shape, dtype=problem.dtype)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg  # first input channel of o's group
                for c in range(cg):
                    # The "valid" correlation is the stride-1 output; every s_a-th entry of it along each axis is
                    # the strided one, and there are exactly out_a of them: ceil((P_a - K_a + 1) / s_a)
                    # = (P_a - K_a) // s_a + 1.
                    full = signal.correlate(xp[n, first + c], wd[o, c], mode="valid", method="direct")
                    y[n, o] += full[strided]
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype).reshape((-1,) + (1,) * problem.rank)
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if problem.transposed:
            return self._transposed_backward(problem, x, w, dy)
        if explicit_padding.needed(problem):  # the padded input's gradient folds back onto the input
            dxp, dw, db = self.backward(explicit_padding.unpadded_problem(problem),
                                        explicit_padding.pad_input(problem, x), w, dy)
            return Grads(dx=explicit_padding.fold(problem, dxp), dw=dw, db=db)
        from scipy import signal
        xp = _pad(problem, x)
        wd = _dilate(np.asarray(w, dtype=problem.dtype), problem.dilation)
        dys = _dilate(np.asarray(dy, dtype=problem.dtype), problem.stride)
        spans = wd.shape[2:]  # K_a, the dilated kernel's extent
        # the full convolution's extent, (out_a - 1)*s_a + K_a along each axis
        full = tuple(slice(0, m + k - 1) for m, k in zip(dys.shape[2:], spans))
        taps = tuple(slice(0, k, d) for k, d in zip(spans, problem.dilation))  # lag t_a*dil_a of each tap
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        dxp = np.zeros(xp.shape, dtype=problem.dtype)
        dw = np.zeros(problem.weight_shape, dtype=problem.dtype)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg
                for c in range(cg):
                    # dx: scatter dy back through the kernel = full convolution with the dilated kernel.
                    dxp[n, first + c][full] += signal.convolve(dys[n, o], wd[o, c], mode="full", method="direct")
                    # dw: the correlation of xp with dys at lag l is sum_q dy[q] xp[q*s + l]; the kernel
                    # tap t sits at lag t*dil, so only every dil_a-th lag along each axis is a weight gradient.
                    lags = signal.correlate(xp[n, first + c], dys[n, o], mode="valid", method="direct")
                    dw[o, c] += lags[taps]
        crop = tuple(slice(p, p + m) for p, m in zip(problem.padding, problem.in_sizes))
        dx = np.ascontiguousarray(dxp[(slice(None), slice(None), *crop)])
        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + problem.rank))) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)

    def _transposed_forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray,
                            b: np.ndarray | None) -> np.ndarray:
        from scipy import signal
        xs = _dilate(np.asarray(x, dtype=problem.dtype), problem.stride)  # the zero insertion
        wd = _dilate(np.asarray(w, dtype=problem.dtype), problem.dilation)
        # the full convolution's extent, (n_a - 1)*s_a + K_a along each axis; the grid may be longer
        full = tuple(slice(0, m + k - 1) for m, k in zip(xs.shape[2:], wd.shape[2:]))
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        yg = np.zeros((problem.batch, problem.c_out, *_grid(problem)), dtype=problem.dtype)
        for n in range(problem.batch):
            for ci in range(problem.c_in):
                first = (ci // cg) * og  # first output channel of ci's group
                for o in range(og):
                    yg[n, first + o][full] += signal.convolve(xs[n, ci], wd[ci, o], mode="full", method="direct")
        y = np.ascontiguousarray(yg[(slice(None), slice(None), *_window(problem))])  # crop the padding
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype).reshape((-1,) + (1,) * problem.rank)
        return y

    def _transposed_backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        from scipy import signal
        xs = _dilate(np.asarray(x, dtype=problem.dtype), problem.stride)
        wd = _dilate(np.asarray(w, dtype=problem.dtype), problem.dilation)
        dyg = np.zeros((problem.batch, problem.c_out, *_grid(problem)), dtype=problem.dtype)
        dyg[(slice(None), slice(None), *_window(problem))] = dy  # the cropped positions' gradient is zero
        # dx: the valid correlation at i*s, i < n_a; dw: the lags t*dil, t < k_a
        strided = tuple(slice(0, (m - 1) * s + 1, s) for m, s in zip(problem.in_sizes, problem.stride))
        taps = tuple(slice(0, k, d) for k, d in zip(wd.shape[2:], problem.dilation))
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        dx = np.zeros(problem.input_shape, dtype=problem.dtype)
        dw = np.zeros(problem.weight_shape, dtype=problem.dtype)
        for n in range(problem.batch):
            for ci in range(problem.c_in):
                first = (ci // cg) * og
                for o in range(og):
                    # dx: gather dy through the kernel = the convolution's forward, with dyg as its padded input
                    dx[n, ci] += signal.correlate(dyg[n, first + o], wd[ci, o], mode="valid",
                                                  method="direct")[strided]
                    # dw: the correlation of dyg with the zero-inserted input, at the tap lags
                    dw[ci, o] += signal.correlate(dyg[n, first + o], xs[n, ci], mode="valid",
                                                  method="direct")[taps]
        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, *range(2, 2 + problem.rank))) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)
