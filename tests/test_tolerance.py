"""Tests of the error bounds in ``conformance.numerics.tolerance``: they hold for correct results and are not vacuous.

The model and its figures are in ``shared/design/tolerance.md`` (Higham 2002, Lemma 3.1; Higham & Mary 2019).
Correct float32 results come from a direct method written here (numpy, one float32 multiply-add per term,
accumulated in float32 in a fixed order) and, where importable, torch on the CPU. A bound holds when every
ratio ``|got - ref| / B`` is at most 1; it is not vacuous when the ratio is not tiny and a result that is wrong
by a few bounds, or computed at a lower precision, fails it.

Worst ratios measured while writing these tests (float32, fp32 profile; numpy direct and torch 2.13 CPU gave
the same figures to two digits). 400 hypothesis problems (K <= 147): det = prob = 0.986 (normal), 0.997 (uniform),
0.992 (wide), all reached at K = 1, where the bound is a single rounding and tight; K = 2-3: 0.9, K = 16-63:
0.15-0.36. Fixed problems with K = 289-1024, elements with K >= 200: det 0.013 (normal), 0.014 (uniform), 0.050
(wide); prob 0.025, 0.028, 0.099; over all their elements 0.17-0.40 (border elements with few terms).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
from hypothesis import example, given, settings, target

from conformance.inputs.data import INT_RANGE, Inputs, make_inputs
from conformance.inputs.strategies import conv_problems, data_kinds, seeds
from conformance.model.problem import ConvProblem
from conformance.numerics.compare import compare, format_verdict
from conformance.numerics.tolerance import PROFILES, Terms, bound, bound_kind, gamma, term_counts, terms

CHECKS = ("forward", "grad_input", "grad_weight", "grad_bias")
U32 = 2.0**-24

# -- a direct float32 implementation: every product and every partial sum rounded to float32 ------

Results = dict[str, np.ndarray]


def _tap(p: ConvProblem, i: int, j: int) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (i, j) reads, one per output position."""
    (sh, sw), (dh, dw) = p.stride, p.dilation
    return (slice(i * dh, i * dh + (p.out_h - 1) * sh + 1, sh), slice(j * dw, j * dw + (p.out_w - 1) * sw + 1, sw))


