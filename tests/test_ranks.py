"""The rank dimension (issue #16): selection by rank, a conv2d backend unchanged, a conv1d/conv3d backend checked in
its ranks only, the report and the gate keeping 1-D, 2-D and 3-D verdicts apart."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conformance.reports.summarize import summarize, terminal_summary
from helpers import child_env

from conformance import Capabilities
from conformance.checks import table as checktable
from conformance.checks.example import unsupported_check_reason
from conformance.errors import InvalidProblem
from conformance.model.problem import RANK_IDS, ConvProblem, parse_rank
from conformance.numerics.tolerance import exact_bits_for
from conformance.results.records import rows as load_rows
from conformance.results.row import Row

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "examples" / "backend_template.py"
RANKS_EXAMPLE = REPO / "examples" / "backend_ranks.py"


def conv(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=child_env())


def test_rank_ids_and_their_spellings() -> None:
    assert RANK_IDS == {1: "conv1d", 2: "conv2d", 3: "conv3d"}
    assert [parse_rank(t) for t in ("1", "conv2d", "3D", " conv3d ")] == [1, 2, 3, 3]
    with pytest.raises(InvalidProblem, match="rank '4', but it must be one of 1, 2, 3 or conv1d, conv2d, conv3d"):
        parse_rank("4")


def test_a_rank_not_declared_is_unsupported_with_the_reason() -> None:
    conv2d_only = Capabilities()
    assert unsupported_check_reason(conv2d_only, "forward", None, rank=3) == "conv3d not declared (ranks=2)"
    assert unsupported_check_reason(conv2d_only, "forward", None, rank=2) is None
    both = Capabilities(ranks=(1, 3))
    assert unsupported_check_reason(both, "golden", None, rank=1) is None
    # the checks declared for conv2d only say why
    assert "ONNX's Conv node tests are all 2-D" in unsupported_check_reason(both, "onnx", None, rank=3)
    assert "measured once, on conv2d probes" in unsupported_check_reason(both, "arithmetic", None, rank=1)
    assert {c.name for c in checktable.CHECKS if c.ranks != (1, 2, 3)} == {"onnx", "arithmetic"}


def test_a_precision_profile_can_be_declared_for_one_operation() -> None:
    """The most specific key wins: operation:dtype:pass, operation:dtype, conv_transpose:..., dtype:pass, dtype."""
    caps = Capabilities(dtypes=("float32", "float16"), ranks=(1, 2, 3), transposed=True,
                        precision={"float16": "fp16-acc32", "float16:forward": "fp16-acc32-mid16",
                                   "conv3d:float16:forward": "fp16-acc16", "conv1d:float16": "fp16-acc16",
                                   "conv_transpose:float16:forward": "fp16-acc16",
                                   "conv_transpose3d:float16:forward": "fp16-acc32"})
    fwd = {(r, t): caps.profile_for("float16", "forward", t, r) for r in (1, 2, 3) for t in (False, True)}
    assert fwd == {(1, False): "fp16-acc16", (2, False): "fp16-acc32-mid16", (3, False): "fp16-acc16",
                   (1, True): "fp16-acc16", (2, True): "fp16-acc16", (3, True): "fp16-acc32"}
    assert caps.profile_for("float16", "grad_input", rank=3) == "fp16-acc32"  # conv3d's other passes: the dtype's
    assert caps.profile_for("float16", "grad_input", rank=1) == "fp16-acc16"  # conv1d's every pass
    assert caps.profile_for("float32", "forward", rank=3) == "fp32"


def test_the_exact_tier_draws_for_the_problems_own_operation() -> None:
    """The exact tier's integer range comes from the profile of the problem's own operation (the run and a
    reproduction both ask ``exact_bits_for(caps, problem)``: a transposed problem's data fit its own profile)."""
    caps = Capabilities(ranks=(1, 2, 3), transposed=True,
                        precision={"conv_transpose:float32": "tf32", "conv3d:float32": "tf32"})
    conv = ConvProblem.parse("ic3oc8ih9kh3sh2_float32")
    bits = [exact_bits_for(caps, p) for p in (conv, dataclasses.replace(conv, transposed=True),
                                               ConvProblem.parse("ic3oc8id4ih9kd2kh3_float32"))]
    assert bits == [24, 11, 11]  # fp32's 24 bits; TF32's 11 for the transposed convolution and conv3d


def test_k_selects_one_rank(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider",
                          "--collect-only", "-q", "--conv-select", "naive", "-k", "conv3d"],
                         capture_output=True, text=True, cwd=tmp_path, env=child_env(), timeout=120)
    ids = [ln for ln in out.stdout.splitlines() if "::" in ln]
    assert ids and all("[naive-conv3d" in ln for ln in ids), out.stdout[-2000:]
    assert len(ids) == len(checktable.CHECKS) + len(checktable.BY_NAME["layout"].params["layout"]) - 1


