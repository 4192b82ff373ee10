"""One result row (``conformance.results.row``): what every reader sees, read from every schema written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.results import records
from conformance.results.row import STATUSES, Row, example_status


def test_a_row_round_trips_through_its_json_line() -> None:
    row = Row(status="failed", impl="im2col", check="grad_weight", tier="golden", dtype="float32", seed=3,
              max_ratio=2.5, verdict={"k_at_worst": 9}, seconds=0.01, message="worse than the bound")
    assert Row.from_json(json.loads(json.dumps(row.to_json()))) == row
    assert "traceback" not in row.to_json() and "explained_by" not in row.to_json()  # unset fields left out


def test_a_newer_writers_fields_survive_and_schema_1_spellings_are_read() -> None:
    old = {"type": "result", "status": "passed", "impl": "naive", "check": "adjoint", "tier": "oracle-free",
           "message": None, "operation": "conv_transpose"}
    row = Row.from_json(old)
    assert row.tier == "oracle_free" and row.column == "adjoint" and row.message == ""
    assert row.extra == {"operation": "conv_transpose"} and row.to_json()["operation"] == "conv_transpose"
    assert row.rank == 2  # rows written before ranks were recorded are conv2d
    assert Row.from_json({"status": "passed", "impl": "x", "rank": 3}).rank == 3


def test_a_status_outside_the_list_is_refused_naming_the_list() -> None:
    with pytest.raises(ValueError, match="status='fine', but it must be one of passed, failed"):
        Row(status="fine", impl="x")
    assert {example_status(passed=p, error=e, known=k) for p in (True, False) for e in (True, False)
            for k in (True, False)} == {"passed", "xfailed", "error", "failed"} <= set(STATUSES)
    assert example_status(passed=False, error=True, known=True) == "xfailed"


def test_explained_failures_are_shown_apart_and_not_failing() -> None:
    row = Row(status="failed", impl="x", explained_by="arithmetic: bfloat16 grad_weight declared bf16-acc32")
    assert not row.failing and row.shown_status == "explained"
    assert Row(status="error", impl="x").failing


def test_the_recorder_and_the_loader_agree(tmp_path: Path) -> None:
    rec = records.Recorder(tmp_path, "run-1", worker="gw0", meta={"env": "e"})
    rec.record_many([Row(status="passed", impl="naive", check="forward"),
                     Row(status="skipped", impl="naive", check="scale", tier="scale", reason="opt-in")])
    rec.close(exitstatus=0)
    (f,) = records.load([tmp_path])
    assert not f.partial and [r.status for r in f.rows] == ["passed", "skipped"]
    assert all(r.run_id == "run-1" and r.worker == "gw0" and r.env == "e" and r.machine for r in f.rows)
    assert records.rows([tmp_path]) == f.rows
