"""Reproduce one checked example: a copy-pasteable snippet, and the function it calls.

Every failure message and every worst case in the report ends with ``snippet(...)``; running it re-creates the
exact operands (from the seed and data kind), calls the backend and prints the verdict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conformance.backends import runner
from conformance.checks import oracle_free
from conformance.checks.differential import check_backward, check_forward
from conformance.inputs.data import make_inputs
from conformance.model.problem import ConvProblem
from conformance.numerics.compare import Verdict, format_verdict, worst_verdict
from conformance.numerics.tolerance import exact_bits_for


def snippet(spec: str, problem: ConvProblem, *, seed: int, data_kind: str, check: str,
            layout: str = "contiguous", seen_on: str = "") -> str:
    """Python that reproduces this example, given the backend's import path or registered name; ``seen_on`` (the
    machine and the backend's arithmetic facts) becomes its first comment: kernels differ between CPUs. The problem
    is its descriptor (``ConvProblem.parse``, label included), as ``conformance repro`` also takes it."""
    extra = "" if layout == "contiguous" else f", layout={layout!r}"
    return (
        (f"# seen on: {seen_on}\n" if seen_on else "")
        + "from conformance import ConvProblem, reproduce\n"
        f"problem = ConvProblem.parse({str(problem)!r})\n"
        f"print(reproduce({spec!r}, problem, seed={seed}, data_kind={data_kind!r}, check={check!r}{extra}))"
    )


def reproduce(spec: str, problem: ConvProblem, *, seed: int, data_kind: str = "normal",
              check: str = "forward", layout: str = "contiguous") -> str:
    """Run one example again and return the verdict text (``passed`` or the failure message). The checked call is
    preceded by one warm-up call of the same problem on garbage-filled operands (``warm_up``), so that a backend
    that returns memory left over from an earlier call fails here as it failed inside the suite's run."""
    from conformance.backends.registry import add_spec, build_registry

    reg = build_registry()
    backend = add_spec(reg, spec).backend
    v = run_example(backend, problem, seed=seed, data_kind=data_kind, check=check, layout=layout)
    return f"{check} of {backend.name!r}: passed (max error/bound = {v.max_ratio:.3g})" if v.passed \
        else format_verdict(v) + f"\n(after {WARM_UP_NOTE})"


#: what the reproduction does before the checked call, as its message says
WARM_UP_NOTE = ("a warm-up forward and backward call of the same problem on garbage-filled operands, so that memory "
                "a backend leaves from an earlier call is dirty here too")


def warm_up(backend: Any, problem: ConvProblem) -> None:
    """A forward and a backward call (where declared) on operands of the problem's shapes filled with a fixed
    garbage pattern (large values of both signs): a result built in memory that the backend did not write (a reused
    buffer, ``np.empty``) then holds garbage, in a fresh process as in the middle of a run."""
    rng = np.random.default_rng(0xBAD)
    dt = problem.np_dtype
    x, w, dy = (np.asarray(rng.uniform(-1e3, 1e3, s)).astype(dt) for s in (problem.input_shape, problem.weight_shape,
                                                                            problem.output_shape))
    b = np.asarray(rng.uniform(-1e3, 1e3, problem.bias_shape)).astype(dt) if problem.bias else None
    runner.call(backend, "forward", problem, x, w, b)
    if backend.capabilities.backward:
        runner.call(backend, "backward", problem, x, w, dy)


def run_example(backend: Any, problem: ConvProblem, *, seed: int, data_kind: str, check: str,
                layout: str = "contiguous") -> Verdict:
    if check in oracle_free.CHECKS:  # the oracle-free tier draws its operands from the seed itself
        verdicts = oracle_free.run_all(backend, problem, np.random.default_rng(seed))[0].get(check)
        if not verdicts:
            why = ("it applies to a transposed problem whose convolution maps back" if check == "transpose_adjoint"
                   else "it declares no backward")
            raise ValueError(f"check={check!r} does not apply to {backend.name!r} and {problem} ({why})")
        return worst_verdict(verdicts)
    warm_up(backend, problem)
    bits = exact_bits_for(backend.capabilities, problem)
    inputs = make_inputs(problem, seed, data_kind, exact_bits=bits)
    if layout == "broadcast":  # the layout tier feeds back the gradient of out.sum()
        inputs.dy = np.ones(problem.output_shape, dtype=problem.np_dtype)
    if check == "forward":
        res = check_forward(backend, problem, inputs, data_kind, layout=layout)
    else:
        res = check_backward(backend, problem, inputs, data_kind, which=(check,), layout=layout)
    return res.verdicts[0]
