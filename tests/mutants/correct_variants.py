"""Correct backends that compute differently from the reference: other summation orders, more precision,
compensated or pairwise sums, a tap-by-tap direct method, an FFT. The gate must accept every one of them
(``expected = ()``): a conformance suite that rejected them would be demanding bit-compatibility, not
correctness.
"""

from __future__ import annotations

import numpy as np
from conformance.impls.fft import FFTConv

from conformance.checks.oracle_free import dual_convolution

try:
    from ._base import Conv, NdConv, NdConvTranspose, PaddingModes, kahan_matmul
except ImportError:  # loaded by file path (the gate's --impl tests/mutants/correct_variants.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv, NdConv, NdConvTranspose, PaddingModes, kahan_matmul


class ReversedSummationOrder(Conv):
    """Every GEMM (forward, backward-data, backward-weight) sums its terms in reverse order: over taps and
    channels in the forward, over output channels and taps in dx, over output positions in dW."""

    name = "ok-reversed-summation-order"

    def _gemm(self, a, b):
        return np.matmul(np.ascontiguousarray(a[..., ::-1]), np.ascontiguousarray(b[..., ::-1, :]))


class Float64Accumulation(Conv):
    """float32 problems accumulated in float64 and rounded once at the end (more accurate than required)."""

    name = "ok-float64-accumulation"

    def _gemm(self, a, b):
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.result_type(a, b))


class KahanSummation(Conv):
    """Every GEMM as a Kahan-compensated sum over its reduction axis, in the problem's dtype. Textbook Kahan would
    turn an infinite sum into NaN (see ``precision_bugs.TextbookKahanSummation``); like production compensated
    kernels, this one drops the compensation where it is not finite."""

    name = "ok-kahan-summation"

    def _gemm(self, a, b):
        return kahan_matmul(a, b)


class PairwiseSummation(Conv):
    """Every GEMM as explicit products summed with ``np.sum`` along a contiguous axis, which numpy does by
    pairwise (cascade) summation: error growth O(log K) instead of O(K)."""

    name = "ok-pairwise-summation"

    def _gemm(self, a, b):
        bt = np.swapaxes(b, -1, -2)  # (..., L, K)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.ascontiguousarray((a[..., :, None, :] * bt[..., None, :, :]).sum(axis=-1))


