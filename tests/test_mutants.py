"""The gate's power, as tests: every mutant in ``tests/mutants`` is rejected with the expected check named, every
correct variant is accepted, and every misbehaving backend (crash, hang, huge memory, non-answers) becomes a
recorded failure of a run that still reaches its verdict (issue #4, items 4 and 5).

Each case runs ``python -m conformance gate --impl tests/mutants/<module>.py:<Class>`` in a fresh interpreter at
the default ``ci`` profile, as a CI job would. Known survivors (``mutants.SURVIVORS``) are strict xfails: the day
the suite kills one, the test says so.

Cost: 50 gate runs. A mutant is rejected by many columns, and Hypothesis shrinks each failure, which is most of the
time: measured at ``-n 2`` on a 2-core machine shared with other jobs (load 1.5 to 4), 12.4 min wall (1060 s CPU);
with ``CONV_MUTANTS_NO_SHRINK=1`` (the ci profile without the shrink phase, ``tests/mutants/_no_shrink.py``: the
same examples, every expected check still named) 4.8 min (470 s CPU). ``--ignore=tests/test_mutants.py`` skips the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mutants
import pytest
from mutants.misbehaving import HangsOnOneProblem, Intermittent, calls_file

from conformance.checks.table import COLUMNS as TABLE_COLUMNS

GATE_TIMEOUT = 240.0  #: seconds one gate run may take before the test kills it and fails
#: examples a check in a mutant's or a misbehaving backend's gate: each mutant must fall to 10 drawn examples a check
#: (besides the tiers' fixed examples), a harder test of the checks' power than the ci profile's 25, at 40% of their
#: cost (benchmarks/mutant_power.py measures the kill rate at the ci profile itself); the correct variants keep the
#: ci profile's 25, where a false alarm has every chance to show
KILL_EXAMPLES = ("--max-examples", "10")
#: the gate's columns: the table's (conformance/checks/table.py)
COLUMNS = set(TABLE_COLUMNS)

MUTANTS = mutants.members("mutants")
VARIANTS = mutants.members("variants")
MISBEHAVING = mutants.members("misbehaving")


def _ids(members: list[tuple[str, type]]) -> list[str]:
    return [cls.__name__ for _, cls in members]


def _gate(path: str, cls: Any, tmp_path: Path, *, examples: tuple[str, ...] = ()) -> mutants.GateRun:
    # CONV_MUTANTS_NO_SHRINK=1: the ci profile without Hypothesis's shrink phase (same checks fail, ~3x faster)
    if "--max-examples" in getattr(cls, "gate_args", ()):
        examples = ()  # the member says its own
    # without the HTML report: its plots are a third of a mutant's gate (tests/test_gate.py covers the report)
    run = mutants.run_gate(path, cls, tmp_path, timeout=GATE_TIMEOUT, extra=examples, html=False)
    if run.returncode is None:
        pytest.fail(f"the gate did not finish within {GATE_TIMEOUT:.0f} s on {cls.name} (killed):\n{run.output}")
    return run


def _describe(run: mutants.GateRun) -> str:
    return (f"exit {run.returncode}, failing checks {run.failing_checks}, reason {run.summary.get('reason')!r}, "
            f"{run.seconds:.0f} s\n--- gate output (tail) ---\n{run.output[-2500:]}")


# -- the corpus itself (no gate runs) -------------------------------------------------------------------------
def test_corpus_is_complete_and_well_formed():
    everyone = MUTANTS + VARIANTS + MISBEHAVING
    names = [cls.name for _, cls in everyone]
    assert len(names) == len(set(names)), f"duplicate backend names: {sorted(n for n in names if names.count(n) > 1)}"
    assert len(MUTANTS) - len(mutants.SURVIVORS) >= 25, "the issue asks for at least 25 killed mutants"
    assert len(VARIANTS) >= 4, "the issue asks for several correct variants"
    for _, cls in everyone:
        assert (cls.__doc__ or "").strip(), f"{cls.__name__} needs a docstring saying which bug it models"
        columns = [e.split(":")[-1] for e in cls.expected]  # conv3d:grad_input: a column of another rank
        unknown = [c for c in columns if c not in COLUMNS and not c.startswith("layout-")]
        assert not unknown, f"{cls.__name__}.expected names unknown checks {unknown}"
    for _, cls in MUTANTS + MISBEHAVING:
        assert cls.expected, f"{cls.__name__} is a mutant: it must name the check(s) that reject it"
    for _, cls in VARIANTS:
        assert cls.expected == (), f"{cls.__name__} is a correct variant: expected must be ()"
    assert set(mutants.SURVIVORS) <= {cls.name for _, cls in MUTANTS}, "SURVIVORS names a backend not in the corpus"


# -- mutants: rejected, with the right check named ------------------------------------------------------------
def _mutant_params() -> list:
    out = []
    for path, cls in MUTANTS:
        marks = []
        if cls.name in mutants.SURVIVORS:
            marks.append(pytest.mark.xfail(strict=True, reason=f"known survivor: {mutants.SURVIVORS[cls.name]}"))
        out.append(pytest.param(path, cls, id=cls.__name__, marks=marks))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("path", "cls"), _mutant_params())
def test_gate_rejects_mutant(path, cls, tmp_path):
    run = _gate(path, cls, tmp_path, examples=KILL_EXAMPLES)
    assert run.returncode == 1, f"{cls.name} was not rejected: {_describe(run)}"
    missing = [c for c in cls.expected if c not in run.failing_checks]
    assert not missing, f"{cls.name} was rejected, but without naming {missing}: {_describe(run)}"
    ranks = {c.split(":")[0] for c in cls.expected if ":" in c}
    if ranks:  # a bug of one rank is that rank's finding: conv2d (and any other rank) stays green
        other = [c for c in run.failing_checks if c.split(":")[0] not in ranks]
        assert not other, f"{cls.name}: a bug of {ranks} also failed {other}: {_describe(run)}"
    if getattr(cls, "only", False):  # the plain tiers it ran beside its own must not find it
        assert run.failing_checks == list(cls.expected), f"{cls.name}: {_describe(run)}"


# -- correct variants: accepted ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("path", "cls"), VARIANTS, ids=_ids(VARIANTS))
def test_gate_accepts_correct_variant(path, cls, tmp_path):
    run = _gate(path, cls, tmp_path)
    assert run.returncode == 0, f"false alarm on the correct variant {cls.name}: {_describe(run)}"
    assert run.summary.get("passed") is True


# -- misbehaving backends: contained, recorded, named -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("path", "cls"), MISBEHAVING, ids=_ids(MISBEHAVING))
def test_gate_contains_misbehaving_backend(path, cls, tmp_path):
    run = _gate(path, cls, tmp_path, examples=KILL_EXAMPLES)
    bad_calls = _count_bad_calls(cls, run)
    assert run.returncode == 1, f"{cls.name}: {_describe(run)}"
    # the run was not taken down with the backend: it reached a verdict and wrote its summary and results
    assert run.summary.get("passed") is False and run.rows, f"{cls.name}: no verdict or no results: {_describe(run)}"
    missing = [c for c in cls.expected if c not in run.failing_checks]
    assert not missing, f"{cls.name}: the gate did not name {missing}: {_describe(run)}"
    # what happened is recorded, in a failed/error row of a check the gate names
    fragments = (cls.message,) if isinstance(cls.message, str) else cls.message
    telling = [r for r in run.bad_rows() if any(f in r.message for f in fragments)]
    assert telling, (f"{cls.name}: no failed/error row says {cls.message!r}; the bad rows say: "
                     f"{[r.message[:200] for r in run.bad_rows()]}")
    assert {r.column for r in telling} & set(run.failing_checks)
    # and every check the gate names has a failed or error row behind it
    assert set(run.failing_checks) <= {r.column for r in run.bad_rows()}
    if bad_calls is not None:  # an intermittent member: it misbehaved exactly as often as it says
        assert bad_calls == cls.times, f"{cls.name}: {bad_calls} misbehaving calls, expected {cls.times}"
    if cls is HangsOnOneProblem:
        _assert_hang_cost_the_timeout(run, bad_calls or 0)


def _count_bad_calls(cls: Any, run: mutants.GateRun) -> int | None:
    """How many calls an intermittent member misbehaved on during ``run`` (None: not an intermittent member)."""
    if not issubclass(cls, Intermittent) or "results_dir" not in run.summary:
        return None
    path = calls_file(cls.name, run.results_dir.parent)  # the gate ran in the directory that holds its results
    count = path.stat().st_size if path.exists() else 0
    path.unlink(missing_ok=True)
    return count


def _assert_hang_cost_the_timeout(run: mutants.GateRun, hanging_calls: int) -> None:
    """``bad-hangs`` sleeps 1000 s; under ``--timeout 5`` each hanging call must cost about 5 s, and the gate run
    its usual time plus that."""
    timed_out = [r for r in run.bad_rows() if "timed out after 5 s" in r.message]
    # a tier that judges every pass records one row per gradient of the one backward call that hung
    calls = {(r.nodeid, r.seed, r.problem_text, r.data_kind) for r in timed_out}
    assert len(calls) == hanging_calls, sorted(calls)
    for r in timed_out:
        assert 5.0 <= r.seconds < 7.0, f"a timed-out call took {r.seconds:.1f} s (timeout 5 s)"
    # a gate run without the hang takes 10-90 s (the latter on a loaded 2-core machine); the hang adds ~5 s a call,
    # and the run must not have waited for the 1000-s sleep
    assert run.seconds < 5.0 * hanging_calls + 200.0, f"the gate took {run.seconds:.0f} s"
