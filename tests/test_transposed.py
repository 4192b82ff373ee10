"""The transposed-convolution oracle (``conformance.numerics.transposed``, issue #17), validated by witnesses that
share none of its code: a Python-int oracle of any rank written here from the scatter definition, torch float64
(``F.conv_transpose1d/2d/3d``, asymmetric padding as a crop of torch's unpadded result), cases worked by hand, and
the adjoint identity with the convolution oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import small_int_operands
from hypothesis import example, given, settings

from conformance import Capabilities
from conformance.checks.oracle_free import dual_convolution
from conformance.errors import InvalidProblem
from conformance.inputs.strategies import conv_problems, seeds
from conformance.model.problem import ConvProblem
from conformance.numerics import reference as R

EVERY = Capabilities(dtypes=("float64",), asymmetric_padding=True, ranks=(1, 2, 3))


def _positions(p: ConvProblem):  # type: ignore[no-untyped-def]
    """Every scatter ``y[n, g*Og+o, pos] += x[n, g*Cg+c, i] * w[g*Cg+c, o, t]`` that lands inside the output."""
    cg, og = p.c_in // p.groups, p.c_out // p.groups
    for n, ci in itertools.product(range(p.batch), range(p.c_in)):
        g, c = divmod(ci, cg)
        for i in itertools.product(*(range(v) for v in p.in_sizes)):
            for t in itertools.product(*(range(k) for k in p.kernel)):
                pos = tuple(ia * s + ta * d - b for ia, ta, s, d, b in zip(i, t, p.stride, p.dilation, p.padding))
                if all(0 <= q < o for q, o in zip(pos, p.out_sizes)):
                    for o in range(og):
                        yield (n, g * og + o) + pos, (n, ci) + i, (ci, o) + t


def int_passes(p: ConvProblem, x, w, b, dy) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    xo, wo, dyo = (a.astype(object) for a in (x, w, dy))
    y, dx, dw = (np.zeros(s, dtype=object) for s in (p.output_shape, p.input_shape, p.weight_shape))
    for yi, xi, wi in _positions(p):
        y[yi] += xo[xi] * wo[wi]
        dx[xi] += dyo[yi] * wo[wi]
        dw[wi] += dyo[yi] * xo[xi]
    if b is not None:
        y += b.astype(object).reshape((-1,) + (1,) * p.rank)
    return {"forward": y, "grad_input": dx, "grad_weight": dw, "grad_bias": dyo.sum(axis=(0, *range(2, 2 + p.rank)))}


def _exact(p: ConvProblem, seed: int) -> None:
    x, w, b, dy = small_int_operands(p, seed)
    want = int_passes(p, x, w, b, dy)
    got = {"forward": R.forward(p, x, w, b), "grad_input": R.grad_input(p, dy, w),
           "grad_weight": R.grad_weight(p, x, dy), "grad_bias": R.grad_bias(p, dy)}
    for check, v in want.items():
        assert got[check].shape == v.shape and np.array_equal(got[check], v.astype(np.float64)), f"{check} of {p}"


def test_shapes_and_rules_by_hand() -> None:
    # DCGAN's generator layer: 4x4 kernel, stride 2, padding 1 doubles 8x8 to 16x16; weight (C_in, C_out, 4, 4)
    p = ConvProblem.parse("mb64ic512oc256ih8kh4sh2ph1_transposed_float32")
    assert p.output_shape == (64, 256, 16, 16) and p.weight_shape == (512, 256, 4, 4)
    assert p.operation == "conv_transpose2d" and p.macs == 64 * 512 * 64 * 256 * 16
    # output = (in-1)*s - 2p + d*(k-1) + output_padding + 1 per axis: HiFi-GAN's k16 s8 upsampler, padding 4
    q = ConvProblem.parse("ic512oc256iw32kw16sw8pw4_transposed")
    assert q.out_sizes == ((32 - 1) * 8 - 8 + 15 + 1,) == (256,)
    assert ConvProblem.parse("ic1oc1iw3kw3sw2opw1_transposed").out_sizes == (8,)
    with pytest.raises(InvalidProblem, match=r"output_padding=2 \(w=2\), but output padding must be smaller than "
                                             r"either the stride \(2\) or the dilation \(1\)"):
        ConvProblem.parse("ic1oc1iw3kw3sw2opw2_transposed")
    with pytest.raises(InvalidProblem, match="output padding applies to a transposed convolution only"):
        ConvProblem.parse("ic1oc1iw3kw3sw2opw1")
    with pytest.raises(InvalidProblem, match="zero"):
        ConvProblem.parse("ic1oc1iw3kw3pw1_transposed_reflect")
    with pytest.raises(InvalidProblem, match="but it must be at least 1"):
        ConvProblem.parse("ic1oc1iw1kw1pw1_transposed")
    # dilation lets output padding reach the stride (torch's "either")
    assert ConvProblem.parse("ic1oc1iw3kw2sw1dw3opw2_transposed").out_sizes == (3 - 1 + 3 + 2 + 1,)


def test_int_oracle_by_hand() -> None:
    # x = [1, 2], w = [1, 10, 100], stride 2: y = [1, 10, 100+2, 20, 200]; output padding 1 appends a 0
    p = ConvProblem.parse("ic1oc1iw2kw3sw2opw1_transposed")
    x, w = np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]])
    r = int_passes(p, x, w, None, np.ones(p.output_shape))
    assert r["forward"].tolist() == [[[1, 10, 102, 20, 200, 0]]]
    assert r["grad_input"].tolist() == [[[111, 111]]] and r["grad_weight"].tolist() == [[[3, 3, 3]]]
    # padding 1 crops one element from each end: [10, 102, 20], and the gradients only see those
    q = ConvProblem.parse("ic1oc1iw2kw3sw2pw1_transposed")
    r = int_passes(q, x, w, None, np.ones(q.output_shape))
    assert r["forward"].tolist() == [[[10, 102, 20]]] and r["grad_weight"].tolist() == [[[2, 3, 1]]]


FEATURES = [ConvProblem.parse(d) for d in (
    "ic1oc1iw5kw3sw2_transposed",
    "mb2ic4oc6iw5kw3sw2pw1dw2g2opw1_bias_transposed",
    "ic2oc3iw4kw2sw3pw2ew0opw2_transposed",             # stride > kernel: gaps; asymmetric; output padding 2
    "ic3oc3ih4iw3kh3kw2sh2sw1ph1pw0g3oph1opw0_transposed",  # depthwise
    "mb2ic2oc4ih3iw4kh4kw4sh2sw2ph1pw1_bias_transposed",  # DCGAN
    "ic2oc2id3ih2iw3kd2kh2kw2sd2sh2sw2_transposed",     # U-Net up-convolution k2 s2
    "ic2oc4id2ih3iw2kd3kh1kw3sd1sh3sw2pd1ph0pw1dd2dh1dw1g2opd1oph2opw1_bias_transposed",
)]


@pytest.mark.parametrize("p", FEATURES, ids=str)
def test_oracle_matches_the_integer_oracle_on_features(p: ConvProblem) -> None:
    _exact(p, seed=5)


@settings(max_examples=40, deadline=None)
@given(p=conv_problems(capabilities=EVERY, ranks=(1, 2, 3), transposed=True, max_macs=1500), seed=seeds)
@example(p=FEATURES[-1], seed=0)
def test_oracle_matches_the_integer_oracle(p: ConvProblem, seed: int) -> None:
    _exact(p, seed)


def test_oracle_agrees_with_torch_float64() -> None:
    torch = pytest.importorskip("torch", reason="torch is optional; the torch cross-check needs it")
    F = torch.nn.functional

    @settings(max_examples=40, deadline=None)
    @given(p=conv_problems(capabilities=EVERY, ranks=(1, 2, 3), transposed=True, max_macs=20_000), seed=seeds)
    @example(p=FEATURES[-1], seed=1)
    @example(p=FEATURES[2], seed=1)
    def agrees(p: ConvProblem, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x, w, dy = (rng.standard_normal(s) for s in (p.input_shape, p.weight_shape, p.output_shape))
        b = rng.standard_normal(p.bias_shape) if p.bias else None
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        tb = torch.tensor(b, requires_grad=True) if b is not None else None
        conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[p.rank]
        full = conv_t(tx, tw, tb, stride=p.stride, padding=0, output_padding=p.output_padding, groups=p.groups,
                      dilation=p.dilation)  # then the asymmetric crop: [padding, padding + out) per axis
        ty = full[(slice(None), slice(None), *(slice(bb, bb + o) for bb, o in zip(p.padding, p.out_sizes)))]
        ty.backward(torch.tensor(dy))
        theirs = {"forward": ty.detach().numpy(), "grad_input": tx.grad.numpy(), "grad_weight": tw.grad.numpy()}
        if tb is not None:
            theirs["grad_bias"] = tb.grad.numpy()
        ours = {"forward": R.forward(p, x, w, b), "grad_input": R.grad_input(p, dy, w),
                "grad_weight": R.grad_weight(p, x, dy), "grad_bias": R.grad_bias(p, dy)}
        for check, want in theirs.items():
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(ours[check], want, rtol=1e-12, atol=1e-12 * scale, err_msg=f"{check} of {p}")

    agrees()


@settings(max_examples=30, deadline=None)
@given(p=conv_problems(capabilities=EVERY, ranks=(1, 2, 3), transposed=True, max_macs=5000), seed=seeds)
def test_transposed_is_the_adjoint_of_the_convolution(p: ConvProblem, seed: int) -> None:
    """<conv_transpose(x, w), y> = <x, conv(y, w)>: the transposed forward is the convolution's grad_input where the
    convolution of the same geometry maps the transposed output back onto its input (no output padding beyond the
    stride's remainder)."""
    conv = dual_convolution(p)
    if conv is None:  # output padding of dilation's kind: no convolution of this geometry maps back
        return
    rng = np.random.default_rng(seed)
    x, w, y = (rng.standard_normal(s) for s in (p.input_shape, p.weight_shape, p.output_shape))
    lhs = float(np.vdot(R.forward(p, x, w), y))
    rhs = float(np.vdot(x, R.forward(conv, y, w)))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_normwise_planes_of_a_transposed_problem() -> None:
    """The normwise bound's S per output plane (sum over the reduced channels of min(|a|_2 |c|_1, |a|_1 |c|_2)), by its
    definition, for each pass of a grouped transposed problem (weight (C_in, C_out/G, k))."""
    from conformance.numerics import tolerance as T

    p = ConvProblem.parse("mb2ic4oc6iw5kw3sw2g2_transposed")
    rng = np.random.default_rng(0)
    x, w, dy = (rng.standard_normal(s) for s in (p.input_shape, p.weight_shape, p.output_shape))
    cg, og = p.c_in // p.groups, p.c_out // p.groups

    def f(a: np.ndarray, c: np.ndarray) -> float:
        n1, n2 = (lambda v: np.abs(v).sum()), (lambda v: np.sqrt((v * v).sum()))
        return min(n2(a) * n1(c), n1(a) * n2(c))

    fwd = [[sum(f(x[n, o // og * cg + c], w[o // og * cg + c, o % og]) for c in range(cg)) for o in range(p.c_out)]
           for n in range(p.batch)]
    dx = [[sum(f(dy[n, c // cg * og + o], w[c, o]) for o in range(og)) for c in range(p.c_in)] for n in range(p.batch)]
    dw = [[sum(f(x[n, c], dy[n, c // cg * og + o]) for n in range(p.batch)) for o in range(og)] for c in range(p.c_in)]
    for check, (a, c), want in (("forward", (x, w), fwd), ("grad_input", (dy, w), dx), ("grad_weight", (x, dy), dw)):
        assert np.allclose(T.plane_norm_sum(check, p, a, c)[..., 0], want), check
    assert T.fft_grid(p) == (5 - 1) * 2 + 1 + 2


def test_onnx_convtranspose_cases_are_the_oracles() -> None:
    """ONNX's ConvTranspose node tests (1-D, 2-D, 3-D; pads, output_shape, output_padding, kernel_shape, dilations,
    auto_pad SAME_UPPER, group) resolve to problems whose oracle gives ONNX's expected outputs."""
    pytest.importorskip("onnx", reason="onnx is optional; its ConvTranspose node tests need it")
    from conformance.inputs import onnx_golden

    cases = onnx_golden.cases("ConvTranspose")
    assert {c.problem.rank for c in cases} == {1, 2, 3} and all(c.problem.transposed for c in cases)
    names = {c.name for c in cases}
    assert {"test_convtranspose_autopad_same", "test_convtranspose_output_shape", "test_convtranspose_pads",
            "test_convtranspose_dilations", "test_convtranspose_group_2"} <= names
    for c in cases:
        y = R.forward(c.problem, c.x, c.w, c.b)
        assert y.shape == c.y.shape and np.allclose(y, c.y, rtol=1e-5, atol=1e-5), c.name
    same = next(c for c in cases if c.name == "test_convtranspose_autopad_same").problem
    assert (same.padding, same.pad_end) == ((0, 0), (1, 1))  # SAME_UPPER: the larger half at the end


@pytest.mark.parametrize("auto, begin, end", [("SAME_UPPER", 0, 1), ("SAME_LOWER", 1, 0)])
def test_onnx_auto_pad_splits_as_the_spec_says(auto: str, begin: int, end: int) -> None:
    """onnxruntime#4086, #11927: SAME_UPPER and SAME_LOWER swapped. The spec: total = s*(in-1) + op + d*(k-1) + 1 -
    in*s, SAME_UPPER puts total//2 first, SAME_LOWER total - total//2."""
    from conformance.inputs.onnx_golden import transposed_pads

    x, w = np.zeros((1, 1, 3)), np.zeros((1, 1, 3))
    assert transposed_pads({"auto_pad": auto.encode(), "strides": [2]}, x, w) == ((begin,), (end,), (0,))
