"""What a suite test does with one hypothesis example: draw, run, judge, record, raise with a reproduction.

Rows are buffered per test and written at teardown: every passing example once, and of the failing ones only the
last, which is the minimal example hypothesis replays at the end, so shrinking does not flood the report.
"""

from __future__ import annotations

import json
import zlib
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pytest

from conformance.backends import machine
from conformance.backends.backend import Capabilities
from conformance.backends.machine import backend_facts
from conformance.backends.registry import Entry
from conformance.checks import oracle_free
from conformance.checks import table as checktable
from conformance.checks.contract import check_calls
from conformance.checks.differential import CheckResult, check_backward, check_forward
from conformance.errors import BackendFailure
from conformance.inputs import onnx_golden
from conformance.inputs.data import Inputs, make_inputs
from conformance.inputs.strategies import MAX_MACS, SIZE_CLASSES, boundary_problems, conv_problems, data_kinds, seeds
from conformance.model import shapes
from conformance.model.passes import BACKWARD, FORWARD
from conformance.model.problem import RANK_IDS, ConvProblem, operation_of
from conformance.numerics import arithmetic
from conformance.numerics.compare import Verdict, format_verdict, worst_verdict
from conformance.numerics.tolerance import exact_bits_for
from conformance.options import DEFAULT_DATA_KINDS
from conformance.results.records import Recorder
from conformance.results.repro import snippet
from conformance.results.row import Row, example_status

DEFAULT_DTYPES = ("float64", "float32", "float16", "bfloat16")  # each backend gets those it declares
#: rows kept per test of the failures a dtype's known-failure entry covers (the report shows the worst few)
WORST_KNOWN = 20


def dtypes_for(caps: Capabilities, requested: Sequence[str] | None) -> tuple[str, ...]:
    wanted = requested or DEFAULT_DTYPES
    return tuple(d for d in wanted if d in caps.dtypes)


def unsupported_check_reason(caps: Capabilities, check: str, requested: Sequence[str] | None,
                             rank: int = 2, transposed: bool = False) -> str | None:
    """Why a backend with ``caps`` cannot be given ``check`` in ``rank`` (``transposed``: of a transposed convolution)
    (None: it can): a rank or an operation it does not declare, no requested dtype it declares, or what the check's
    row in the table requires (``conformance.checks.table``)."""
    if rank not in caps.ranks:
        return f"{RANK_IDS[rank]} not declared (ranks={','.join(map(str, caps.ranks))})"
    if transposed and not caps.transposed:
        return "transposed convolution not declared (transposed=False)"
    if not dtypes_for(caps, requested):
        wanted = ", ".join(requested or DEFAULT_DTYPES)
        return f"declares dtypes {', '.join(caps.dtypes)}, none of the requested {wanted}"
    return checktable.get(check).unsupported_reason(caps, rank, transposed)


def reproduce_spec(entry: Entry) -> str:
    return entry.name if entry.source.startswith("entry point") else entry.spec


