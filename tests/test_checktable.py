"""The table of checks (``conformance/checks/table.py``): every list the suite keeps of its checks is derived from it,
and a new check is one row plus its suite test function."""

from __future__ import annotations

import textwrap

import pytest
from conformance.reports.summarize import FOLDED, KNOWN_COLUMNS, summarize

from conformance.checks import table as checktable
from conformance.checks.table import Check
from conformance.model.passes import PASSES
from conformance.pytest_plugin import LONG_CHECKS
from conformance.results import records
from conformance.results.row import Row


def test_every_suite_test_is_a_row_of_the_table_and_every_row_has_a_test(pytester: pytest.Pytester) -> None:
    res = pytester.runpytest("--pyargs", "conformance.suite", "--collect-only", "-q", "--conv-select", "naive",
                             "-p", "no:cacheprovider")
    tests = {line.split("::")[1].split("[")[0] for line in res.outlines if "::" in line}
    assert tests == {f"test_{c.name}" for c in checktable.CHECKS}


def test_the_derived_lists_follow_the_table() -> None:
    assert KNOWN_COLUMNS == checktable.COLUMNS == tuple(col for c in checktable.CHECKS for col in c.report_columns)
    assert FOLDED == {"layout": checktable.get("layout").report_columns,
                      "oracle_free": checktable.get("oracle_free").report_columns}
    assert list(LONG_CHECKS) == [c.name for c in sorted(checktable.CHECKS, key=lambda c: (c.long is None, c.long))
                                 if c.long is not None]
    with pytest.raises(KeyError, match="no check named 'nope'; the checks are forward, grad_input"):
        checktable.get("nope")


@pytest.mark.parametrize(("tier", "check", "column"), [
    ("hypothesis", "grad_weight", "grad_weight"), ("golden", "grad_weight", "golden"),
    ("layout-strided", "forward", "layout-strided"), ("layout", "layout", "layout"),
    ("oracle_free", "adjoint", "adjoint"), ("oracle-free", "linearity", "linearity"),  # schema 1's spelling
    ("oracle_free", "oracle_free", "oracle_free"), ("arithmetic", "grad_bias", "arithmetic"),
])
def test_a_rows_column_comes_from_its_check_in_the_table(tier: str, check: str, column: str) -> None:
    assert Row(status="passed", impl="x", tier=tier, check=check).column == column


def test_requirements_say_why_a_check_does_not_apply() -> None:
    from conformance import Capabilities

    forward_only = Capabilities(dtypes=("float32",), backward=False, max_macs=10)
    assert checktable.get("grad_input").unsupported_reason(forward_only) == "backward not declared (backward=False)"
    assert "float64 not declared" in (checktable.get("oracle_free").unsupported_reason(forward_only) or "")
    assert "max_macs=10 declared" in (checktable.get("scale").unsupported_reason(forward_only) or "")
    assert checktable.get("forward").unsupported_reason(forward_only) is None
    assert checktable.get("golden").passes_for(forward_only) == ("forward",)


def test_an_unknown_check_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=textwrap.dedent('''
        import pytest

        @pytest.mark.conv_check("not_a_check")
        def test_x(conv):
            pass
    '''))
    res = pytester.runpytest("--conv-select", "naive", "-p", "no:cacheprovider", "test_mine.py")
    res.stderr.fnmatch_lines(["*conv_check markers naming no check of the table: not_a_check*"])


def test_a_new_check_is_one_row_and_its_test_function(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A drawn tier on uniform data that checks every pass: the row below and the four-line test are all it
    takes; it is selected, skipped with its requirement's reason, recorded and reported as its own column."""
    row = Check("uniform_only", data_kind="uniform", requires=(checktable.backward_declared,),
                doc="every pass on uniform data")
    checks = checktable.CHECKS + (row,)
    monkeypatch.setattr(checktable, "CHECKS", checks)
    monkeypatch.setattr(checktable, "BY_NAME", {c.name: c for c in checks})
    monkeypatch.setattr(checktable, "COLUMNS", checktable.COLUMNS + row.report_columns)
    pytester.makepyfile(test_uniform_only=textwrap.dedent('''
        import pytest
        from hypothesis import given, strategies as st

        @pytest.mark.conv_check("uniform_only")
        @given(data=st.data())
        def test_uniform_only(conv, data):
            conv.hypothesis_example(data)
    '''))
    res = pytester.runpytest_inprocess("test_uniform_only.py", "--conv-select", "naive", "--conv-no-isolate",
                                       "--conv-max-examples", "3", "--conv-results", str(pytester.path / "res"),
                                       "-p", "no:cacheprovider", "--conv-ranks", "2", "--conv-ops", "conv")
    res.assert_outcomes(passed=1)
    rows = records.rows([pytester.path / "res"])
    mine = [r for r in rows if r.tier == "uniform_only"]
    assert mine and {r.data_kind for r in mine} == {"uniform"}
    assert {"forward", "grad_input", "grad_weight"} <= {r.check for r in mine} <= set(PASSES)
    assert {r.column for r in mine} == {"uniform_only"}
    rep = summarize([pytester.path / "res"])
    assert "uniform_only" in rep.columns and rep.cell(rep.envs[0], "naive", "uniform_only").state == "pass"
