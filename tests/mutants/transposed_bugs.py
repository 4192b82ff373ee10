"""Mutants of transposed convolution (issue #17): where its shape arithmetic and its scatter break.

Each is ``tests.mutants._base.NdConvTranspose`` (a correct transposed convolution of any rank) with one bug modelled
on a public report; its convolution stays correct, so the gate must name the transposed operation's finding
(``conv_transpose2d:forward``) and none of the convolution's. ``gate_args`` keep each gate to conv2d and
conv_transpose2d (and to the checks that matter, where a bug is one tier's).
"""

from __future__ import annotations

import numpy as np

try:
    from ._base import NdConvTranspose
except ImportError:  # loaded by file path (--impl tests/mutants/transposed_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import NdConvTranspose

from conformance import Capabilities

#: the gate of conv2d and conv_transpose2d, 10 examples a check (each bug shows on the smallest problems that have
#: its feature; the test command's time is kept within bounds)
TWO_D = ("--ranks", "2", "--max-examples", "10")


class OutputPaddingAtTheStart(NdConvTranspose):
    """The output padding is added at the beginning of each axis instead of the end (the far side): the output is
    the right size, shifted by it. The class of output_padding mistakes in ONNX Runtime and TVM (onnxruntime#4086,
    tvm#19524) and of tinygrad's fixes (PR #875)."""

    name = "mut-transposed-output-padding-at-the-start"
    expected = ("conv_transpose2d:forward",)
    gate_args = TWO_D

    def _output_of(self, p, grid):
        if not any(p.output_padding):
            return super()._output_of(p, grid)
        start = tuple(max(b - op, 0) for b, op in zip(p.padding, p.output_padding))
        window = (slice(None),) * 3 + tuple(slice(s, s + o) for s, o in zip(start, p.out_sizes))
        out = np.zeros(grid.shape[:3] + p.out_sizes)
        part = grid[window]
        out[(slice(None),) * 3 + tuple(slice(0, n) for n in part.shape[3:])] = part
        return out


class WeightReadInConvolutionLayout(NdConvTranspose):
    """Each group's block of the weight is taken as a convolution's would be, rows g*Og .. of the first axis, where a
    transposed weight (C_in, C_out/G, k) has group g's at rows g*Cg ..: right with one group or where Cg = Og,
    wrong otherwise (the class of grouped ConvTranspose layouts read with the convolution's, pytorch#63314's
    neighbourhood)."""

    name = "mut-transposed-weight-read-in-conv-layout"
    expected = ("conv_transpose2d:forward",)
    gate_args = TWO_D

    def _tweight(self, p, w):
        cg, og = p.c_in // p.groups, p.c_out // p.groups
        rows = np.concatenate([(np.arange(cg) + g * og) % p.c_in for g in range(p.groups)])
        return super()._tweight(p, np.asarray(w)[rows])


class GapsLeftUnwritten(NdConvTranspose):
    """The output grid is allocated uninitialised (np.empty) and only the positions some tap writes are cleared
    first: where the stride is larger than the dilated kernel the gaps keep whatever the memory held (here NaN, as a
    buffer left by an earlier call), instead of zeros or the bias."""

    name = "mut-transposed-gaps-unwritten"
    expected = ("conv_transpose2d:forward",)
    gate_args = TWO_D

    def forward(self, p, x, w, b):
        if p.transposed:
            written = np.zeros(self._grid(p), dtype=bool)
            for tap in self._taps(p):
                written[self._lands(p, tap)[3:]] = True
            self._written = written  # the positions cleared before the taps add into them
        return super().forward(p, x, w, b)

    def _new_grid(self, shape):
        grid = np.full(shape, np.nan)  # np.empty's leftover memory, made deterministic
        grid[..., self._written] = 0.0
        return grid


class AutoPadSidesSwapped(NdConvTranspose):
    """The begin and end padding exchanged, as SAME_UPPER resolved as SAME_LOWER (onnxruntime#4086, #11927, PR #5368;
    onnx#4299): right where the padding is symmetric, shifted by one where it is not. ONNX's
    test_convtranspose_autopad_same finds it, as do asymmetric problems."""

    name = "mut-transposed-auto-pad-sides-swapped"
    capabilities = Capabilities(dtypes=("float32", "float64"), ranks=(1, 2, 3), transposed=True,
                                asymmetric_padding=True, notes="tests/mutants corpus member")
    expected = ("conv_transpose2d:forward", "conv_transpose2d:onnx")
    gate_args = TWO_D

    def _swap(self, p):
        if not p.transposed or not p.asymmetric:
            return p
        return p.replace(padding=p.pad_end, padding_end=p.padding)

    def forward(self, p, x, w, b):
        return super().forward(self._swap(p), x, w, b)


class GradWeightOperandsExchanged(NdConvTranspose):
    """The transposed convolution's weight gradient computed with the convolution's formula, x and dy in each
    other's place (dw[c, o, t] = sum_j dy[o, j] * x[c, j*s + t*d]): the shifts run the wrong way."""

    name = "mut-transposed-grad-weight-operands-exchanged"
    expected = ("conv_transpose2d:grad_weight",)
    gate_args = TWO_D

    def _grad_weight_t(self, p, xg, dyg):
        dy = dyg[self._window(p)]  # (N, G, Og, *out)
        ext = tuple((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in zip(p.out_sizes, p.stride, p.dilation, p.kernel))
        xe = np.zeros(xg.shape[:3] + tuple(max(e, n) for e, n in zip(ext, p.in_sizes)))
        xe[(slice(None),) * 3 + tuple(slice(0, n) for n in p.in_sizes)] = xg
        dw = np.zeros((p.groups, p.c_in // p.groups, p.c_out // p.groups, *p.kernel))
        flat = (p.batch, p.groups, -1, int(np.prod(p.out_sizes)))
        for tap in self._taps(p):
            reads = (slice(None),) * 3 + tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                                               for t, d, s, o in zip(tap, p.dilation, p.stride, p.out_sizes))
            dw[(slice(None),) * 3 + tap] = np.einsum("ngcl,ngol->gco", xe[reads].reshape(flat), dy.reshape(flat))
        return dw
