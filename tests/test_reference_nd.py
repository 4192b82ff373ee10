"""The oracle in 1-D and 3-D (``conv1d``, ``conv3d``), validated as in 2-D (``tests/test_reference.py``) by
witnesses that share none of its code:

* a second oracle written here from the definition over Python ints, for any rank: one loop over every output
  index, channel and kernel tap (``itertools.product``), the padding modes by their textbook index rules;
* torch float64 autograd (``torch.nn.functional.conv1d``/``conv3d`` with ``F.pad`` for asymmetric and non-zero
  padding), where torch is importable;
* cases worked by hand.

The 2-D oracle must not change in the generalisation: a 2-D problem gives bitwise the same numbers as the 2-D
special case it was written as (the integer oracle here agrees with ``test_reference``'s too).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from helpers import small_int_operands
from hypothesis import example, given, settings

from conformance import Capabilities
from conformance.inputs.strategies import conv_problems, seeds
from conformance.model.problem import PADDING_MODES, ConvProblem
from conformance.numerics import reference as R

#: what the drawn problems may use: every padding mode, asymmetric padding, conv1d and conv3d
EVERY_FEATURE = Capabilities(dtypes=("float64",), padding_modes=PADDING_MODES, asymmetric_padding=True, ranks=(1, 3))


# -- the independent oracle: Python ints, any rank ---------------------------------------------------------------

def _source(j: int, n: int, mode: str) -> int | None:
    """The input position that padded position ``j`` (unpadded coordinates, may be < 0 or >= n) reads, or None
    for a zero: torch's padding modes, from their definitions."""
    if 0 <= j < n:
        return j
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if j < 0 else n - 1
    if mode == "circular":
        return j % n
    # reflect: mirror about the first and the last element without repeating it
    while not 0 <= j < n:
        j = -j if j < 0 else 2 * (n - 1) - j
    return j


def _terms(p: ConvProblem):
    """Every multiply-add ``y[n, o, *out] += x[n, ci, *src] * w[o, c, *tap]`` (taps reading a zero left out)."""
    cg, og = p.c_in // p.groups, p.c_out // p.groups
    for n, o in itertools.product(range(p.batch), range(p.c_out)):
        g = o // og
        for out in itertools.product(*(range(v) for v in p.out_sizes)):
            for c in range(cg):
                for tap in itertools.product(*(range(k) for k in p.kernel)):
                    src = [_source(o_ * s - b + t * d, size, p.padding_mode)
                           for o_, s, b, t, d, size in zip(out, p.stride, p.padding, tap, p.dilation, p.in_sizes)]
                    if None not in src:
                        yield (n, o) + out, (n, g * cg + c) + tuple(src), (o, c) + tap  # type: ignore[operator]



def int_passes(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
               dy: np.ndarray) -> dict[str, np.ndarray]:
    """forward, grad_input, grad_weight and grad_bias with Python ints (object arrays: no float arithmetic)."""
    xo, wo, dyo = (a.astype(object) for a in (x, w, dy))
    y = np.zeros(p.output_shape, dtype=object)
    dx = np.zeros(p.input_shape, dtype=object)
    dw = np.zeros(p.weight_shape, dtype=object)
    for yi, xi, wi in _terms(p):
        y[yi] += xo[xi] * wo[wi]
        dx[xi] += dyo[yi] * wo[wi]
        dw[wi] += dyo[yi] * xo[xi]
    if b is not None:
        for idx in np.ndindex(*p.output_shape):
            y[idx] += int(b[idx[1]])
    db = np.array([sum(dyo[(n, o) + out] for n in range(p.batch)
                       for out in itertools.product(*(range(v) for v in p.out_sizes)))
                   for o in range(p.c_out)], dtype=object)
    return {"forward": y, "grad_input": dx, "grad_weight": dw, "grad_bias": db}


def _exact_check(p: ConvProblem, seed: int) -> None:
    x, w, b, dy = small_int_operands(p, seed)
    want = int_passes(p, x, w, b, dy)
    got = {"forward": R.forward(p, x, w, b), "grad_input": R.grad_input(p, dy, w),
           "grad_weight": R.grad_weight(p, x, dy), "grad_bias": R.grad_bias(p, dy)}
    for check in want:
        assert got[check].shape == want[check].shape, f"{check} shape {got[check].shape} != {want[check].shape}: {p}"
        assert got[check].dtype == np.float64, check
        assert np.array_equal(got[check], want[check].astype(np.float64)), \
            f"{check} differs from the integer oracle for {p} (seed {seed})"


# -- the integer oracle itself, by hand ------------------------------------------------------------------------

