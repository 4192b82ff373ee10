"""The CI gate for one backend: run every check at the ``ci`` profile, exit 0 only if every supported check passed.

    python -m conformance gate --impl my_pkg.conv:MyConv [--known-failures known.txt] [--strict]

Besides the exit code it writes a JUnit XML file (pytest's ``--junitxml``) for CI systems, the HTML report, and a
JSON summary; it prints a one-screen summary. A backend that declares nothing runnable, or whose every check was
skipped, does not pass: a gate that checked nothing says no.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conformance.backends.registry import add_spec, build_registry
from conformance.checks.findings import explain
from conformance.results import records
from conformance.results.row import Row

IGNORE_REWRITE = "ignore::pytest.PytestAssertRewriteWarning"


@dataclass
class GateResult:
    impl: str
    passed: bool
    reason: str
    checks: dict[str, dict[str, int]] = field(default_factory=dict)   # column -> status -> count
    failing_checks: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    pytest_exit: int = 0
    explained: list[str] = field(default_factory=list)  #: columns whose failures follow from the arithmetic finding
    not_reached: list[str] = field(default_factory=list)  #: columns never reached (--max-time, a signal, -x)
    #: per failing column, the whole message of its worst failing row (worst element, bound, reproduction)
    messages: dict[str, str] = field(default_factory=dict)
    results_dir: str = ""
    junit: str = ""
    report: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def finding_name(row: Row) -> str:
    """The name a row's finding goes by: its column (``grad_input``) in conv2d, the default operation; in another
    the operation first (``conv3d:grad_input``, ``conv_transpose2d:forward``), so that a backend that passes conv2d
    and fails conv3d says so, and a conv2d backend's findings read as they always have."""
    return row.column if (row.rank, row.transposed) == (2, False) else f"{row.operation}:{row.column}"


def judge(impl: str, rows: list[Row], pytest_exit: int, *, strict: bool, shard: str = "") -> GateResult:
    """The gate's verdict on ``impl``'s rows. ``shard`` (``K/N``): the rows of one shard of a sharded gate, which
    may hold no check that passed (its tests all skipped) without failing: the merged gate (``merge_results``)
    judges the whole."""
    mine = explain([r.replace() for r in rows if r.impl == impl])
    name = {id(r): finding_name(r) for r in mine}
    checks: dict[str, dict[str, int]] = {}
    for r in mine:
        per = checks.setdefault(name[id(r)], {})
        per[r.shown_status] = per.get(r.shown_status, 0) + 1
    failing = sorted({name[id(r)] for r in mine if r.failing})
    explained = sorted({name[id(r)] for r in mine if r.explained_by} - set(failing))
    stale = sorted({name[id(r)] for r in mine if r.status == "stale"})
    not_reached = sorted({name[id(r)] for r in mine if r.status == "not_reached"})
    res = GateResult(impl, False, "", checks, failing, stale, pytest_exit, explained=explained,
                     not_reached=not_reached, messages=failure_messages(mine, failing))
    # the failures are named even where nothing passed: with a shared example database a check may fail on its first,
    # replayed example and pass none
    nothing_passed = not any(r.status == "passed" for r in mine)
    if failing:
        res.reason = ("no check ran and passed; " if nothing_passed else "") + (
            f"failing checks: {', '.join(failing)}") + (
            f" (the failures of {', '.join(explained)} follow from the arithmetic finding)" if explained else "") + (
            f"; not reached: {', '.join(not_reached)}" if not_reached else "")
    elif nothing_passed and shard and not not_reached and pytest_exit in (0, 5):
        res.passed, res.reason = True, (f"no check of shard {shard} ran and passed (each was skipped): the merged "
                                        "gate (gate --merge) judges the whole")
    elif nothing_passed:
        res.reason = "no check ran and passed: the backend declares nothing runnable here, or every check was skipped"
    elif not_reached:
        res.reason = f"checks not reached: {', '.join(not_reached)} ({not_reached_reason(mine)})"
    elif strict and stale:
        res.reason = f"stale known failures (strict): {', '.join(stale)}"
    elif pytest_exit not in (0,):
        res.reason = f"the test run ended with pytest exit code {pytest_exit}"
    else:
        res.passed, res.reason = True, "every supported check passed"
    return res


