"""Tests of the oracle ``conformance.numerics.reference``, validated independently of its own code.

Semantics: ``torch.nn.functional.conv2d`` (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html),
cross-correlation with zero padding, and the gradients of ``L = sum(conv2d(x, w, b) * dy)``.

Three independent witnesses:

* a second oracle in this file, written from the definition with nested loops over Python ints (exact
  arithmetic, no numpy), which the reference must match bit for bit on small-integer data;
* the seed notebook's golden values (PyTorch's answers for a Sobel kernel on a 6x5 image);
* torch float64 autograd, where torch is importable.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings

from conformance.inputs.golden import golden_case
from conformance.inputs.strategies import conv_problems, seeds
from conformance.model.problem import ConvProblem
from conformance.numerics import reference as R

Nested = list  # nested lists of Python ints, NCHW / OIHW

SMALL_INT = 4  # data in [-4, 4]: every sum is an exact small integer in float64


# -- the independent oracle: the definition, one Python loop per index ---------------------------

def _terms(p: ConvProblem):
    """Every multiply-add of the forward pass, as ``(n, o, i, j, ci, c, kp, kq, ih, iw)``.

    ``y[n, o, i, j] += x[n, ci, ih, iw] * w[o, c, kp, kq]`` where ``ci = group(o)*Cg + c`` and
    ``ih = i*sh - ph + kp*dh``, ``iw = j*sw - pw + kq*dw``; taps on the zero padding are left out.
    """
    (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
    cg, og = p.c_in // p.groups, p.c_out // p.groups
    for n in range(p.batch):
        for o in range(p.c_out):
            g = o // og
            for i in range(p.out_h):
                for j in range(p.out_w):
                    for c in range(cg):
                        for kp in range(p.kh):
                            for kq in range(p.kw):
                                ih, iw = i * sh - ph + kp * dh, j * sw - pw + kq * dw
                                if 0 <= ih < p.h and 0 <= iw < p.w:
                                    yield n, o, i, j, g * cg + c, c, kp, kq, ih, iw


def _zeros(shape: tuple[int, ...]) -> Nested:
    if len(shape) == 1:
        return [0] * shape[0]
    return [_zeros(shape[1:]) for _ in range(shape[0])]


def int_forward(p: ConvProblem, x: Nested, w: Nested, b: list[int] | None) -> Nested:
    y = _zeros(p.output_shape)
    for n, o, i, j, ci, c, kp, kq, ih, iw in _terms(p):
        y[n][o][i][j] += x[n][ci][ih][iw] * w[o][c][kp][kq]
    if b is not None:
        for n in range(p.batch):
            for o in range(p.c_out):
                for i in range(p.out_h):
                    for j in range(p.out_w):
                        y[n][o][i][j] += b[o]
    return y


def int_grad_input(p: ConvProblem, dy: Nested, w: Nested) -> Nested:
    # dL/dx[n, ci, ih, iw] = sum of dy[n, o, i, j] * w[o, c, kp, kq] over the forward terms that read x there
    dx = _zeros(p.input_shape)
    for n, o, i, j, ci, c, kp, kq, ih, iw in _terms(p):
        dx[n][ci][ih][iw] += dy[n][o][i][j] * w[o][c][kp][kq]
    return dx


def int_grad_weight(p: ConvProblem, x: Nested, dy: Nested) -> Nested:
    # dL/dw[o, c, kp, kq] = sum of dy[n, o, i, j] * x[n, ci, ih, iw] over the forward terms that use that weight
    dw = _zeros(p.weight_shape)
    for n, o, i, j, ci, c, kp, kq, ih, iw in _terms(p):
        dw[o][c][kp][kq] += dy[n][o][i][j] * x[n][ci][ih][iw]
    return dw


def int_grad_bias(p: ConvProblem, dy: Nested) -> list[int]:
    return [sum(dy[n][o][i][j] for n in range(p.batch) for i in range(p.out_h) for j in range(p.out_w))
            for o in range(p.c_out)]


def _int_data(p: ConvProblem, seed: int) -> dict[str, Nested]:
    """Small integers as nested Python-int lists (drawn by numpy, but no numpy arithmetic touches them)."""
    rng = np.random.default_rng(seed)
    draw = lambda shape: rng.integers(-SMALL_INT, SMALL_INT + 1, shape).tolist()  # noqa: E731
    return {"x": draw(p.input_shape), "w": draw(p.weight_shape), "b": draw(p.bias_shape) if p.bias else None,
            "dy": draw(p.output_shape)}


def _f64(a: Nested) -> np.ndarray:
    return np.array(a, dtype=np.float64)


# -- the Python-int oracle itself, on cases worked by hand -----------------------------------------

def test_int_oracle_on_a_hand_worked_case() -> None:
    # 1x1x3x3 input 1..9, 2x2 kernel [[1, 0], [0, -1]]: y[i, j] = x[i, j] - x[i+1, j+1] = -4 everywhere
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=3, w=3, kh=2, kw=2)
    x = [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]]
    w = [[[[1, 0], [0, -1]]]]
    assert int_forward(p, x, w, None) == [[[[-4, -4], [-4, -4]]]]
    dy = [[[[1, 1], [1, 1]]]]
    assert int_grad_input(p, dy, w) == [[[[1, 1, 0], [1, 0, -1], [0, -1, -1]]]]
    assert int_grad_weight(p, x, dy) == [[[[12, 16], [24, 28]]]]
    assert int_grad_bias(p, dy) == [4]


def test_int_oracle_padding_and_stride_by_hand() -> None:
    # 1x1x2x2 input, 1x1 kernel 2, padding 1, stride 2: out 2x2 reads padded rows/cols 0 and 2
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=2, w=2, kh=1, kw=1, stride=2, padding=1)
    x = [[[[1, 2], [3, 4]]]]
    assert int_forward(p, x, [[[[2]]]], [5]) == [[[[5, 5], [5, 13]]]]
    # only x[1, 1] is ever read: every other input gets a zero gradient
    assert int_grad_input(p, [[[[1, 1], [1, 1]]]], [[[[2]]]]) == [[[[0, 0], [0, 2]]]]


# -- the reference against the Python-int oracle, bit for bit --------------------------------------

def _problem(**kw: object) -> ConvProblem:
    return ConvProblem(**{"batch": 1, "c_in": 1, "c_out": 1, "h": 5, "w": 5, "kh": 3, "kw": 3, **kw})  # type: ignore[arg-type]


FEATURE_EXAMPLES = [
    _problem(bias=True),
    _problem(c_in=4, c_out=6, groups=2, batch=2),
    _problem(c_in=3, c_out=3, groups=3, kh=2, kw=1),
    _problem(h=7, w=6, stride=(2, 3)),                 # uneven strides: remainders on both axes
    _problem(h=8, w=7, kh=2, kw=3, stride=(3, 2), padding=(0, 2)),
    _problem(h=3, w=4, padding=(2, 1), kh=4, kw=2),    # kernel larger than the unpadded input
    _problem(h=7, w=9, dilation=(2, 3), padding=1),
    _problem(c_in=4, c_out=2, groups=2, h=9, w=8, kh=3, kw=2, stride=2, padding=(1, 0), dilation=(2, 1),
             bias=True, batch=2),
]


def _exact_check(p: ConvProblem, seed: int) -> None:
    d = _int_data(p, seed)
    x, w, b, dy = _f64(d["x"]), _f64(d["w"]), None if d["b"] is None else _f64(d["b"]), _f64(d["dy"])
    checks = {
        "forward": (R.forward(p, x, w, b), int_forward(p, d["x"], d["w"], d["b"])),
        "grad_input": (R.grad_input(p, dy, w), int_grad_input(p, d["dy"], d["w"])),
        "grad_weight": (R.grad_weight(p, x, dy), int_grad_weight(p, d["x"], d["dy"])),
        "grad_bias": (R.grad_bias(p, dy), int_grad_bias(p, d["dy"])),
    }
    for check, (got, want) in checks.items():
        want_arr = _f64(want)
        assert got.shape == want_arr.shape, f"{check} shape {got.shape} != {want_arr.shape} for {p!r}"
        assert got.dtype == np.float64, check
        assert np.array_equal(got, want_arr), f"{check} differs from the integer oracle for {p!r}, seed {seed}"


@pytest.mark.parametrize("p", FEATURE_EXAMPLES, ids=str)
def test_reference_matches_integer_oracle_on_features(p: ConvProblem) -> None:
    _exact_check(p, seed=12345)


@settings(max_examples=60, deadline=None)
@given(p=conv_problems(dtypes=("float64",), max_macs=3000), seed=seeds)
@example(p=FEATURE_EXAMPLES[-1], seed=0)
def test_reference_matches_integer_oracle(p: ConvProblem, seed: int) -> None:
    _exact_check(p, seed)


def test_reference_zero_gradient_where_no_tap_reads() -> None:
    # h=5, kh=2, stride 2: out_h=2 reads rows 0..3; row 4 is the stride remainder and must get exactly 0
    p = _problem(h=5, w=1, kh=2, kw=1, stride=(2, 1))
    dx = R.grad_input(p, np.ones(p.output_shape), np.ones(p.weight_shape))
    assert dx[0, 0, :, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


# -- the seed notebook's golden values ----------------------------------------------------------

def test_golden_values_equal_the_oracle_bitwise() -> None:
    p, inp, expected = golden_case("float64")
    assert np.array_equal(R.forward(p, inp.x, inp.w), expected["forward"])
    assert np.array_equal(R.grad_weight(p, inp.x, inp.dy), expected["grad_weight"])
    assert np.array_equal(R.grad_input(p, inp.dy, inp.w), expected["grad_input"])
    # the numbers printed in the notebook, typed in independently of golden.json
    assert R.grad_weight(p, inp.x, inp.dy)[0, 0].tolist() == [[15, 18, 25], [21, 23, 28], [30, 31, 34]]


def test_golden_values_equal_the_integer_oracle() -> None:
    p, inp, expected = golden_case("float64")
    x, w, dy = (a.astype(int).tolist() for a in (inp.x, inp.w, inp.dy))
    assert np.array_equal(_f64(int_forward(p, x, w, None)), expected["forward"])
    assert np.array_equal(_f64(int_grad_weight(p, x, dy)), expected["grad_weight"])
    assert np.array_equal(_f64(int_grad_input(p, dy, w)), expected["grad_input"])


def test_golden_case_in_every_dtype_in_a_fresh_interpreter() -> None:
    """bfloat16 is ml_dtypes' type, known to numpy by name only once ml_dtypes is imported: the golden case of a
    bfloat16 backend failed with "data type 'bfloat16' not understood" when it was the first test of a run
    (``pytest -k "naive and golden"``) and passed after any other test had imported ml_dtypes."""
    code = ("import sys; from conformance.inputs.golden import golden_case; assert 'ml_dtypes' not in sys.modules; "
            "print(*(str(golden_case(d)[1].x.dtype) for d in ('float64', 'float32', 'float16', 'bfloat16')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["float64", "float32", "float16", "bfloat16"]


# -- torch float64 autograd ---------------------------------------------------------------------

def test_reference_agrees_with_torch_float64() -> None:
    torch = pytest.importorskip("torch", reason="torch is optional; the torch cross-check needs it")

    @settings(max_examples=40, deadline=None)
    @given(p=conv_problems(dtypes=("float64",), max_macs=20_000), seed=seeds)
    @example(p=FEATURE_EXAMPLES[-1], seed=1)
    def agrees(p: ConvProblem, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x, w, dy = (rng.standard_normal(s) for s in (p.input_shape, p.weight_shape, p.output_shape))
        b = rng.standard_normal(p.bias_shape) if p.bias else None
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True) if b is not None else None
        ty = torch.nn.functional.conv2d(tx, tw, tb, stride=p.stride, padding=p.padding, dilation=p.dilation,
                                        groups=p.groups)
        ty.backward(torch.tensor(dy))
        pairs = {
            "forward": (R.forward(p, x, w, b), ty.detach().numpy()),
            "grad_input": (R.grad_input(p, dy, w), tx.grad.numpy()),
            "grad_weight": (R.grad_weight(p, x, dy), tw.grad.numpy()),
        }
        if tb is not None:
            pairs["grad_bias"] = (R.grad_bias(p, dy), tb.grad.numpy())
        for check, (ours, theirs) in pairs.items():
            scale = max(1.0, float(np.abs(theirs).max()))
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * scale, err_msg=f"{check} of {p!r}")

    agrees()