def direct(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dy: np.ndarray,
           acc: type = np.float32) -> Results:
    """forward, grad_input, grad_weight (and grad_bias) of ``p``, summed one term at a time in ``acc``.

    Products are formed in float32 and rounded to ``acc`` before they are added, so ``acc=np.float16`` is a
    float16 accumulator fed by float32 products.
    """
    g, og, cg = p.groups, p.c_out // p.groups, p.c_in // p.groups
    (ph, pw) = p.padding
    xp = np.pad(x.astype(np.float32), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wg = w.astype(np.float32).reshape(g, og, cg, p.kh, p.kw)
    dyg = dy.astype(np.float32).reshape(p.batch, g, og, p.out_h, p.out_w)
    y = np.zeros((p.batch, g, og, p.out_h, p.out_w), acc)
    dxp = np.zeros((p.batch, g, cg, *xp.shape[2:]), acc)
    dw = np.zeros((g, og, cg, p.kh, p.kw), acc)
    for i in range(p.kh):
        for j in range(p.kw):
            rows, cols = _tap(p, i, j)
            xs = xp[:, :, rows, cols].reshape(p.batch, g, cg, p.out_h, p.out_w)
            for c in range(cg):  # y[n, g, o] += w[g, o, c, i, j] * x[n, g, c] at this tap
                y += (wg[None, :, :, c, i, j, None, None] * xs[:, :, None, c]).astype(acc)
            for o in range(og):  # dx[n, g, c] += w[g, o, c, i, j] * dy[n, g, o] at the positions this tap read
                dxp[:, :, :, rows, cols] += (wg[None, :, o, :, i, j, None, None] * dyg[:, :, o, None]).astype(acc)
            prod = xs[:, :, None] * dyg[:, :, :, None]  # (N, G, Og, Cg, Ho, Wo): dw terms of this tap
            for n in range(p.batch):
                for r in range(p.out_h):
                    for s in range(p.out_w):
                        dw[:, :, :, i, j] += prod[n, :, :, :, r, s].astype(acc)
    out = {"forward": y.reshape(p.output_shape).astype(np.float32),
           "grad_input": dxp.reshape(p.batch, p.c_in, *xp.shape[2:])[:, :, ph:ph + p.h, pw:pw + p.w].astype(np.float32),
           "grad_weight": dw.reshape(p.weight_shape).astype(np.float32)}
    if b is not None:
        out["forward"] = (out["forward"].astype(acc) + b.astype(np.float32)[None, :, None, None].astype(acc)).astype(
            np.float32)
        db = np.zeros(p.c_out, acc)
        for term in dy.astype(np.float32).transpose(0, 2, 3, 1).reshape(-1, p.c_out):
            db += term.astype(acc)
        out["grad_bias"] = db.astype(np.float32)
    return out


def torch_f32(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dy: np.ndarray) -> Results:
    torch = pytest.importorskip("torch", reason="torch is optional; the torch float32 cross-check needs it")
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    y = torch.nn.functional.conv2d(tx, tw, tb, stride=p.stride, padding=p.padding, dilation=p.dilation,
                                   groups=p.groups)
    y.backward(torch.tensor(dy))
    out = {"forward": y.detach().numpy(), "grad_input": tx.grad.numpy(), "grad_weight": tw.grad.numpy()}
    if tb is not None:
        out["grad_bias"] = tb.grad.numpy()
    return out


def ratios(p: ConvProblem, inp: Inputs, got: Results, profile: str = "fp32",
           kinds: tuple[str, ...] = ("det", "prob")) -> dict[tuple[str, str], float]:
    """max error / bound per (check, bound kind); asserts every verdict passes."""
    out = {}
    for check, actual in got.items():
        t = terms(check, p, inp.x, inp.w, inp.b, inp.dy, want_m2=True)
        for kind in kinds:
            bd = bound(check, p, t, profile, kind, inp.x, inp.w, inp.dy)
            v = compare("direct", check, actual, t.ref, bd, t.k, dtype=p.dtype)
            assert v.passed, f"{p!r}\n" + format_verdict(v)
            out[(check, kind)] = v.max_ratio
    return out


def test_direct_float32_by_hand() -> None:
    # the direct implementation itself, on a case worked out by hand (2 + 3 taps, exact in float32)
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=2, w=3, kh=1, kw=2, bias=True, dtype="float32")
    x = np.array([[[[1, 2, 3], [4, 5, 6]]]], np.float32)
    w = np.array([[[[10, 1]]]], np.float32)
    dy = np.array([[[[1, 0], [0, 2]]]], np.float32)
    got = direct(p, x, w, np.array([0.5], np.float32), dy)
    assert got["forward"].tolist() == [[[[12.5, 23.5], [45.5, 56.5]]]]
    assert got["grad_input"].tolist() == [[[[10, 1, 0], [0, 20, 2]]]]
    assert got["grad_weight"].tolist() == [[[[1 + 10, 2 + 12]]]]
    assert got["grad_bias"].tolist() == [3.0]


# -- (a) correct float32 results stay within the bounds, and the ratio is not tiny ----------------

def test_float32_direct_within_bounds_on_random_problems() -> None:
    worst: dict[str, float] = {}

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(p=conv_problems(dtypes=("float32",), max_macs=20_000), seed=seeds, kind=data_kinds())
    def run(p: ConvProblem, seed: int, kind: str) -> None:
        inp = make_inputs(p, seed, kind)
        for r in ratios(p, inp, direct(p, inp.x, inp.w, inp.b, inp.dy)).values():
            worst[kind] = max(worst.get(kind, 0.0), r)

    run()
    assert set(worst) == {"normal", "uniform", "wide"}
    # a single rounding (K = 1) can use up almost all of gamma(1, u) = u: the bound is tight there
    assert max(worst.values()) > 0.5, worst


LARGE_K = [
    ConvProblem(batch=2, c_in=32, c_out=4, h=12, w=12, kh=3, kw=3, padding=1, bias=True, dtype="float32"),
    ConvProblem(batch=2, c_in=16, c_out=8, h=20, w=20, kh=5, kw=5, stride=2, padding=2, dtype="float32"),
    ConvProblem(batch=4, c_in=8, c_out=16, h=16, w=16, kh=3, kw=3, dilation=2, groups=2, padding=2, bias=True,
                dtype="float32"),
]


