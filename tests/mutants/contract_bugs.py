"""Mutants that break the call contract (``conformance.checks.contract``) or carry state between calls: inputs
modified in place, results of the wrong layout or dtype, answers that change from call to call, a declared
capability that raises, a cache that outlives its data.

Each class is ``tests.mutants._base.Conv`` (a correct im2col) with one realistic bug; ``expected`` names the
gate checks that must reject it.
"""

from __future__ import annotations

import numpy as np

try:
    from ._base import Conv
except ImportError:  # loaded by file path (the gate's --impl tests/mutants/contract_bugs.py:Name): no package
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv


class ScalesInputInPlace(Conv):
    """The input is pre-scaled in place (``x *= 0.1``, against overflow) and "restored" with ``x /= 0.1``:
    the caller's array comes back changed in its last bits."""

    name = "mut-scales-input-in-place"
    expected = ("contract",)

    def forward(self, problem, x, w, b):
        s = x.dtype.type(0.1)
        x *= s
        y = super().forward(problem, x, w, None) / s
        x /= s
        return y if b is None else self._add_bias(problem, y, b)


class NegatesGradientInPlace(Conv):
    """backward negates dy in place (``np.negative(dy, out=dy)``, to reuse a subtracting kernel), negates the
    results back, and never restores dy: the caller's upstream gradient comes back negated."""

    name = "mut-negates-gradient-in-place"
    expected = ("contract",)

    def backward(self, problem, x, w, dy):
        np.negative(dy, out=dy)
        dx, dw, db = super().backward(problem, x, w, dy)
        return -dx, -dw, (None if db is None else -db)


class OutputWrittenIntoInput(Conv):
    """An "in-place" fast path: when the output has the input's shape (C_in = C_out, a 'same' convolution) the
    result is written into x's buffer and x is returned. The numbers are right; the caller's x is gone."""

    name = "mut-output-written-into-input"
    expected = ("contract",)

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        if y.shape != x.shape:
            return y
        x[...] = y
        return x


class FortranOrderOutput(Conv):
    """The result is returned in Fortran (column-major) order, e.g. straight from a column-major BLAS
    call, where C-contiguous NCHW is required."""

    name = "mut-fortran-order-output"
    expected = ("contract",)

    def forward(self, problem, x, w, b):
        return np.asfortranarray(super().forward(problem, x, w, b))


class Float64ResultForFloat32(Conv):
    """float32 problems computed in float64 (more accurate, fine) but the result is never cast back: a float64
    array where float32 was asked for. One deviation, one finding: the contract check names the dtype, and the
    values (more accurate than float32's bound asks) pass the numeric checks."""

    name = "mut-float64-result-for-float32"
    expected = ("contract",)

    def forward(self, problem, x, w, b):
        return super().forward(problem.replace(dtype="float64"), x.astype(np.float64), w.astype(np.float64),
                               None if b is None else b.astype(np.float64))


class NonDeterministicSumOrder(Conv):
    """The reduction order changes from call to call (a split-K GEMM whose partial sums are combined with atomic
    adds in whatever order the threads finish), while the backend declares ``deterministic=True``: two calls with
    the same inputs differ in their last bits."""

    name = "mut-nondeterministic-sum-order"
    expected = ("contract",)

    def __init__(self) -> None:
        self._rng = np.random.default_rng(1234)  # seeded: the corpus itself must be reproducible

    def _gemm(self, a, b):
        order = self._rng.permutation(a.shape[-1])
        return np.matmul(np.ascontiguousarray(a[..., order]), np.ascontiguousarray(b[..., order, :]))


class RaisesOnGroups(Conv):
    """Declares ``groups=True`` but raises for groups > 1 (the grouped path was never finished)."""

    name = "mut-raises-on-groups"
    expected = ("forward", "contract")

    def forward(self, problem, x, w, b):
        if problem.groups > 1:
            raise NotImplementedError("grouped convolution is not implemented")
        return super().forward(problem, x, w, b)

    def backward(self, problem, x, w, dy):
        if problem.groups > 1:
            raise NotImplementedError("grouped convolution is not implemented")
        return super().backward(problem, x, w, dy)


class StaleColumnCache(Conv):
    """The unfolded input (im2col's workspace) is cached per problem, keyed by the geometry but not the data:
    a second call on the same problem with a different x reuses the first x's columns."""

    name = "mut-stale-column-cache"
    expected = ("linearity",)

    def __init__(self) -> None:
        self._cache: dict = {}

    def _unfold(self, problem, xp, stride=None, dilation=None):
        key = (problem, stride, dilation)
        if key not in self._cache:
            self._cache[key] = super()._unfold(problem, xp, stride, dilation)
        return self._cache[key]


class OutputBufferReused(Conv):
    """The output array is a workspace cached per output shape and returned as is: the next call overwrites
    the result the caller is still holding (numpy users expect a fresh array from every call)."""

    name = "mut-output-buffer-reused"
    expected = ("contract",)

    def __init__(self) -> None:
        self._out: dict = {}

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        key = (y.shape, y.dtype.str)
        if key not in self._out:
            self._out[key] = np.empty_like(y)
        self._out[key][...] = y
        return self._out[key]