class SuiteContext:
    """One suite test's state. A plain class, not a dataclass: hypothesis prints the test's arguments."""

    def __init__(self, entry: Entry, recorder: Recorder, nodeid: str, check: str,
                 dtypes: Sequence[str] | None = None, data_kinds: Sequence[str] | None = None,
                 backend: Any = None, known: Any = None, known_dtypes: Sequence[Any] = (),
                 operation: str = "conv2d", max_macs: int | None = None) -> None:
        self.entry, self.recorder, self.nodeid, self.check = entry, recorder, nodeid, check
        #: the drawn problems' work budget, multiply-adds a pass (``--max-macs``; None: the strategies' own)
        self.max_macs = max_macs if max_macs is not None else MAX_MACS
        self.operation = operation  #: this test's operation: conv1d ... conv_transpose3d
        self.rank, self.transposed = operation_of(operation)  #: its spatial rank (1, 2, 3), and its kind
        self.spec = checktable.get(check)  #: the check's row in the table
        self._backend = backend if backend is not None else entry.backend
        self.known = known  #: the known-failure entry that covers this test, if any
        #: entries that cover this test's examples of some dtypes: their failing rows are known, the test goes on
        self.known_dtypes = list(known_dtypes)
        self._known_rows: dict[str, Row] = {}
        #: the rows of the first crash or timeout: what Hypothesis replays afterwards is answered "not called"
        self._first_error_rows: list[Row] = []
        begin = getattr(self._backend, "begin_check", None)
        if callable(begin):
            begin()
        self.dtypes, self.data_kinds = dtypes, data_kinds
        self._passed: dict[str, Row] = {}
        self._last_failure: list[Row] = []
        self._failures_seen = 0

    @cached_property
    def seen_on(self) -> str:
        """The machine, and the backend's own facts (torch: its kernels' ISA), for reproductions."""
        facts = backend_facts(self.entry.backend)
        return machine.summary() + "".join(f"; {k} {v}" for k, v in facts.items())

    def __repr__(self) -> str:  # hypothesis prints the test's arguments: keep it one line
        return f"<conv context {self.entry.name}:{self.check}:{self.operation}>"

    @property
    def has_failure_rows(self) -> bool:
        return bool(self._last_failure)

    @property
    def error_causes(self) -> list[str]:
        """Where every failing row of this test is an error (raised, timed out, crashed, no answer): their causes."""
        rows = self._first_error_rows or self._last_failure
        if not rows or any(r.status != "error" for r in rows):
            return []
        return sorted({str((r.verdict or {}).get("problem_text") or r.message).split("\n")[0] for r in rows})

    @property
    def has_rows(self) -> bool:
        return bool(self._passed or self._last_failure)

    def new_row(self, **fields: Any) -> Row:
        """A row of this test: its operation's rank and kind, and ``fields``."""
        return Row(rank=self.rank, transposed=self.transposed, **fields)

    @property
    def backend(self) -> Any:
        """What the checks call: the backend itself, or its isolated worker-process proxy."""
        return self._backend

    # -- one hypothesis example ---------------------------------------------------------------------
    def hypothesis_example(self, data: Any) -> None:
        """One drawn example of this test's check, as its row in the table declares it."""
        caps: Capabilities = self.backend.capabilities
        spec = self.spec
        dtypes = spec.dtypes or dtypes_for(caps, self.dtypes)
        if spec.strategy == "boundary":
            strategy = boundary_problems(dtypes=dtypes, capabilities=caps, ranks=(self.rank,),
                                         transposed=self.transposed, max_macs=self.max_macs)
        else:
            strategy = conv_problems(dtypes=dtypes, capabilities=caps, bias=True if spec.name == "grad_bias" else None,
                                     size_classes=spec.size_classes or tuple(SIZE_CLASSES), ranks=(self.rank,),
                                     transposed=self.transposed, max_macs=self.max_macs)
        problem = data.draw(strategy, label="problem")
        seed = data.draw(seeds, label="seed")
        if spec.data_kind is not None:
            kind = spec.data_kind
        else:  # the check's own kinds (those of --conv-data-kinds among them, if any), or the run's
            run_kinds = self.data_kinds or DEFAULT_DATA_KINDS
            kinds = ([k for k in run_kinds if k in spec.kinds] or list(spec.kinds)) if spec.kinds else list(run_kinds)
            kind = data.draw(data_kinds(kinds), label="data_kind")
        if spec.name == "contract":
            self.run_contract(problem, seed)
        elif spec.name == "oracle_free":
            self.run_oracle_free(problem, seed)
        elif spec.every_dtype:
            for dtype in [problem.dtype] + [d for d in dtypes if d != problem.dtype]:
                self.run(problem.replace(dtype=dtype), seed, kind, tier=spec.record_tier)
        else:
            self.run(problem, seed, kind, tier=spec.record_tier)

    def layout_example(self, data: Any, layout: str) -> None:
        """Forward and backward on one problem with the operands in ``layout``; dy constant for 'broadcast'."""
        caps: Capabilities = self.backend.capabilities
        problem = data.draw(conv_problems(dtypes=dtypes_for(caps, self.dtypes), capabilities=caps, ranks=(self.rank,),
                                          transposed=self.transposed, max_macs=self.max_macs), label="problem")
        seed = data.draw(seeds, label="seed")
        kind = data.draw(data_kinds(self.data_kinds or DEFAULT_DATA_KINDS), label="data_kind")
        inputs = make_inputs(problem, seed, kind)
        if layout == "broadcast":  # the gradient of loss = out.sum(): one value everywhere
            inputs.dy = np.ones(problem.output_shape, dtype=problem.np_dtype)
        self.run(problem, seed, kind, tier=f"layout-{layout}", inputs=inputs, layout=layout)

    def run_onnx(self) -> None:
        """Every ONNX Conv case this backend supports; the others are recorded as unsupported, with the reason."""
        caps: Capabilities = self.backend.capabilities
        ran = 0
        failures = []
        op = "ConvTranspose" if self.transposed else "Conv"
        mine = [c for c in onnx_golden.cases(op) if c.problem.rank == self.rank]
        if not mine:
            pytest.skip(f"ONNX ships no {op} node test of {self.operation}")
        for case in mine:
            why = caps.unsupported_reason(case.problem)
            if why:
                self.recorder.record(self.new_row(status="unsupported", impl=self.entry.name, check="forward",
                                         tier=self.spec.record_tier, reason=f"{case.name}: {why}", nodeid=self.nodeid,
                                         problem=case.problem.to_dict(), problem_text=str(case.problem)))
                continue
            ran += 1
            inputs = Inputs(case.x, case.w, case.b, np.zeros(case.problem.output_shape, dtype=case.x.dtype))
            try:
                self.run(case.problem, 0, "int", inputs=inputs, expected={"forward": case.y})
            except BackendFailure as exc:
                failures.append(str(exc))
        if failures:
            raise BackendFailure("\n\n".join(failures))
        if not ran:
            pytest.skip(f"{self.entry.name} supports none of ONNX's {len(mine)} {op} cases of {self.operation}")

    def run_corpus(self, networks: Sequence[str] | None, max_macs: int | None, distinct: str = "problem") -> None:
        """The shape corpus (``conformance.model.shapes``): the layers of the selected networks, reduced to
        ``max_macs`` (and
        to the backend's own max_macs), each distinct problem (or geometry class) once, in float32 where declared."""
        caps: Capabilities = self.backend.capabilities
        dtypes = dtypes_for(caps, self.dtypes)
        dtype = "float32" if "float32" in dtypes else dtypes[0]
        budgets = [m for m in (max_macs, caps.max_macs) if m is not None]
        self.run_cases(shapes.corpus_problems(networks, min(budgets) if budgets else None, dtype=dtype,
                                              distinct=distinct, ranks=(self.rank,), transposed=self.transposed))

    def run_cases(self, problems: Sequence[ConvProblem], *, kind: str = "normal",
                  skipped: Sequence[tuple[ConvProblem, str]] = ()) -> None:
        """Every problem of a fixed list (the corpus, the scale tier), each named by its label and seeded by it. Those
        the backend does not claim are recorded as unsupported, those in ``skipped`` as skipped, each with its reason;
        every failing problem is recorded (not only the last), and the failure names each one."""
        caps: Capabilities = self.backend.capabilities
        tier = self.spec.record_tier
        for problem, reason in skipped:
            self._not_run("skipped", problem, reason, tier)
        failures: list[str] = []
        failed_rows: list[Row] = []
        ran = 0
        begin = getattr(self.backend, "begin_check", None)
        for problem in problems:
            if callable(begin):  # a fixed list: every problem is tried, a crash on one does not stop the next
                begin()
            why = caps.unsupported_reason(problem)
            if why:
                self._not_run("unsupported", problem, why, tier)
                continue
            ran += 1
            try:
                self.run(problem, zlib.crc32(str(problem).encode()), kind, tier=tier)
            except BackendFailure as exc:
                failures.append(f"{problem.label or str(problem)} failed:\n{exc}")
                failed_rows += self._last_failure
        self._last_failure = failed_rows
        if failures:
            more = f"\n\n... and {len(failures) - 5} more" if len(failures) > 5 else ""
            raise BackendFailure(f"{len(failures)} of {ran} {tier} problems failed: "
                                 + ", ".join(f.split(" failed:")[0] for f in failures) + "\n\n"
                                 + "\n\n".join(failures[:5]) + more)
        if not ran:
            pytest.skip(f"{self.entry.name} supports none of the {len(problems)} {tier} problems")

    def _not_run(self, status: str, problem: ConvProblem, why: str, tier: str) -> None:
        self.recorder.record(self.new_row(status=status, impl=self.entry.name, check="forward", tier=tier,
                                 reason=f"{problem.label or str(problem)}: {why}", nodeid=self.nodeid,
                                 problem=problem.to_dict(), problem_text=str(problem)))

    def run_arithmetic(self) -> None:
        """Probe each declared dtype and pass (``conformance.numerics.arithmetic``); one row each, failing where the
        declared
        profile is tighter than what was measured. A pass the probes cannot measure (the backend does not answer,
        or gets exact small-integer sums wrong: a bug of values, which the other checks find) is skipped with the
        reason: this check judges declarations, and one deviation is one finding."""
        caps: Capabilities = self.backend.capabilities
        findings: list[str] = []
        rows = []
        broken = ""  # a backend that does not answer one probe is not asked again (a hang costs one timeout)
        for dtype in dtypes_for(caps, self.dtypes):
            for pass_ in (FORWARD,) + (BACKWARD if caps.backward else ()):
                if broken:
                    measured = arithmetic.PassArithmetic(dtype, pass_, errors=[f"not measured: {broken}"])
                else:
                    measured = arithmetic.measure_pass(self.backend, dtype, pass_)
                    broken = next((e.removeprefix("not measured: ") for e in measured.errors
                                   if "did not answer" in e), "")
                c = arithmetic.compare_declared(caps, measured)
                status = "passed" if c.ok else ("skipped" if measured.errors else "failed")
                message = measured.errors[0] if measured.errors else c.message()
                if status == "failed" and self.known is not None:
                    status, message = "xfailed", f"known: {self.known.reason} ({self.known.source}): {message}"
                if status == "failed":
                    findings.append(message)
                rows.append(self.new_row(status=status, impl=self.entry.name, check=pass_,
                                tier=self.spec.record_tier, dtype=dtype, nodeid=self.nodeid,
                                message=message if status == "failed" else "", reason=message,
                                arithmetic=c.to_dict(), seconds=measured.seconds))
        self.recorder.record_many(rows)
        if findings:
            raise BackendFailure("\n\n".join(findings))
        if all(r.status == "skipped" for r in rows):
            pytest.skip(f"{self.entry.name}: the arithmetic could not be measured: {rows[0].reason}")

    def run_contract(self, problem: ConvProblem, seed: int) -> None:
        inputs = make_inputs(problem, seed, "normal")
        # seconds inside the backend: one forward and one backward call, as the other tiers' rows
        bad, seconds = check_calls(self.backend, problem, inputs)
        verdicts = bad or [Verdict(self.entry.name, "contract", True, 0.0)]
        self._settle([CheckResult(verdicts, seconds)], problem, seed, "normal", "contract")

    def run_oracle_free(self, problem: ConvProblem, seed: int) -> None:
        # seconds inside the backend, over the tier's several calls
        results, seconds = oracle_free.run_all(self.backend, problem, np.random.default_rng(seed))
        verdicts = [worst_verdict(vs) for vs in results.values()]
        self._settle([CheckResult(verdicts, seconds)], problem, seed, "normal", self.spec.record_tier)

    def run(self, problem: ConvProblem, seed: int, kind: str, *, tier: str | None = None,
            inputs: Inputs | None = None, expected: dict[str, Any] | None = None,
            layout: str = "contiguous") -> list[Verdict]:
        caps: Capabilities = self.backend.capabilities
        if inputs is None:
            bits = exact_bits_for(caps, problem)
            inputs = make_inputs(problem, seed, kind, exact_bits=bits)
        results: list[CheckResult] = []
        passes = self._passes(caps)
        if "forward" in passes:
            results.append(check_forward(self.backend, problem, inputs, kind, expected=expected, layout=layout))
        backward = [c for c in passes if c != "forward"]
        if backward:
            results.append(check_backward(self.backend, problem, inputs, kind, which=backward, expected=expected,
                                          layout=layout))
        return self._settle(results, problem, seed, kind, tier or self.spec.record_tier)

    def _settle(self, results: list[CheckResult], problem: ConvProblem, seed: int, kind: str,
                tier: str) -> list[Verdict]:
        """Buffer a row per verdict; raise the failure messages (with reproductions) if any verdict failed."""
        verdicts = [v for r in results for v in r.verdicts]
        failures: list[Row] = []
        entry = next((e for e in self.known_dtypes if problem.dtype in e.dtypes), None)
        for r in results:
            for v in r.verdicts:
                key = json.dumps({"check": v.check, "problem": problem.to_dict(), "seed": seed, "kind": kind,
                                  "tier": tier}, sort_keys=True)
                row = self._row(v, r, problem, seed, kind, tier, known=entry is not None)
                if row.status == "passed":
                    self._passed.setdefault(key, row)
                elif entry is not None:  # a known failure of this dtype (xfailed): the search goes on
                    row.reason = f"known: {entry.reason} ({entry.source})"
                    self._known_rows.setdefault(key, row)
                else:
                    failures.append(row)
        if failures:
            self._failures_seen += 1
            self._last_failure = failures
            lost = (" crashed: ", " timed out after ")  # the calls isolation answers "not called" afterwards
            if not self._first_error_rows and any(row.status == "error" and any(t in row.message for t in lost)
                                                  for row in failures):
                self._first_error_rows = self._last_failure
            raise BackendFailure("\n\n".join(row.message for row in failures))
        return verdicts

    def _passes(self, caps: Capabilities) -> tuple[str, ...]:
        return self.spec.passes_for(caps)

    def _row(self, v: Verdict, r: CheckResult, problem: ConvProblem, seed: int, kind: str,
             tier: str, *, known: bool) -> Row:
        layout = tier[len("layout-"):] if tier.startswith("layout-") else "contiguous"
        repro = snippet(reproduce_spec(self.entry), problem, seed=seed, data_kind=kind, check=v.check, layout=layout,
                        seen_on=self.seen_on)
        status = example_status(passed=v.passed, error=bool(r.error), known=known)
        message = "" if v.passed else f"{format_verdict(v)}\n\nReproduce:\n{repro}"
        return self.new_row(status=status, impl=self.entry.name, check=v.check, tier=tier,
                   problem=problem.to_dict(), problem_text=str(problem), dtype=problem.dtype, data_kind=kind, seed=seed,
                   max_ratio=v.max_ratio, verdict=v.to_dict(), seconds=r.seconds, message=message,
                   traceback=r.traceback, repro=repro, nodeid=self.nodeid, layout=layout)

    def flush(self) -> None:
        rows: list[Row] = []
        # after a crash or a timeout, its rows (what Hypothesis replayed afterwards was answered "not called")
        replayed = ("not called: ", "(remembered: ")
        failing = self._first_error_rows + [r for r in self._last_failure if r not in self._first_error_rows and (
            not self._first_error_rows or not any(t in r.message for t in replayed))]
        for row in list(self._passed.values()) + list(self._known_rows.values())[:WORST_KNOWN] + failing:
            if row.status != "passed":
                row = row.replace(failing_examples_seen=self._failures_seen)
                if self.known is not None:  # the whole test is a known failure
                    row = row.replace(status="xfailed", reason=f"known: {self.known.reason} ({self.known.source})")
            rows.append(row)
        for e in self.known_dtypes:  # an entry for some dtypes whose examples all passed here is stale
            if any(c in e.check for c in "*?["):
                continue  # a pattern names a bug any of several checks may find: no one test can call it stale
            seen = [r for r in self._known_rows.values() if r.dtype in e.dtypes]
            ran = any(r.dtype in e.dtypes for r in self._passed.values())
            if ran and not seen:
                tier = next(iter(self._passed.values())).tier  # the column of this test's rows
                rows.append(self.new_row(status="stale", impl=self.entry.name, check=self.check, tier=tier,
                                nodeid=self.nodeid, dtype=",".join(e.dtypes),
                                reason=f"known failure {e} ({e.source}) no longer fails: remove the entry"))
        self.recorder.record_many(rows)
        self._passed.clear()
        self._known_rows.clear()
        self._last_failure = []
        self._first_error_rows = []