@pytest.mark.parametrize("method", [direct, torch_f32], ids=["numpy-direct", "torch-cpu"])
def test_float32_within_bounds_at_large_k(method: Callable[..., Results]) -> None:
    det: list[float] = []
    prob: list[float] = []
    for p in LARGE_K:
        for kind in ("normal", "uniform", "wide"):
            inp = make_inputs(p, seed=2024, kind=kind)
            r = ratios(p, inp, method(p, inp.x, inp.w, inp.b, inp.dy))
            det += [v for (c, k), v in r.items() if k == "det"]
            prob += [v for (c, k), v in r.items() if k == "prob"]
    assert max(det) < 0.6 and max(prob) < 0.6, (max(det), max(prob))  # well inside: no flaky margin
    assert max(det) > 0.05 and max(prob) > 0.05, (max(det), max(prob))  # and not 100x too loose


def test_prob_bound_is_tighter_at_large_k() -> None:
    # K = 289 > 64, where 8·sqrt(K)·u < gamma(K, u): the probabilistic bound is the smaller one and still holds
    p = LARGE_K[0]
    inp = make_inputs(p, seed=7, kind="normal")
    r = ratios(p, inp, direct(p, inp.x, inp.w, inp.b, inp.dy))
    for check in ("forward", "grad_weight"):
        assert r[(check, "prob")] > 1.4 * r[(check, "det")], (check, r)
        assert r[(check, "prob")] > 0.005, (check, r)


# -- (b) not vacuous ------------------------------------------------------------------------------

PERTURBED = ConvProblem(batch=2, c_in=6, c_out=4, h=7, w=8, kh=3, kw=2, stride=(2, 1), padding=1, bias=True,
                        dtype="float32")


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("kind", ["det", "prob"])
def test_one_element_off_by_four_bounds_fails_and_is_named(check: str, kind: str) -> None:
    p, inp = PERTURBED, make_inputs(PERTURBED, seed=3, kind="normal")
    got = direct(p, inp.x, inp.w, inp.b, inp.dy)[check]
    t = terms(check, p, inp.x, inp.w, inp.b, inp.dy, want_m2=True)
    bd = bound(check, p, t, "fp32", kind, inp.x, inp.w, inp.dy)
    assert compare("direct", check, got, t.ref, bd, t.k, dtype="float32").passed
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(t.ref) * (t.k > 0))), t.ref.shape))
    bad = got.copy()
    bad[idx] = np.float32(float(got[idx]) + 4 * bd.values[idx])
    expected_ratio = abs(float(bad[idx]) - t.ref[idx]) / bd.values[idx]
    assert expected_ratio > 2  # the perturbation survives rounding to float32
    v = compare("direct", check, bad, t.ref, bd, t.k, dtype="float32")
    assert not v.passed
    assert v.n_mismatched == 1 and v.worst_index == idx and v.first_mismatches == [idx]
    assert v.max_ratio == pytest.approx(expected_ratio)
    assert f"Worst element: index {idx}:" in format_verdict(v)


def test_float16_accumulation_fails_the_fp32_bound_at_large_k() -> None:
    p = ConvProblem(batch=1, c_in=64, c_out=2, h=6, w=6, kh=3, kw=3, dtype="float32")  # forward K = 576
    inp = make_inputs(p, seed=11, kind="normal")
    low = direct(p, inp.x, inp.w, None, inp.dy, acc=np.float16)["forward"]
    t = terms("forward", p, inp.x, inp.w, None, inp.dy)
    fp32 = compare("fp16-acc", "forward", low, t.ref, bound("forward", p, t, "fp32", "det", inp.x, inp.w, inp.dy),
                   t.k, dtype="float32")
    assert not fp32.passed and fp32.max_ratio > 10, fp32.max_ratio
    assert fp32.n_mismatched > fp32.n_elements // 2
    # the same numbers meet the profile that describes them: the failure is the precision, not a wrong sum
    fp16 = compare("fp16-acc", "forward", low, t.ref,
                   bound("forward", p, t, "fp16-acc16", "det", inp.x, inp.w, inp.dy), t.k, dtype="float32")
    assert fp16.passed, format_verdict(fp16)


