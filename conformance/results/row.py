"""One result row: what one check of one example found, as recorded and as every reader (report, gate, tests) sees
it, and the one place that decides a row's status.

A row is written as one JSON line (``conformance.results.records``). ``Row.from_json`` reads the rows of every schema
this
project has written (schema 1 spelled the oracle-free tier ``oracle-free``); a field it does not know is kept in
``extra`` and written back unchanged, so that a newer writer's rows survive an older reader's merge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from conformance.checks import table as checktable
from conformance.model.problem import operation_name

#: every status a row can have: passed, failed (a verdict out of bounds), error (no result to judge: it raised,
#: timed out, crashed), unsupported / unavailable (the backend does not declare it / cannot run here), skipped,
#: xfailed (a known failure failing as expected), stale (a known failure that no longer fails), not_reached
STATUSES = ("passed", "failed", "error", "unsupported", "unavailable", "skipped", "xfailed", "stale", "not_reached")
FAILING = ("failed", "error")
KNOWN = "xfailed"
#: why a check's examples did not run; ``not_reached``: a check the run never started (``--max-time``, a signal, -x)
NOT_RUN = ("unavailable", "unsupported", "skipped", "not_reached")
#: a failure that follows from an arithmetic finding (``conformance.checks.findings``): shown apart, counted under it
EXPLAINED = "explained"


def example_status(*, passed: bool, error: bool, known: bool) -> str:
    """The status of one judged example: passed; a known failure (xfailed); an error (there was no result to judge:
    the backend raised, timed out, crashed or returned something that is no array); otherwise failed."""
    if passed:
        return "passed"
    if known:
        return KNOWN
    return "error" if error else "failed"


@dataclass
class Row:
    """One recorded result. ``check`` is what was compared (a pass: forward, grad_input, ...; an oracle-free
    identity; or, for a row of a whole test — a skip, not reached, an error outside its examples — the suite check);
    ``tier`` the suite check that produced it (``hypothesis`` for the per-pass checks, ``layout-<name>`` for
    layouts); their column in the report and the gate is ``column``."""

    status: str
    impl: str
    check: str = ""
    tier: str = checktable.DRAWN_PASS_TIER
    nodeid: str = ""
    reason: str = ""     #: why it did not run, or a known failure's note
    message: str = ""    #: a failure's verdict and reproduction
    dtype: str = ""
    #: the spatial rank of the problems it checked: 1 (conv1d), 2 (conv2d), 3 (conv3d); rows written before ranks
    #: were recorded are conv2d
    rank: int = 2
    #: a transposed convolution's row (conv_transpose1d/2d/3d)
    transposed: bool = False
    problem: dict[str, Any] | None = None
    problem_text: str = ""
    data_kind: str = ""
    seed: int | None = None
    layout: str = ""
    max_ratio: float | None = None
    verdict: dict[str, Any] | None = None
    seconds: float | None = None   #: time inside the backend
    traceback: str | None = None
    repro: str = ""
    failing_examples_seen: int | None = None
    arithmetic: dict[str, Any] | None = None  #: the arithmetic check's declared vs measured
    explained_by: str = ""  #: the arithmetic finding this failure follows from (set by conformance.checks.findings)
    # -- set by the recorder ---------------------------------------------------------------------------------
    run_id: str = ""
    worker: str = ""
    env: str = ""
    machine: str = ""
    time: float | None = None
    #: fields this version does not know (a newer writer's): kept and written back
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r}, but it must be one of {', '.join(STATUSES)}")

    @property
    def column(self) -> str:
        """The report and gate column (``conformance.checks.table.column``)."""
        return checktable.column(self.tier, self.check)

    @property
    def operation(self) -> str:
        """``conv2d``, ``conv_transpose3d``: the operation it checked."""
        return operation_name(self.rank, self.transposed)

    @property
    def failing(self) -> bool:
        """A failure of its own: failed or error, and not explained by an arithmetic finding."""
        return self.status in FAILING and not self.explained_by

    @property
    def shown_status(self) -> str:
        """The status the report and the gate count it under: ``explained`` for an attributed failure."""
        return EXPLAINED if self.explained_by and self.status in FAILING else self.status

    def replace(self, **changes: Any) -> "Row":
        return dataclasses.replace(self, **changes)

    # -- JSON lines --------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Row":
        """A row as written by any version of the recorder (``type: result`` lines)."""
        known = {k: v for k, v in d.items() if k in _FIELDS and k != "extra"}
        extra = {k: v for k, v in d.items() if k not in _FIELDS and k != "type"}
        known["tier"] = checktable.TIER_ALIASES.get(known.get("tier") or "", known.get("tier"))
        if not known.get("tier"):
            known.pop("tier", None)
        for name in _STR_FIELDS:  # older rows wrote None for an absent text
            if known.get(name, "") is None:
                known[name] = ""
        known.setdefault("impl", "?")
        return cls(**known, extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The fields that are set (defaults left out), then ``extra``."""
        out: dict[str, Any] = {"status": self.status, "impl": self.impl}
        for f in _FIELD_LIST:
            if f.name in ("status", "impl", "extra"):
                continue
            value = getattr(self, f.name)
            if value is not None and value != "" and not (f.name == "transposed" and value is False):
                out[f.name] = value
        return out | self.extra


_FIELD_LIST = dataclasses.fields(Row)
_FIELDS = {f.name for f in _FIELD_LIST}
_STR_FIELDS = [f.name for f in _FIELD_LIST if f.type == "str"]
