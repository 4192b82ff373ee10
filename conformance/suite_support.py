"""What a suite test does with one hypothesis example: draw, run, judge, record, raise with a reproduction.

Rows are buffered per test and written at teardown: every passing example once, and of the failing ones only the
last, which is the minimal example hypothesis replays at the end, so shrinking does not flood the report.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .backend import Capabilities
from .checks import BACKWARD_CHECKS, CheckResult, check_backward, check_forward
from .compare import Verdict, format_verdict
from .data import Inputs, make_inputs
from .options import DEFAULT_DATA_KINDS
from .problem import ConvProblem
from .records import Recorder
from .registry import Entry
from .repro import snippet
from .strategies import conv_problems, data_kinds, seeds
from .tolerance import PROFILES

DEFAULT_DTYPES = ("float64", "float32")


def dtypes_for(caps: Capabilities, requested: Sequence[str] | None) -> tuple[str, ...]:
    wanted = requested or DEFAULT_DTYPES
    return tuple(d for d in wanted if d in caps.dtypes)


def unsupported_check_reason(caps: Capabilities, check: str, requested: Sequence[str] | None) -> str | None:
    """Why a backend with ``caps`` cannot be given ``check`` (None: it can)."""
    if not dtypes_for(caps, requested):
        return f"declares dtypes {', '.join(caps.dtypes)}, none of the requested {', '.join(requested or DEFAULT_DTYPES)}"
    if check in BACKWARD_CHECKS and not caps.backward:
        return "backward not declared (backward=False)"
    if check == "exact" and caps.error_model == "normwise":
        return ("normwise error model: an FFT/Winograd result is not exact on integer data, so the exact tier "
                "does not apply (its values are judged by the normwise bound in the other checks)")
    return None


def reproduce_spec(entry: Entry) -> str:
    return entry.name if entry.source.startswith("entry point") else entry.spec


class SuiteContext:
    """One suite test's state. A plain class, not a dataclass: hypothesis prints the test's arguments."""

    def __init__(self, entry: Entry, recorder: Recorder, nodeid: str, check: str,
                 dtypes: Sequence[str] | None = None, data_kinds: Sequence[str] | None = None) -> None:
        self.entry, self.recorder, self.nodeid, self.check = entry, recorder, nodeid, check
        self.dtypes, self.data_kinds = dtypes, data_kinds
        self._passed: dict[str, dict[str, Any]] = {}
        self._last_failure: list[dict[str, Any]] = []
        self._failures_seen = 0

    def __repr__(self) -> str:  # hypothesis prints the test's arguments: keep it one line
        return f"<conv context {self.entry.name}:{self.check}>"

    @property
    def has_rows(self) -> bool:
        return bool(self._passed or self._last_failure)

    @property
    def backend(self) -> Any:
        return self.entry.backend

    # -- one hypothesis example ---------------------------------------------------------------------
    def hypothesis_example(self, data: Any) -> None:
        caps: Capabilities = self.backend.capabilities
        exact = self.check == "exact"
        problem = data.draw(conv_problems(dtypes=dtypes_for(caps, self.dtypes), capabilities=caps,
                                          bias=True if self.check == "grad_bias" else None), label="problem")
        seed = data.draw(seeds, label="seed")
        kind = "int" if exact else data.draw(data_kinds(self.data_kinds or DEFAULT_DATA_KINDS), label="data_kind")
        self.run(problem, seed, kind, tier="exact" if exact else "hypothesis")

    def run(self, problem: ConvProblem, seed: int, kind: str, *, tier: str,
            inputs: Inputs | None = None, expected: dict[str, Any] | None = None) -> list[Verdict]:
        caps: Capabilities = self.backend.capabilities
        if inputs is None:
            inputs = make_inputs(problem, seed, kind, exact_bits=PROFILES[caps.profile_for(problem.dtype)].exact_bits)
        results: list[CheckResult] = []
        passes = self._passes(caps)
        if "forward" in passes:
            results.append(check_forward(self.backend, problem, inputs, kind, expected=expected))
        backward = [c for c in passes if c != "forward"]
        if backward:
            results.append(check_backward(self.backend, problem, inputs, kind, which=backward, expected=expected))
        verdicts = [v for r in results for v in r.verdicts]
        failures = []
        for r in results:
            for v in r.verdicts:
                row = self._row(v, r, problem, seed, kind, tier)
                if v.passed:
                    self._passed.setdefault(json.dumps(row["key"], sort_keys=True), row)
                else:
                    failures.append((v, row))
        if failures:
            self._failures_seen += 1
            self._last_failure = [row for _, row in failures]
            raise AssertionError("\n\n".join(row["message"] for _, row in failures))
        return verdicts

    def _passes(self, caps: Capabilities) -> tuple[str, ...]:
        if self.check in ("exact", "golden"):
            return ("forward",) + (BACKWARD_CHECKS if caps.backward else ())
        return (self.check,)

    def _row(self, v: Verdict, r: CheckResult, problem: ConvProblem, seed: int, kind: str,
             tier: str) -> dict[str, Any]:
        repro = snippet(reproduce_spec(self.entry), problem, seed=seed, data_kind=kind, check=v.check)
        status = "passed" if v.passed else ("error" if r.error else "failed")
        message = "" if v.passed else f"{format_verdict(v)}\n\nReproduce:\n{repro}"
        key = {"check": v.check, "problem": problem.to_dict(), "seed": seed, "kind": kind, "tier": tier}
        return {"status": status, "impl": self.entry.name, "check": v.check, "tier": tier, "problem": problem.to_dict(),
                "problem_text": problem.short(), "dtype": problem.dtype, "data_kind": kind, "seed": seed,
                "max_ratio": v.max_ratio, "verdict": v.to_dict(), "seconds": r.seconds, "message": message,
                "traceback": r.traceback, "repro": repro, "nodeid": self.nodeid, "key": key}

    def flush(self) -> None:
        rows = list(self._passed.values()) + self._last_failure
        for row in rows:
            row = dict(row)
            row.pop("key")
            if row["status"] != "passed":
                row["failing_examples_seen"] = self._failures_seen
            self.recorder.record(**row)
        self._passed.clear()
        self._last_failure = []
