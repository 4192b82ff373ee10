"""Tests of ``conformance.numerics.compare``: the verdict of one comparison and the exact text of its failure message.

The message anatomy (design note, style section 7.9) follows numpy's ``assert_array_compare`` and torch's
``_make_mismatch_msg``: header, "Mismatched elements: n / N (p%)", the worst element ranked by error / bound,
up to five mismatch positions, and the NaN/Inf locations.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conformance.numerics.compare import MAX_LISTED, Verdict, compare, format_verdict
from conformance.numerics.tolerance import Bound

EXPECTED = np.array([[1.0, 2.0], [3.0, 4.0]])
K = np.full((2, 2), 3.0)


def _bound(value: float = 0.1, shape: tuple[int, ...] = (2, 2)) -> Bound:
    return Bound(np.full(shape, value), "det", "fp32", "c·u·|a|*|b|")


def _judge(actual: object, expected: np.ndarray = EXPECTED, bound: Bound | None = None, dtype: str = "float32",
           k: np.ndarray = K) -> Verdict:
    return compare("toy", "forward", actual, expected, bound or _bound(shape=expected.shape), k, dtype=dtype)


def f32(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


# -- the verdict --------------------------------------------------------------------------------

def test_equal_result_passes() -> None:
    v = _judge(f32([[1, 2], [3, 4]]))
    assert v.passed and v.max_ratio == 0.0 and v.n_mismatched == 0 and v.n_elements == 4
    assert v.first_mismatches == [] and v.nonfinite == "match"
    assert v.k_max == 3


def test_error_within_bound_passes_with_its_ratio() -> None:
    v = _judge(f32([[1, 2.0625], [3, 4]]))  # error 0.0625 against a bound of 0.1
    assert v.passed
    assert v.max_ratio == pytest.approx(0.625)
    assert v.worst_index == (0, 1)


def test_error_just_above_bound_fails() -> None:
    v = _judge(f32([[1, 2], [3, 4]]) + np.float32(0.125) * np.eye(2, dtype=np.float32))
    assert not v.passed
    assert v.n_mismatched == 2 and v.first_mismatches == [(0, 0), (1, 1)]
    assert v.max_ratio == pytest.approx(1.25)


def test_worst_element_is_ranked_by_error_over_bound() -> None:
    # the largest absolute error (0.5 at (0, 0)) is not the worst: 0.25 against a bound of 0.01 is
    bound = Bound(np.array([[1.0, 0.1], [0.01, 0.1]]), "det", "fp32", "B")
    v = _judge(f32([[1.5, 2], [3.25, 4]]), bound=bound)
    assert v.worst_index == (1, 0)
    assert v.max_ratio == pytest.approx(25.0)
    assert v.n_mismatched == 1  # 0.5 / 1.0 is within
    assert (v.worst_actual, v.worst_expected, v.worst_error, v.worst_bound) == (3.25, 3.0, 0.25, 0.01)


def test_zero_bound_demands_exact_zero_error() -> None:
    bound = Bound(np.zeros((2, 2)), "exact", "fp32", "0")
    assert _judge(f32([[1, 2], [3, 4]]), bound=bound).passed
    v = _judge(np.nextafter(f32([[1, 2], [3, 4]]), np.float32(9)), bound=bound)
    assert not v.passed and v.max_ratio == float("inf") and v.n_mismatched == 4


def test_nan_where_a_number_was_expected_fails_and_is_named() -> None:
    v = _judge(f32([[1, np.nan], [3, 4]]))
    assert not v.passed
    assert v.worst_index == (0, 1) and v.first_mismatches == [(0, 1)]
    assert v.max_ratio == float("inf")
    assert v.nonfinite == "1 NaN/Inf where the reference is finite"
    assert "NaN/Inf locations: 1 NaN/Inf where the reference is finite" in format_verdict(v)


def test_inf_where_a_number_was_expected_fails() -> None:
    v = _judge(f32([[1, 2], [-np.inf, 4]]))
    assert not v.passed and v.worst_index == (1, 0)
    assert v.nonfinite == "1 NaN/Inf where the reference is finite"


def test_nan_where_nan_expected_passes() -> None:
    expected = np.array([[1.0, np.nan], [3.0, 4.0]])
    v = _judge(f32([[1, np.nan], [3, 4]]), expected=expected)
    assert v.passed and v.max_ratio == 0.0 and v.nonfinite == "match"


def test_matching_infinities_pass() -> None:
    expected = np.array([[np.inf, 2.0], [3.0, -np.inf]])
    v = _judge(f32([[np.inf, 2], [3, -np.inf]]), expected=expected)
    assert v.passed and v.max_ratio == 0.0 and v.nonfinite == "match"


def test_number_where_nan_expected_fails() -> None:
    expected = np.array([[1.0, np.nan], [3.0, 4.0]])
    v = _judge(f32([[1, 2], [3, 4]]), expected=expected)
    assert not v.passed and v.worst_index == (0, 1)
    assert v.nonfinite == "finite values where the reference has NaN/Inf"


def test_opposite_infinities_fail() -> None:
    expected = np.array([[np.inf, 2.0], [3.0, 4.0]])
    v = _judge(f32([[-np.inf, 2], [3, 4]]), expected=expected)
    assert not v.passed and v.worst_index == (0, 0) and v.max_ratio == float("inf")


def test_opposite_infinities_are_not_reported_as_matching_locations() -> None:
    expected = np.array([[np.inf, 2.0], [3.0, 4.0]])
    v = _judge(f32([[-np.inf, 2], [3, 4]]), expected=expected)
    assert v.nonfinite != "match"


# -- not comparable -----------------------------------------------------------------------------

@pytest.mark.parametrize("actual, why", [
    pytest.param(None, "forward returned None", id="None"),
    pytest.param([[1.0, 2.0], [3.0, 4.0]], "forward returned list, not a numpy.ndarray", id="list"),
    pytest.param(np.zeros((2, 3), np.float32), "forward has shape (2, 3), expected (2, 2)", id="shape"),
    pytest.param(np.zeros((4,), np.float32), "forward has shape (4,), expected (2, 2)", id="flattened"),
    pytest.param(np.array([["a", "b"], ["c", "d"]]), "forward has dtype <U1, expected float32: not numbers",
                 id="dtype of no numbers"),
])
def test_not_comparable(actual: object, why: str) -> None:
    v = _judge(actual)
    assert not v.passed and v.max_ratio == float("inf")
    assert v.problem_text == why
    assert v.worst_index is None and v.n_elements == 0
    assert format_verdict(v) == f"forward of 'toy' is not comparable: {why}"


def test_float64_result_is_judged_for_float64() -> None:
    assert _judge(np.array([[1.0, 2.0], [3.0, 4.0]]), dtype="float64").passed


def test_another_dtype_is_judged_by_value_against_the_declared_dtypes_bound() -> None:
    """One deviation, one finding: the dtype is the contract check's; here the values are judged as they are."""
    assert _judge(np.array([[1.0, 2.0], [3.0, 4.0]])).passed  # right values in float64 for a float32 problem
    wrong = _judge(np.zeros((2, 2), np.float16))
    assert not wrong.passed and wrong.n_mismatched == 4 and math.isfinite(wrong.max_ratio)


