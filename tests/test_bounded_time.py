"""A gate a CI job can afford: a backend that hangs or crashes on every call is judged in minutes at the default
timeout, and a gate stopped by ``--max-time`` or SIGTERM still writes its HTML, JUnit and JSON, listing what it
did not reach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mutants
import pytest
from mutants.always_bad import AbortsOnEveryCall, HangsOnEveryCall

from conformance.records import column

ALWAYS_BAD = str(mutants.HERE / "always_bad.py")


@pytest.mark.parametrize("cls, budget, cause", [(HangsOnEveryCall, 200.0, "timed out after 60 s"),
                                                (AbortsOnEveryCall, 120.0, "died with signal SIGABRT")],
                         ids=["hangs", "aborts"])
def test_a_backend_that_fails_every_call_is_judged_in_bounded_time(tmp_path: Path, cls: type, budget: float,
                                                                   cause: str) -> None:
    """At the default 60 s timeout: a hang costs two timeouts (then the backend is taken for dead), a crash one
    worker restart per check; every check it declares is recorded as an error naming the cause, none as passed."""
    run = mutants.run_gate(ALWAYS_BAD, cls, tmp_path, timeout=budget + 60, shrink=mutants.shrink_from_env())
    assert run.returncode == 1, run.output
    assert run.seconds < budget, f"{cls.name} took {run.seconds:.0f} s"
    assert (tmp_path / "gate.html").exists() and list(run.results_dir.rglob("junit.xml"))
    assert run.summary["passed"] is False
    bad = run.bad_rows()
    assert any(cause in r.get("message", "") for r in bad), [r.get("message", "")[:120] for r in bad[:5]]
    ran = {column(r) for r in run.rows if r["status"] not in ("unsupported", "unavailable", "skipped")}
    assert not [r for r in run.rows if r["status"] == "passed" and r.get("tier") != "golden"], "a check passed"
    assert {"forward", "grad_weight", "contract", "nonfinite"} <= set(run.failing_checks) <= ran


def _gate_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "conformance", "gate", "--impl", "naive", "--results", str(tmp_path / "res"),
            "--out", str(tmp_path / "gate.html"), "--json", str(tmp_path / "gate.json"), "--junit",
            str(tmp_path / "junit.xml"), *extra]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONV_CONFORMANCE_RUN_ID"))}


def _not_reached(tmp_path: Path) -> set[str]:
    from conformance.records import load

    return {column(r) for f in load([tmp_path / "res"]) for r in f.rows if r["status"] == "not_reached"}


def test_a_gate_stopped_by_max_time_writes_everything_and_lists_what_it_did_not_reach(tmp_path: Path) -> None:
    out = subprocess.run(_gate_cmd(tmp_path, "--max-time", "2"), cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=300)
    summary = json.loads((tmp_path / "gate.json").read_text())
    assert out.returncode == 1 and summary["passed"] is False, out.stdout[-2000:]
    missed = _not_reached(tmp_path)
    assert missed and set(summary["not_reached"]) == missed
    assert "not reached" in summary["reason"] and (tmp_path / "gate.html").exists()
    assert (tmp_path / "junit.xml").exists()


def test_a_gate_ended_by_sigterm_still_writes_its_reports(tmp_path: Path) -> None:
    """A CI job's time limit sends SIGTERM: the gate finishes the session as after Ctrl-C and writes its files."""
    proc = subprocess.Popen(_gate_cmd(tmp_path), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "res").rglob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # a few checks in
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, output[-2000:]
    assert (tmp_path / "gate.json").exists() and (tmp_path / "gate.html").exists(), output[-2000:]
    assert (tmp_path / "junit.xml").exists()
    assert _not_reached(tmp_path), "the checks after the signal are not listed as not reached"