def test_ranks_option_and_its_errors(tmp_path: Path) -> None:
    bad = conv("run", "--ranks", "2,4", cwd=tmp_path)
    assert bad.returncode == 2 and "ranks '2,4': rank '4', but it must be one of" in bad.stderr, bad.stderr


def test_a_conv2d_backend_from_the_readme_passes_unchanged(tmp_path: Path) -> None:
    """The template declares no ranks: conv2d alone, as before; conv1d and conv3d are unsupported rows, with the
    reason, and the gate's verdict and findings are conv2d's."""
    proc = conv("gate", "--impl", f"{TEMPLATE}:MyConv", "--max-examples", "2", "-k", "golden or forward or exact",
                "--json", str(tmp_path / "g.json"), "--results", str(tmp_path / "res"),
                "--out", str(tmp_path / "g.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = load_rows([tmp_path / "res"])
    other = [r for r in rows if r.rank != 2]
    assert other and {r.status for r in other} == {"unsupported"}
    assert {r.reason for r in other} == {"conv1d not declared (ranks=2)", "conv3d not declared (ranks=2)"}
    summary = json.loads((tmp_path / "g.json").read_text())
    assert summary["passed"] and not summary["failing_checks"]
    assert all(set(n) == {"unsupported"} for c, n in summary["checks"].items() if ":" in c)  # conv1d:, conv3d:


def test_a_backend_of_ranks_1_and_3_is_checked_in_those(tmp_path: Path) -> None:
    proc = conv("gate", "--impl", f"{RANKS_EXAMPLE}:MyConv1d3d", "--max-examples", "3",
                "--json", str(tmp_path / "g.json"), "--results", str(tmp_path / "res"),
                "--out", str(tmp_path / "g.html"), cwd=tmp_path, timeout=600)
    summary = json.loads((tmp_path / "g.json").read_text())
    assert proc.returncode == 0 and summary["passed"], proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = load_rows([tmp_path / "res"])
    passed = {(r.rank, r.column) for r in rows if r.status == "passed"}
    for rank in (1, 3):  # the checks ran and passed in both ranks
        assert {"forward", "grad_input", "grad_weight", "golden", "exact", "corpus", "scale", "boundary", "extreme",
                "nonfinite", "contract", "adjoint", "layout-channels_last"} <= {c for r, c in passed if r == rank}
    assert not [r for r in rows if r.rank == 2 and r.status not in ("unsupported",)]
    assert {"conv1d:golden", "conv3d:corpus", "conv3d:scale"} <= set(summary["checks"])
    html = (tmp_path / "g.html").read_text()
    assert "environment · operation" in html and "· conv3d" in html and "· conv1d" in html


def test_the_report_keeps_ranks_apart() -> None:
    """A backend that passes conv2d and fails conv3d: two rows of the matrix, never averaged."""
    rows = [Row(status="passed", impl="b", check="forward", rank=2, max_ratio=0.5, verdict={"max_ratio": 0.5}),
            Row(status="failed", impl="b", check="forward", rank=3, max_ratio=9.0, verdict={"max_ratio": 9.0},
                problem_text="mb1ic1oc1id3ih1iw1kd1kh1kw1_float64")]
    from conformance.results.records import RunFile

    rep = summarize([RunFile(Path("r.jsonl"), {"run_id": "r", "env": "local"}, rows, {"finished": "x"})])
    assert rep.envs == ["local · conv2d", "local · conv3d"]
    assert rep.cell("local · conv2d", "b", "forward").state == "pass"
    assert rep.cell("local · conv3d", "b", "forward").state == "fail"
    text = terminal_summary(rep)
    assert "local · conv3d/b forward" in text and "local · conv2d/b" in text
    # results of conv2d alone (every run before ranks, every conv2d backend) read as they always have
    rep2 = summarize([RunFile(Path("r.jsonl"), {"run_id": "r", "env": "local"}, rows[:1], {"finished": "x"})])
    assert rep2.envs == ["local"]


def test_onnx_has_conv_cases_of_conv2d_only() -> None:
    """The onnx check is declared for conv2d alone because ONNX's Conv node tests are all 2-D: this fails the day an
    onnx release ships a Conv case of another rank, so that the declaration follows."""
    pytest.importorskip("onnx", reason="onnx is optional; its Conv node tests need it")
    from conformance.inputs import onnx_golden

    cases = onnx_golden.cases()
    assert cases and {c.problem.rank for c in cases} == set(checktable.BY_NAME["onnx"].ranks) == {2}
