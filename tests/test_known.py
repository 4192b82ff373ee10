"""The known-failures file: entries, reasons, and the requirements that say where an entry is in force."""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path

import pytest
from helpers import QUICK, run_suite

from conformance.errors import ConformanceError
from conformance.results.known import in_force, lookup, parse

NUMPY = md.version("numpy")


def test_entries_with_and_without_requirements() -> None:
    entries = parse("# a comment\n\n"
                    "fft::nonfinite   # spreads through the transform\n"
                    "torch-cpu::grad_* ; torch==2.13.* numpy>=1.20,<99   # one release's bug\n", "k.txt")
    assert [(e.impl, e.check, e.requires, e.source) for e in entries] == [
        ("fft", "nonfinite", (), "k.txt:3"), ("torch-cpu", "grad_*", ("torch==2.13.*", "numpy>=1.20,<99"), "k.txt:4")]
    assert str(entries[1]) == "torch-cpu::grad_* ; torch==2.13.* numpy>=1.20,<99"
    assert lookup(entries, "torch-cpu", "grad_input") is entries[1]


def test_an_entry_is_in_force_where_every_requirement_is_installed_in_an_allowed_version() -> None:
    major = int(NUMPY.split(".")[0])
    entries = parse(f"a::x ; numpy=={NUMPY}          # in force\n"
                    f"b::x ; numpy<{major}           # too new here\n"
                    "c::x ; no-such-distribution-xyz  # not installed\n"
                    f"d::x ; numpy>={major} no-such-distribution-xyz>=1  # one of two missing\n"
                    "e::x                            # no requirements: always\n")
    active, inactive = in_force(entries)
    assert [e.impl for e in active] == ["a", "e"]
    assert [e.impl for e, _ in inactive] == ["b", "c", "d"]
    assert inactive[0][1] == f"numpy {NUMPY} is not <{major} (the entry requires numpy<{major})"
    assert inactive[1][1] == ("no-such-distribution-xyz is not installed "
                              "(the entry requires no-such-distribution-xyz)")
    assert lookup(active, "b", "x") is None


def test_an_entry_can_require_machine_facts_judged_by_the_backend_it_names() -> None:
    """Kernels differ between CPUs: ``torch_bf16=onednn-amx`` holds where torch runs oneDNN's AMX kernels."""
    entries = parse("t::x ; torch_bf16=onednn-amx,onednn-avx512bf16   # DAZ where oneDNN has bf16 instructions\n"
                    "t::y ; torch_bf16=onednn-*   # every oneDNN path\n"
                    "t::z ; cpu_vendor=GenuineIntel   # a fact this machine does not have\n", "k.txt")
    assert entries[0].facts == (("torch_bf16", ("onednn-amx", "onednn-avx512bf16")),) and entries[0].requires == ()
    asked = []

    def facts_of(impl: str) -> dict[str, str]:
        asked.append(impl)
        return {"torch_bf16": "native"}

    active, inactive = in_force(entries, facts_of)
    assert active == [] and asked == ["t", "t", "t"]
    assert inactive[0][1] == "torch_bf16 is native here (the entry requires torch_bf16=onednn-amx,onednn-avx512bf16)"
    assert inactive[2][1] == "no machine fact 'cpu_vendor' here (the entry requires cpu_vendor=GenuineIntel)"
    active, _ = in_force(entries, lambda impl: {"torch_bf16": "onednn-amx", "cpu_vendor": "GenuineIntel"})
    assert [e.check for e in active] == ["x", "y", "z"]
    assert str(entries[0]) == "t::x ; torch_bf16=onednn-amx,onednn-avx512bf16"


