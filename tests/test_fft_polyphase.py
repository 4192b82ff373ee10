"""The fft backend's transposed fast path (``impls/fft_polyphase.py``: the stride's phases, each a convolution of
the original input) against its plain method (``impls/fft.py``: zero insertion, one grid): the same numbers in every
rank, with groups, dilation, padding on either side and output padding, where stride and dilation share a factor
(phases without taps), where a phase has one tap (the real-product path) and where it has several (the per-bin
products, one or many blocks of bins); ``FFTConv`` takes the fast path from ``TILED_FROM_MACS`` on. Speed is
measured by benchmarks/bench_impls.py, never here."""

from __future__ import annotations

import math

import conformance.impls.fft as fft
import conformance.impls.fft_polyphase as polyphase
import numpy as np
import pytest

from conformance import ConvProblem

PROBLEMS = [ConvProblem.parse(s) for s in (
    "mb2ic4oc6ih7kh4sh2ph1_bias_transposed_float64",  # DCGAN's shape: 2 taps per phase
    "mb2ic4oc6ih7iw5kh3kw2sh2sw3ph1pw0oph1_transposed_float64",  # one tap on w, two on h; output padding
    "mb1ic4oc2ih6iw6kh2kw2sh2sw2_transposed_float32",  # U-Net's shape: one tap per phase (real products)
    "mb2ic2oc3ih4kh1sh3oph2_transposed_float64",  # stride > kernel: gaps, output padding past the grid
    "mb2ic2oc3ih4kh5sh1ph2_transposed_float64",  # stride 1: one phase, the plain method
    "mb2ic4oc6iw9kw3sw2dw2_transposed_float64",  # 1-D, dilation 2 = stride: every tap in phase 0
    "mb3ic4oc4ih5kh3sh3dh3oph2g2_transposed_float64",  # groups; phases 1, 2 without taps
    "mb2ic4oc6ih6iw5kh2kw4sh2sw2ph1pw2eh0ew1g2_transposed_float64",  # asymmetric padding, groups
    "mb1ic6oc4id4ih5iw3kd2kh3kw2sd2sh1sw3dd1dh2dw1g2_bias_transposed_float64",  # 3-D, groups, dilation
    "mb2ic4oc2id3ih3iw3kd2kh2kw2sd2sh2sw2_transposed_float32",  # 3-D, one tap per phase
)]


def _data(p: ConvProblem, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x, w, dy = (rng.standard_normal(s).astype(p.dtype) for s in (p.input_shape, p.weight_shape, p.output_shape))
    b = rng.standard_normal(p.c_out).astype(p.dtype) if p.bias else None
    return x, w, b, dy


def _close(got: np.ndarray, ref: np.ndarray, dtype: str, what: str) -> None:
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == np.dtype(dtype) and got.flags.c_contiguous, f"{what}: {got.dtype}, contiguous " \
                                                                     f"{got.flags.c_contiguous}"
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, float(np.abs(ref).max())), err_msg=what)


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> fft.FFTConv:
    """The fft backend held to its plain method (no problem is large enough for the fast paths)."""
    monkeypatch.setattr(fft, "TILED_FROM_MACS", math.inf)
    return fft.FFTConv()


@pytest.mark.parametrize("block", [polyphase.BLOCK_BYTES, 1], ids=["one-block", "a-bin-a-block"])
@pytest.mark.parametrize("p", PROBLEMS, ids=str)
def test_polyphase_gives_the_plain_method(monkeypatch: pytest.MonkeyPatch, plain: fft.FFTConv, p: ConvProblem,
                                          block: int) -> None:
    monkeypatch.setattr(polyphase, "BLOCK_BYTES", block)
    x, w, b, dy = _data(p)
    _close(polyphase.forward(p, x, w, b), plain.forward(p, x, w, b), p.dtype, "forward")
    got, want = polyphase.backward(p, x, w, dy), plain.backward(p, x, w, dy)
    for what, g, r in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        if r is None:
            assert g is None, what
        else:
            _close(g, r, p.dtype, what)


def test_structural_zeros_are_exact() -> None:
    """Outputs no input reaches hold exactly the bias: the gaps of stride 3 > kernel 1 (phases without taps), and
    the output padding's last position of a 3-tap kernel at stride 2 (phase 1 has one tap, so its grid holds a
    position past its convolution, rounding noise but for the mask); the gradient of an input that reaches no
    output (cropped by the padding) is exactly 0."""
    p = ConvProblem.parse("mb1ic2oc3iw4kw1sw3_bias_transposed_float32")
    x, w, b, dy = _data(p)
    y = polyphase.forward(p, x, w, b)
    assert (y[:, :, 1::3] == b[:, None]).all() and (y[:, :, 2::3] == b[:, None]).all()
    p = ConvProblem.parse("mb2ic3oc3iw5kw3sw2opw1_bias_transposed_float32")
    x, w, b, dy = _data(p)
    assert (polyphase.forward(p, x, w, b)[:, :, -1] == b).all()
    q = ConvProblem.parse("mb1ic2oc3iw6kw3sw3pw3_transposed_float32")  # input 0 lands on -3..-1: cropped
    x, w, _, dy = _data(q)
    assert (polyphase.backward(q, x, w, dy).dx[:, :, 0] == 0).all()


def test_fft_takes_the_fast_path_from_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    p = PROBLEMS[0]
    calls: list[str] = []
    monkeypatch.setattr(polyphase, "forward", lambda *a: calls.append("forward"))
    monkeypatch.setattr(polyphase, "backward", lambda *a: calls.append("backward"))
    x, w, b, dy = _data(p)
    monkeypatch.setattr(fft, "TILED_FROM_MACS", p.macs + 1)
    fft.FFTConv().forward(p, x, w, b)
    fft.FFTConv().backward(p, x, w, dy)
    assert calls == []
    monkeypatch.setattr(fft, "TILED_FROM_MACS", p.macs)
    fft.FFTConv().forward(p, x, w, b)
    fft.FFTConv().backward(p, x, w, dy)
    assert calls == ["forward", "backward"]