def test_int_oracle_1d_by_hand() -> None:
    # x = 1..5, kernel [1, -1], stride 2, padding 1: padded 0 1 2 3 4 5 0, taps at 0, 2, 4 -> [0-1, 2-3, 4-5]
    p = ConvProblem.parse("ic1oc1iw5kw2sw2pw1")
    x = np.arange(1, 6, dtype=np.float64).reshape(1, 1, 5)
    w = np.array([1.0, -1.0]).reshape(1, 1, 2)
    dy = np.ones((1, 1, 3))
    r = int_passes(p, x, w, None, dy)
    assert r["forward"].tolist() == [[[-1, -1, -1]]]
    assert r["grad_input"].tolist() == [[[-1, 1, -1, 1, -1]]]   # each x read once, by alternating taps
    assert r["grad_weight"].tolist() == [[[0 + 2 + 4, 1 + 3 + 5]]]
    assert r["grad_bias"].tolist() == [3]


def test_int_oracle_3d_by_hand() -> None:
    # a 2x2x2 cube 1..8 and a 2x2x2 kernel that picks its two opposite corners: one output, 1 - 8
    p = ConvProblem.parse("ic1oc1id2ih2iw2kd2kh2kw2")
    x = np.arange(1, 9, dtype=np.float64).reshape(1, 1, 2, 2, 2)
    w = np.zeros((1, 1, 2, 2, 2))
    w[0, 0, 0, 0, 0], w[0, 0, 1, 1, 1] = 1, -1
    r = int_passes(p, x, w, np.array([10.0]), np.full((1, 1, 1, 1, 1), 2.0))
    assert r["forward"].tolist() == [[[[[1 - 8 + 10]]]]]
    assert r["grad_weight"].reshape(-1).tolist() == [2 * v for v in range(1, 9)]
    assert r["grad_input"].reshape(-1).tolist() == [2, 0, 0, 0, 0, 0, 0, -2]


def test_int_oracle_reflect_and_circular_sources() -> None:
    assert [_source(j, 4, "reflect") for j in range(-3, 7)] == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert [_source(j, 3, "circular") for j in range(-3, 6)] == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert [_source(j, 3, "replicate") for j in (-2, -1, 3, 4)] == [0, 0, 2, 2]
    assert [_source(j, 3, "zeros") for j in (-1, 0, 3)] == [None, 0, None]


# -- the reference against it, bit for bit ---------------------------------------------------------------------

FEATURE_EXAMPLES = [ConvProblem.parse(d) for d in (
    "ic1oc1iw7kw3",
    "mb2ic4oc6iw11kw3sw2pw1dw2g2_bias",
    "ic3oc3iw9kw4sw3pw2ew0g3",                        # depthwise, asymmetric padding, stride remainder
    "ic2oc1iw6kw3pw2_reflect",
    "ic1oc2iw5kw2pw3ew1_circular",
    "ic2oc2iw4kw3pw2_replicate_bias",
    "ic1oc1id4ih3iw5kd2kh2kw3",
    "mb2ic2oc4id5ih4iw3kd3kh2kw1sd2sh1sw2pd1ph0pw1dd1dh2dw1g2_bias",
    "ic2oc2id3ih4iw4kd1kh3kw3sd1sh2sw2pd0ph1pw1ed1eh0ew2",   # asymmetric in every axis (C3D-like 1x3x3)
    "ic1oc1id4ih4iw4kd3kh1kw1pd1ph0pw0_reflect",             # R(2+1)D's 3x1x1 temporal kernel, reflect
    "ic1oc1id3ih3iw3kd2kh2kw2pd2ph1pw1_circular_bias",
    "ic1oc1id5ih6iw7kd2kh3kw2sd3sh2sw3",                     # D != H != W, strides leaving remainders on every axis
)]


@pytest.mark.parametrize("p", FEATURE_EXAMPLES, ids=str)
def test_reference_matches_integer_oracle_on_features(p: ConvProblem) -> None:
    _exact_check(p, seed=2024)


@settings(max_examples=40, deadline=None)
@given(p=conv_problems(dtypes=("float64",), max_macs=2000, capabilities=EVERY_FEATURE), seed=seeds)
@example(p=FEATURE_EXAMPLES[7], seed=0)
def test_reference_matches_integer_oracle(p: ConvProblem, seed: int) -> None:
    _exact_check(p, seed)


def test_the_integer_oracle_agrees_with_the_2d_one() -> None:
    """The generic integer oracle here and ``test_reference``'s 2-D one (nested loops per index) are two
    derivations: on the 2-D feature problems both match the reference bitwise."""
    from tests.test_reference import FEATURE_EXAMPLES as FEATURES_2D

    for p in FEATURES_2D:
        _exact_check(p, seed=7)