# -- (c) K = 0: padding-only outputs and stride remainders ------------------------------------------

def _all_bounds(check: str, p: ConvProblem, seed: int = 0) -> dict[str, np.ndarray]:
    inp = make_inputs(p, seed, "normal")
    t = terms(check, p, inp.x, inp.w, inp.b, inp.dy, want_m2=True)
    return {kind: bound(check, p, t, "fp32", kind, inp.x, inp.w, inp.dy).values for kind in
            ("det", "prob", "exact", "norm")}


def test_padding_only_outputs_have_k_zero() -> None:
    # a 1x1 input padded by 1 on each side, 1x1 kernel: only the centre of the 3x3 output reads the input
    p = ConvProblem(batch=1, c_in=2, c_out=1, h=1, w=1, kh=1, kw=1, padding=1, dtype="float32")
    k = term_counts("forward", p)
    expected_k = np.zeros((1, 1, 3, 3))
    expected_k[0, 0, 1, 1] = 2
    assert np.array_equal(k, expected_k)
    b = _all_bounds("forward", p)
    for kind in ("det", "prob", "exact"):
        assert np.all(b[kind][k == 0] == 0), kind
        assert kind == "exact" or np.all(b[kind][k > 0] > 0), kind
    assert np.all(b["norm"] > 0)  # a transform spreads its rounding over the whole plane


def test_padding_only_outputs_with_bias_have_one_term() -> None:
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=1, w=1, kh=1, kw=1, padding=1, bias=True, dtype="float32")
    assert term_counts("forward", p)[0, 0].tolist() == [[1, 1, 1], [1, 2, 1], [1, 1, 1]]


def test_stride_remainders_have_k_zero() -> None:
    # h=5, kh=2, stride 2: outputs read rows 0..3, row 4 is the remainder; w=4, kw=1, stride 3: columns 0 and 3
    p = ConvProblem(batch=2, c_in=1, c_out=3, h=5, w=4, kh=2, kw=1, stride=(2, 3), dtype="float32")
    k = term_counts("grad_input", p)
    read = np.zeros((5, 4), bool)
    read[:4, [0, 3]] = True
    assert np.array_equal(k > 0, np.broadcast_to(read, k.shape))
    assert np.all(k[k > 0] == 3)  # each x that is read meets one tap of each of the 3 output channels
    b = _all_bounds("grad_input", p)
    for kind in ("det", "prob", "exact"):
        assert np.all(b[kind][k == 0] == 0), kind
    assert np.all(b["norm"][k == 0] > 0)


def test_nonzero_at_k_zero_fails_the_componentwise_bound() -> None:
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=5, w=1, kh=2, kw=1, stride=(2, 1), dtype="float32")
    inp = make_inputs(p, 0, "normal")
    t = terms("grad_input", p, inp.x, inp.w, None, inp.dy)
    got = direct(p, inp.x, inp.w, None, inp.dy)["grad_input"]
    assert got[0, 0, 4, 0] == 0 and t.k[0, 0, 4, 0] == 0
    noisy = got.copy()
    noisy[0, 0, 4, 0] = np.float32(1e-30)  # rounding noise where only an exact 0 is right
    det = compare("x", "grad_input", noisy, t.ref, bound("grad_input", p, t, "fp32", "det", inp.x, inp.w, inp.dy),
                  t.k, dtype="float32")
    assert not det.passed and det.worst_index == (0, 0, 4, 0) and det.k_at_worst == 0
    norm = compare("x", "grad_input", noisy, t.ref,
                   bound("grad_input", p, t, "fp32", "norm", inp.x, inp.w, inp.dy), t.k, dtype="float32")
    assert norm.passed


# -- (d) gamma --------------------------------------------------------------------------------------

def test_gamma_values() -> None:
    assert gamma(np.array(0.0), U32) == 0.0
    assert gamma(np.array(1.0), U32) == pytest.approx(U32 / (1 - U32), rel=1e-15)
    assert gamma(np.array(1000.0), U32) == pytest.approx(1000 * U32 / (1 - 1000 * U32), rel=1e-15)
    assert np.isfinite(gamma(np.array(2.0**24 - 1), U32))


@pytest.mark.parametrize("k, u", [(2**24, 2.0**-24), (2**24 + 1, 2.0**-24), (2**11, 2.0**-11), (3000, 2.0**-11),
                                  (10**9, 2.0**-24)])
