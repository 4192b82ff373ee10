"""The fft backend's fast path (``impls/fft_tiled.py``: overlap-save tiles, a scratch buffer) against its plain
method (``impls/fft.py``, whole planes): every tiling gives the plain method's numbers (the last tiles overhanging
the output, padding wider than the kernel, stride, dilation, groups), results never alias the buffer, and threads
do not share it; the plain method itself gives the oracle's. Speed itself is measured by benchmarks/bench_impls.py,
never here."""

from __future__ import annotations

import math
import threading

import conformance.impls.fft as fft
import conformance.impls.fft_tiled as tiled
import numpy as np
import pytest
import scipy.fft as sfft

from conformance import ConvProblem
from conformance.numerics import reference

PROBLEMS = [
    ConvProblem(batch=1, c_in=3, c_out=2, h=23, w=19, kh=5, kw=3, padding=2, bias=True, dtype="float64"),
    ConvProblem(batch=2, c_in=4, c_out=6, h=17, w=13, kh=3, kw=4, stride=(2, 3), padding=(1, 2), dilation=(2, 1),
                groups=2, dtype="float64"),
    ConvProblem(batch=2, c_in=2, c_out=3, h=6, w=9, kh=2, kw=2, stride=(3, 1), padding=(4, 3), dtype="float64"),
    ConvProblem(batch=1, c_in=2, c_out=2, h=30, w=4, kh=3, kw=3, stride=(2, 4), padding=(0, 6), dilation=(3, 1),
                dtype="float64"),
    ConvProblem(batch=1, c_in=8, c_out=8, h=40, w=40, kh=11, kw=11, padding=5, dtype="float32"),
]


