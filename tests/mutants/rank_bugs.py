"""Mutants whose bug lives in one spatial rank (issue #16): conv1d and conv3d code paths a conv2d suite never runs.

Each is ``tests.mutants._base.NdConv`` (a correct direct convolution of any rank) with one bug modelled on a public
report. They declare conv2d as well as their own rank, and ``expected`` names the rank-qualified gate finding
(``conv3d:grad_input``): the gate must name that rank's check, and none of conv2d's (``tests/test_mutants.py``), so
that one deviation in one rank is one finding, visible as that rank's. The first runs the whole gate in both of its
ranks; the others (``gate_args``) their own rank, and the scale-only ones the plain hypothesis tiers beside the scale
tier, which must be the only one to find them.
"""

from __future__ import annotations

import numpy as np

try:
    from ._base import NdConv
except ImportError:  # loaded by file path (--impl tests/mutants/rank_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import NdConv

from conformance import Capabilities

WRAP = 2**16    #: a 16-bit index wraps here
BATCH_BLOCK = 32  #: the batch block of the blocked 3-D kernel below
CONV2D_AND = {r: Capabilities(dtypes=("float32", "float64"), ranks=(2, r), notes="tests/mutants rank mutant")
              for r in (1, 3)}


class DepthStrideIgnoredInBackwardData(NdConv):
    """conv3d's backward-data scatters the column gradients back with stride 1 along the depth axis (the stride of
    the two inner axes is applied, the depth's forgotten): wrong dx wherever the depth stride is > 1, the class of
    the strided-backward bugs of pytorch#63314 and pytorch#34344's conv3d backward."""

    name = "mut-rank-depth-stride-ignored-in-backward-data"
    capabilities = CONV2D_AND[3]
    expected = ("conv3d:grad_input",)
    gate_args = ("--max-examples", "10")  # the whole gate in both its ranks, 10 examples a check

    def _scatter_stride(self, p):
        return (1, *p.stride[1:]) if p.rank == 3 else p.stride


class DepthHeightSwapped(NdConv):
    """conv3d computes the input's element offsets with the depth and height extents exchanged: the offset of
    (d, h, w) taken as d*D*W + h*W + w where it is d*H*W + h*W + w. Right whenever D = H, wrong values (wrapped
    reads) otherwise: the class of conv3d layouts read with the wrong extents (pytorch#84488, #87354: conv3d silently
    wrong on some shapes)."""

    name = "mut-rank-depth-height-swapped"
    capabilities = CONV2D_AND[3]
    expected = ("conv3d:forward",)
    gate_args = ("--ranks", "3", "--max-examples", "10")

    def _padded(self, p, x):
        if p.rank == 3:
            n, c, d, h, w = x.shape
            dd, hh, ww = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
            offset = (dd * d * w + hh * w + ww) % (d * h * w)  # d*H*W was meant
            x = np.ascontiguousarray(x).reshape(n, c, -1)[:, :, offset]
        return super()._padded(p, x)


class Conv1dAsConv2dWrongStride(NdConv):
    """conv1d done as conv2d on an unsqueezed (N, C, 1, L) view, with the 1-D stride given to the inserted unit
    axis instead of the length axis (stride (s, 1) where (1, s) was meant): right for stride 1, wrong windows for
    stride > 1; the class of conv1d-through-conv2d bugs (pytorch#120547: degenerate strides after a transpose)."""

    name = "mut-rank-conv1d-as-conv2d-wrong-stride"
    capabilities = CONV2D_AND[1]
    expected = ("conv1d:forward",)
    gate_args = ("--ranks", "1", "--max-examples", "10")

    def _reads(self, p, tap, stride=None):
        if p.rank == 1 and stride is None:  # the forward's windows: stride (s, 1) on (1, L) is stride 1 along L
            stride = (1,)
        return super()._reads(p, tap, stride)


class BatchTailDropped3d(NdConv):
    """conv3d's forward runs the batch in blocks of 32 and drops the tail block when the batch is larger than one
    block and not a multiple of it (batches below 32 go through the unblocked path, right): neon#361, conv3d wrong
    when batch % 32 != 0. The plain tiers draw batches of at most 4; the scale tier's conv3d batch of 65537 finds it."""

    name = "mut-rank-conv3d-batch-tail-dropped"
    capabilities = CONV2D_AND[3]
    expected = ("conv3d:scale",)
    gate_args = ("--ranks", "3", "-k", "test_scale or test_forward or test_grad")
    only = True  #: the plain tiers beside it must pass: the scale tier alone finds it

    def _forward_batch(self, p, xp, wg):
        y = super()._forward_batch(p, xp, wg)
        n = xp.shape[0]
        if p.rank == 3 and n > BATCH_BLOCK and n % BATCH_BLOCK:
            y[n - n % BATCH_BLOCK:] = 0  # the tail block is never computed
        return y


class DepthIndex16Bit(NdConv):
    """conv3d keeps the input depth index in 16 bits: depth 65536 reads depth 0 (pytorch#129207's class, on the
    depth axis). The 32-bit version of the same bug (the flat index of a 3-D im2col past 2^31 elements,
    pytorch#84488) needs the scale tier's opt-in 2^31+ problem (``--conv-scale-2g``), which CI cannot afford; this
    one wraps where the default scale tier reaches (depth 65537)."""

    name = "mut-rank-conv3d-depth-index-16bit"
    capabilities = CONV2D_AND[3]
    expected = ("conv3d:scale",)
    gate_args = ("--ranks", "3", "-k", "test_scale or test_forward or test_grad")
    only = True

    def _padded(self, p, x):
        xp = super()._padded(p, x)
        if p.rank == 3 and xp.shape[3] > WRAP:
            xp = xp.copy()
            xp[:, :, :, WRAP:] = xp[:, :, :, :xp.shape[3] - WRAP]  # depth index mod 2^16
        return xp