def test_gamma_is_infinite_when_ku_reaches_one(k: int, u: float) -> None:
    assert k * u >= 1
    assert gamma(np.array(float(k)), u) == math.inf
    got = gamma(np.array([1.0, float(k)]), u)
    assert np.isfinite(got[0]) and got[1] == math.inf


# -- (e) the exact tier's data keep every partial sum exact ---------------------------------------

#: K = 65 (forward, with bias), 64 (grad_input), 147 (grad_weight and grad_bias)
LONGEST_SUMS = [
    ConvProblem(batch=1, c_in=4, c_out=1, h=4, w=4, kh=4, kw=4, bias=True, dtype="float32"),
    ConvProblem(batch=1, c_in=1, c_out=4, h=10, w=10, kh=4, kw=4, dtype="float32"),
    ConvProblem(batch=3, c_in=1, c_out=2, h=7, w=7, kh=1, kw=1, bias=True, dtype="float32"),
]


@pytest.mark.parametrize("profile, exact_bits", [("fp32", 24), ("fp16-acc16", 11), ("bf16-acc32", 8)])
def test_exact_tier_data_fit(profile: str, exact_bits: int) -> None:
    assert PROFILES[profile].exact_bits == exact_bits

    @settings(max_examples=40, deadline=None, database=None)
    @given(p=conv_problems(dtypes=("float32",)), seed=seeds)
    @example(p=LONGEST_SUMS[0], seed=1)  # the longest sums the default strategy can draw, for each pass
    @example(p=LONGEST_SUMS[1], seed=2)
    @example(p=LONGEST_SUMS[2], seed=3)
    def run(p: ConvProblem, seed: int) -> None:
        inp = make_inputs(p, seed, "int", exact_bits=exact_bits)
        for a in (inp.x, inp.w, inp.dy) + ((inp.b,) if p.bias else ()):
            assert np.array_equal(a, np.round(a)) and np.abs(a).max() <= INT_RANGE
        worst = 0.0
        for check in CHECKS if p.bias else CHECKS[:3]:
            m1 = terms(check, p, inp.x, inp.w, inp.b, inp.dy).m1
            assert m1.max() <= 2.0**exact_bits, (check, m1.max())
            worst = max(worst, float(m1.max()) / 2.0**exact_bits)
        target(worst)  # steer towards the problems whose sums come closest to 2^p

    run()


@settings(max_examples=30, deadline=None)
@given(p=conv_problems(dtypes=("float32",), max_macs=5000), seed=seeds)
def test_exact_tier_direct_float32_is_bitwise(p: ConvProblem, seed: int) -> None:
    # the tier's premise: on its data a direct float32 method equals the float64 reference exactly
    inp = make_inputs(p, seed, "int", exact_bits=24)
    assert bound_kind("componentwise", "int") == "exact"
    for check, got in direct(p, inp.x, inp.w, inp.b, inp.dy).items():
        t = terms(check, p, inp.x, inp.w, inp.b, inp.dy)
        v = compare("direct", check, got, t.ref, bound(check, p, t, "fp32", "exact", inp.x, inp.w, inp.dy), t.k,
                    dtype="float32")
        assert v.passed, format_verdict(v)


@settings(max_examples=30, deadline=None)
@given(p=conv_problems(dtypes=("float32",), max_macs=5000), seed=seeds)
def test_exact_tier_float16_accumulation_is_bitwise(p: ConvProblem, seed: int) -> None:
    # with 11 exact bits even a float16 accumulator gets every partial sum exactly
    inp = make_inputs(p, seed, "int", exact_bits=11)
    for check, got in direct(p, inp.x, inp.w, inp.b, inp.dy, acc=np.float16).items():
        t = terms(check, p, inp.x, inp.w, inp.b, inp.dy)
        assert np.array_equal(got.astype(np.float64), t.ref), check


# -- (f) FFT: normwise accurate, componentwise not ----------------------------------------------------

FFT_WIDE = ConvProblem(batch=2, c_in=3, c_out=2, h=6, w=7, kh=2, kw=3, stride=(2, 1), padding=(1, 0),
                       dtype="float32")


