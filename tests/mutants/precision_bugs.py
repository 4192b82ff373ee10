"""Mutants that compute the right formula with the wrong arithmetic: precision below the declared profile,
results a few ulps off, NaN and Inf not propagated.

Each class is ``tests.mutants._base.Conv`` (a correct im2col) with one realistic bug; ``expected`` names the
gate checks that must reject it.
"""

from __future__ import annotations

import numpy as np

try:
    from ._arith import Model
    from ._base import Conv, kahan_matmul, round_to_mantissa
except ImportError:  # loaded by file path (the gate's --impl tests/mutants/precision_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._arith import Model
    from mutants._base import Conv, kahan_matmul, round_to_mantissa

#: the reduction length above which the mutants below switch to their half-precision kernel
LONG_K = 64
#: terms per block of the split-K kernel; its partial sums are stored in float16 between blocks
BLOCK = 8


def half_split_k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` by blocks of the reduction, the running sum rounded to float16 after every block."""
    k = a.shape[-1]
    acc = np.zeros(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]), dtype=a.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for k0 in range(0, k, BLOCK):
            acc = (acc + a[..., k0:k0 + BLOCK] @ b[..., k0:k0 + BLOCK, :]).astype(np.float16).astype(a.dtype)
    return acc


class FewUlpsScale(Conv):
    """The forward epilogue multiplies by an output scale that should be exactly 1 but was computed as
    ``1 + 4*eps`` (a dequantisation scale rounded the wrong way): every result is a few ulps large. Within
    every tolerance; only the exact-integer tier (bitwise) can see it."""

    name = "mut-few-ulps-scale"
    expected = ("exact",)

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        return y * y.dtype.type(1 + 4 * np.finfo(y.dtype).eps)


class Float32InsideFloat64(Conv):
    """float64 problems computed in float32 (the GEMM is called on float32 copies "for speed") and cast back:
    a 1e-7 relative error where float64 promises 1e-16."""

    name = "mut-float32-inside-float64"
    expected = ("forward",)

    def forward(self, problem, x, w, b):
        if problem.dtype != "float64":
            return super().forward(problem, x, w, b)
        p32 = problem.replace(dtype="float32")
        y = super().forward(p32, x.astype(np.float32), w.astype(np.float32), None)
        y = y.astype(np.float64)
        return y if b is None else self._add_bias(problem, y, b)


class UndeclaredTF32(Conv):
    """float32 inputs rounded to TF32 (10 mantissa bits) before the products, as tensor cores do by default,
    but the backend declares the IEEE float32 profile (it should declare ``precision={"float32": "tf32"}``). The
    arithmetic check measures inputs of 11 bits and is the one finding; the forward failures follow from it."""

    name = "mut-undeclared-tf32"
    expected = ("arithmetic",)

    def forward(self, problem, x, w, b):
        if problem.dtype == "float32":
            x, w = round_to_mantissa(x, 10), round_to_mantissa(w, 10)
        return super().forward(problem, x, w, b)


class HalfPrecisionSplitK(Conv):
    """For reductions longer than 64 terms the GEMM dispatches to a split-K kernel that keeps its partial sums
    in float16 (every pass; the weight gradient is one GEMM over batch and output positions, K = N*Ho*Wo).
    Short reductions are computed in the problem's precision."""

    name = "mut-half-precision-split-k"
    expected: tuple[str, ...] = ("grad_weight",)

    def _gemm(self, a, b):
        return half_split_k(a, b) if a.shape[-1] > LONG_K else super()._gemm(a, b)

    def _grad_weight(self, problem, xp, dym):
        # dW as one GEMM per group with the batch folded into the reduction: K = N * Ho * Wo
        cols = self._unfold(problem, xp)  # (N, G, Kw, L)
        a = np.ascontiguousarray(dym.transpose(1, 2, 0, 3)).reshape(problem.groups, dym.shape[2], -1)
        b = np.ascontiguousarray(cols.transpose(1, 0, 3, 2)).reshape(problem.groups, -1, cols.shape[2])
        return np.ascontiguousarray(self._gemm(a, b).reshape(problem.weight_shape))


class HalfPrecisionSplitKForward(HalfPrecisionSplitK):
    """The same half-precision split-K kernel, but only the forward pass uses it (K = C_in/groups * kh * kw
    above 64); the backward GEMMs are exact.

    The hypothesis ``forward`` check cannot see it: its strategy draws at most 4 channels per group and 4x4
    kernels, K <= 64. The tiers with realistic sizes must: ``boundary`` (channel counts next to block widths, up to
    257) and ``corpus`` (the layers of real networks, K = 9*C_in and more)."""

    name = "mut-half-precision-split-k-forward"
    expected = ("boundary", "corpus")

    def forward(self, problem, x, w, b):
        cols = self._unfold(problem, self._padded(problem, x))
        wm = self._weight(problem, w)
        y = (half_split_k(wm, cols) if wm.shape[-1] > LONG_K else np.matmul(wm, cols)).reshape(problem.output_shape)
        return y if b is None else self._add_bias(problem, y, b)

    def _gemm(self, a, b):
        return np.matmul(a, b)


class NanToNumOutput(Conv):
    """``np.nan_to_num`` on the output to "sanitise" it: NaN becomes 0 and Inf the largest float, where torch
    propagates them."""

    name = "mut-nan-to-num-output"
    expected = ("nonfinite",)

    def forward(self, problem, x, w, b):
        return np.nan_to_num(super().forward(problem, x, w, b))


class TextbookKahanSummation(Conv):
    """Kahan-compensated GEMMs written from the textbook: more accurate than plain summation on finite data, but
    once a running sum is Inf the compensation ``(t - s) - y`` is ``Inf - Inf`` = NaN, and the next term turns the
    Inf into NaN. torch (and any plain sum) keeps the Inf."""

    name = "mut-textbook-kahan-summation"
    expected = ("nonfinite",)

    def _gemm(self, a, b):
        return kahan_matmul(a, b, finite_guard=False)


class UndeclaredBfloat16Accumulation(Model):
    """bfloat16 in and out, declared ``bf16-acc32`` (the default), but every sum is accumulated in bfloat16, as
    torch's native CPU kernels sum the weight gradient across the batch: grad_weight, the corpus, the boundary and
    layout tiers all exceed the declared bounds. The arithmetic check measures an 8-bit accumulator and is the one
    finding; every other failure passes under the measured ``bf16-acc16`` and is attributed to it."""

    name = "mut-undeclared-bf16-accumulation"
    dtype, acc = "bfloat16", 8
    expected = ("arithmetic",)
