"""Judge one result against the reference and its per-element bound; render the verdict.

``compare`` returns a ``Verdict`` record (never raises on a wrong answer); ``format_verdict`` renders it the
way ``torch.testing.assert_close`` and ``numpy.testing.assert_array_compare`` do: what was compared, how many
elements mismatched, the worst one (ranked by error / bound) with its index, value, expected value, error and
bound, and where NaN/Inf differ. The pytest suite and the HTML report read the same record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from conformance.model.problem import numpy_dtype
from conformance.numerics.tolerance import Bound

MAX_LISTED = 5


@dataclass
class Verdict:
    impl: str
    check: str
    passed: bool
    max_ratio: float               #: max_i err_i / B_i (0/0 counts as 0, x/0 as inf)
    n_elements: int = 0
    n_mismatched: int = 0
    worst_index: tuple[int, ...] | None = None
    worst_actual: float | None = None
    worst_expected: float | None = None
    worst_error: float | None = None
    worst_bound: float | None = None
    bound_kind: str = ""
    profile: str = ""
    formula: str = ""
    k_max: int = 0                 #: the longest accumulation (max K_i) in this output
    k_at_worst: int = 0
    problem_text: str = ""         #: a one-line reason when the result is not even comparable
    nonfinite: str = "match"
    first_mismatches: list[tuple[int, ...]] = field(default_factory=list)
    #: looser profiles of the dtype under which this failing result would pass: a failure that one of them explains
    #: follows from a wrong declaration (the arithmetic check names it) rather than from a bug of its own
    passes_under: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # shallow (asdict deep-copies): the fields are scalars, one tuple and one list of tuples, copied here
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["first_mismatches"] = list(self.first_mismatches)
        d["passes_under"] = list(self.passes_under)
        d["max_ratio"] = _json_float(self.max_ratio)
        for k in ("worst_actual", "worst_expected", "worst_error", "worst_bound"):
            d[k] = _json_float(d[k])
        return d


def worst_verdict(verdicts: list[Verdict]) -> Verdict:
    """One verdict for several of the same check: the first failing one, else the one with the largest ratio."""
    failing = [v for v in verdicts if not v.passed]
    return failing[0] if failing else max(verdicts, key=lambda v: v.max_ratio)


def _json_float(v: float | None) -> float | str | None:
    if v is None:
        return None
    v = float(v)
    if np.isfinite(v):
        return v
    return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")


def _not_comparable(impl: str, check: str, why: str, bound: Bound) -> Verdict:
    return Verdict(impl, check, False, float("inf"), bound_kind=bound.kind, profile=bound.profile,
                   formula=bound.formula, problem_text=why)


def compare(impl: str, check: str, actual: Any, expected: np.ndarray, bound: Bound,
            k: np.ndarray, *, dtype: str) -> Verdict:
    """Compare ``actual`` with ``expected`` (float64) element by element against ``bound``."""
    if actual is None:
        return _not_comparable(impl, check, f"{check} returned None", bound)
    if not isinstance(actual, np.ndarray):
        return _not_comparable(impl, check, f"{check} returned {type(actual).__name__}, not a numpy.ndarray", bound)
    if actual.shape != expected.shape:
        return _not_comparable(impl, check, f"{check} has shape {actual.shape}, expected {expected.shape}", bound)
    # another dtype, or another memory layout, is the contract check's finding alone (one deviation, one finding):
    # here the values are read and judged against the declared dtype's bound wherever they can be read as numbers
    if actual.dtype != numpy_dtype(dtype):
        try:
            got = actual.astype(np.float64)
        except (TypeError, ValueError):
            return _not_comparable(impl, check, f"{check} has dtype {actual.dtype}, expected {dtype}: not numbers",
                                   bound)
    else:
        got = actual.astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf: handled just below
        err = np.abs(got - expected)
    both_nan = np.isnan(got) & np.isnan(expected)
    same_inf = np.isinf(got) & np.isinf(expected) & (np.sign(got) == np.sign(expected))
    err = np.where(both_nan | same_inf, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)  # NaN where a number was expected (or vice versa)
    b = bound.values
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / b)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    mismatched = ratio > 1.0
    nonfinite = "match"
    bad_nf = (~np.isfinite(got)) & np.isfinite(expected)
    wrong_nf = ~np.isfinite(expected) & ~(both_nan | same_inf) & ~np.isfinite(got)
    if bad_nf.any():
        nonfinite = f"{int(bad_nf.sum())} NaN/Inf where the reference is finite"
    elif (np.isfinite(got) & ~np.isfinite(expected)).any():
        nonfinite = "finite values where the reference has NaN/Inf"
    elif wrong_nf.any():
        nonfinite = f"{int(wrong_nf.sum())} NaN/Inf of the wrong kind (NaN for Inf, or the wrong sign)"

    v = Verdict(impl, check, passed=not mismatched.any(), max_ratio=float(ratio.max()) if ratio.size else 0.0,
                n_elements=int(err.size), n_mismatched=int(mismatched.sum()), bound_kind=bound.kind,
                profile=bound.profile, formula=bound.formula, nonfinite=nonfinite,
                k_max=int(k.max()) if k.size else 0)
    if ratio.size:
        flat = int(np.argmax(ratio))
        idx = np.unravel_index(flat, ratio.shape)
        v.worst_index = tuple(int(i) for i in idx)
        v.worst_actual, v.worst_expected = float(got[idx]), float(expected[idx])
        v.worst_error, v.worst_bound = float(err[idx]), float(b[idx])
        v.k_at_worst = int(k[idx])
        v.first_mismatches = [tuple(int(i) for i in ix) for ix in np.argwhere(mismatched)[:MAX_LISTED]]
    return v


def _g(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


def format_verdict(v: Verdict) -> str:
    """The failure message: header, count, worst element, first mismatches, NaN/Inf locations."""
    head = (f"{v.check} of {v.impl!r} is not within tolerance "
            f"(profile {v.profile}, {v.bound_kind} bound = {v.formula})")
    if v.problem_text:
        return f"{v.check} of {v.impl!r} is not comparable: {v.problem_text}"
    pct = 100.0 * v.n_mismatched / max(v.n_elements, 1)
    lines = [head, f"Mismatched elements: {v.n_mismatched} / {v.n_elements} ({pct:.1f}%)"]
    if v.worst_index is not None:
        times = "inf" if not np.isfinite(v.max_ratio) else f"{v.max_ratio:.3g}"
        lines.append(f"Worst element: index {v.worst_index}: actual {_g(v.worst_actual)}, expected "
                     f"{_g(v.worst_expected)}, |err| {_g(v.worst_error)} = {times} × bound {_g(v.worst_bound)} "
                     f"(K = {v.k_at_worst} terms)")
    if v.first_mismatches:
        lines.append(f"First {len(v.first_mismatches)} mismatches: " + " ".join(map(str, v.first_mismatches)))
    lines.append(f"NaN/Inf locations: {v.nonfinite}")
    return "\n".join(lines)