def _fft_ratios(p: ConvProblem, seed: int, kind: str) -> dict[tuple[str, str], float]:
    from conformance.impls.fft import FFTConv

    fft = FFTConv()
    inp = make_inputs(p, seed, kind)
    dx, dw, db = fft.backward(p, inp.x, inp.w, inp.dy)
    got = {"forward": fft.forward(p, inp.x, inp.w, inp.b), "grad_input": dx, "grad_weight": dw}
    if db is not None:
        got["grad_bias"] = db
    out = {}
    profile = "fp32" if p.dtype == "float32" else "fp64"
    for check, actual in got.items():
        t = terms(check, p, inp.x, inp.w, inp.b, inp.dy)
        for bk in ("det", "norm"):
            bd = bound(check, p, t, profile, bk, inp.x, inp.w, inp.dy)
            out[(check, bk)] = compare("fft", check, actual, t.ref, bd, t.k, dtype=p.dtype).max_ratio
    return out


def test_fft_passes_norm_but_fails_componentwise_on_wide_data() -> None:
    r = _fft_ratios(FFT_WIDE, seed=0, kind="wide")
    assert all(r[(c, "norm")] <= 1 for c in ("forward", "grad_input", "grad_weight")), r
    # measured (scipy 1.17): forward 617x, grad_input 5.5e5x the det bound (norm ratios 0.11, 0.12):
    # small outputs inherit the rounding error of the largest ones in their plane
    assert r[("forward", "det")] > 100, r
    assert r[("grad_input", "det")] > 1e4, r


@pytest.mark.parametrize("p, seed", [
    (ConvProblem(batch=1, c_in=4, c_out=4, h=16, w=16, kh=3, kw=3, padding=1, bias=True, dtype="float32"), 1),
    (ConvProblem(batch=2, c_in=4, c_out=6, h=12, w=11, kh=3, kw=2, dilation=(2, 1), groups=2, dtype="float64"), 2),
])
@pytest.mark.parametrize("kind", ["normal", "wide"])
def test_fft_passes_norm_on_larger_grids(p: ConvProblem, seed: int, kind: str) -> None:
    r = _fft_ratios(p, seed, kind)
    worst = max(v for (c, bk), v in r.items() if bk == "norm")
    # measured 0.006-0.05 with the (3·log2(F)+1)-stage bound: holds, and is not a thousand times too loose
    assert 0.002 < worst <= 1, r


@pytest.mark.parametrize("p, seed, check", [
    pytest.param(ConvProblem(batch=2, c_in=1, c_out=1, h=1, w=2, kh=1, kw=1, dtype="float64"), 87, "forward",
                 id="1x2 float64 forward 1.18x"),
    pytest.param(ConvProblem(batch=2, c_in=9, c_out=9, h=2, w=1, kh=1, kw=1, stride=2, groups=3, dtype="float32"),
                 141218, "grad_weight", id="2x1 float32 grad_weight 1.36x"),
])
def test_fft_passes_norm_on_small_grids(p: ConvProblem, seed: int, check: str) -> None:
    assert _fft_ratios(p, seed, "wide")[(check, "norm")] <= 1


def test_bound_kind_dispatch() -> None:
    assert bound_kind("normwise", "int") == "norm" and bound_kind("normwise", "normal") == "norm"
    assert bound_kind("componentwise", "normal") == "prob" and bound_kind("componentwise", "uniform") == "prob"
    assert bound_kind("componentwise", "wide") == "det" and bound_kind("componentwise", "int") == "exact"
    p, inp = PERTURBED, make_inputs(PERTURBED, 0)
    t = terms("forward", p, inp.x, inp.w, inp.b, inp.dy)
    with pytest.raises(ValueError, match="kind='loose', but it must be one of det, prob, exact, norm"):
        bound("forward", p, t, "fp32", "loose", inp.x, inp.w, inp.dy)