def failure_messages(rows: list[Row], columns: list[str]) -> dict[str, str]:
    """The message of each failing column's worst failing row: an error first, then the largest error/bound."""
    out = {}
    for col in columns:
        bad = [r for r in rows if finding_name(r) == col and r.failing]
        worst = max(bad, key=lambda r: (r.status == "error", _ratio(r)))
        text = (worst.message or worst.reason).strip()
        where = f"{worst.check or '?'} {worst.dtype}, {worst.problem_text}".strip(", ")
        out[col] = f"[{where}]\n{text}" if text else f"[{where}] (no message recorded)"
    return out


def _ratio(row: Row) -> float:
    try:
        return float(row.max_ratio) if row.max_ratio is not None else 0.0
    except (TypeError, ValueError):  # "inf"/"nan" as JSON writes them
        return 0.0


def not_reached_reason(rows: list[Row]) -> str:
    """Why checks were not reached (the first not-reached row's reason)."""
    return next((r.reason for r in rows if r.status == "not_reached"), "")


def resolve(spec: str) -> tuple[str, list[str]]:
    """The backend's name and the pytest options that restrict the suite to it."""
    if ":" in spec:
        entry = add_spec(build_registry(entry_points=False), spec)
        return entry.name, ["--conv-no-entry-points", "--impl", spec, "--conv-select", entry.name]
    entry = build_registry().get(spec)
    return entry.name, ["--conv-select", entry.name]


def merge_results(spec: str, paths: list[str], *, strict: bool) -> GateResult:
    """The gate's verdict on the results of its shards (``gate --shard K/N`` each), merged: the rows of every
    results file under ``paths``; the pytest exit status the worst the shards' files recorded (a file without its
    end line, from a shard that was killed, counts as interrupted)."""
    name, _ = resolve(spec)
    files = records.load(paths)
    # pytest's exit statuses: 1 some tests failed (the rows say which), 2 interrupted, 5 none collected (a shard
    # whose tests all went to the others)
    codes = [int(f.end.get("exitstatus", 0)) if f.end else 2 for f in files]
    code = max((c for c in codes if c not in (1, 5)), default=0) or (1 if 1 in codes else 0)
    rows = [r for f in files for r in f.rows]
    res = judge(name, rows, code, strict=strict)
    res.results_dir = ", ".join(paths)
    runs: dict[str, set[str]] = {}
    for r in rows:
        if r.impl == name and r.nodeid:
            runs.setdefault(r.nodeid, set()).add(r.run_id)
    twice = sorted(n for n, ids in runs.items() if len(ids) > 1)
    if twice:  # shards that partitioned differently (other durations, other options), or a run merged twice
        res.passed = False
        res.reason = (f"{len(twice)} test(s) recorded by more than one run, e.g. {twice[0]}: the shards did not "
                      f"partition alike (give every shard the same options and --shard-durations files), or "
                      f"results were merged twice; {res.reason}")
    return res


def run_gate(spec: str, *, results_dir: Path, junit: Path, extra: list[str], strict: bool,
             shard: str = "") -> GateResult:
    import pytest

    name, select = resolve(spec)
    run_id = results_dir.name  # the results directory is named after the run, as the CLI's run names its own
    args = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-q", "--tb=no", "-rN", "-W", IGNORE_REWRITE,
            "--conv-results", str(results_dir), "--conv-run-id", run_id, f"--junitxml={junit}", *select, *extra]
    if strict:
        args.append("--conv-strict")
    code = int(pytest.main(args))
    rows = records.rows([results_dir]) if results_dir.exists() else []
    res = judge(name, rows, code, strict=strict, shard=shard)
    res.results_dir, res.junit = str(results_dir), str(junit)
    return res
