"""Differential checks: run one backend pass on one problem, compare with the oracle, return verdicts.

``check_forward`` and ``check_backward`` follow tinygrad's ``helper_test_op``: every pass is labelled
(``forward``, ``grad_input``, ``grad_weight``, ``grad_bias``) and every verdict is collected, because the
report needs every row, not only the first failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from conformance.backends import runner
from conformance.backends.backend import Capabilities
from conformance.errors import SuiteBug
from conformance.inputs.data import Inputs
from conformance.model.problem import ConvProblem
from conformance.numerics.compare import Verdict, compare
from conformance.numerics.tolerance import FORMULAS, PROFILES, Bound, bound, bound_kind, profiles_of, terms

BACKWARD_CHECKS = ("grad_input", "grad_weight", "grad_bias")
#: known answers that replace the oracle's (the seed notebook's golden values), by check
Expected = Optional[Mapping[str, Any]]


@dataclass
class CheckResult:
    verdicts: list[Verdict]
    seconds: float            #: time inside the backend
    error: str | None = None
    traceback: str | None = None


def _error_verdict(impl: str, check: str, why: str, kind: str, profile: str) -> Verdict:
    return Verdict(impl, check, False, float("inf"), bound_kind=kind, profile=profile,
                   formula=FORMULAS.get(kind, ""), problem_text=why)


def _judge(impl: str, check: str, actual: Any, p: ConvProblem, inp: Inputs, caps: Capabilities,
           data_kind: str, expected: Expected = None) -> Verdict:
    with np.errstate(all="ignore"):  # NaN/Inf data (the nonfinite kind) is judged, not warned about
        return _judge_quietly(impl, check, actual, p, inp, caps, data_kind, expected)


def _judge_quietly(impl: str, check: str, actual: Any, p: ConvProblem, inp: Inputs, caps: Capabilities,
                   data_kind: str, expected: Expected) -> Verdict:
    profile = caps.profile_for(p.dtype, check, p.transposed, p.rank)
    kind = bound_kind(caps.error_model, data_kind)
    t = terms(check, p, inp.x, inp.w, inp.b, inp.dy, want_m2=(kind == "prob"))
    if kind == "exact":
        limit = 2.0 ** PROFILES[profile].exact_bits
        if t.m1.size and t.m1.max() > limit:  # the tier's own precondition; a suite bug if it ever fires
            raise SuiteBug(f"exact tier data too large: max M1 {t.m1.max()} > 2^{PROFILES[profile].exact_bits}")
    b: Bound = bound(check, p, t, profile, kind, inp.x, inp.w, inp.dy)
    want = t.ref if expected is None or check not in expected else np.asarray(expected[check], dtype=np.float64)
    v = compare(impl, check, actual, want, b, t.k, dtype=p.dtype)
    if not v.passed and kind != "exact" and math.isfinite(v.max_ratio):
        # which looser profile would have accepted it: the arithmetic check's finding then explains this failure
        declared = PROFILES[profile]
        for other in profiles_of(p.dtype):
            if other.looseness > declared.looseness and compare(
                    impl, check, actual, want, bound(check, p, t, other.name, kind, inp.x, inp.w, inp.dy), t.k,
                    dtype=p.dtype).passed:
                v.passes_under.append(other.name)
    return v


def unreadable_result(out: runner.Outcome, what: str) -> str | None:
    """Why the result cannot be judged at all: not an array. An array of another layout is read as it is (the
    contract check alone finds the layout: one deviation, one finding)."""
    odd = [lay for lay in out.layouts if lay not in ("C", "F", "strided", "NoneType")]
    if odd:  # not an array at all: describe() gave its type
        return f"{what} returned a {odd[0]}, not a numpy array: results must be C-contiguous NCHW numpy arrays"
    return None


def check_forward(backend: Any, p: ConvProblem, inp: Inputs, data_kind: str, *,
                  expected: Expected = None, layout: str = "contiguous") -> CheckResult:
    """The backend gets fresh copies in ``layout`` (a backend that mutates them cannot corrupt the oracle)."""
    caps = backend.capabilities
    out = runner.call(backend, "forward", p, inp.x, inp.w, inp.b, layout=layout)
    if out.ok and unreadable_result(out, "forward"):
        out.error = unreadable_result(out, "forward")
    if not out.ok:
        v = _error_verdict(backend.name, "forward", out.error or "", bound_kind(caps.error_model, data_kind),
                           caps.profile_for(p.dtype, transposed=p.transposed, rank=p.rank))
        return CheckResult([v], out.seconds, out.error, out.traceback)
    return CheckResult([_judge(backend.name, "forward", out.value, p, inp, caps, data_kind, expected)], out.seconds)


def _unpack_grads(value: Any) -> tuple[Any, Any, Any] | str:
    try:
        dx, dw, db = value
    except (TypeError, ValueError):
        return f"backward returned {type(value).__name__}, not a (dx, dw, db) triple"
    return dx, dw, db


def check_backward(backend: Any, p: ConvProblem, inp: Inputs, data_kind: str,
                   which: Sequence[str] = BACKWARD_CHECKS, *, expected: Expected = None,
                   layout: str = "contiguous") -> CheckResult:
    caps = backend.capabilities
    out = runner.call(backend, "backward", p, inp.x, inp.w, inp.dy, layout=layout)
    if out.ok and unreadable_result(out, "backward"):
        out.error = unreadable_result(out, "backward")
    kind = bound_kind(caps.error_model, data_kind)
    profile = caps.profile_for(p.dtype, transposed=p.transposed, rank=p.rank)
    grads = _unpack_grads(out.value) if out.ok else (out.error or "")
    if isinstance(grads, str):
        return CheckResult([_error_verdict(backend.name, c, grads, kind, profile) for c in which],
                           out.seconds, grads, out.traceback)
    got = dict(zip(BACKWARD_CHECKS, grads))
    verdicts = []
    for c in which:
        if c == "grad_bias" and not p.bias:
            continue
        verdicts.append(_judge(backend.name, c, got[c], p, inp, caps, data_kind, expected))
    return CheckResult(verdicts, out.seconds)
