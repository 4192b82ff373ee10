"""The known-failures file: entries, reasons, and the requirements that say where an entry is in force."""

from __future__ import annotations

import importlib.metadata as md

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
