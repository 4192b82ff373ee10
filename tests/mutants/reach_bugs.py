"""Mutants whose bug lives where small, C-contiguous, uniformly random problems rarely reach (issue #8, places 2-6).

Each class is ``tests.mutants._base.Conv`` (a correct im2col) with one bug modelled on a public report, triggered only
by the sizes, shapes or values of its place: block and tile boundaries, the shapes real networks use, index width,
extreme values, crash shapes. ``expected`` names the gate column (the new tier) that must reject it; the plain
hypothesis tiers (forward, grad_input, grad_weight, grad_bias) must not, which ``tests/test_tiers.py`` proves.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from ._base import Conv, flush_subnormals
except ImportError:  # loaded by file path (--impl tests/mutants/reach_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv, flush_subnormals

BLOCK = 32      #: the tile width of the blocked kernel below (two 16-wide vectors)
WRAP = 2**16    #: a 16-bit index wraps here


# -- place 2: block and tile boundaries --------------------------------------------------------------------------
class OutputWidthTail(Conv):
    """Output columns are computed in tiles of 32; when the output is wider than one tile and its width is not a
    multiple of 32, the tail tile is never written (it stays as allocated, zero): the dropped tail of blocked
    kernels (pytorch#19912, #50042). The plain tiers draw outputs at most 20 wide (``SIZE_CLASSES``)."""

    name = "mut-reach-output-width-tail"
    expected = ("boundary",)

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        wo = problem.out_w
        if wo > BLOCK and wo % BLOCK:
            y[..., wo - wo % BLOCK:] = 0
        return y


class DepthwiseMultiplierUninitialised(Conv):
    """The depthwise kernel (groups = C_in, taken from 8 channels on) handles a channel multiplier of 1 only: with
    C_out = m*C_in, m > 1, all but the first output channel of each group are left uninitialised (NaN here, as the
    report saw): pytorch#54136, fixed by pytorch#55794. The plain tiers draw depthwise layers of at most 3 channels."""

    name = "mut-reach-depthwise-multiplier"
    expected = ("boundary",)

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        g = problem.groups
        if g == problem.c_in and g >= 8 and problem.c_out > g:
            m = problem.c_out // g
            out = np.full_like(y, np.nan)  # torch.empty(): whatever the memory held
            out[:, ::m] = y[:, ::m]
            return out
        return y


class NarrowGroupsAlignedLoads(Conv):
    """A grouped kernel loads input channels in 8-aligned blocks: a group narrower than a block (C_in/groups < 8, with
    16 or more channels in all) reads its channels from the aligned block start instead of its own first channel
    (the narrow-group class of pytorch#21597). The plain tiers draw at most 12 input channels."""

    name = "mut-reach-narrow-groups"
    expected = ("boundary",)

    def forward(self, problem, x, w, b):
        g, cg = problem.groups, problem.c_in // problem.groups
        if g > 1 and cg < 8 and problem.c_in >= 16:
            starts = [min(i * cg // 8 * 8, problem.c_in - cg) for i in range(g)]
            x = np.ascontiguousarray(np.concatenate([x[:, s:s + cg] for s in starts], axis=1))
        return super().forward(problem, x, w, b)


# -- place 3: the shapes real networks use ---------------------------------------------------------------------
class StemRemainderShift(Conv):
    """The 7x7 stride-2 stem kernel assumes the padded input ends where the last window does (remainder
    (H + 2p - 7) mod 2 = 0); with remainder 1 (ResNet-50's conv1: 224 + 6 - 7 = 223) it aligns the windows to the far
    edge, one row (column) late. Plain and boundary tiers never draw a 7x7 kernel; the corpus keeps the remainder."""

    name = "mut-reach-stem-remainder"
    expected = ("corpus",)

    def forward(self, problem, x, w, b):
        if (problem.kh, problem.kw) != (7, 7) or problem.stride != (2, 2):
            return super().forward(problem, x, w, b)
        (ph, pw) = problem.padding
        r_h, r_w = (problem.h + 2 * ph - 7) % 2, (problem.w + 2 * pw - 7) % 2
        xp = self._padded(problem, x)[:, :, r_h:, r_w:]
        y = self._gemm(self._weight(problem, w), self._unfold(problem, xp)).reshape(problem.output_shape)
        return y if b is None else self._add_bias(problem, y, b)


class ShortcutStride2Phase(Conv):
    """The 1x1 stride-2 fast path of downsampling shortcuts (a plain subsample, then a GEMM; taken from 8 input
    channels on) subsamples at the wrong phase, rows and columns 1, 3, 5, ... (the class of pytorch#54036). The plain
    tiers draw at most 4 input channels without groups."""

    name = "mut-reach-shortcut-phase"
    expected = ("corpus",)

    def forward(self, problem, x, w, b):
        fast = ((problem.kh, problem.kw) == (1, 1) and problem.stride == (2, 2) and problem.padding == (0, 0)
                and problem.groups == 1 and problem.c_in >= 8 and not problem.asymmetric)
        if not fast:
            return super().forward(problem, x, w, b)
        sub = np.zeros((problem.batch, problem.c_in, problem.out_h, problem.out_w), dtype=x.dtype)
        picked = x[:, :, 1::2, 1::2]
        sub[:, :, :picked.shape[2], :picked.shape[3]] = picked
        wm = np.asarray(w).reshape(problem.c_out, problem.c_in)
        y = np.matmul(wm, sub.reshape(problem.batch, problem.c_in, -1)).reshape(problem.output_shape)
        return y if b is None else self._add_bias(problem, y, b)


# -- place 4: index width and scale -------------------------------------------------------------------------------
class OutputChannel16Bit(Conv):
    """The output channel index is kept in 16 bits: channel 65536 is written onto channel 0 (and so on), and the
    channels past 65535 stay zero: pytorch#129207. The plain tiers draw at most 12 output channels."""

    name = "mut-reach-channel-16bit"
    expected = ("scale",)

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        if problem.c_out > WRAP:
            y[:, :problem.c_out - WRAP] = y[:, WRAP:]
            y[:, WRAP:] = 0
        return y


class BatchIndex16Bit(Conv):
    """The weight gradient's loop over samples counts in 16 bits: the samples past 65535 are never added (the
    batch-wide reduction of pytorch#84488's class). The plain tiers draw batches of at most 3."""

    name = "mut-reach-batch-16bit"
    expected = ("scale",)

    def _grad_weight(self, problem, xp, dym):
        if problem.batch > WRAP:
            return super()._grad_weight(problem.replace(batch=WRAP), xp[:WRAP], dym[:WRAP])
        return super()._grad_weight(problem, xp, dym)


# -- place 5: extreme values ----------------------------------------------------------------------------------------
def _power_of_two_rms(a: np.ndarray) -> np.ndarray:
    """2^round(log2(rms(a))) over the finite entries, the mean of squares taken in a's own dtype (so it overflows for
    |a| > sqrt(max)); 1 where it is zero."""
    f = a[np.isfinite(a)]
    if f.size == 0:
        return a.dtype.type(1)
    with np.errstate(over="ignore", divide="ignore"):
        ms = np.mean(f * f, dtype=a.dtype)
        if ms == 0:
            return a.dtype.type(1)
        return a.dtype.type(2.0 ** np.round(np.log2(np.sqrt(ms))))


class RmsScaledOverflow(Conv):
    """Every GEMM operand is scaled by the power of two nearest its RMS "to keep the products near 1" (exact, so
    invisible on ordinary data), but the mean of squares is taken in the input dtype: for operands above sqrt(max) it
    overflows to Inf, the scale is Inf and the result 0 * Inf = NaN where the exact result is finite; the class of
    pytorch#84171 (a transform's intermediate overflowing)."""

    name = "mut-reach-rms-overflow"
    expected = ("extreme",)

    def _gemm(self, a, b):
        sa, sb = _power_of_two_rms(a), _power_of_two_rms(b)
        with np.errstate(all="ignore"):
            return np.matmul(a / sa, b / sb) * (sa * sb)


class FlushSubnormals(Conv):
    """The GEMMs run with flush-to-zero and denormals-are-zero (the CPU's FTZ/DAZ bits set for speed): subnormal
    operands and results become 0. Invisible unless data sits near the bottom of the normal range."""

    name = "mut-reach-flush-subnormals"
    expected = ("extreme",)

    def _gemm(self, a, b):
        return flush_subnormals(np.matmul(flush_subnormals(a), flush_subnormals(b)))


class NegativeZeroSparseWeight(Conv):
    """A sparse-weight forward lists each output channel's non-zero taps by their bit pattern (-0.0 has its sign bit
    set: listed) but sizes the list by a float compare (-0.0 == 0: not counted), so every -0.0 weight pushes the last
    non-zero tap of its row off the list. Invisible without signed zeros in the weight."""

    name = "mut-reach-negative-zero"
    expected = ("extreme",)

    def forward(self, problem, x, w, b):
        cols = self._unfold(problem, self._padded(problem, x))  # (N, G, K, L)
        wm = np.ascontiguousarray(self._weight(problem, w))  # (G, Og, K)
        bits = wm.view(np.uint64 if wm.dtype == np.float64 else np.uint32)
        y = np.zeros((problem.batch, problem.groups, wm.shape[1], cols.shape[-1]), dtype=wm.dtype)
        for g in range(problem.groups):
            for o in range(wm.shape[1]):
                idx = np.flatnonzero(bits[g, o] != 0)[:np.count_nonzero(wm[g, o])]
                y[:, g, o] = wm[g, o, idx] @ cols[:, g, idx]
        y = y.reshape(problem.output_shape)
        return y if b is None else self._add_bias(problem, y, b)


# -- place 6: crashes -----------------------------------------------------------------------------------------------
def xla_crash_shape(problem) -> bool:
    """Kernel 2, stride 2, padding 1 on one axis; a kernel of 5 or more, longer than the output, on the other."""
    k, s, p, out = (problem.kh, problem.kw), problem.stride, problem.padding, (problem.out_h, problem.out_w)
    return any(k[a] == 2 and s[a] == 2 and p[a] == 1 and k[o] >= 5 and k[o] > out[o] for a, o in ((0, 1), (1, 0)))


class BackwardDataAbort(Conv):
    """The backward pass aborts the process (SIGABRT) on XLA:CPU's class of backward-data shapes: kernel 2, stride 2,
    padding 1 on one axis and a kernel longer than the output on the other (issue #8, item 6). The plain tiers draw
    kernels of at most 4."""

    name = "mut-reach-backward-abort"
    expected = ("boundary", "corpus")

    def backward(self, problem, x, w, dy):
        if xla_crash_shape(problem):
            os.abort()
        return super().backward(problem, x, w, dy)
