"""The oracle-free checks: they hold for the built-ins where the exact answer is a sum of no products, they still
catch a wrong gradient, their rows reproduce, and they record the time spent inside the backend."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conformance.impls.fft import FFTConv
from conformance.impls.im2col import Im2col

from conformance import ConvProblem, reproduce
from conformance.checks import oracle_free
from conformance.results.repro import run_example

#: its one output reads only padding (a 1-wide image, a kernel tap on each side of it): the exact value is 0 with no
#: products, and an FFT's rounding still reaches it (found by the ci profile on 2026-11-25: adjoint and
#: finite_difference failed for fft with a bound of exactly 0)
ALL_PADDING = ConvProblem(batch=1, c_in=1, c_out=1, h=1, w=1, kh=1, kw=2, padding=(0, 1), dilation=(1, 2),
                          dtype="float64")
ORDINARY = ConvProblem(batch=2, c_in=4, c_out=6, h=9, w=7, kh=3, kw=2, stride=(2, 1), padding=(1, 0), groups=2,
                       bias=True, dtype="float64")


@pytest.mark.parametrize("backend", [FFTConv(), Im2col()], ids=lambda b: b.name)
@pytest.mark.parametrize("p", [ALL_PADDING, ORDINARY], ids=["all-padding", "ordinary"])
def test_builtins_pass_every_oracle_free_check(backend, p):
    for seed in range(5):
        results, _ = oracle_free.run_all(backend, p, np.random.default_rng(seed))
        assert set(results) == set(oracle_free.CHECKS) - {"transpose_adjoint"}  # (of transposed problems)
        for check, verdicts in results.items():
            assert all(v.passed for v in verdicts), (check, seed, [v.max_ratio for v in verdicts])


class WrongGradInput(FFTConv):
    """dx off by 1e-9 relative everywhere: far below float32 noise, far above the float64 bounds."""

    name = "wrong-dx"

    def backward(self, problem, x, w, dy):
        g = super().backward(problem, x, w, dy)
        return type(g)(dx=g.dx * (1 + 1e-9), dw=g.dw, db=g.db)


def test_normwise_slack_still_catches_a_wrong_gradient():
    results, _ = oracle_free.run_all(WrongGradInput(), ORDINARY, np.random.default_rng(0))
    assert not all(v.passed for v in results["adjoint"])
    assert not all(v.passed for v in results["finite_difference"])
    assert all(v.passed for v in results["linearity"] + results["batch"])  # the forward is right


@pytest.mark.parametrize("check", [c for c in oracle_free.CHECKS if c != "transpose_adjoint"])
def test_oracle_free_rows_reproduce(check):
    text = reproduce("fft", ALL_PADDING, seed=0, data_kind="normal", check=check)
    assert text.startswith(f"{check} of 'fft': passed"), text


def test_transpose_adjoint_catches_a_transposed_forward_that_is_not_the_convolutions_adjoint():
    """⟨conv_transpose(x, w), y⟩ = ⟨x, conv(y, w)⟩ across one backend's two operations (#17): the im2col
    transposed forward passes; one that scatters through the kernel flipped does not (no oracle involved)."""
    from conformance.impls.im2col import Im2col as Good

    p = ConvProblem.parse("mb2ic4oc6ih5iw4kh3kw2sh2sw1ph1pw0g2oph1opw0_transposed")

    class Flipped(Good):
        name = "flipped-transpose"

        def forward(self, problem, x, w, b):
            if problem.transposed:
                w = np.ascontiguousarray(w[..., ::-1, ::-1])
            return super().forward(problem, x, w, b)

    for backend, ok in ((Good(), True), (Flipped(), False)):
        results, _ = oracle_free.run_all(backend, p, np.random.default_rng(0))
        assert all(v.passed for v in results["transpose_adjoint"]) is ok, backend.name
    with pytest.raises(ValueError, match="applies to a transposed problem"):
        run_example(Good(), ORDINARY, seed=0, data_kind="normal", check="transpose_adjoint")


def test_reproduce_names_a_check_that_does_not_apply():
    class ForwardOnly(Im2col):
        name = "forward-only"
        capabilities = dataclasses.replace(Im2col.capabilities, backward=False)

    with pytest.raises(ValueError, match="adjoint.*forward-only.*no backward"):
        run_example(ForwardOnly(), ORDINARY, seed=0, data_kind="normal", check="adjoint")


def test_run_all_returns_the_time_inside_the_backend():
    _, seconds = oracle_free.run_all(Im2col(), ORDINARY, np.random.default_rng(0))
    assert 0 < seconds < 5
