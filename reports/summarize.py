"""Merge recorded results into report cells (environment and rank × implementation × check column) and summarize
them.

A *column* is the check (``forward``, ``grad_input``, ``grad_weight``, ``grad_bias``) of a hypothesis-tier row
and the tier (``golden``, ``exact``, ``nonfinite``, ``oracle-free``, ``contract``, later ones) of the others. Rows
read from several files (pytest-xdist workers, several runs, several tox environments, the same file named twice)
are merged without duplicates; a run's declared capabilities come from its header's ``impls`` list when present.
Each cell and each (environment, implementation) also keeps the backend time of its distinct calls (``Timing``).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from conformance.checks import oracle_free
from conformance.checks import table as checktable
from conformance.checks.findings import explain, is_failing
from conformance.model.problem import ConvProblem
from conformance.results.records import RunFile, as_float, load
from conformance.results.row import Row

KNOWN_COLUMNS = checktable.COLUMNS  #: the table's columns, in its order
FAILING = ("failed", "error")
KNOWN = "xfailed"  #: a failure listed in known_failures.txt, failing as expected
#: why a cell's examples did not run; ``not_reached``: a check the run never started (``--max-time``, a signal, -x)
NOT_RUN = ("unavailable", "unsupported", "skipped", "not_reached")
EXPLAINED = "explained"  #: a failure that follows from an arithmetic finding (conformance.checks.findings)
RUN_STATES = ("fail", "explained", "xfail", "stale", "pass")  #: cells whose examples ran (the others are grey)
WORST_N = 5
#: rows whose ``seconds`` is a backend call that returned a result: an error row's is the time to a raise, a crash
#: or the isolation timeout, which says nothing of speed
TIMED_STATUSES = ("passed", "failed", "xfailed", EXPLAINED)
PASSES = ("forward", "grad_input", "grad_weight", "grad_bias")
#: tiers whose row's ``seconds`` covers several backend calls of different kinds together (and, in results recorded
#: before oracle-free rows summed the backend's own time, the harness's arithmetic around them): not a call's time
MULTI_CALL_TIERS = ("contract", "oracle_free", "oracle-free")
#: convolution passes one call computes: every backward call returns dx, dw and db whichever gradient its row
#: checks, so it does two passes of work (db is a sum, not counted), as benchmarks/bench_impls.py counts them
WORK_PASSES = {"forward": 1, "backward": 2}


#: the columns one test covers where the test records a single row for them all when it does not run (a skip) or
#: breaks outside its examples (an error row of the test), while its examples' rows go to one column per layout or
#: identity: such a row belongs to each of those columns (a layout test's to the one layout its test id names), never
#: to a column of its own, which would show "—" for every backend that ran
FOLDED = {c.name: c.report_columns for c in checktable.CHECKS if len(c.report_columns) > 1}


def column_of(row: Row) -> str:
    return row.column


def columns_of(row: Row) -> tuple[str, ...]:
    """The report columns ``row`` belongs to: its column, or for a test-level row of a test that covers several
    columns (``FOLDED``) the ones its test covers."""
    col = column_of(row)
    targets = FOLDED.get(col)
    if not targets:
        return (col,)
    if not row.transposed:  # an identity of transposed problems is no column of a convolution's test
        targets = tuple(t for t in targets if t not in oracle_free.TRANSPOSED_ONLY)
    nodeid = str(row.nodeid or "")
    params = nodeid[nodeid.find("[") + 1:-1] if nodeid.endswith("]") and "[" in nodeid else ""
    names = {t: t.split("-", 1)[-1] for t in targets}  # layout-strided: strided; adjoint: adjoint
    named = [t for t, name in names.items() if params and (params == name or params.endswith(f"-{name}"))]
    return (named[0],) if len(named) == 1 else targets


#: how a backend gave no result to measure (``conformance.backends.runner``, ``conformance.backends.isolation``,
#: ``conformance.numerics.compare``,
#: ``conformance.checks.differential``, ``conformance.checks.contract``): it raised, timed out, crashed, or returned
#: no array of the
#: expected type, shape or dtype; such a row's error/bound (∞) is no measurement, the cause is what it says
_CAUSE = re.compile(
    r"(?:\b(?P<what>[A-Za-z_][\w']*) )?(?:"
    r"raised (?P<exc>[\w.]+)(?P<msg>: [^\n]*)?"
    r"|(?P<timeout>timed out after [\d.]+ ?s)"
    r"|crashed: (?P<crash>[^\n]*)"
    r"|(?P<other>returned None|returned [^,\n]+, not an? [^\n;:]+|is an? [\w.]+, not an? [\w.]+"
    r"|has shape \([^)]*\), expected \([^)]*\)|has dtype \S+, expected \S+: not numbers"
    r"|returned \d+ values?, expected \d+|has no method \w+\(\))"
    r")")
ERROR_STATUS = "error"
#: the reason of the row the pytest plugin records for a test that failed outside its examples' verdicts
TEST_LEVEL = re.compile(r"(setup|call|teardown) failed: ")


def _crash(text: str) -> str:
    signal = re.search(r"signal (\w+)", text)
    code = re.search(r"exited with code (-?\d+)", text)
    if signal:
        return signal.group(1)
    if code:
        return f"exit code {code.group(1)}"
    return re.sub(r"\s*\((?:restarted|the worker)[^)]*\).*", "", text).strip()


def error_cause(row: Row, *, full: bool = False) -> str:
    """Why ``row`` has no measured error when it is an error: an ``error`` row, or a failure whose verdict says the
    result was not comparable (the backend raised, timed out, crashed, or returned the wrong type, shape or dtype).
    One line: ``forward raised RuntimeError``, ``forward timed out after 5 s``, ``backward crashed: SIGABRT``
    (``full``: with the exception's message); empty for any other row."""
    verdict: dict[str, Any] = row.verdict if isinstance(row.verdict, dict) else {}
    is_error = row.status == ERROR_STATUS
    # a failure's reason (a known failure's note) and message (its verdict and reproduction) are no cause
    texts = [str(t) for t in (verdict.get("problem_text"), *((row.reason, row.message) if is_error
                                                             else ())) if t]
    for text in texts:
        m = _CAUSE.search(text)
        if m is None:
            continue
        what = f"{m.group('what')} " if m.group("what") else ""
        if m.group("exc"):
            cause = f"{what}raised {m.group('exc')}" + ((m.group("msg") or "") if full else "")
        elif m.group("timeout"):
            cause = what + m.group("timeout")
        elif m.group("crash") is not None:
            cause = f"{what}crashed: {_crash(m.group('crash'))}"
        else:
            cause = what + m.group("other")
        return _one_line(cause, 160 if full else 80)
    if not is_error or not texts:
        return "error" if is_error else ""
    lines = [ln.strip() for ln in texts[0].splitlines() if ln.strip()]
    e_lines = [ln[1:].strip() for ln in lines if ln.startswith("E ") and ln[1:].strip()]
    return _one_line((e_lines or lines or ["error"])[0], 160 if full else 80)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def ratio_of(row: Row) -> float:
    """The row's max error/bound; nan when it has none (a skip, or an error outside the checks)."""
    try:
        return as_float(row.max_ratio)
    except (TypeError, ValueError):
        return math.nan


def fmt_ratio(r: float) -> str:
    """A ratio in units of the bound: ``0.31×``, ``3.3e+15×``, ``∞×``."""
    if math.isnan(r):
        return "—"
    if math.isinf(r):
        return "∞×"
    if r == 0:
        return "0×"
    if r < 0.01 or r >= 1000:
        return f"{r:.1e}×"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def _dedupe_key(row: Row) -> str:
    return json.dumps([getattr(row, k) for k in ("run_id", "worker", "nodeid", "check", "tier", "seed", "problem",
                                            "data_kind", "status", "impl", "dtype")], sort_keys=True, default=str)


def seconds_of(row: Row) -> float | None:
    """The backend time of the one call behind ``row``; None where it has none (not run, an old file, a tier that
    times several calls together)."""
    v = row.seconds
    if row.status not in TIMED_STATUSES or row.check not in PASSES \
            or row.tier in MULTI_CALL_TIERS or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) and v >= 0 else None