def test_an_entry_can_name_the_dtypes_whose_examples_it_covers() -> None:
    (entry,) = parse("torch-cpu::forward[bfloat16,float16] ; torch==2.13.*  # a half-precision bug\n", "k.txt")
    assert (entry.check, entry.dtypes) == ("forward", ("bfloat16", "float16"))
    assert str(entry) == "torch-cpu::forward[bfloat16,float16] ; torch==2.13.*"
    assert lookup([entry], "torch-cpu", "forward") is None  # not the whole check
    assert lookup([entry], "torch-cpu", "forward", "float16") is entry
    assert lookup([entry], "torch-cpu", "forward", "float32") is None
    with pytest.raises(ConformanceError, match="the dtypes in"):
        parse("a::b[float8] # no such dtype\n", "k.txt")


def test_a_local_version_label_matches_a_release_prefix() -> None:
    """torch's CPU wheel is 2.13.0+cpu: ``torch==2.13.*`` must hold for it (PEP 440 prefix matching)."""
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet("==2.13.*").contains("2.13.0+cpu", prereleases=True)


@pytest.mark.parametrize("line, message", [
    ("fft::nonfinite ; torch >= 2   # x", "'>=' is not a requirement"),
    ("fft::nonfinite ; torch >= 2   # x", "no spaces inside one requirement"),
    ("fft::nonfinite ; torch[cuda]==2.13.*   # x", "no extras, URL or environment marker"),
    ("fft::nonfinite ; torch==2.13.*;python_version<'3'   # x", "no extras, URL or environment marker"),
    ("fft::nonfinite ; torch@https://example.org/t.whl   # x", "no extras, URL or environment marker"),
    ("fft::nonfinite ; torch=>2   # x", "'torch=>2' is not a requirement"),
    ("fft::nonfinite ;   # x", "has ';' but no requirements"),
    ("; torch==2   # x", "without <impl>::<check>"),
    ("fft::nonfinite ; torch==2", "has no reason"),
    ("fft nonfinite   # x", "must read <impl>::<check> [; requirements]  # reason"),
])
def test_a_malformed_line_names_its_place_and_its_problem(line: str, message: str) -> None:
    with pytest.raises(ConformanceError, match="^k.txt:1: ") as err:
        parse(line, "k.txt")
    assert message in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_the_run_says_which_entries_are_not_in_force_and_which_match_nothing(tmp_path: Path,
                                                                             workers: list[str]) -> None:
    """The header names each entry not in force and why (with pytest-xdist too, where the process that prints
    collects nothing); an entry that names nothing collected is warned about whether or not it is in force."""
    if workers:
        pytest.importorskip("xdist", reason="pytest-xdist is not installed (the test extra)")
    kf = tmp_path / "known.txt"
    kf.write_text("naive::golden ; no-such-distribution-xyz>=1   # would hide golden where it is installed\n"
                  "naiv::forward ; no-such-distribution-xyz>=1   # misspelt, and not in force either\n",
                  encoding="utf-8")
    (tmp_path / "x.ini").write_text("[pytest]\n", encoding="utf-8")
    out = run_suite(tmp_path, tmp_path / "res", "-rA", "-k", "naive and golden", "--conv-known-failures", str(kf),
                    "-c", str(tmp_path / "x.ini"), "--rootdir", str(tmp_path), *workers, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert (f"known failure naive::golden ; no-such-distribution-xyz>=1 not in force here ({kf}:1): "
            "no-such-distribution-xyz is not installed") in log
    assert "known-failure entries that match no collected test: naiv::forward" in log
    assert "PASSED" in log and "XFAIL" not in log  # golden judged as it is



def test_a_run_of_selected_backends_names_only_their_entries_not_in_force(tmp_path: Path) -> None:
    """One tox environment a framework (``--select jax``): the header lists the selected backends' entries not in
    force, and only counts the others (every framework's entries would otherwise print in every environment)."""
    kf = tmp_path / "known.txt"
    kf.write_text("naive::golden ; no-such-distribution-xyz>=1   # naive's, shown\n"
                  "scipy::golden ; no-such-distribution-xyz>=1   # another backend's, counted\n"
                  "fft::golden ; no-such-distribution-xyz>=1     # another backend's, counted\n",
                  encoding="utf-8")
    (tmp_path / "x.ini").write_text("[pytest]\n", encoding="utf-8")
    out = run_suite(tmp_path, tmp_path / "res", "-k", "golden", "--conv-select", "naive", "--conv-known-failures",
                    str(kf), "-c", str(tmp_path / "x.ini"), "--rootdir", str(tmp_path), timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert f"known failure naive::golden ; no-such-distribution-xyz>=1 not in force here ({kf}:1)" in log
    assert "scipy::golden" not in log and "fft::golden" not in log
    assert "2 known-failure entries of backends not selected (--select) are not shown" in log
    run = json.loads(next((tmp_path / "res").rglob("*.jsonl")).read_text(encoding="utf-8").splitlines()[0])
    assert [line.split(" (")[0] for line in run["known_inactive"]] == [
        "naive::golden ; no-such-distribution-xyz>=1"]  # the report's and the run summary's list too


WRONG_IN_FLOAT64 = '''
import numpy as np
from conformance import Capabilities
from conformance.impls.im2col import Im2col


class WrongInFloat64(Im2col):
    """Correct in float32; in float64 every forward result is 1e-6 too large (a float32 epilogue)."""

    name = "wrong-in-float64"
    capabilities = Capabilities(dtypes=("float32", "float64"))

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        return y * (1 + 1e-6) if y.dtype == np.float64 else y
'''


@pytest.mark.slow
@pytest.mark.parametrize("dtype, passes", [("float64", True), ("float32", False)])
def test_an_entry_for_one_dtype_knows_its_failures_and_keeps_the_others_failing(tmp_path: Path, dtype: str,
                                                                                passes: bool) -> None:
    """``impl::forward[float64]`` records the float64 failures as known and the test goes on (and passes); an entry
    for float32 covers nothing that fails, so the float64 failures still fail the test."""
    from conformance.results.records import load

    (tmp_path / "wrong_backend.py").write_text(WRONG_IN_FLOAT64)
    kf = tmp_path / "known.txt"
    kf.write_text(f"wrong-in-float64::forward[{dtype}]   # a float32 epilogue\n", encoding="utf-8")
    out = run_suite(tmp_path, tmp_path / "res", *QUICK, "--impl", f"{tmp_path / 'wrong_backend.py'}:WrongInFloat64",
                    "--conv-no-entry-points", "-k", "test_forward", "--conv-known-failures", str(kf),
                    "--conv-max-examples", "12")
    rows = [r for f in load([tmp_path / "res"]) for r in f.rows]
    statuses = {(r.dtype, r.status) for r in rows}
    if passes:
        assert out.returncode == 0, out.stdout[-3000:]
        assert ("float64", "xfailed") in statuses and ("float32", "passed") in statuses
        assert all("a float32 epilogue" in r.reason for r in rows if r.status == "xfailed")
    else:
        assert out.returncode == 1, out.stdout[-3000:]
        assert ("float64", "failed") in statuses and ("float64", "xfailed") not in statuses
        # the float32 examples all passed: the entry is stale, and says so
        assert any(r.status == "stale" and "no longer fails" in r.reason for r in rows), statuses


def test_an_entry_names_the_rank_of_its_check() -> None:
    """conv2d's checks are named as the gate names them (``nonfinite``); another rank's are prefixed with it
    (``conv3d:nonfinite``), and a pattern covers several."""
    from conformance.results.known import lookup, parse

    plain, deep, every = parse("fft::nonfinite  # 2-D\nfft::conv3d:grad_input  # 3-D\nscipy::*nonfinite  # all\n")
    assert plain.matches("fft", "nonfinite") and not plain.matches("fft", "nonfinite", rank=3)
    assert deep.matches("fft", "grad_input", rank=3) and not deep.matches("fft", "grad_input", rank=2)
    assert all(every.matches("scipy", "nonfinite", rank=r) for r in (1, 2, 3))
    assert lookup([plain, deep], "fft", "grad_input", rank=3) is deep
    assert lookup([plain, deep], "fft", "nonfinite", rank=1) is None
