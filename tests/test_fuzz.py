"""``python -m conformance fuzz``: the time it takes, and, for a few seconds end to end, a mutant's failure reported
with its reproduction (and saved for the next round) while a correct built-in ends clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mutants
import pytest
from helpers import QUICK, child_env, run_suite

from conformance.fuzz import failure_key, parse_duration, round_command
from conformance.model.problem import ConvProblem
from conformance.results import records
from conformance.results.row import Row


def test_parse_duration() -> None:
    assert [parse_duration(t) for t in ("8h", "90m", "30s", "1.5h", "3600", "1d")] == [
        28800, 5400, 30, 5400, 3600, 86400]
    for bad in ("", "0s", "8 hours", "-1h", "h"):
        with pytest.raises(ValueError, match="a positive number with s, m, h or d"):
            parse_duration(bad)


def test_a_round_is_the_randomized_suite_with_the_database() -> None:
    cmd = round_command(["--conv-select", "naive"], Path("r"), "fuzz-x-r001", 41.26, ["db", "redis://h:1/0"],
                        ["-k", "forward"])
    assert cmd[cmd.index("--conv-profile") + 1] == "thorough"  # randomized: a new search every round
    assert "conformance.scale.fuzz_round" in cmd and cmd[cmd.index("--conv-max-time") + 1] == "41.3"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conv-database"] == ["db", "redis://h:1/0"]
    assert cmd[-2:] == ["-k", "forward"]


def test_a_failure_is_new_once() -> None:
    row = Row(status="failed", impl="x", check="forward", dtype="float64", problem_text="mb1ic1oc1ih1iw2kh1kw2_float64",
              seed=0, data_kind="normal")
    assert failure_key(row) == failure_key(row.replace(run_id="another round", time=1.0))
    assert failure_key(row) != failure_key(row.replace(seed=1))


def fuzz(workdir: Path, *args: str) -> tuple[int, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "conformance", "fuzz", "--results", str(workdir / "results"), "--out",
           str(workdir / "fuzz.html"), "--ranks", "2", "--ops", "conv", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=child_env(), capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_fuzz_reports_a_mutants_failure_with_its_reproduction(tmp_path: Path) -> None:
    code, out = fuzz(tmp_path, "--impl", f"{mutants.HERE / 'forward_bugs.py'}:FlippedKernel", "--time", "15s",
                     "-k", "test_forward")
    assert code == 1, out[-3000:]
    assert "--- failure 1: forward [forward" in out and "Reproduce:" in out and "reproduce(" in out, out[-3000:]
    assert "FUZZ FOUND 1 FAILURE(S) for 'mut-flipped-kernel'" in out
    rows = records.rows([tmp_path / "results"])
    assert any(r.status == "failed" and r.check == "forward" and r.repro for r in rows)
    assert list((tmp_path / "results").glob("fuzz-*/examples/*")), "the failure is saved for the next round"
    assert (tmp_path / "fuzz.html").exists()


@pytest.mark.slow
def test_fuzz_of_a_correct_builtin_ends_clean(tmp_path: Path) -> None:
    # (a round takes seconds to start on a loaded machine: 5 s here, at a load of 10 on 2 cores)
    code, out = fuzz(tmp_path, "--impl", "im2col", "--time", "15s", "-k", "test_forward")
    assert code == 0, out[-3000:]
    assert "FUZZ CLEAN for 'im2col'" in out and "--- failure" not in out
    assert "(1000 examples a check a round, problems of up to 2000000 multiply-adds a pass)" in out
    judged = [r for r in records.rows([tmp_path / "results"]) if r.status == "passed"]
    assert judged and f"FUZZ CLEAN for 'im2col': {len(judged)} examples judged" in out


@pytest.mark.slow
def test_max_macs_bounds_the_drawn_problems(tmp_path: Path) -> None:
    """``--max-macs`` (fuzz's larger budget, 2,000,000 by default) is the drawn problems' work budget: at 40, every
    problem drawn for the forward check has at most 40 multiply-adds."""
    proc = run_suite(tmp_path, tmp_path / "results", *QUICK, "--conv-select", "naive", "-k", "test_forward",
                     "--conv-max-macs", "40")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    drawn = [r for r in records.rows([tmp_path / "results"]) if r.tier == "hypothesis"]
    assert drawn and max(ConvProblem.parse(r.problem_text).macs for r in drawn) <= 40, [r.problem_text for r in drawn]