@pytest.mark.parametrize("dtype, profile", [("float16", "fp16-acc32"), ("bfloat16", "bf16-acc32")])
def test_norm_bound_covers_the_final_rounding_to_a_low_precision_output(dtype: str, profile: str) -> None:
    # a normwise backend with a float16/bfloat16 output (cuDNN in half precision) rounds every element once more
    # at the end: the exactly computed result rounded to the dtype must pass; the transform term alone
    # (u_acc·stages·S, ~2.4e-6 relative here) is far below that rounding (2^-11, 2^-8 relative)
    p = ConvProblem(batch=2, c_in=3, c_out=4, h=9, w=8, kh=3, kw=3, padding=1, dtype=dtype)
    inp = make_inputs(p, 3)
    t = terms("forward", p, inp.x, inp.w, inp.b, inp.dy)
    rounded = t.ref.astype(inp.x.dtype)
    bd = bound("forward", p, t, profile, "norm", inp.x, inp.w, inp.dy)
    v = compare("half", "forward", rounded, t.ref, bd, t.k, dtype=p.dtype)
    assert v.passed, format_verdict(v)
    assert v.max_ratio > 0.1, v.max_ratio  # the rounding term is what carries it, not a loose bound


def test_bounds_carry_the_float64_oracles_own_error() -> None:
    # dx of a 1x1 convolution with three output channels: three products, summed by the oracle (a BLAS matrix
    # product, in an order of the BLAS's choosing) and by an implementation in another. These values (found by a
    # search over wide-range data) make two correct summation orders differ by 1.27·γ(3, 2^-53)·M1, so without
    # the oracle's own error in the bound a correct float64 implementation fails wherever the two orders differ
    # (measured on a GPU host's numpy: a naive float64 loop failed by 1.1×).
    p = ConvProblem(batch=1, c_in=1, c_out=3, h=1, w=1, kh=1, kw=1, dtype="float64")
    dy = np.array([-0.037157928070931975, -12.679821451623205, -38.737437135962736]).reshape(p.output_shape)
    w = np.array([-3.1388477242834463, -0.09083335985956255, -0.8312818831552982]).reshape(p.weight_shape)
    x = np.zeros(p.input_shape)
    t0, t1, t2 = (dy * w.reshape(1, 3, 1, 1))[0, :, 0, 0]
    orders = {"(0+1)+2": (t0 + t1) + t2, "(2+1)+0": (t2 + t1) + t0, "(0+2)+1": (t0 + t2) + t1}
    t = terms("grad_input", p, x, w, None, dy)
    one_gamma = float(gamma(3, 2.0**-53) * t.m1.item())
    spread = max(orders.values()) - min(orders.values())
    assert spread > one_gamma, (spread, one_gamma)  # the data does what the comment says
    for oracle_value in orders.values():  # whichever order the oracle's BLAS takes, every other order passes
        t_oracle = Terms(np.full(p.input_shape, oracle_value), t.m1, t.k)
        bd = bound("grad_input", p, t_oracle, "fp64", "det", x, w, dy)
        for name, value in orders.items():
            v = compare(name, "grad_input", np.full(p.input_shape, value), t_oracle.ref, bd, t.k, dtype="float64")
            assert v.passed, format_verdict(v)
    assert "(oracle)" in bd.formula


def test_norm_bound_ignores_non_finite_inputs_of_the_plane() -> None:
    # one NaN in x makes the reference NaN where it is read; a normwise backend's finite outputs elsewhere in the
    # plane are still judged against a finite bound (a NaN plane norm made every one of them an inf× failure)
    p = ConvProblem(batch=1, c_in=2, c_out=2, h=6, w=6, kh=3, kw=3, dtype="float64")
    inp = make_inputs(p, 0)
    x = inp.x.copy()
    x[0, 0, 0, 0] = np.nan
    t = terms("forward", p, x, inp.w, None, inp.dy)
    got = t.ref.copy()
    got[0, 0, 3, 3] = np.nextafter(got[0, 0, 3, 3], np.inf)  # one ulp off, far from the NaN
    bd = bound("forward", p, t, "fp64", "norm", x, inp.w, inp.dy)
    v = compare("normwise", "forward", got, t.ref, bd, t.k, dtype="float64")
    assert v.passed, format_verdict(v)
    got[0, 0, 3, 3] *= 1 + 1e-9  # and a real error there still fails
    assert not compare("normwise", "forward", got, t.ref, bd, t.k, dtype="float64").passed


@pytest.mark.parametrize("dtype, mid, plain", [("float16", "fp16-acc32-mid16", "fp16-acc32"),
                                               ("bfloat16", "bf16-acc32-mid16", "bf16-acc32")])