def _forced(tile: tuple[int, int]):
    """A ``_plan`` that cuts every correlation into tiles of (at most) ``tile`` outputs per axis."""

    def plan(out, k, stride, *channels):
        ts = [min(t, o) for t, o in zip(tile, out)]
        return tuple((sfft.next_fast_len((t - 1) * s + kk, real=True), t, -(-o // t))
                     for o, kk, s, t in zip(out, k, stride, ts))

    return plan


def _data(p: ConvProblem, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, w, dy = (rng.standard_normal(s).astype(p.dtype) for s in (p.input_shape, p.weight_shape, p.output_shape))
    b = rng.standard_normal(p.c_out).astype(p.dtype) if p.bias else None
    return x, w, b, dy


@pytest.fixture
def plain(monkeypatch) -> fft.FFTConv:
    """The fft backend held to its plain method (no problem is large enough for the tiles)."""
    monkeypatch.setattr(fft, "TILED_FROM_MACS", math.inf)
    return fft.FFTConv()


def _close(got: np.ndarray, ref: np.ndarray, dtype: str) -> None:
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert got.shape == ref.shape and got.dtype == np.dtype(dtype) and got.flags.c_contiguous
    assert np.abs(got - ref).max() <= tol * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("tile", [(1, 1), (2, 3), (4, 4), (7, 5), (1000, 1000)], ids=str)
@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: str(p))
def test_every_tiling_gives_the_plain_method(monkeypatch, plain: fft.FFTConv, p: ConvProblem,
                                            tile: tuple[int, int]) -> None:
    monkeypatch.setattr(tiled, "_plan", _forced(tile))
    x, w, b, dy = _data(p)
    _close(tiled.forward(p, x, w, b), plain.forward(p, x, w, b), p.dtype)
    for got, want in zip(tiled.backward(p, x, w, dy), plain.backward(p, x, w, dy)):
        if want is None:
            assert got is None
        else:
            _close(got, want, p.dtype)


@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: str(p))
def test_the_plain_method_gives_the_reference(plain: fft.FFTConv, p: ConvProblem) -> None:
    x, w, b, dy = _data(p)
    _close(plain.forward(p, x, w, b), reference.forward(p, x, w, b), p.dtype)
    dx, dw, _ = plain.backward(p, x, w, dy)
    _close(dx, reference.grad_input(p, dy, w), p.dtype)
    _close(dw, reference.grad_weight(p, x, dy), p.dtype)


#: conv1d and conv3d problems (#16): the same method over one or three axes
ND_PROBLEMS = [ConvProblem.parse(d) for d in (
    "ic3oc2iw23kw5pw2_bias_float64", "mb2ic4oc6iw17kw4sw3pw2dw2g2_float64", "ic2oc3iw9kw2sw1pw4_float64",
    "ic3oc2id7ih9iw8kd3kh2kw3pd1ph2pw1_float64",
    "mb2ic4oc2id9ih6iw7kd2kh3kw2sd2sh1sw3pd2ph0pw1dd2dh1dw2g2_float64",
    "ic2oc2id5ih5iw5kd2kh2kw2sd3sh2sw1pd3ph4pw2_float64", "ic8oc8id12ih12iw12kd5kh5kw5pd2ph2pw2_float32")]


@pytest.mark.parametrize("p", ND_PROBLEMS, ids=lambda p: str(p))
def test_every_tiling_gives_the_plain_method_in_1d_and_3d(monkeypatch, plain: fft.FFTConv, p: ConvProblem) -> None:
    x, w, b, dy = _data(p)
    want = [plain.forward(p, x, w, b), *plain.backward(p, x, w, dy)[:2]]
    for got, ref in zip(want, [reference.forward(p, x, w, b), reference.grad_input(p, dy, w),
                               reference.grad_weight(p, x, dy)]):
        _close(got, ref, p.dtype)
    for tile in [(1,) * p.rank, (2,) * p.rank, (3, 1, 2)[:p.rank], (1000,) * p.rank]:
        monkeypatch.setattr(tiled, "_plan", _forced(tile))
        got = [tiled.forward(p, x, w, b), *tiled.backward(p, x, w, dy)[:2]]
        for g, v in zip(got, want):
            _close(g, v, p.dtype)


def test_large_problems_take_the_tiles(monkeypatch) -> None:
    small, large = PROBLEMS[0], PROBLEMS[-1]
    assert small.macs < fft.TILED_FROM_MACS <= large.macs
    calls = []
    monkeypatch.setattr(tiled, "forward", lambda p, *args: calls.append(p))
    monkeypatch.setattr(tiled, "backward", lambda p, *args: calls.append(p))
    conv = fft.FFTConv()
    for p in (small, large):
        x, w, b, dy = _data(p)
        conv.forward(p, x, w, b)
        conv.backward(p, x, w, dy)
    assert calls == [large, large]


def test_the_plan_tiles_a_large_kernel_on_a_large_image() -> None:
    (gh, th, mh), (gw, tw, mw) = tiled._plan((64, 64), (11, 11), (1, 1), 1, 8, 8, 1)  # benchmarks' "11x11 on 64x64"
    assert mh * mw > 1 and gh < 75 and gw < 75  # one tile would need a grid of 75 (= next_fast_len(74))
    assert th * mh >= 64 and tw * mw >= 64 and gh >= th + 10 and gw >= tw + 10  # every output, whole windows


@pytest.mark.parametrize("start", [(-3, -2), (0, 0), (2, 5), (9, -9), (-20, 1)], ids=str)
def test_shifted_is_a_zero_extended_slice(start: tuple[int, int]) -> None:
    a = np.arange(5 * 6 * 2, dtype=np.float64).reshape(5, 6, 2) + 1
    got = tiled._shifted(a, start, (4, 7))
    for r in range(4):
        for c in range(7):
            i, j = start[0] + r, start[1] + c
            want = a[i, j] if 0 <= i < 5 and 0 <= j < 6 else 0
            assert np.array_equal(got[r, c], want + np.zeros(2))


def test_results_do_not_alias_the_scratch_buffer() -> None:
    p = PROBLEMS[1]
    x, w, b, dy = _data(p, 1)
    y = tiled.forward(p, x, w, b)
    dx, dw, _ = tiled.backward(p, x, w, dy)
    keep = [a.copy() for a in (y, dx, dw)]
    x2, w2, b2, dy2 = _data(p, 2)
    tiled.forward(p, x2, w2, b2)
    tiled.backward(p, x2, w2, dy2)
    for a, k in zip((y, dx, dw), keep):
        assert np.array_equal(a, k)
        assert not np.shares_memory(a, tiled._scratch.buf)


def test_a_product_past_the_scratch_limit_is_allocated(monkeypatch) -> None:
    p = PROBLEMS[0]
    x, w, b, dy = _data(p)
    want = [tiled.forward(p, x, w, b), *tiled.backward(p, x, w, dy)[:2]]
    monkeypatch.setattr(tiled, "SCRATCH_MAX", 0)
    got = [tiled.forward(p, x, w, b), *tiled.backward(p, x, w, dy)[:2]]
    for g, v in zip(got, want):
        np.testing.assert_allclose(g, v, rtol=0, atol=1e-13)


def test_threads_do_not_share_the_scratch_buffer() -> None:
    p = ConvProblem(batch=2, c_in=4, c_out=4, h=24, w=24, kh=7, kw=7, padding=3, dtype="float64")
    inputs = [_data(p, seed) for seed in range(4)]
    want = [reference.forward(p, x, w, b) for x, w, b, _ in inputs]
    got: dict[int, list[np.ndarray]] = {}
    start = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        x, w, b, _ = inputs[i]
        start.wait()
        got[i] = [tiled.forward(p, x, w, b) for _ in range(20)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, ys in got.items():
        for y in ys:
            _close(y, want[i], p.dtype)