def pass_of(row: Row) -> str:
    return "forward" if row.check == "forward" else "backward"


def call_key(row: Row) -> str:
    """One backend call: in the tiers that check every pass, the three gradient rows of a backward call share it
    (and its ``seconds``), and the forward call of the same example is another; a hypothesis-tier test checks one
    quantity with a call of its own (the check tells its calls apart even in a row without a nodeid)."""
    call = row.check if (row.tier or "hypothesis") == "hypothesis" else pass_of(row)
    return json.dumps([getattr(row, k) for k in ("env", "impl", "run_id", "worker", "nodeid", "problem", "seed",
                                            "data_kind", "tier", "layout")] + [call], sort_keys=True, default=str)


@lru_cache(maxsize=4096)
def _macs(problem_json: str) -> int:
    try:
        return ConvProblem.from_dict(json.loads(problem_json)).macs
    except (TypeError, ValueError):  # an invalid or unknown problem (InvalidProblem is a ValueError): no count
        return 0


def macs_of(row: Row) -> int:
    """Multiply-adds of one pass of the row's problem; 0 where it has no readable problem."""
    problem = row.problem
    return _macs(json.dumps(problem, sort_keys=True)) if isinstance(problem, dict) else 0


def fmt_num(v: float | None) -> str:
    """Three significant digits, without an exponent where one is not needed: ``0.0421``, ``3.5``, ``1,234``."""
    if v is None or math.isnan(v):
        return "—"
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.2g}" if v < 0.001 else f"{v:.3g}"


