"""Backends whose arithmetic is known by construction: ``_base.Conv`` (im2col) with every sum simulated.

A ``Model`` computes in float64 and rounds as its class attributes say: ``acc`` significand bits for the
accumulator (53: float64, 24: float32, 11: float16, 8: bfloat16), ``mode`` RN (to nearest, ties to even) or RZ
(truncation), the order of each reduction, inputs rounded to ``input_bits`` first (TF32: 11), products rounded
to the accumulator before they are added (``fma = False``) or not, subnormal inputs flushed (``daz``) and results
flushed (``ftz``), the forward's sum rounded to the storage dtype before the bias is added (``mid``), and blocks
of ``block`` terms summed at ``acc`` bits whose partial sums are added at ``outer`` bits (torch's native
bfloat16 weight gradient: a float32 GEMM per sample, the batch summed in bfloat16). ``tests/test_arithmetic.py``
profiles each and checks that ``conformance.numerics.arithmetic`` measures what it is.

Every reduction of the three passes goes through ``reduce``: the forward's and grad_input's GEMMs, grad_weight's
sum over batch and image together (batch-major, as one long reduction), and grad_bias's plain sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from ._base import Conv
except ImportError:  # loaded by file path (the gate's --impl): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem, numpy_dtype

#: (significand bits, log2 of the smallest normal) of each storage dtype
FORMATS = {"float64": (53, -1022), "float32": (24, -126), "float16": (11, -14), "bfloat16": (8, -126)}


def round_bits(v: np.ndarray, bits: int, emin: int, mode: str = "RN") -> np.ndarray:
    """``v`` (float64) rounded to ``bits`` significant bits, with gradual underflow below ``2**emin``."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(all="ignore"):
        _, e = np.frexp(v)
        quantum = np.maximum(e - 1, emin) - (bits - 1)
        scaled = np.ldexp(v, -quantum)
        out = np.ldexp(np.rint(scaled) if mode == "RN" else np.trunc(scaled), quantum)
    return np.where(np.isfinite(v), out, v)


def flush(v: np.ndarray, emin: int) -> np.ndarray:
    return np.where(np.abs(v) < 2.0**emin, 0.0 * v, v)


class Model(Conv):
    """float32 in and out, float32 accumulation, sequential, round to nearest: IEEE float32 by construction."""

    dtype = "float32"
    acc = 24
    outer: int | None = None     #: bits of the sum of block partials (None: ``acc``)
    block = 0                    #: terms per block (0: no blocks)
    order = "sequential"         #: sequential | pairwise | lanes (``lanes`` interleaved sums, added pairwise)
    lanes = 8
    mode = "RN"
    input_bits: int | None = None
    fma = True
    daz = False
    ftz = False
    mid = False
    declared: str | None = None  #: the precision profile it declares (None: the dtype's default)
    expected: tuple[str, ...] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.capabilities = Capabilities(dtypes=(cls.dtype,), precision={cls.dtype: cls.declared} if cls.declared
                                        else None, notes="tests/mutants/_arith.py: arithmetic known by construction")

    # -- the arithmetic ----------------------------------------------------------------------------------
    def _r(self, v: np.ndarray, bits: int | None = None) -> np.ndarray:
        _, emin = FORMATS[self.dtype]
        out = round_bits(v, bits or self.acc, emin if (bits or self.acc) < 53 else -1022, self.mode)
        return flush(out, emin) if self.ftz else out

    def _sum(self, terms: np.ndarray, bits: int | None = None) -> np.ndarray:
        """Sum over the last axis in this model's order, rounding every addition."""
        k = terms.shape[-1]
        if k == 0:
            return np.zeros(terms.shape[:-1])
        if self.order == "pairwise":
            parts = [terms[..., i] for i in range(k)]
            while len(parts) > 1:
                parts = [self._r(parts[i] + parts[i + 1], bits) if i + 1 < len(parts) else parts[i]
                         for i in range(0, len(parts), 2)]
            return parts[0]
        if self.order == "lanes" and k > self.lanes:
            lanes = [self._sequential(terms[..., lane::self.lanes], bits) for lane in range(self.lanes)]
            while len(lanes) > 1:
                lanes = [self._r(lanes[i] + lanes[i + 1], bits) if i + 1 < len(lanes) else lanes[i]
                         for i in range(0, len(lanes), 2)]
            return lanes[0]
        return self._sequential(terms, bits)

    def _sequential(self, terms: np.ndarray, bits: int | None = None) -> np.ndarray:
        acc = terms[..., 0]
        for i in range(1, terms.shape[-1]):
            acc = self._r(acc + terms[..., i], bits)
        return acc

    def reduce(self, terms: np.ndarray) -> np.ndarray:
        if not self.block:
            return self._sum(terms)
        k = terms.shape[-1]
        partials = np.stack([self._sum(terms[..., s:s + self.block]) for s in range(0, k, self.block)], axis=-1)
        return self._sequential(partials, self.outer)

    def _gemm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        products = a[..., :, None, :] * np.swapaxes(b, -1, -2)[..., None, :, :]
        if not self.fma:
            products = self._r(products)
        return self.reduce(products)

    def _in(self, a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        bits, emin = FORMATS[self.dtype]
        v = np.asarray(a, dtype=np.float64)
        if self.daz:
            v = flush(v, emin)
        return round_bits(v, self.input_bits, emin) if self.input_bits else v

    def _out(self, v: np.ndarray) -> np.ndarray:
        bits, emin = FORMATS[self.dtype]
        out = round_bits(v, bits, emin, self.mode)
        out = flush(out, emin) if self.ftz else out
        return np.ascontiguousarray(out.astype(numpy_dtype(self.dtype)))

    # -- the passes, in float64 around the simulated sums --------------------------------------------------
    def _add_bias(self, problem: ConvProblem, y: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.mid:
            y = round_bits(y, *FORMATS[self.dtype])
        return self._r(y + np.asarray(b, dtype=np.float64)[None, :, None, None])

    def _grad_weight(self, problem: ConvProblem, xp: np.ndarray, dym: np.ndarray) -> np.ndarray:
        cols = self._unfold(problem, xp)                                   # (N, G, K, L)
        n, g, k, cl = cols.shape
        cols = cols.transpose(1, 2, 0, 3).reshape(g, k, n * cl)           # the batch and the image: one reduction
        dy = dym.transpose(1, 2, 0, 3).reshape(g, dym.shape[2], n * cl)
        return np.ascontiguousarray(self._gemm(dy, np.swapaxes(cols, -1, -2)).reshape(problem.weight_shape))

    def _grad_bias(self, problem: ConvProblem, dy: np.ndarray) -> np.ndarray:
        d = np.asarray(dy, dtype=np.float64)
        return self.reduce(d.transpose(1, 0, 2, 3).reshape(problem.c_out, -1))

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        p64 = problem.replace(dtype="float64")
        return self._out(super().forward(p64, self._in(x), self._in(w), self._in(b)))

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        g = super().backward(problem.replace(dtype="float64"), self._in(x), self._in(w), self._in(dy))
        return Grads(self._out(g.dx), self._out(g.dw), None if g.db is None else self._out(g.db))
