"""The known-failures file: entries, reasons, and the requirements that say where an entry is in force."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.errors import ConformanceError
from conformance.known import in_force, lookup, parse

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
    assert [e.impl for e in inactive] == ["b", "c", "d"]
    assert inactive[0].inactive == f"numpy {NUMPY} is not <{major} (the entry requires numpy<{major})"
    assert inactive[1].inactive == ("no-such-distribution-xyz is not installed "
                                    "(the entry requires no-such-distribution-xyz)")
    assert lookup(active, "b", "x") is None


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
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-rA",
         "-k", "naive and golden", "--conv-known-failures", str(kf), "--conv-results", str(tmp_path / "res"),
         "-c", str(tmp_path / "x.ini"), "--rootdir", str(tmp_path), *workers],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert (f"known failure naive::golden ; no-such-distribution-xyz>=1 not in force here ({kf}:1): "
            "no-such-distribution-xyz is not installed") in log
    assert "known-failure entries that match no collected test: naiv::forward" in log
    assert "PASSED" in log and "XFAIL" not in log  # golden judged as it is