@dataclass
class Call:
    """One timed backend call."""

    seconds: float
    macs: int   #: multiply-adds of one pass of its problem (0: unknown)
    kind: str   #: forward or backward


@dataclass
class Timing:
    """Backend time of the distinct calls behind some rows, as the backend's worker process measured it."""

    calls: dict[str, Call] = field(default_factory=dict)
    throughput: bool = True  #: False for the grad_bias column: it checks a sum, its calls are whole backward calls

    def add(self, row: Row) -> None:
        seconds = seconds_of(row)
        if seconds is not None:
            self.calls.setdefault(call_key(row), Call(seconds, macs_of(row), pass_of(row)))

    @property
    def n_calls(self) -> int:
        return len(self.calls)

    @property
    def total_s(self) -> float:
        return sum(c.seconds for c in self.calls.values())

    @property
    def median_ms(self) -> float | None:
        return statistics.median(c.seconds for c in self.calls.values()) * 1e3 if self.calls else None

    @property
    def max_ms(self) -> float | None:
        return max(c.seconds for c in self.calls.values()) * 1e3 if self.calls else None

    @property
    def gflops(self) -> float | None:
        """sum(2 × MACs × passes) / sum(seconds) over the calls with a known problem; None without any."""
        known = [c for c in self.calls.values() if c.macs > 0]
        seconds = sum(c.seconds for c in known)
        if not self.throughput or not known or seconds <= 0:
            return None
        return sum(2 * c.macs * WORK_PASSES[c.kind] for c in known) / seconds / 1e9

    @property
    def title(self) -> str:
        """The tooltip: what the median and throughput were computed from."""
        if not self.calls:
            return "no timed calls"
        return (f"{self.n_calls} call(s), {fmt_num(self.total_s)} s in all, median {fmt_num(self.median_ms)} ms, "
                f"max {fmt_num(self.max_ms)} ms")


def _worst_key(row: Row) -> tuple[int, bool, float]:
    """Failures of their own first, the largest error/bound first among them, then those without one (errors)."""
    r = math.nan if error_cause(row) else ratio_of(row)
    rank = 0 if is_failing(row) else 1 if row.status in (KNOWN, "failed", "error") else 2
    return (rank, math.isnan(r), -(0.0 if math.isnan(r) else r))


