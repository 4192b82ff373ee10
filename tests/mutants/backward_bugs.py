"""Mutants whose backward pass is wrong (the forward is right): col2im, the weight and bias gradients.

Each class is ``tests.mutants._base.Conv`` (a correct im2col) with one realistic bug; ``expected`` names the
gate checks that must reject it.
"""

from __future__ import annotations

import numpy as np

try:
    from ._base import Conv, PaddingModes, flip, flush_subnormals
except ImportError:  # loaded by file path (the gate's --impl tests/mutants/backward_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv, PaddingModes, flip, flush_subnormals


class BackwardDataIgnoresStride(Conv):
    """col2im scatters the column gradients with stride 1: the stride was handled in the forward unfold and
    forgotten in its adjoint. Invisible when the stride is 1."""

    name = "mut-backward-data-ignores-stride"
    expected = ("grad_input",)

    def _grad_input(self, problem, xp, wm, dym):
        dxp = self._col2im(problem, self._dcols(problem, wm, dym), self._new_dxp(problem, xp), stride=(1, 1))
        return self._crop(problem, dxp)


class RemainderRowsKeepInput(Conv):
    """dx is accumulated in the padded-input buffer to save memory, and only the rows and columns the outputs
    touch are cleared first. When the stride does not divide evenly, the trailing rows that no output reads are
    never cleared, so dx there holds x's values instead of 0 (uninitialised memory, deterministically)."""

    name = "mut-remainder-rows-keep-input"
    expected = ("grad_input",)

    def _new_dxp(self, problem, xp):
        (sh, sw), (dh, dw) = problem.stride, problem.dilation
        rows = (problem.out_h - 1) * sh + (problem.kh - 1) * dh + 1
        cols = (problem.out_w - 1) * sw + (problem.kw - 1) * dw + 1
        xp[:, :, :rows, :cols] = 0  # the region col2im writes; the rest keeps the input
        return xp


class DilationIgnoredInBackward(Conv):
    """The forward dilates the kernel; both gradients are computed as if dilation were 1 (the backward was
    written before dilation was added). Invisible when the dilation is 1."""

    name = "mut-dilation-ignored-in-backward"
    expected = ("grad_input", "grad_weight")

    def _grad_weight(self, problem, xp, dym):
        cols = self._unfold(problem, xp, dilation=(1, 1))
        return np.ascontiguousarray(self._gemm(dym, cols.transpose(0, 1, 3, 2)).sum(axis=0)
                                    .reshape(problem.weight_shape))

    def _grad_input(self, problem, xp, wm, dym):
        dxp = self._col2im(problem, self._dcols(problem, wm, dym), self._new_dxp(problem, xp), dilation=(1, 1))
        return self._crop(problem, dxp)


class Col2imMissesLastTapRow(Conv):
    """Off by one in col2im's tap loop, ``for p in range(kh - 1)``: the last kernel row's contribution to dx is
    dropped."""

    name = "mut-col2im-misses-last-tap-row"
    expected = ("grad_input",)

    def _grad_input(self, problem, xp, wm, dym):
        dxp = self._col2im(problem, self._dcols(problem, wm, dym), self._new_dxp(problem, xp),
                           taps=(problem.kh - 1, problem.kw))
        return self._crop(problem, dxp)


class CropOffsetsSwapped(Conv):
    """dx is cut out of the padded gradient at ``[pw:pw + h, ph:ph + w]``: the padding offsets of the two axes
    swapped in the crop. Invisible when ph == pw."""

    name = "mut-crop-offsets-swapped"
    expected = ("grad_input",)

    def _crop(self, problem, dxp):
        (ph, pw) = problem.padding
        return np.ascontiguousarray(dxp[:, :, pw:pw + problem.h, ph:ph + problem.w])


class BackwardReshapeNotTranspose(Conv):
    """The backward-data GEMM needs W^T; the weight was *reshaped* to (K, Og) instead of transposed, a
    classic numpy confusion. Invisible when Og = 1 or K = 1 (then reshape and transpose coincide)."""

    name = "mut-backward-reshape-not-transpose"
    expected = ("grad_input",)

    def _dcols(self, problem, wm, dym):
        g, og, k = wm.shape
        dcols = self._gemm(wm.reshape(g, k, og), dym)
        return dcols.reshape(problem.batch, problem.c_in, problem.kh, problem.kw, problem.out_h, problem.out_w)


class BackwardDataUnrotatedKernel(Conv):
    """Backward-data written as a "full" correlation of dy with the kernel: the 180-degree rotation that turns
    the forward's adjoint into a correlation was forgotten (equivalently, dx uses the flipped kernel)."""

    name = "mut-backward-data-unrotated-kernel"
    expected = ("grad_input",)

    def _backward_weight(self, problem, w):
        return self._weight(problem, flip(w))


class GradWeightFirstSampleOnly(Conv):
    """dW is taken from the first sample of the batch only (the batch loop's accumulation was lost)."""

    name = "mut-grad-weight-first-sample"
    expected = ("grad_weight",)

    def _grad_weight(self, problem, xp, dym):
        cols = self._unfold(problem, xp)
        return np.ascontiguousarray(self._gemm(dym[:1], cols[:1].transpose(0, 1, 3, 2)).sum(axis=0)
                                    .reshape(problem.weight_shape))


