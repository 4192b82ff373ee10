"""The pytest plugin end to end (pytester): -k selection, --impl from a file outside the repo, skip reasons,
failure messages that name the check and the worst element, and recorded rows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conformance.results import records
from conformance.results.row import Row

#: conv2d only: these tests are about the plugin; the ranks are tests/test_ranks.py's
SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--conv-profile", "quick", "--conv-ranks", "2",
         "--conv-ops", "conv"]

BACKENDS = textwrap.dedent('''
    import numpy as np
    import conformance
    from conformance.numerics import reference as R

    class _Base:
        capabilities = conformance.Capabilities(dtypes=("float32", "float64"), groups=True, dilation=True,
                                                backward=True)

        def forward(self, problem, x, w, b):
            return R.forward(problem, x, self._w(w), b).astype(problem.dtype)

        def backward(self, problem, x, w, dy):
            dx = R.grad_input(problem, dy, self._w(w)).astype(problem.dtype)
            dw = R.grad_weight(problem, x, dy).astype(problem.dtype)
            db = R.grad_bias(problem, dy).astype(problem.dtype) if problem.bias else None
            return dx, self._dw(dw), db

        def _w(self, w):
            return w

        def _dw(self, dw):
            return dw

    class GoodConv(_Base):
        name = "good-conv"

    class FlippedConv(_Base):
        """A convolution instead of a cross-correlation: the kernel is flipped."""
        name = "flipped-conv"

        def _w(self, w):
            return w[:, :, ::-1, ::-1]

        def _dw(self, dw):
            return np.ascontiguousarray(dw[:, :, ::-1, ::-1])

    class ForwardOnly(_Base):
        name = "forward-only"
        capabilities = conformance.Capabilities(dtypes=("float64",), backward=False)

    class Raising(_Base):
        name = "raising-conv"

        def forward(self, problem, x, w, b):
            raise RuntimeError("kernel not implemented for this shape")

    class Away(_Base):
        name = "away-conv"

        def available(self):
            return "needs the frobnicator accelerator"
''')


@pytest.fixture
def backends(tmp_path: Path) -> Path:
    path = tmp_path / "outside_repo" / "my_backends.py"
    path.parent.mkdir()
    path.write_text(BACKENDS)
    return path


def _rows(results: Path) -> list[Row]:
    return records.rows([results])


def _collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    res = pytester.runpytest(*SUITE, *args, "--collect-only", "-q")
    return [line for line in res.outlines if "::" in line]


def test_k_selects_one_implementation(pytester: pytest.Pytester) -> None:
    ids = _collected(pytester, "-k", "im2col")
    assert ids and all("[im2col" in i for i in ids), ids
    assert {"test_forward", "test_grad_input", "test_grad_weight", "test_grad_bias", "test_golden", "test_exact",
            "test_nonfinite", "test_contract", "test_oracle_free", "test_onnx", "test_layout"} <= {
        i.split("::")[1].split("[")[0] for i in ids}
    assert len(_collected(pytester, "-k", "im2col and channels_last")) == 1


def test_external_backend_passes(pytester: pytest.Pytester, backends: Path) -> None:
    res = pytester.runpytest(*SUITE, "--impl", f"{backends}:GoodConv", "-k", "good-conv",
                             "--conv-results", str(pytester.path / "res"))
    n = len(_collected(pytester, "--impl", f"{backends}:GoodConv", "-k", "good-conv"))
    res.assert_outcomes(passed=n)
    rows = _rows(pytester.path / "res")
    assert {r.check for r in rows} == {"forward", "grad_input", "grad_weight", "grad_bias", "contract", "adjoint",
                                          "finite_difference", "linearity", "batch"}
    assert {"hypothesis", "golden", "exact", "nonfinite", "contract", "oracle_free", "onnx",
            "layout-channels_last"} <= {r.tier for r in rows}
    assert all(r.impl == "good-conv" for r in rows)
    assert {r.status for r in rows} <= {"passed", "unsupported", "skipped"}
    # ONNX's six 2-D Conv cases (its "asymmetric" one pads the two axes differently, each side alike)
    assert len({r.problem_text for r in rows if r.tier == "onnx"}) == 6


def test_flipped_kernel_fails_naming_check_and_worst_element(pytester: pytest.Pytester, backends: Path) -> None:
    res = pytester.runpytest(*SUITE, "--impl", f"{backends}:FlippedConv", "-k", "flipped-conv and forward",
                             "--conv-results", str(pytester.path / "res"))
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines([
        "*forward of 'flipped-conv' is not within tolerance (profile fp*, * bound = *",
        "*Mismatched elements: * / * (*%)",
        "*Worst element: index (*): actual *, expected *, |err| * = * × bound * (K = * terms)",
        "*Reproduce:",
        f"*print(reproduce('{backends}:FlippedConv', problem, seed=*, data_kind=*, check='forward'))",
    ])
    failed = [r for r in _rows(pytester.path / "res") if r.status == "failed"]
    assert len(failed) == 1, "one row for the minimal failing example, not one per shrink step"
    assert failed[0].verdict["worst_index"] is not None and failed[0].max_ratio > 1


def test_golden_catches_flipped_kernel(pytester: pytest.Pytester, backends: Path) -> None:
    res = pytester.runpytest(*SUITE, "--impl", f"{backends}:FlippedConv", "-k", "flipped-conv and golden")
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*forward of 'flipped-conv' is not within tolerance*exact bound*"])


def test_undeclared_and_unavailable_are_skipped_with_reasons(pytester: pytest.Pytester, backends: Path) -> None:
    res = pytester.runpytest(*SUITE, "--impl", f"{backends}:ForwardOnly", "--impl", f"{backends}:Away",
                             "-k", "forward-only or away-conv", "-rs", "--conv-results", str(pytester.path / "res"))
    n = len(_collected(pytester, "--impl", f"{backends}:ForwardOnly", "-k", "forward-only"))
    outcomes = res.parseoutcomes()
    assert outcomes["passed"] + outcomes["skipped"] == 2 * n and outcomes.get("failed", 0) == 0
    res.stdout.fnmatch_lines(["*forward-only: backward not declared (backward=False)*",
                              "*away-conv: needs the frobnicator accelerator*"])
    rows = _rows(pytester.path / "res")
    unsupported = {(r.impl, r.check) for r in rows if r.status == "unsupported"}
    assert {("forward-only", c) for c in ("grad_input", "grad_weight", "grad_bias", "onnx")} <= unsupported
    assert {r.reason for r in rows if r.status == "unavailable"} == {"needs the frobnicator accelerator"}
    assert len([r for r in rows if r.status == "unavailable"]) == n


def test_raising_backend_is_a_recorded_error(pytester: pytest.Pytester, backends: Path) -> None:
    res = pytester.runpytest(*SUITE, "--impl", f"{backends}:Raising", "-k", "raising-conv and test_forward",
                             "--conv-results", str(pytester.path / "res"))
    res.assert_outcomes(failed=1)
    res.stdout.fnmatch_lines(["*forward raised RuntimeError: kernel not implemented for this shape*"])
    rows = _rows(pytester.path / "res")
    assert [r.status for r in rows] == ["error"]
    assert "RuntimeError" in rows[0].traceback


def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest(*SUITE, "--conv-dtypes", "float33")
    assert res.ret != 0
    res.stderr.fnmatch_lines(["*dtypes 'float33': float33 not among float64, float32, float16, bfloat16*"])


def test_bad_import_path_is_reported(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest(*SUITE, "--impl", "no_such_module_xyz:Conv")
    assert res.ret != 0
    assert "cannot import module 'no_such_module_xyz'" in res.stdout.str() + res.stderr.str()