@dataclass
class Cell:
    """The rows of one (environment, implementation, column)."""

    env: str
    impl: str
    column: str
    counts: Counter = field(default_factory=Counter)
    ratios: list[float] = field(default_factory=list)      #: per row with a verdict: max error/bound
    ks: list[int] = field(default_factory=list)            #: the accumulation length K at that worst element
    statuses: list[str] = field(default_factory=list)      #: and its status
    reasons: dict[str, str] = field(default_factory=dict)  #: why not run (or why it broke) -> status
    worst: list[Row] = field(default_factory=list)
    ident: str = ""
    timing: Timing = field(default_factory=Timing)
    #: per failing row that is an error (no result to measure): its test, its one-line cause (``error_cause``), the
    #: cause with the exception's message, and whether it is the test's own row (the plugin's record of a test that
    #: failed outside its examples' verdicts, ``TEST_LEVEL``)
    errors: list[tuple[str, str, str, bool]] = field(default_factory=list)
    failed_tests: set[str] = field(default_factory=set)  #: tests with a failing verdict of their own

    def __post_init__(self) -> None:
        self.timing.throughput = self.column != "grad_bias"

    def add(self, row: Row) -> None:
        status = EXPLAINED if row.explained_by else str(row.status)
        if row.explained_by:
            self.reasons.setdefault(str(row.explained_by), EXPLAINED)
        self.counts[status] += 1
        self.timing.add(row)
        if row.reason:
            self.reasons.setdefault(str(row.reason), status)
        cause = error_cause(row) if status in FAILING or status == KNOWN else ""
        verdict = row.verdict
        if status in FAILING:
            nodeid = str(row.nodeid or "")
            if cause:
                own = bool(TEST_LEVEL.match(str(row.reason or ""))) and not isinstance(verdict, dict)
                self.errors.append((nodeid, cause, error_cause(row, full=True), own))
            else:
                self.failed_tests.add(nodeid)
        if isinstance(verdict, dict):
            self.ratios.append(math.nan if cause else ratio_of(row))  # an error's ∞ measures nothing
            self.ks.append(int(verdict.get("k_at_worst") or 0))
            self.statuses.append(status)
        if status not in NOT_RUN and status != "stale":
            self.worst.append(row)
            self.worst.sort(key=_worst_key)
            del self.worst[WORST_N:]

    @property
    def n_failing(self) -> int:
        return sum(self.counts[s] for s in FAILING)

    @property
    def causes(self) -> Counter:
        """The failing rows that are errors, by cause. A test's own error row where the same test recorded failing
        verdicts (the test's assertion of those failures, as the plugin saw it) is no error of its own."""
        return Counter(cause for nodeid, cause, _, own in self.errors if not (own and nodeid in self.failed_tests))

    @property
    def full_causes(self) -> dict[str, str]:
        """Each cause with the message of its first error."""
        out: dict[str, str] = {}
        for _, cause, full, _ in self.errors:
            out.setdefault(cause, full)
        return out

    @property
    def n_errors(self) -> int:
        """Failing rows that are errors: the backend raised, timed out, crashed or returned no comparable result."""
        return sum(self.causes.values())

    @property
    def is_error(self) -> bool:
        """A failing cell whose every failure is an error: it has a cause, no worst error/bound."""
        return self.state == "fail" and self.n_errors == self.n_failing

    @property
    def cause(self) -> str:
        """The most common error's one-line cause (empty without errors)."""
        return self.causes.most_common(1)[0][0] if self.causes else ""

    @property
    def full_cause(self) -> str:
        return self.full_causes.get(self.cause, self.cause)

    @property
    def worst_row(self) -> Row:
        """The row to show first: the worst measured failure where there is one (not an error, nor a test's own
        record of its failures), else the worst row (an empty row of the cell's implementation without any)."""
        measured = [r for r in self.worst if is_failing(r) and not error_cause(r)]
        return measured[0] if measured and not self.is_error else (
            self.worst[0] if self.worst else Row(status="skipped", impl=self.impl))

    @property
    def n_run(self) -> int:
        """Examples checked (a stale known-failure entry or a skip is not one)."""
        return sum(n for s, n in self.counts.items() if s not in NOT_RUN and s != "stale")

    @property
    def worst_ratio(self) -> float:
        finite = [r for r in self.ratios if not math.isnan(r)]
        return max(finite) if finite else math.nan

    @property
    def state(self) -> str:
        """The cell's colour: fail, xfail (known failures only), stale (a known failure that no longer fails),
        pass, or why nothing ran: unavailable, unsupported, skipped; empty without rows."""
        if self.n_failing:
            return "fail"
        if self.counts[EXPLAINED]:
            return "explained"
        if self.counts[KNOWN]:
            return "xfail"
        if self.counts["stale"]:
            return "stale"
        if self.counts["passed"]:
            return "pass"
        return next((s for s in NOT_RUN if self.counts[s]), "empty")

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def label(self) -> str:
        """The cell's one-line text: counts and worst ratio (or an error's cause), or what kept it from running."""
        if self.is_error:
            return f"{self.counts_text} · {self.cause}"
        if self.state == "fail" and self.n_errors:
            return f"{self.counts_text} · {fmt_ratio(self.worst_ratio)} · {self.cause}"
        if self.state in RUN_STATES:
            return f"{self.counts_text} · {fmt_ratio(self.worst_ratio)}"
        return self.state

    @property
    def headline(self) -> str:
        """The cell's big text: its worst error/bound; ``error`` where its failures are all errors; ``known``
        where its known failures have no ratio (errors)."""
        if self.is_error:
            return "error"
        if self.state == "xfail" and math.isnan(self.worst_ratio):
            return "known"
        return fmt_ratio(self.worst_ratio)

    @property
    def counts_text(self) -> str:
        if self.is_error:
            return f"{self.n_failing} error(s) / {self.n_run}"
        if self.n_errors:
            return f"{self.n_failing} failed ({self.n_errors} error(s)) / {self.n_run}"
        if self.n_failing:
            return f"{self.n_failing} failed / {self.n_run}"
        if self.counts[EXPLAINED]:
            return f"{self.counts[EXPLAINED]} follow from the arithmetic finding / {self.n_run}"
        if self.counts[KNOWN]:
            return f"{self.counts[KNOWN]} known failure(s) / {self.n_run}"
        if self.counts["stale"]:
            return f"{self.counts['passed']} passed; stale known-failure entry"
        return f"{self.counts['passed']} passed"


