"""ONNX's Conv node tests as golden vectors: their translation into problems (pads order, auto_pad) and the
oracle's agreement with ONNX's expected outputs, bit for bit (they are small integers)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conformance.inputs.onnx_golden import auto_pads, available, cases
from conformance.numerics import reference as R

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_every_2d_case_is_translated() -> None:
    names = {c.name for c in cases()}
    assert len(names) >= 6
    assert {"test_basic_conv_with_padding", "test_conv_with_strides_and_asymmetric_padding",
            "test_conv_with_autopad_same"} <= names


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_the_conv_module_s_cases_are_those_of_onnx_s_public_collector(op: str) -> None:
    """The cases read from ONNX's Conv (ConvTranspose) test module alone are exactly what ``collect_testcases(op)``
    (the public collector, which runs every operator's reference code: seconds) gives: names, order, problems and
    arrays. In a fresh interpreter: that collector imports every operator's test module and sets its op-type filter
    for good."""
    script = textwrap.dedent(f"""
        import pickle, sys
        from conformance.inputs import onnx_golden
        onnx_golden.conv_module_exports = lambda op="Conv": []  # the fallback: onnx's public collector alone
        cases = onnx_golden.cases({op!r})
        sys.stdout.buffer.write(pickle.dumps([(c.name, c.problem, c.x, c.w, c.b, c.y) for c in cases]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    collected = pickle.loads(out.stdout)
    ours = [(c.name, c.problem, c.x, c.w, c.b, c.y) for c in cases(op)]
    assert collected and [c[:2] for c in collected] == [c[:2] for c in ours]
    for theirs, mine in zip(collected, ours):
        for a, b in zip(theirs[2:], mine[2:]):
            assert (a is None) == (b is None), theirs[0]
            if a is not None and b is not None:
                assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), theirs[0]


@pytest.mark.parametrize("case", cases() if available() is None else [], ids=lambda c: c.name)
def test_oracle_matches_onnx(case) -> None:
    assert case.problem.output_shape == case.y.shape
    np.testing.assert_array_equal(R.forward(case.problem, case.x, case.w, case.b), case.y.astype(np.float64))


@pytest.mark.parametrize("mode, size, k, s, d, expected", [
    ("SAME_UPPER", 5, 3, 2, 1, (1, 1)),  # out 3: total (3-1)*2 + 3 - 5 = 2
    ("SAME_UPPER", 6, 3, 2, 1, (0, 1)),  # total 1: the odd one at the end
    ("SAME_LOWER", 6, 3, 2, 1, (1, 0)),  # ... or at the beginning
    ("SAME_UPPER", 7, 1, 3, 1, (0, 0)),  # a 1x1 kernel needs none (total would be negative)
    ("VALID", 7, 3, 1, 1, (0, 0)),
])
def test_auto_pad(mode: str, size: int, k: int, s: int, d: int, expected: tuple[int, int]) -> None:
    assert auto_pads(mode, size, k, s, d) == expected
