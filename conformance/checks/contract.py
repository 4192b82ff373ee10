"""Contract checks: what a backend's calls must respect besides the numbers.

For a forward and a backward call on one problem, made twice with the very same objects:

- every result is a numpy array of the problem's dtype and shape, C-contiguous (NCL, NCHW, NCDHW);
- the inputs are left unmodified, and no result shares memory with an input or with another call's result;
- the second call returns the same bits as the first (a backend declared non-deterministic: within the bound
  of its error model instead).

NaN and Inf propagation is the ``nonfinite`` data kind of the value checks (``conformance.inputs.data``): the reference
says which outputs must be NaN or infinite, and ``compare`` holds the backend to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.backends import runner
from conformance.inputs.data import Inputs
from conformance.model.problem import ConvProblem
from conformance.numerics.compare import Verdict

CHECK = "contract"


def _fail(impl: str, why: str) -> Verdict:
    return Verdict(impl, CHECK, False, float("inf"), problem_text=why)


def _shape_dtype(p: ConvProblem, what: str, a: Any, shape: tuple[int, ...]) -> str | None:
    if not isinstance(a, np.ndarray):
        return f"{what} is a {type(a).__name__}, not a numpy.ndarray"
    if a.shape != shape:
        return f"{what} has shape {a.shape}, expected {shape}"
    if a.dtype != p.np_dtype:
        return f"{what} has dtype {a.dtype}, expected {p.dtype}"
    if not a.flags.c_contiguous:
        return f"{what} is not C-contiguous (strides {a.strides}): outputs must be C-contiguous (N, C, *spatial)"
    return None


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and \
        bool(np.array_equal(a, b, equal_nan=True))


def check_calls(backend: Any, p: ConvProblem, inp: Inputs) -> tuple[list[Verdict], float]:
    """(one verdict per violated rule, an empty list where the contract holds; the seconds of one forward and one
    backward call inside the backend: each is made twice, and counts the mean of the two)."""
    impl, caps = backend.name, backend.capabilities
    calls: list[tuple[str, tuple[Any, ...], list[tuple[str, tuple[int, ...]]]]] = [
        ("forward", (p, inp.x, inp.w, inp.b), [("output", p.output_shape)])]
    if caps.backward:
        shapes: list[tuple[str, tuple[int, ...]]] = [("dx", p.input_shape), ("dw", p.weight_shape)]
        if p.bias:
            shapes.append(("db", p.bias_shape))
        calls.append(("backward", (p, inp.x, inp.w, inp.dy), shapes))
    bad: list[Verdict] = []
    seconds = 0.0
    for method, args, shapes in calls:
        out = runner.call(backend, method, *[a.copy() if isinstance(a, np.ndarray) else a for a in args], repeat=2)
        seconds += out.seconds
        if not out.ok:
            bad.append(_fail(impl, out.error or f"{method} failed"))
            continue
        if out.mutated:
            bad.append(_fail(impl, f"{method} modified its input(s) {', '.join(out.mutated)} in place"))
        if out.aliased:
            bad.append(_fail(impl, f"{method}: {'; '.join(out.aliased)} (return a fresh array: the caller owns it)"))
        values = [out.value] if method == "forward" else list(out.value) if isinstance(out.value, (tuple, list)) \
            else [out.value]
        if len(values) < len(shapes):
            bad.append(_fail(impl, f"{method} returned {len(values)} values, expected {len(shapes)}"))
            continue
        layouts = out.layouts + ["C"] * len(shapes)
        for (what, shape), v, layout in zip(shapes, values, layouts):
            why = _shape_dtype(p, f"{method} {what}", v, shape)
            if why is None and layout != "C":  # the worker saw the array before pickling made it contiguous
                why = f"{method} {what} is {layout}, not C-contiguous: outputs must be C-contiguous (N, C, *spatial)"
            if why:
                bad.append(_fail(impl, why))
        if caps.deterministic and out.repeats:
            again = [out.repeats[0]] if method == "forward" else list(out.repeats[0])
            for (what, _), a, b in zip(shapes, values, again):
                if not _same(a, b):
                    bad.append(_fail(impl, f"{method} {what} differs between two calls with the same inputs "
                                           "(declare deterministic=False if that is intended)"))
    return bad, seconds
