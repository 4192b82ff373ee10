"""The worker process: a backend's optional ``prepare()`` runs there once, before the first call and outside its
time; a ``prepare()`` that raises is a load error naming it, recorded on the call like any other failure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conformance import Capabilities, ConvProblem
from conformance.backends.isolation import IsolatedBackend
from conformance.backends.runner import call

HERE = Path(__file__).resolve().parent
P = ConvProblem(batch=1, c_in=2, c_out=3, h=5, w=5, kh=3, kw=3, dtype="float64")


class SlowStart:
    """A library that takes 0.5 s to load, and says how many times it was loaded."""

    name = "slow-start"
    capabilities = Capabilities(dtypes=("float64",))
    loads = 0

    def prepare(self) -> None:
        time.sleep(0.5)
        type(self).loads += 1

    def forward(self, problem, x, w, b):
        from conformance.impls.im2col import Im2col

        y = Im2col().forward(problem, x, w, b)
        y.flat[0] = type(self).loads  # the result carries the load count back from the worker
        return y

    backward = forward


class BrokenStart(SlowStart):
    name = "broken-start"

    def prepare(self) -> None:
        raise OSError("no device context")


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal(P.input_shape), rng.standard_normal(P.weight_shape)


def _forward_once(backend, spec):
    """One forward call of ``backend`` in a worker that loads ``spec``; the worker is closed after it."""
    isolated = IsolatedBackend(backend, spec)
    try:
        return call(isolated, "forward", P, *_inputs(), None)
    finally:
        isolated.close()


def test_prepare_runs_once_in_the_worker_outside_the_timed_call():
    backend = IsolatedBackend(SlowStart(), f"{HERE / 'test_isolation.py'}:SlowStart")
    try:
        x, w = _inputs()
        first, second = (call(backend, "forward", P, x, w, None) for _ in range(2))
    finally:
        backend.close()
    assert first.ok and second.ok, (first.error, second.error)
    assert first.value.flat[0] == 1 and second.value.flat[0] == 1  # prepared once, in the worker
    assert first.seconds < 0.4, f"the first call's time includes prepare(): {first.seconds:.2f} s"
    assert SlowStart.loads == 0  # and never in this process


def test_a_prepare_that_raises_is_a_recorded_load_error():
    out = _forward_once(BrokenStart(), f"{HERE / 'test_isolation.py'}:BrokenStart")
    assert not out.ok
    assert "prepare() raised OSError: no device context" in out.error


def test_a_result_that_is_no_array_is_named_by_its_type():
    from conformance.backends.runner import Outcome
    from conformance.checks.differential import unreadable_result

    assert unreadable_result(Outcome(layouts=["list"]), "forward") == (
        "forward returned a list, not a numpy array: results must be C-contiguous NCHW numpy arrays")
    # read as it is: the layout is the contract check's finding
    assert unreadable_result(Outcome(layouts=["F"]), "backward") is None
    assert unreadable_result(Outcome(layouts=["C", "NoneType"]), "backward") is None


def test_values_are_judged_whatever_the_layout_and_dtype_of_the_result():
    """One deviation, one finding: an F-ordered or float64 result of a float32 problem is compared by value (the
    contract check names the layout and the dtype); a wrong value in it still fails."""
    from conformance.impls.im2col import Im2col

    from conformance.checks.differential import check_forward
    from conformance.inputs.data import make_inputs

    class Fortran(Im2col):
        name = "fortran"

        def forward(self, problem, x, w, b):
            return np.asfortranarray(super().forward(problem, x, w, b))

    class Wide(Im2col):
        name = "wide"

        def forward(self, problem, x, w, b):
            return super().forward(problem, x, w, b).astype(np.float64) + (problem.h == 3)

    p = ConvProblem(batch=2, c_in=3, c_out=4, h=5, w=6, kh=3, kw=2, dtype="float32")
    inp = make_inputs(p, 0, "normal")
    assert check_forward(Fortran(), p, inp, "normal").verdicts[0].passed
    assert check_forward(Wide(), p, inp, "normal").verdicts[0].passed
    wrong = check_forward(Wide(), p.replace(h=3), make_inputs(p.replace(h=3), 0, "normal"), "normal").verdicts[0]
    assert not wrong.passed and wrong.n_mismatched > 0


def test_a_worker_that_cannot_load_or_dies_loading_is_a_recorded_error(tmp_path):
    x, w = _inputs()
    missing = IsolatedBackend(SlowStart(), f"{HERE / 'test_isolation.py'}:NoSuchClass")
    dying_file = tmp_path / "dies.py"
    dying_file.write_text("import os\nos._exit(3)\n")
    dying = IsolatedBackend(SlowStart(), f"{dying_file}:Anything")
    try:
        out_missing = call(missing, "forward", P, x, w, None)
        out_dying = call(dying, "forward", P, x, w, None)
    finally:
        missing.close()
        dying.close()
    assert not out_missing.ok and "loading" in out_missing.error and "NoSuchClass" in out_missing.error
    assert not out_dying.ok and out_dying.error.endswith("the worker process exited with code 3")


class ReservesAddressSpace(SlowStart):
    """What CUDA does when it creates a context: reserve address space the size of host plus device memory as an
    inaccessible mapping (here 64 GiB, four times the default memory limit), and keep it."""

    name = "reserves-address-space"

    def prepare(self) -> None:
        import mmap

        type(self).reservation = mmap.mmap(-1, 64 * 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                           prot=0)  # PROT_NONE


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_DATA is the memory limit on Linux only")
def test_reserved_address_space_does_not_count_against_the_memory_limit():
    # under an address-space limit (RLIMIT_AS) this worker could not start, and neither could a CUDA backend
    out = _forward_once(ReservesAddressSpace(), f"{HERE / 'test_isolation.py'}:ReservesAddressSpace")
    assert out.ok, out.error


@pytest.mark.parametrize("spec", ["conformance.impls.torch_cuda:TorchCudaStrict",
                                  "conformance.impls.torch_cuda:TorchCudaDefault"])
def test_a_cuda_backend_runs_in_a_worker_under_the_default_memory_limit(spec):
    from conformance.impls.im2col import Im2col

    from conformance.backends.registry import instantiate, load_import_path

    backend = instantiate(load_import_path(spec), spec)
    reason = backend.available()
    if reason is not None:
        pytest.skip(f"{backend.name}: {reason}")
    out = _forward_once(backend, spec)
    assert out.ok, out.error
    np.testing.assert_allclose(out.value, Im2col().forward(P, *_inputs(), None), rtol=1e-12)