# -- the message, line by line ------------------------------------------------------------------

def test_message_of_one_mismatch() -> None:
    v = _judge(f32([[1, 2], [3.5, 4]]))
    assert format_verdict(v).splitlines() == [
        "forward of 'toy' is not within tolerance (profile fp32, det bound = c·u·|a|*|b|)",
        "Mismatched elements: 1 / 4 (25.0%)",
        "Worst element: index (1, 0): actual 3.5, expected 3, |err| 0.5 = 5 × bound 0.1 (K = 3 terms)",
        "First 1 mismatches: (1, 0)",
        "NaN/Inf locations: match",
    ]


def test_message_of_a_nan() -> None:
    v = _judge(f32([[1, 2], [3, np.nan]]))
    assert format_verdict(v).splitlines() == [
        "forward of 'toy' is not within tolerance (profile fp32, det bound = c·u·|a|*|b|)",
        "Mismatched elements: 1 / 4 (25.0%)",
        "Worst element: index (1, 1): actual nan, expected 4, |err| inf = inf × bound 0.1 (K = 3 terms)",
        "First 1 mismatches: (1, 1)",
        "NaN/Inf locations: 1 NaN/Inf where the reference is finite",
    ]


def test_message_lists_at_most_five_mismatches() -> None:
    expected = np.arange(8.0).reshape(2, 4)
    actual = (expected + 1).astype(np.float32)  # every element off by 1 = 10 x bound
    actual[1, 3] += 1  # the worst: 20 x bound
    v = _judge(actual, expected=expected, k=np.full((2, 4), 7.0))
    lines = format_verdict(v).splitlines()
    assert lines[1] == "Mismatched elements: 8 / 8 (100.0%)"
    assert lines[2] == "Worst element: index (1, 3): actual 9, expected 7, |err| 2 = 20 × bound 0.1 (K = 7 terms)"
    assert MAX_LISTED == 5
    assert lines[3] == "First 5 mismatches: (0, 0) (0, 1) (0, 2) (0, 3) (1, 0)"


def test_message_percentage_is_rounded_to_one_place() -> None:
    expected = np.zeros((3, 3))
    actual = np.zeros((3, 3), np.float32)
    actual[2, 1] = 1
    v = _judge(actual, expected=expected, k=np.ones((3, 3)))
    assert format_verdict(v).splitlines()[1] == "Mismatched elements: 1 / 9 (11.1%)"


# -- the record ---------------------------------------------------------------------------------

def test_verdict_to_dict_is_json() -> None:
    v = _judge(f32([[1, 2], [3, np.nan]]))
    d = json.loads(json.dumps(v.to_dict()))
    assert d["max_ratio"] == "inf" and d["worst_actual"] == "nan" and d["worst_error"] == "inf"
    assert d["worst_index"] == [1, 1] and d["passed"] is False and d["n_mismatched"] == 1
    assert d["bound_kind"] == "det" and d["profile"] == "fp32"
