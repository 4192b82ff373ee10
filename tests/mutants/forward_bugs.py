"""Mutants whose forward pass is wrong: geometry, kernel orientation, groups, bias.

Each class is ``tests.mutants._base.Conv`` (a correct im2col) with one realistic bug; ``expected`` names the
gate checks that must reject it.
"""

from __future__ import annotations

import numpy as np

try:
    from ._base import Conv, flip
except ImportError:  # loaded by file path (the gate's --impl tests/mutants/forward_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv, flip


class FlippedKernel(Conv):
    """A true convolution instead of torch's cross-correlation: the kernel is rotated by 180 degrees, and the
    backward is the exact adjoint of that forward (so the oracle-free checks cannot see it; only a reference
    can). The commonest textbook-vs-framework mix-up."""

    name = "mut-flipped-kernel"
    expected = ("forward", "grad_input", "grad_weight", "golden", "exact")

    def forward(self, problem, x, w, b):
        return super().forward(problem, x, flip(w), b)

    def backward(self, problem, x, w, dy):
        dx, dw, db = super().backward(problem, x, flip(w), dy)
        return dx, flip(dw), db


class KernelExtentsSwapped(Conv):
    """The kernel's extents are read as (kw, kh) (a width-major weight layout assumed): the unfold runs with
    the kernel sizes swapped and the weight's memory reinterpreted. Invisible for square kernels; for kh != kw
    the output has the wrong size (or the geometry is rejected)."""

    name = "mut-kernel-extents-swapped"
    expected = ("forward",)

    def forward(self, problem, x, w, b):
        if problem.kh == problem.kw:
            return super().forward(problem, x, w, b)
        swapped = problem.replace(kh=problem.kw, kw=problem.kh)
        return super().forward(swapped, x, np.ascontiguousarray(w).reshape(swapped.weight_shape), b)


class PaddingAxesSwapped(Conv):
    """``torch.nn.functional.pad`` takes the last axis first, ``(left, right, top, bottom)``: passing
    ``(ph, ph, pw, pw)`` pads the width by ph and the height by pw. Invisible when ph == pw; otherwise the
    output size is wrong."""

    name = "mut-padding-axes-swapped"
    expected = ("forward",)

    def forward(self, problem, x, w, b):
        if problem.padding[0] == problem.padding[1]:
            return super().forward(problem, x, w, b)
        # the unfold and the output size follow the (wrongly) padded input
        return super().forward(problem.replace(padding=problem.padding[::-1]), x, w, b)


class PaddingShiftedOneRow(Conv):
    """Off by one in the padding of one side: ph - 1 rows on top and ph + 1 at the bottom (a pad computed as
    ``(total - 1) // 2`` on top where ``total // 2`` was meant). The shape is right; every output reads the
    image one row off whenever ph > 0 (the weight gradient, which shares the padded input, likewise)."""

    name = "mut-padding-shifted-one-row"
    expected = ("forward",)

    @staticmethod
    def _padded(problem, x):
        (ph, pw) = problem.padding
        top = max(ph - 1, 0)
        return np.pad(np.asarray(x, dtype=problem.dtype), ((0, 0), (0, 0), (top, 2 * ph - top), (pw, pw)))


class CeilOutputSize(Conv):
    """The output size rounded up (``ceil_mode=True``, copied from a pooling layer): when the stride does not
    divide evenly the output gets one extra row or column, computed over extra zero padding."""

    name = "mut-ceil-output-size"
    expected = ("forward",)

    def forward(self, problem, x, w, b):
        (sh, sw), (ph, pw), (dh, dw) = problem.stride, problem.padding, problem.dilation
        extra_h = (-(problem.h + 2 * ph - dh * (problem.kh - 1) - 1)) % sh
        extra_w = (-(problem.w + 2 * pw - dw * (problem.kw - 1) - 1)) % sw
        if not (extra_h or extra_w):
            return super().forward(problem, x, w, b)
        # pad the input at the bottom/right so that the rounded-up output fits, then convolve that
        xe = np.pad(np.asarray(x), ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))
        bigger = problem.replace(h=problem.h + extra_h, w=problem.w + extra_w)
        return super().forward(bigger, xe, w, b)


class GroupZeroWeightForAll(Conv):
    """Grouped convolution that indexes the weight with the group's *offset within the group* instead of the
    group: every group is convolved with group 0's filters. Invisible for groups = 1."""

    name = "mut-group0-weight-for-all"
    expected = ("forward",)

    @staticmethod
    def _weight(problem, w):
        wm = np.asarray(w, dtype=problem.dtype).reshape(problem.groups, problem.c_out // problem.groups, -1)
        return np.ascontiguousarray(np.broadcast_to(wm[:1], wm.shape))


class GroupsInterleaveChannels(Conv):
    """Groups take their input channels interleaved (channel c goes to group c % G) instead of in blocks
    (channels g*Cg .. g*Cg + Cg - 1): a channels-last / channel-shuffle confusion. Invisible when G = 1 or
    Cg = 1."""

    name = "mut-groups-interleave-channels"
    expected = ("forward",)

    @staticmethod
    def _padded(problem, x):
        xp = Conv._padded(problem, x)
        g, cg = problem.groups, problem.c_in // problem.groups
        order = np.arange(problem.c_in).reshape(cg, g).T.reshape(-1)  # group g reads g, g + G, g + 2G, ...
        return np.ascontiguousarray(xp[:, order])


class BiasAddedTwice(Conv):
    """The bias is added in the GEMM epilogue and again by the caller's wrapper."""

    name = "mut-bias-added-twice"
    expected = ("forward",)

    def _add_bias(self, problem, y, b):
        return super()._add_bias(problem, super()._add_bias(problem, y, b), b)