def test_mid_profile_covers_a_bias_added_to_the_rounded_convolution(dtype: str, mid: str, plain: str) -> None:
    # torch CUDA in half precision (measured on an H200): the convolution is rounded to the dtype, then the bias is
    # added and rounded again. Where the bias cancels the convolution, that first rounding (u·|conv| <= u·M1) is
    # far above the final one (u·|ref|): the -mid16 profile's u_mid·M1 covers it, the plain profile does not
    p = ConvProblem(batch=1, c_in=3, c_out=2, h=5, w=5, kh=3, kw=3, bias=True, dtype=dtype)
    inp = make_inputs(p, 4)
    half = inp.x.dtype
    conv = terms("forward", p, inp.x, inp.w, None, inp.dy).ref
    b = (-conv[0, :, 2, 2] * (1 + 2.0**-6)).astype(half)  # cancels the convolution at the centre
    t = terms("forward", p, inp.x, inp.w, b, inp.dy, want_m2=True)
    got = (conv.astype(half).astype(np.float64) + b.astype(np.float64)[None, :, None, None]).astype(half)
    for kind in ("det", "prob"):
        v = compare("two roundings", "forward", got, t.ref, bound("forward", p, t, mid, kind, inp.x, inp.w, inp.dy),
                    t.k, dtype=dtype)
        assert v.passed, format_verdict(v)
    v = compare("two roundings", "forward", got, t.ref, bound("forward", p, t, plain, "det", inp.x, inp.w, inp.dy),
                t.k, dtype=dtype)
    assert not v.passed and v.worst_index[2:] == (2, 2), format_verdict(v)


def test_the_fft_grid_counts_both_sides_padding_in_every_rank() -> None:
    from conformance.numerics.tolerance import fft_grid

    sym = ConvProblem(batch=1, c_in=1, c_out=1, h=8, w=6, kh=3, kw=2, padding=(1, 2), dilation=(2, 1))
    assert fft_grid(sym) == (8 + 2 + 2 * 2) * (6 + 4 + 1)
    asym = sym.replace(padding_end=(3, 0))  # bottom 3, right 0
    assert fft_grid(asym) == (8 + 1 + 3 + 2 * 2) * (6 + 2 + 0 + 1)
    assert fft_grid(ConvProblem(batch=1, c_in=1, c_out=1, w=16, kw=5, padding=2)) == 16 + 4 + 4
    assert fft_grid(ConvProblem(batch=1, c_in=1, c_out=1, d=4, h=5, w=6, kd=3, kh=1, kw=1)) == 6 * 5 * 6


def test_term_counts_and_magnitudes_in_1d_and_3d() -> None:
    """K and M1 per rank (#16): an interior output of a conv3d sums Cg*kd*kh*kw products (one more with a bias),
    grad_bias N*prod(out_sizes); M1 of all-ones data is K; the normwise bound is built per plane of any rank."""
    from conformance.numerics.tolerance import PROFILES, norm_bound, term_counts, terms

    p3 = ConvProblem.parse("mb2ic4oc2id5ih6iw7kd3kh2kw3g2_bias")
    k = term_counts("forward", p3)
    assert k.shape == p3.output_shape and k.max() == k.min() == 2 * 3 * 2 * 3 + 1  # no padding: every output alike
    assert term_counts("grad_bias", p3).tolist() == [2 * 3 * 5 * 5] * 2
    p1 = ConvProblem.parse("mb3ic2oc2iw9kw3pw1")
    k1 = term_counts("forward", p1)[0, 0]
    assert k1.tolist() == [4] + [6] * 7 + [4]  # the ends read one zero of padding each
    ones = [np.ones(s) for s in (p1.input_shape, p1.weight_shape, p1.output_shape)]
    t = terms("forward", p1, ones[0], ones[1], None, ones[2])
    assert np.array_equal(t.m1, t.k) and np.array_equal(t.ref, t.k)
    b = norm_bound("forward", p3, terms("forward", p3, *(np.ones(s) for s in (p3.input_shape, p3.weight_shape)),
                                        np.ones(p3.bias_shape), np.ones(p3.output_shape)),
                   PROFILES["fp32"], np.ones(p3.input_shape), np.ones(p3.weight_shape), np.ones(p3.output_shape))
    assert b.shape == p3.output_shape and np.all(b > 0)