@dataclass
class RunInfo:
    run_id: str
    env: str
    header: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)
    finished: str = ""

    @property
    def partial(self) -> bool:
        return any(f["partial"] for f in self.files)


@dataclass
class Report:
    cells: dict[tuple[str, str, str], Cell]
    envs: list[str]
    impls: list[str]
    columns: list[str]
    runs: list[RunInfo]
    impl_info: dict[str, dict[str, Any]]
    n_rows: int
    n_duplicates: int
    timings: dict[tuple[str, str], Timing] = field(default_factory=dict)  #: per (environment, implementation)
    #: the arithmetic check's rows per implementation: (environment, dtype, pass, row)
    arithmetic: dict[str, list[tuple[str, str, str, Row]]] = field(default_factory=dict)
    #: the worst error/bound per (environment, implementation, dtype, pass) over every check's rows
    worst_ratio: dict[tuple[str, str, str, str], float] = field(default_factory=dict)

    @property
    def partial_files(self) -> list[dict[str, Any]]:
        return [f for r in self.runs for f in r.files if f["partial"]]

    def cell(self, env: str, impl: str, column: str) -> Cell | None:
        return self.cells.get((env, impl, column))

    def timing(self, env: str, impl: str) -> Timing:
        return self.timings.get((env, impl)) or Timing()

    @property
    def timed(self) -> bool:
        """Whether any row carries a backend time (results recorded before ``seconds`` was written carry none)."""
        return any(t.n_calls for t in self.timings.values())

    @property
    def failing(self) -> list[Cell]:
        """The failing cells, in the matrix's order (implementation, environment, column)."""
        return [c for c in self.ordered if c.state == "fail"]

    @property
    def explained(self) -> list[Cell]:
        return [c for c in self.ordered if c.state == EXPLAINED]

    @property
    def ordered(self) -> list[Cell]:
        return sorted(self.cells.values(), key=lambda c: int(c.ident.split("-")[1]) if c.ident else 0)


