"""A gate a CI job can afford: a backend that hangs or crashes on every call is judged in minutes at the default
timeout, and a gate stopped by ``--max-time`` or SIGTERM still writes its HTML, JUnit and JSON, listing what it
did not reach."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import mutants
import pytest
from helpers import child_env
from mutants.always_bad import AbortsOnEveryCall, HangsOnEveryCall

ALWAYS_BAD = str(mutants.HERE / "always_bad.py")
pytestmark = pytest.mark.slow  # every test here runs the gate in a subprocess


@pytest.mark.parametrize("cls, budget, cause, options", [
    (HangsOnEveryCall, 80.0, "timed out after 10 s", ("--timeout", "10")),
    (AbortsOnEveryCall, 120.0, "died with signal SIGABRT", ())], ids=["hangs", "aborts"])
def test_a_backend_that_fails_every_call_is_judged_in_bounded_time(tmp_path: Path, cls: type, budget: float,
                                                                   cause: str, options: tuple[str, ...]) -> None:
    """A hang costs two timeouts (then the backend is taken for dead: at a 10 s timeout here, the gate's bound scales
    with it; at the default 60 s the gate of such a backend took 158 s, README), a crash one worker restart per
    check; every check it declares is recorded as an error naming the cause, none as passed."""
    run = mutants.run_gate(ALWAYS_BAD, cls, tmp_path, timeout=budget + 60, extra=options)
    assert run.returncode == 1, run.output
    assert run.seconds < budget, f"{cls.name} took {run.seconds:.0f} s"
    assert (tmp_path / "gate.html").exists() and list(run.results_dir.rglob("junit.xml"))
    assert run.summary["passed"] is False
    bad = run.bad_rows()
    assert any(cause in r.message for r in bad), [r.message[:120] for r in bad[:5]]
    ran = {r.column for r in run.rows if r.status not in ("unsupported", "unavailable", "skipped")}
    assert not [r for r in run.rows if r.status == "passed" and r.tier != "golden"], "a check passed"
    assert {"forward", "grad_weight", "contract", "nonfinite"} <= set(run.failing_checks) <= ran


def _naive(tmp_path: Path) -> tuple[str, ...]:
    """The gate's arguments for naive, with a JUnit file."""
    return ("--impl", "naive", "--junit", str(tmp_path / "junit.xml"))


def _not_reached(tmp_path: Path) -> set[str]:
    from conformance.gate import finding_name
    from conformance.results.records import load

    return {finding_name(r) for f in load([tmp_path / "results"]) for r in f.rows if r.status == "not_reached"}


def test_a_gate_stopped_by_max_time_writes_everything_and_lists_what_it_did_not_reach(tmp_path: Path) -> None:
    out = mutants.gate(tmp_path, *_naive(tmp_path), "--max-time", "2", timeout=300, shrink=True)
    summary = json.loads((tmp_path / "gate.json").read_text())
    assert out.returncode == 1 and summary["passed"] is False, out.output[-2000:]
    missed = _not_reached(tmp_path)
    assert missed and set(summary["not_reached"]) == missed
    assert "not reached" in summary["reason"] and (tmp_path / "gate.html").exists()
    assert (tmp_path / "junit.xml").exists()


def test_a_gate_ended_by_sigterm_still_writes_its_reports(tmp_path: Path) -> None:
    """A CI job's time limit sends SIGTERM: the gate finishes the session as after Ctrl-C and writes its files."""
    proc = subprocess.Popen(mutants.gate_command(tmp_path, *_naive(tmp_path)), cwd=tmp_path, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "results").rglob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # a few checks in
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output[-2000:]
    assert (tmp_path / "gate.json").exists() and (tmp_path / "gate.html").exists(), output[-2000:]
    assert (tmp_path / "junit.xml").exists()
    assert _not_reached(tmp_path), "the checks after the signal are not listed as not reached"