class TapByTapDirect(Conv):
    """The forward as a direct "shift and accumulate": for each kernel tap (p, q) in turn, one GEMM over the
    channels adds that tap's contribution to every output. Taps are the outer sum, channels the inner one
    (im2col interleaves them)."""

    name = "ok-tap-by-tap-direct"

    def forward(self, problem, x, w, b):
        (sh, sw), (dh, dw) = problem.stride, problem.dilation
        ho, wo, g = problem.out_h, problem.out_w, problem.groups
        xp = self._padded(problem, x)
        xg = xp.reshape(problem.batch, g, problem.c_in // g, *xp.shape[2:])
        wg = np.asarray(w, dtype=problem.dtype).reshape(g, problem.c_out // g, problem.c_in // g,
                                                         problem.kh, problem.kw)
        y = np.zeros((problem.batch, g, problem.c_out // g, ho, wo), dtype=problem.dtype)
        for p in range(problem.kh):
            for q in range(problem.kw):
                patch = xg[:, :, :, p * dh:p * dh + (ho - 1) * sh + 1:sh, q * dw:q * dw + (wo - 1) * sw + 1:sw]
                y += np.einsum("goc,ngcij->ngoij", wg[..., p, q], patch)
        y = np.ascontiguousarray(y.reshape(problem.output_shape))
        return y if b is None else self._add_bias(problem, y, b)


class BiasFirstAccumulation(Conv):
    """The bias initialises the accumulator (``acc = b; acc += ...``, as the textbook loop and many GPU
    epilogues do) instead of being added after the sum: a different rounding, not a different result."""

    name = "ok-bias-first-accumulation"

    def forward(self, problem, x, w, b):
        if b is None:
            return super().forward(problem, x, w, b)
        cols = self._unfold(problem, self._padded(problem, x))
        wm = self._weight(problem, w)  # (G, Og, K): append the bias as one more term with a column of ones
        bias = np.asarray(b, dtype=problem.dtype).reshape(problem.groups, -1, 1)
        ones = np.ones(cols.shape[:2] + (1, cols.shape[-1]), dtype=problem.dtype)
        y = np.matmul(np.concatenate([bias, wm], axis=-1), np.concatenate([ones, cols], axis=-2))
        return np.ascontiguousarray(y.reshape(problem.output_shape))


class FFTNormwise(FFTConv):
    """``conformance.impls.fft.FFTConv``: the whole convolution by real FFTs, declared ``error_model="normwise"``.
    Correct, with two documented deviations (``known_failures.txt`` in this folder lists them, as
    ``conformance/data/known_failures.txt`` does for the built-in ``fft``): a NaN or Inf spreads over its whole
    tile of the output through the transform (``nonfinite``), and on data near the top of the range the spectra overflow
    where the exact result is finite (``extreme``)."""

    name = "ok-fft-normwise"
    expected: tuple[str, ...] = ()
    known_failures = "known_failures.txt"
    gate_args = ("--ranks", "2", "--ops", "conv")  # a variant of conv2d; the built-in fft is judged in every operation
    # by the main job


class ExplicitPaddingModes(PaddingModes):
    """reflect, replicate and circular padding (and asymmetric padding) by padding the input first and folding the
    gradient back, as ``torch.nn.Conv2d`` does: the same sums, another route. The control for the padding mutants
    (``backward_bugs.PaddingFoldFlushesSubnormals``): what fails there is their bug, not the route."""

    name = "ok-explicit-padding-modes"
    expected = ()


# -- other ranks (issue #16): conv1d and conv3d decomposed into conv2d, as libraries without the rank do --------
class Conv1dAsConv2d(NdConv):
    """A correct variant: conv1d done as conv2d on the (N, C, 1, L) view with the stride, padding and dilation
    given to the length axis (what torch does for conv1d)."""

    name = "ok-rank-conv1d-as-conv2d"
    expected: tuple[str, ...] = ()
    gate_args = ("--ranks", "1")

    def forward(self, p, x, w, b):
        if p.rank != 1:
            return super().forward(p, x, w, b)
        return super().forward(_as_2d(p), x[:, :, None], w[:, :, None], b)[:, :, 0]

    def backward(self, p, x, w, dy):
        if p.rank != 1:
            return super().backward(p, x, w, dy)
        g = super().backward(_as_2d(p), x[:, :, None], w[:, :, None], dy[:, :, None])
        return type(g)(dx=np.ascontiguousarray(g.dx[:, :, 0]), dw=np.ascontiguousarray(g.dw[:, :, 0]), db=g.db)


class Conv3dAsConv2dPerDepth(NdConv):
    """A correct variant: conv3d as a sum of conv2d calls, one per (output depth, depth tap) pair, each on one depth
    slice of the padded input (the decomposition of the "(2+1)D" and of libraries without a 3-D kernel)."""

    name = "ok-rank-conv3d-as-conv2d-per-depth"
    expected: tuple[str, ...] = ()
    gate_args = ("--ranks", "3")

    def _forward_batch(self, p, xp, wg):
        if p.rank != 3:
            return super()._forward_batch(p, xp, wg)
        p2 = _drop_depth(p)
        y = np.zeros((xp.shape[0], p.groups, p.c_out // p.groups, *p.out_sizes))
        for od in range(p.out_sizes[0]):
            for t in range(p.kernel[0]):
                src = od * p.stride[0] + t * p.dilation[0]
                y[:, :, :, od] += super()._forward_batch(p2, xp[:, :, :, src], wg[:, :, :, t])
        return y


def _as_2d(p):
    return p.replace(h=1, kh=1, w=p.w, kw=p.kw, stride=(1, p.stride[0]), padding=(0, p.padding[0]),
                     padding_end=None if p.padding_end is None else (0, p.padding_end[0]),
                     dilation=(1, p.dilation[0]), output_padding=(0, p.output_padding[0]))


def _drop_depth(p):
    return p.replace(d=0, kd=0, stride=p.stride[1:], padding=p.padding[1:],
                     padding_end=None if p.padding_end is None else p.padding_end[1:], dilation=p.dilation[1:],
                     output_padding=p.output_padding[1:])


# -- transposed convolution (issue #17) ------------------------------------------------------------------------------
class TransposedAsConvolutionAdjoint(NdConvTranspose):
    """A correct variant: the transposed convolution as the adjoint of the convolution of the same geometry (what
    frameworks do: conv_transpose's forward is conv's input gradient, its input gradient conv's forward, its weight
    gradient conv's weight gradient with x and dy in their places); the scatter where no such convolution exists
    (an output padding of dilation's kind)."""

    name = "ok-transposed-as-convolution-adjoint"
    expected: tuple[str, ...] = ()
    gate_args = ("--ranks", "2", "--ops", "conv_transpose")

    def forward(self, p, x, w, b):
        q = dual_convolution(p) if p.transposed else None
        if q is None:
            return super().forward(p, x, w, b)
        y = NdConv.backward(self, q, np.zeros(q.input_shape, dtype=x.dtype), w, x).dx.astype(np.float64)
        if b is not None:
            y = y + np.asarray(b, dtype=np.float64).reshape((-1,) + (1,) * p.rank)
        return np.ascontiguousarray(y, dtype=p.dtype)

    def backward(self, p, x, w, dy):
        q = dual_convolution(p) if p.transposed else None
        if q is None:
            return super().backward(p, x, w, dy)
        dx = NdConv.forward(self, q, dy, w, None)
        dw = NdConv.backward(self, q, dy, w, x).dw
        db = np.asarray(dy, dtype=np.float64).sum(axis=(0, *range(2, 2 + p.rank))).astype(p.dtype) if p.bias else None
        return type(NdConv.backward(self, q, dy, w, x))(dx=dx, dw=dw, db=db)
