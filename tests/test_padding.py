"""Padding modes (torch.nn.Conv2d(padding_mode=...)), asymmetric and 'same'/'valid' padding: the oracle's padding
and its adjoint against torch's F.pad and autograd, the oracle's convolution against torch with each mode, and
the explicit-padding helper of the numpy backends against the oracle's independent index maps.

Semantics: https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html (padding_mode), ONNX Conv ``pads``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conformance.impls import explicit_padding

from conformance import ConvProblem, InvalidProblem
from conformance.numerics import padding as P
from conformance.numerics import reference as R

MODES = ("zeros", "reflect", "replicate", "circular")
PADS = [(0, 0, 0, 0), (1, 0, 2, 1), (2, 2, 1, 1), (0, 3, 1, 0), (3, 1, 0, 2)]


def _problems():
    for mode, (h, w), pads in itertools.product(MODES, [(1, 1), (3, 4), (5, 2), (4, 4)], PADS):
        try:
            yield ConvProblem(batch=2, c_in=2, c_out=2, h=h, w=w, kh=2, kw=1, padding=pads, padding_mode=mode,
                              bias=True)
        except InvalidProblem:
            continue


PROBLEMS = list(_problems())


def test_the_table_covers_every_mode_and_asymmetry() -> None:
    assert {p.padding_mode for p in PROBLEMS} == set(MODES)
    assert all(any(p.asymmetric and p.padding_mode == m for p in PROBLEMS) for m in MODES)


@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: f"{p.padding_mode}-{p.h}x{p.w}-{p.pads}")
def test_oracle_padding_and_convolution_match_torch(p: ConvProblem) -> None:
    torch = pytest.importorskip("torch", reason="torch is the independent referee of the padding semantics")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(p.input_shape), rng.standard_normal(p.weight_shape)
    b, dy = rng.standard_normal(p.c_out), rng.standard_normal(p.output_shape)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    top, bottom, left, right = p.pads
    xp = F.pad(xt, (left, right, top, bottom), mode="constant" if p.padding_mode == "zeros" else p.padding_mode)
    np.testing.assert_array_equal(P.pad(p, x), xp.detach().numpy())
    y = F.conv2d(xp, wt, bt, stride=p.stride, dilation=p.dilation, groups=p.groups)
    gx, gw, gb = torch.autograd.grad(y, (xt, wt, bt), torch.tensor(dy))
    np.testing.assert_allclose(R.forward(p, x, w, b), y.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.grad_input(p, dy, w), gx.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.grad_weight(p, x, dy), gw.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.grad_bias(p, dy), gb.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", PROBLEMS, ids=lambda p: f"{p.padding_mode}-{p.h}x{p.w}-{p.pads}")
def test_pad_adjoint_is_the_transpose(p: ConvProblem) -> None:
    # <pad(x), g> = <x, pad_adjoint(g)> exactly on small integers, for both the oracle's maps and np.pad's
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, p.input_shape).astype(np.float64)
    g = rng.integers(-3, 4, P.pad(p, x).shape).astype(np.float64)
    assert (P.pad(p, x) * g).sum() == (x * P.pad_adjoint(p, g)).sum()
    np.testing.assert_array_equal(explicit_padding.pad_input(p, x), P.pad(p, x))
    np.testing.assert_array_equal(explicit_padding.fold(p, g), P.pad_adjoint(p, g))


@pytest.mark.parametrize("kwargs, message", [
    (dict(h=3, padding=3, padding_mode="reflect"),
     "padding_mode='reflect' needs padding < the input size, but padding 3 >= h=3"),
    (dict(w=2, padding=(0, 0, 0, 3), padding_mode="circular"),
     "padding_mode='circular' needs padding <= the input size (it wraps around once), but padding 3 > w=2"),
    (dict(padding_mode="mirror"), "padding_mode='mirror', but it must be one of zeros, reflect, replicate, circular"),
    (dict(padding="same", stride=2), "padding='same' with stride=(2, 2), but 'same' is not supported for strided"),
    (dict(padding="full"), "padding='full', but a string padding must be 'same' or 'valid'"),
    (dict(padding=(0, -1, 0, 0)), "padding_end=(-1, 0) (h=-1), but it must be at least 0"),
])
def test_invalid_padding_is_rejected_with_its_rule(kwargs: dict, message: str) -> None:
    base = dict(batch=1, c_in=1, c_out=1, h=5, w=5, kh=1, kw=1)
    with pytest.raises(InvalidProblem, match=__import__("re").escape(message)):
        ConvProblem(**{**base, **kwargs})


@pytest.mark.parametrize("k, d", [(1, 1), (2, 1), (3, 1), (4, 2), (5, 3)])
def test_same_keeps_the_size_and_splits_like_torch(k: int, d: int) -> None:
    torch = pytest.importorskip("torch", reason="torch defines where 'same' puts the odd padding")
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=15, w=14, kh=k, kw=k, dilation=d, padding="same")
    assert p.output_shape[2:] == (15, 14)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(p.input_shape), rng.standard_normal(p.weight_shape)
    y = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same", dilation=d)
    np.testing.assert_allclose(R.forward(p, x, w), y.numpy(), rtol=1e-12, atol=1e-12)
    assert ConvProblem(batch=1, c_in=1, c_out=1, h=15, w=14, kh=k, kw=k, dilation=d, padding="valid").padding == (0, 0)