def _impl_info(runfiles: Sequence[RunFile], cells: Iterable[Cell], rows_by_impl: dict[str, list]) -> dict:
    """What each implementation declared: the run header's ``impls`` list when present, else what rows show."""
    info: dict[str, dict[str, Any]] = {}
    for rf in runfiles:
        for d in rf.header.get("impls") or []:
            if isinstance(d, dict) and d.get("name"):
                info.setdefault(str(d["name"]), {"declared": True, **d})
    for impl, rows in rows_by_impl.items():
        d = info.setdefault(impl, {"name": impl, "declared": False})
        profiles = sorted({f"{r.dtype}: {r.verdict.get('profile')}" for r in rows
                           if isinstance(r.verdict, dict) and r.verdict.get("profile")})
        kinds = sorted({str(r.verdict.get("bound_kind")) for r in rows
                        if isinstance(r.verdict, dict) and r.verdict.get("bound_kind")})
        d["observed"] = {"profiles": profiles, "bound_kinds": kinds,
                         "error_model": "normwise" if "norm" in kinds else ("componentwise" if kinds else "")}
        if not d.get("unavailable"):
            d["unavailable"] = next((r.reason for r in rows if r.status == "unavailable"), None)
    return info


def _ordered(names: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    names = set(names)
    return [c for c in first if c in names] + sorted(names - set(first))


def setting(env: str, operation: str, ranked: bool) -> str:
    """A matrix row's setting, beside the implementation: the environment, and where the results hold rows of more
    than conv2d, the operation (``local · conv3d``, ``local · conv_transpose2d``), so that a backend's 1-D, 2-D and
    3-D verdicts, and its convolution's and transposed convolution's, stand apart, never averaged together (the
    report's "environment" dimension is this setting)."""
    return f"{env} · {operation}" if ranked else env


def summarize(source: Sequence[str | Path | RunFile]) -> Report:
    """Read results files or directories (or already loaded ``RunFile``s) and merge them into a ``Report``."""
    runfiles = [s for s in source if isinstance(s, RunFile)]
    paths = [s for s in source if not isinstance(s, RunFile)]
    if paths:
        runfiles += load(paths)
    seen: set[str] = set()
    cells: dict[tuple[str, str, str], Cell] = {}
    runs: dict[str, RunInfo] = {}
    rows_by_impl: dict[str, list[Row]] = {}
    timings: dict[tuple[str, str], Timing] = {}
    n_rows = dups = 0
    kept: list[Row] = []
    arith: dict[str, list[tuple[str, str, str, Row]]] = {}
    worst: dict[tuple[str, str, str, str], float] = {}
    for rf in runfiles:
        head = rf.header
        run_id = str(head.get("run_id") or (rf.rows[0].run_id if rf.rows else "") or rf.path.stem)
        env_name = str(head.get("env") or (rf.rows[0].env if rf.rows else "") or "local")
        run = runs.setdefault(run_id, RunInfo(run_id, env_name, head))
        if not run.header and head:
            run.header = head
        if rf.end and str(rf.end.get("finished", "")) > run.finished:
            run.finished = str(rf.end.get("finished", ""))
        new = 0
        for row in rf.rows:
            key = _dedupe_key(row)
            if key in seen:
                dups += 1
                continue
            seen.add(key)
            new += 1
            kept.append(row.replace(env=row.env or env_name))
        n_rows += new
        run.files.append({"path": str(rf.path), "name": rf.path.name, "worker": head.get("worker", "?"),
                          "rows": len(rf.rows), "new_rows": new, "partial": rf.partial,
                          "exitstatus": rf.end.get("exitstatus") if rf.end else None})
    ranked = any(r.operation != "conv2d" for r in kept)  # then the operation is a dimension of every row's setting
    for row in explain(kept):  # every row first: an arithmetic finding explains rows of other files too
        env, impl = setting(row.env, row.operation, ranked), str(row.impl or "?")
        for col in columns_of(row):
            cells.setdefault((env, impl, col), Cell(env, impl, col)).add(row)
        # the implementation's total over every column: a call is counted once however many rows share it
        timings.setdefault((env, impl), Timing()).add(row)
        rows_by_impl.setdefault(impl, []).append(row)
        pass_key = (env, impl, str(row.dtype), str(row.check))
        if row.tier == "arithmetic":
            if isinstance(row.arithmetic, dict):  # a skip of the whole check has no measurement
                arith.setdefault(impl, []).append((env, pass_key[2], pass_key[3], row))
        elif isinstance(row.verdict, dict) and not math.isnan(r := ratio_of(row)) and not error_cause(row):
            worst[pass_key] = max(worst.get(pass_key, 0.0), r)
    envs = _ordered(c.env for c in cells.values())
    impls = _ordered(c.impl for c in cells.values())
    columns = _ordered((c.column for c in cells.values()), KNOWN_COLUMNS)
    order = sorted(cells, key=lambda k: (impls.index(k[1]), envs.index(k[0]), columns.index(k[2])))
    for i, where in enumerate(order):
        cells[where].ident = f"cell-{i}"
    return Report(cells, envs, impls, columns, list(runs.values()), _impl_info(runfiles, cells.values(), rows_by_impl),
                  n_rows, dups, timings, arith, worst)


def _short(cell: Cell | None) -> str:
    """A terminal cell: ``ok 25 0.31×``, ``FAIL 1/8 3.3e15×``, ``ERROR 2/2 forward raised RuntimeError``,
    ``known 2/159``, ``unavail.``."""
    return _short_long(cell).replace("e+", "e")


def _short_long(cell: Cell | None) -> str:
    if cell is None:
        return "—"
    if cell.is_error:
        return f"ERROR {cell.n_failing}/{cell.n_run} {cell.cause}"
    if cell.state == "fail":
        return f"FAIL {cell.n_failing}/{cell.n_run} {fmt_ratio(cell.worst_ratio)}"
    if cell.state == "xfail":
        return f"known {cell.counts[KNOWN]}/{cell.n_run}"
    if cell.state == EXPLAINED:
        return f"see arithmetic {cell.counts[EXPLAINED]}/{cell.n_run} {fmt_ratio(cell.worst_ratio)}"
    if cell.state in ("pass", "stale"):
        return f"{'ok' if cell.state == 'pass' else 'STALE'} {cell.counts['passed']} {fmt_ratio(cell.worst_ratio)}"
    return {"unavailable": "unavail.", "unsupported": "n/a", "skipped": "skipped",
            "not_reached": "not reached"}.get(cell.state, "—")


def _failed_name(cell: Cell) -> str:
    """A failing column in an implementation's line: ``forward``, ``golden (error)``."""
    return f"{cell.column} (error)" if cell.is_error else cell.column


def _impl_line(rep: Report, env: str, impl: str) -> str:
    """``ok 20/20, known 1; worst 0.42× (corpus); known: nonfinite``, ``FAIL 2/22: forward, golden (error); …``:
    the worst error/bound is over the passing cells only (a known failure's or an error's is no measure of the
    implementation's accuracy where it passes)."""
    cells = [c for c in (rep.cell(env, impl, col) for col in rep.columns) if c is not None]
    ran = [c for c in cells if c.state in RUN_STATES]
    if not ran:
        return f"not run: {cells[0].reason or cells[0].state}" if cells else "no results"
    failed = [c for c in ran if c.state == "fail"]
    passed = [c for c in ran if c.state in ("pass", "stale")]
    others = [(n, label) for n, label in ((sum(c.state == "xfail" for c in ran), "known"),
                                          (sum(c.state == EXPLAINED for c in ran), "explained"),
                                          (sum(c.state == "stale" for c in ran), "stale")) if n]
    ratios = [(c.worst_ratio, c.column) for c in passed if not math.isnan(c.worst_ratio)]
    worst = max(ratios) if ratios else None
    if failed:
        head = f"FAIL {len(failed)}/{len(ran)}: {', '.join(_failed_name(c) for c in failed)}"
    else:
        n_ok = len(ran) - sum(n for n, label in others if label != "stale")
        head = f"ok {n_ok}/{n_ok}" + "".join(f", {label} {n}" for n, label in others)
    tail = f"; worst {fmt_ratio(worst[0])} ({worst[1]})" if worst else ""
    known = [c.column for c in ran if c.state in ("xfail", "stale")]
    skipped = [c.column for c in cells if c.state not in RUN_STATES]
    extra = (f"; known: {', '.join(known)}" if known else "") + (f"; not run: {', '.join(skipped)}" if skipped else "")
    return head + tail + extra


def _what(cell: Cell) -> str:
    """A failing cell's worst case in one line: check, worst error/bound or the error's cause, seed, data."""
    w = cell.worst_row
    cause = error_cause(w, full=True)
    ratio = ratio_of(w)
    what = [str(w.check or "?")]
    if cause or not math.isnan(ratio):
        what.append(f"error: {cause}" if cause else fmt_ratio(ratio))
    if w.seed is not None:
        what.append(f"seed {w.seed}")
    if w.data_kind:
        what.append(str(w.data_kind))
    where = w.problem_text or ("" if cause else str(w.reason)[:80].replace("\n", " "))
    return " ".join(what) + (f": {where}" if where else "")


def terminal_summary(source: Sequence[str | Path | RunFile] | Report,
                     report_path: str | Path | None = None, *, max_failures: int = 12) -> str:
    """One screen: implementation × column (passed count or failures, worst error/bound), then each failing
    cell's worst case on one line, then where the HTML report is."""
    rep = source if isinstance(source, Report) else summarize(source)
    multi = len(rep.envs) > 1
    labels = [(env, impl, f"{env}/{impl}" if multi else impl) for impl in rep.impls for env in rep.envs
              if any(rep.cell(env, impl, c) for c in rep.columns)]
    width = max([len(lab) for *_, lab in labels] + [14])
    partial = f", PARTIAL: {len(rep.partial_files)} file(s) without an end line" if rep.partial_files else ""
    lines = [f"conv-conformance: {rep.n_rows} results, {len(rep.impls)} implementations, {len(rep.columns)} checks, "
             f"{len(rep.runs)} run(s){partial}  (error in units of the bound)"]
    for env, impl, lab in labels:  # one line per implementation: the matrix has too many columns for a screen
        lines.append(f"{lab:<{width}} {_impl_line(rep, env, impl)}"[:160])
    for impl in rep.impls:
        cells = [c for c in rep.cells.values() if c.impl == impl]
        if cells and all(c.state in NOT_RUN for c in cells):
            lines.append(f"{impl}: not run: {cells[0].reason or cells[0].state}"[:160])
    failing = rep.failing
    if failing:
        lines.append(f"failing cells ({len(failing)}), worst case each:")
    for cell in failing[:max_failures]:
        lines.append(f"  {cell.env + '/' if multi else ''}{cell.impl} {cell.column}: {_what(cell)}")
    if len(failing) > max_failures:
        lines.append(f"  … and {len(failing) - max_failures} more (see the report)")
    notes = [f"{c.env + '/' if multi else ''}{c.impl} {c.column} ({c.state})" for c in rep.cells.values()
             if c.state in ("xfail", "stale")]
    explained = [f"{c.env + '/' if multi else ''}{c.impl} {c.column}" for c in rep.cells.values()
                 if c.state == EXPLAINED]
    if explained:
        lines.append(("failures that follow from the arithmetic finding (not separate bugs): "
                      + ", ".join(explained))[:240])
    if notes:
        lines.append(("known failures / stale entries: " + ", ".join(notes))[:240])
    inactive = sorted({k for run in rep.runs for k in run.header.get("known_inactive") or []})
    lines += [f"known failure not in force here: {k}"[:240] for k in inactive]
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)