class GradWeightBatchMean(Conv):
    """dW averaged over the batch instead of summed (a loss-normalisation step applied inside the kernel)."""

    name = "mut-grad-weight-batch-mean"
    expected = ("grad_weight",)

    def _grad_weight(self, problem, xp, dym):
        cols = self._unfold(problem, xp)
        return np.ascontiguousarray(self._gemm(dym, cols.transpose(0, 1, 3, 2)).mean(axis=0)
                                    .reshape(problem.weight_shape))


class GradWeightSkipsPadding(Conv):
    """An implicit-GEMM weight gradient that skips the taps that fall on the zero padding (they add 0, or so it
    seems). The numbers are right on finite data, but torch multiplies the padding: an Inf or NaN in dy times a
    padding zero is NaN in dW, and this backend returns a finite number there."""

    name = "mut-grad-weight-skips-padding"
    expected = ("nonfinite",)

    def _grad_weight(self, problem, xp, dym):
        (sh, sw), (ph, pw), (dh, dw) = problem.stride, problem.padding, problem.dilation
        n, g = problem.batch, problem.groups
        x = xp[:, :, ph:ph + problem.h, pw:pw + problem.w].reshape(n, g, -1, problem.h, problem.w)
        dy = dym.reshape(n, g, -1, problem.out_h, problem.out_w)
        out = np.zeros((g, problem.c_out // g, problem.c_in // g, problem.kh, problem.kw), dtype=problem.dtype)

        def inside(size, out_size, stride, pad, offset):  # outputs i whose tap reads a real input row
            lo = max(0, -(-(pad - offset) // stride))
            hi = min(out_size - 1, (size - 1 + pad - offset) // stride)
            return lo, hi

        for p in range(problem.kh):
            i0, i1 = inside(problem.h, problem.out_h, sh, ph, p * dh)
            for q in range(problem.kw):
                j0, j1 = inside(problem.w, problem.out_w, sw, pw, q * dw)
                if i1 < i0 or j1 < j0:
                    continue
                xs = x[:, :, :, i0 * sh - ph + p * dh:i1 * sh - ph + p * dh + 1:sh,
                       j0 * sw - pw + q * dw:j1 * sw - pw + q * dw + 1:sw]
                out[..., p, q] = np.einsum("ngoij,ngcij->goc", dy[..., i0:i1 + 1, j0:j1 + 1], xs)
        return np.ascontiguousarray(out.reshape(problem.weight_shape))


class GradBiasChannelsLast(Conv):
    """db reduces dy as if it were channels-last (NHWC): ``dy.reshape(N, Ho, Wo, C).sum((0, 1, 2))``. The shape
    is right; the values are sums over the wrong elements unless the output plane is 1x1."""

    name = "mut-grad-bias-channels-last"
    expected = ("grad_bias",)

    def _grad_bias(self, problem, dy):
        n, c, ho, wo = problem.output_shape
        return np.ascontiguousarray(np.asarray(dy).reshape(n, ho, wo, c).sum(axis=(0, 1, 2)))


class PaddingFoldFlushesSubnormals(PaddingModes):
    """The fold of reflect/replicate padding's gradient adds with an atomic add that flushes subnormal results to
    zero, as both torch CUDA entries did for float32 on an H200 (conformance/data/known_failures.txt): a dx that
    should be a subnormal is 0. Zero and circular padding, and every normal result, are right."""

    name = "mut-padding-fold-flushes-subnormals"
    expected = ("extreme",)

    def _fold(self, problem, dxp):
        dx = super()._fold(problem, dxp)
        if problem.padding_mode in ("reflect", "replicate"):
            dx = flush_subnormals(dx)
        return dx


class WeightGradientSkipsPaddingProducts(Conv):
    """dW leaves out the products of dy with the zero padding (it only visits taps inside the image, as torch's
    CUDA kernels did on an H200): exact for finite data, but where dy is NaN or Inf at an output whose window
    covers padding, IEEE's 0 x NaN = NaN (0 x Inf = NaN) is missing from that weight's gradient."""

    name = "mut-weight-gradient-skips-padding-products"
    expected = ("nonfinite",)

    def _grad_weight(self, problem, xp, dym):
        cols = self._unfold(problem, xp)                                    # (N, G, K, P)
        ph, pw = problem.padding
        inside = np.pad(np.ones((1, problem.c_in, problem.h, problem.w), dtype=xp.dtype), ((0, 0), (0, 0),
                        (ph, ph), (pw, pw)))
        inside = self._unfold(problem.replace(batch=1), inside) != 0          # (1, G, K, P): taps in the image
        products = np.where(inside[:, :, None], dym[:, :, :, None, :] * cols[:, :, None], 0)  # (N, G, Og, K, P)
        return np.ascontiguousarray(products.sum(axis=(0, 4)).reshape(problem.weight_shape))