def test_stride_remainder_gets_exact_zero_gradient_in_3d() -> None:
    # d=5, kd=2, stride 2 along depth: depth slice 4 is never read
    p = ConvProblem.parse("ic1oc1id5ih1iw1kd2kh1kw1sd2sh1sw1")
    dx = R.grad_input(p, np.ones(p.output_shape), np.ones(p.weight_shape))
    assert dx[0, 0, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_2d_is_the_special_case_bitwise() -> None:
    """A 3-D problem of depth 1 with a depth-1 kernel is its 2-D problem, and a 2-D problem of height 1 with a
    height-1 kernel its 1-D problem: the oracle gives the same numbers, bit for bit (one summation order)."""
    rng = np.random.default_rng(3)
    p2 = ConvProblem.parse("mb2ic4oc6ih7iw9kh3kw2sh2sw3ph1pw0dh2dw1g2_bias_reflect")
    p3 = ConvProblem.parse("mb2ic4oc6id1ih7iw9kd1kh3kw2sd1sh2sw3pd0ph1pw0dd1dh2dw1g2_bias_reflect")
    x, w, dy = (rng.standard_normal(s) for s in (p2.input_shape, p2.weight_shape, p2.output_shape))
    b = rng.standard_normal(p2.bias_shape)
    up = lambda a: a[:, :, None]  # noqa: E731
    assert np.array_equal(R.forward(p3, up(x), up(w), b)[:, :, 0], R.forward(p2, x, w, b))
    assert np.array_equal(R.grad_input(p3, up(dy), up(w))[:, :, 0], R.grad_input(p2, dy, w))
    assert np.array_equal(R.grad_weight(p3, up(x), up(dy))[:, :, 0], R.grad_weight(p2, x, dy))
    p1 = ConvProblem.parse("mb2ic4oc6iw9kw2sw3pw2dw1g2_bias_circular")
    p21 = ConvProblem.parse("mb2ic4oc6ih1iw9kh1kw2sh1sw3ph0pw2dh1dw1g2_bias_circular")
    x, w, dy = (rng.standard_normal(s) for s in (p1.input_shape, p1.weight_shape, p1.output_shape))
    assert np.array_equal(R.forward(p21, x[:, :, None], w[:, :, None], b)[:, :, 0], R.forward(p1, x, w, b))
    assert np.array_equal(R.grad_input(p21, dy[:, :, None], w[:, :, None])[:, :, 0], R.grad_input(p1, dy, w))


# -- torch float64 autograd ------------------------------------------------------------------------------------

def _torch_passes(torch, p: ConvProblem, x, w, b, dy):  # type: ignore[no-untyped-def]
    F = torch.nn.functional
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    # F.pad takes (last axis begin, end, the axis before, ...); torch's padding modes by their names
    pads = [v for b_, e in zip(reversed(p.padding), reversed(p.pad_end)) for v in (b_, e)]
    mode = {"zeros": "constant"}.get(p.padding_mode, p.padding_mode)
    xp = F.pad(tx, pads, mode=mode) if any(pads) else tx
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[p.rank]
    ty = conv(xp, tw, tb, stride=p.stride, dilation=p.dilation, groups=p.groups)
    ty.backward(torch.tensor(dy))
    out = {"forward": ty.detach().numpy(), "grad_input": tx.grad.numpy(), "grad_weight": tw.grad.numpy()}
    if tb is not None:
        out["grad_bias"] = tb.grad.numpy()
    return out


def test_reference_agrees_with_torch_float64_in_1d_and_3d() -> None:
    torch = pytest.importorskip("torch", reason="torch is optional; the torch cross-check needs it")

    @settings(max_examples=40, deadline=None)
    @given(p=conv_problems(dtypes=("float64",), max_macs=20_000, capabilities=EVERY_FEATURE), seed=seeds)
    @example(p=FEATURE_EXAMPLES[7], seed=1)
    @example(p=FEATURE_EXAMPLES[8], seed=1)
    def agrees(p: ConvProblem, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x, w, dy = (rng.standard_normal(s) for s in (p.input_shape, p.weight_shape, p.output_shape))
        b = rng.standard_normal(p.bias_shape) if p.bias else None
        theirs = _torch_passes(torch, p, x, w, b, dy)
        ours = {"forward": R.forward(p, x, w, b), "grad_input": R.grad_input(p, dy, w),
                "grad_weight": R.grad_weight(p, x, dy), "grad_bias": R.grad_bias(p, dy)}
        for check, want in theirs.items():
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(ours[check], want, rtol=1e-12, atol=1e-12 * scale, err_msg=f"{check} of {p}")

    agrees()


def test_int_oracle_counts_every_product() -> None:
    # no padding, stride 1: every output gets Cg*prod(kernel) products, so sum(forward of ones) is known
    p = ConvProblem.parse("mb2ic4oc2id3ih4iw5kd2kh3kw2g2")
    ones = int_passes(p, np.ones(p.input_shape), np.ones(p.weight_shape), None, np.ones(p.output_shape))
    assert ones["forward"].sum() == p.batch * p.c_out * math.prod(p.out_sizes) * 2 * 2 * 3 * 2
