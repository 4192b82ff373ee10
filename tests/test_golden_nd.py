"""The conv1d and conv3d golden cases (``conformance/data/golden_nd.json``), derived again here by hand: closed forms
a reader can check on paper, then the oracle and the Python-int oracle against the file."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.inputs.golden import golden_case
from conformance.numerics import reference as R
from tests.test_reference_nd import int_passes


def test_conv1d_golden_by_hand() -> None:
    p, inp, expected = golden_case("float64", rank=1)
    assert p.rank == 1 and p.output_shape == (1, 1, 8)
    xp = [0, 3, 1, 4, 1, 5, 9, 2, 6, 0]  # pi's digits, one zero of padding on each side
    # y[i] = xp[i] - xp[i + 2]: the central difference [1, 0, -1]
    assert expected["forward"].ravel().tolist() == [xp[i] - xp[i + 2] for i in range(8)]
    # dw[t] = the sum of the window of xp that tap t reads: xp[t .. t + 7]
    assert expected["grad_weight"].ravel().tolist() == [sum(xp[t:t + 8]) for t in range(3)]
    # every interior x is read by all three taps (1 + 0 - 1 = 0); x[0] misses tap 2's read, x[7] tap 0's
    assert expected["grad_input"].ravel().tolist() == [1, 0, 0, 0, 0, 0, 0, -1]


def test_conv3d_golden_by_hand() -> None:
    p, inp, expected = golden_case("float64", rank=3)
    assert p.rank == 3 and p.output_shape == (1, 1, 2, 3, 3)
    d, h, w = np.meshgrid(range(2), range(3), range(3), indexing="ij")
    x0 = 3 * d + 2 * h + w  # the ramp at each window's first corner
    # sum_abc (1 + 2a + b - c) * (x0 + 3a + 2b + c) = 16*x0 + 3*12 + 2*10 + 1*6  (16 = sum w; 12, 10, 6: the sums of
    # w over a = 1, b = 1, c = 1)
    assert np.array_equal(expected["forward"][0, 0], 16 * x0 + 62)
    a, b, c = np.meshgrid(range(2), range(2), range(2), indexing="ij")
    # dw[a,b,c] = sum over the 18 windows of x at the offset: 18*(3a + 2b + c) + sum of x0 over the windows (81)
    assert int(x0.sum()) == 81
    assert np.array_equal(expected["grad_weight"][0, 0], 18 * (3 * a + 2 * b + c) + 81)
    # dx[i, j, k] = the sum of w over the taps whose window exists: per axis the tap t is valid where 0 <= i - t < out
    dx = np.zeros((3, 4, 4))
    for (i, j, k), _ in np.ndenumerate(dx):
        dx[i, j, k] = sum(1 + 2 * ta + tb - tc for ta in range(2) for tb in range(2) for tc in range(2)
                          if 0 <= i - ta < 2 and 0 <= j - tb < 3 and 0 <= k - tc < 3)
    assert np.array_equal(expected["grad_input"][0, 0], dx)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_golden_values_equal_the_oracle_and_the_integer_oracle(rank: int) -> None:
    p, inp, expected = golden_case("float64", rank=rank)
    assert np.array_equal(R.forward(p, inp.x, inp.w), expected["forward"])
    assert np.array_equal(R.grad_weight(p, inp.x, inp.dy), expected["grad_weight"])
    assert np.array_equal(R.grad_input(p, inp.dy, inp.w), expected["grad_input"])
    ints = int_passes(p, inp.x, inp.w, None, inp.dy)
    for check in ("forward", "grad_weight", "grad_input"):
        assert np.array_equal(ints[check].astype(np.float64), expected[check]), check


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("rank", [1, 3])
def test_golden_operands_are_exact_in_every_dtype(rank: int, dtype: str) -> None:
    p, inp, _ = golden_case(dtype, rank=rank)
    exact, _, _ = golden_case("float64", rank=rank)[1].x, None, None
    assert p.dtype == dtype and np.array_equal(inp.x.astype(np.float64), exact)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_golden_sums_fit_bfloat16(rank: int) -> None:
    """The golden tier's data is exact: every sum of |x|*|w| (M1) within 2^8, bfloat16's exact integers."""
    from conformance.numerics.tolerance import terms

    p, inp, _ = golden_case("float64", rank=rank)
    for check in ("forward", "grad_input", "grad_weight"):
        assert terms(check, p, inp.x, inp.w, None, inp.dy).m1.max() <= 256, check


def test_transposed_golden_cases_by_hand() -> None:
    p, inp, e = golden_case("float64", rank=1, transposed=True)
    # positions i*2 + t: x0 -> 0 1 2, x1 -> 2 3 4, x2 -> 4 5 6; padding 1 crops position 0
    full = [1 * 1, 1 * 2, 1 * 3 + 2 * 1, 2 * 2, 2 * 3 + 3 * 1, 3 * 2, 3 * 3]
    assert p.out_sizes == (6,) and e["forward"].ravel().tolist() == full[1:]
    assert e["grad_input"].ravel().tolist() == [2 + 3, 1 + 2 + 3, 1 + 2 + 3]   # x0's tap 0 landed on the crop
    assert e["grad_weight"].ravel().tolist() == [2 + 3, 1 + 2 + 3, 1 + 2 + 3]  # tap 0 of x0 likewise
    p, inp, e = golden_case("float64", rank=2, transposed=True)
    x, w = inp.x[0, 0], inp.w[0, 0]
    blocks = np.block([[x[0, 0] * w, x[0, 1] * w], [x[1, 0] * w, x[1, 1] * w]])  # k2 s2: one block per input
    assert np.array_equal(e["forward"][0, 0], blocks)
    assert (e["grad_input"] == w.sum()).all() and (e["grad_weight"] == x.sum()).all()
    p, inp, e = golden_case("float64", rank=3, transposed=True)
    y = e["forward"][0, 0, :, 0]  # (depth 4, width 3): depth rows 2i + a, width j + b overlapping
    assert y.tolist() == [[1, 2 + 2, 4], [3, 4 + 6, 8], [3, 6 + 4, 8], [9, 12 + 12, 16]]


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_transposed_golden_values_equal_both_oracles(rank: int) -> None:
    from tests.test_transposed import int_passes as transposed_ints

    p, inp, expected = golden_case("float64", rank=rank, transposed=True)
    assert p.transposed and p.rank == rank
    ints = transposed_ints(p, inp.x, inp.w, None, inp.dy)
    for check, got in (("forward", R.forward(p, inp.x, inp.w)), ("grad_input", R.grad_input(p, inp.dy, inp.w)),
                       ("grad_weight", R.grad_weight(p, inp.x, inp.dy))):
        assert np.array_equal(got, expected[check]) and np.array_equal(ints[check].astype(float), expected[check])
