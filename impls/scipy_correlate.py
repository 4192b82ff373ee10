"""``conv2d`` from ``scipy.signal.correlate`` / ``convolve`` on 2-D planes, stride and dilation as zeros.

Along one axis (the other is the same) write ``xp`` for the zero-padded input (length ``Hp = H + 2*ph``),
``wd`` for the kernel dilated by ``dh`` (``dh - 1`` zeros between taps, length ``K = dh*(kh - 1) + 1``) and
``dys`` for ``dy`` dilated by the stride (``sh - 1`` zeros between rows, length ``(Ho - 1)*sh + 1``)::

    y[i]  = sum_p xp[i*sh + p*dh] w[p]        = correlate(xp, wd, "valid")[i*sh]     forward
    dxp[a] = sum_{i*sh + p*dh = a} dy[i] w[p]  = convolve(dys, wd, "full")[a]        grad input
    dw[p] = sum_i dy[i] xp[i*sh + p*dh]        = correlate(xp, dys, "valid")[p*dh]   grad weight

The full convolution has length ``(Ho - 1)*sh + K <= Hp``; padded rows beyond it are read by no output and
keep a zero gradient, and cropping ``dxp[ph:ph + H]`` drops the padding. A plane pair is correlated for
every (sample, output channel, input channel of its group) and the planes are summed over channels.

``method="direct"`` is pinned in every call: the default ``method="auto"`` silently switches to FFT
convolution for large enough planes, whose rounding error is normwise rather than per element; this backend
declares the componentwise (direct summation) error model, so it must never take that path.
"""

from __future__ import annotations

import numpy as np
from conformance.impls import explicit_padding

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem


def _dilate(a: np.ndarray, step: tuple[int, int]) -> np.ndarray:
    """``a`` (last two axes) with ``step - 1`` zeros inserted between neighbouring entries."""
    rows, cols = a.shape[-2], a.shape[-1]
    out = np.zeros((*a.shape[:-2], (rows - 1) * step[0] + 1, (cols - 1) * step[1] + 1), dtype=a.dtype)
    out[..., ::step[0], ::step[1]] = a
    return out


def _pad(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
    (ph, pw) = problem.padding
    return np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), (ph, ph), (pw, pw)))


class ScipyCorrelate:
    """One ``scipy.signal`` direct correlation per 2-D plane pair."""

    name = "scipy"
    capabilities = Capabilities(dtypes=("float32", "float64"), max_macs=2_000_000,
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                notes="scipy.signal.correlate per plane, method='direct'; float16/bfloat16: "
                                      "scipy.signal computes them through other precisions")

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if explicit_padding.needed(problem):  # reflect/replicate/circular or asymmetric: pad first, as torch does
            return self.forward(explicit_padding.unpadded_problem(problem),
                                explicit_padding.pad_input(problem, x), w, b)
        from scipy import signal  # here, not at the top: importing it takes ~0.4 s that a process which only
        # registers this backend (the suite's parent; its worker imports it on the first call) need not pay
        xp = _pad(problem, x)
        wd = _dilate(np.asarray(w, dtype=problem.dtype), problem.dilation)
        (sh, sw) = problem.stride
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        y = np.zeros(problem.output_shape, dtype=problem.dtype)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg  # first input channel of o's group
                for c in range(cg):
                    # The "valid" correlation is the stride-1 output; every sh-th row of it is the strided
                    # one, and there are exactly Ho of them: ceil((Hp - K + 1) / sh) = (Hp - K) // sh + 1.
                    full = signal.correlate(xp[n, first + c], wd[o, c], mode="valid", method="direct")
                    y[n, o] += full[::sh, ::sw]
        if b is not None:
            y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
        return y

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if explicit_padding.needed(problem):  # the padded input's gradient folds back onto the input
            dxp, dw, db = self.backward(explicit_padding.unpadded_problem(problem),
                                        explicit_padding.pad_input(problem, x), w, dy)
            return Grads(dx=explicit_padding.fold(problem, dxp), dw=dw, db=db)
        from scipy import signal
        xp = _pad(problem, x)
        wd = _dilate(np.asarray(w, dtype=problem.dtype), problem.dilation)
        dys = _dilate(np.asarray(dy, dtype=problem.dtype), problem.stride)
        (ph, pw), (dil_h, dil_w) = problem.padding, problem.dilation
        kh_span, kw_span = wd.shape[-2:]
        rows, cols = dys.shape[-2] + kh_span - 1, dys.shape[-1] + kw_span - 1  # full convolution extent
        cg, og = problem.c_in // problem.groups, problem.c_out // problem.groups
        dxp = np.zeros(xp.shape, dtype=problem.dtype)
        dw = np.zeros(problem.weight_shape, dtype=problem.dtype)
        for n in range(problem.batch):
            for o in range(problem.c_out):
                first = (o // og) * cg
                for c in range(cg):
                    # dx: scatter dy back through the kernel = full convolution with the dilated kernel.
                    dxp[n, first + c, :rows, :cols] += signal.convolve(dys[n, o], wd[o, c], mode="full",
                                                                       method="direct")
                    # dw: the correlation of xp with dys at lag a is sum_i dy[i] xp[i*sh + a]; the kernel
                    # tap p sits at lag p*dh, so only every dh-th lag is a weight gradient.
                    lags = signal.correlate(xp[n, first + c], dys[n, o], mode="valid", method="direct")
                    dw[o, c] += lags[:kh_span:dil_h, :kw_span:dil_w]
        dx = np.ascontiguousarray(dxp[:, :, ph:ph + problem.h, pw:pw + problem.w])
        db = np.asarray(dy, dtype=problem.dtype).sum(axis=(0, 2, 3)) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)
