"""The HTML report and terminal summary from real recorded results: the matrix, the failing cell's worst case and
reproduction, escaping, merging (xdist workers, runs, environments) without duplicates, partial runs, size."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from markupsafe import escape

from conformance.records import load
from reports.render import render_html, write_report
from reports.summarize import Report, summarize, terminal_summary

HOSTILE = "<script>alert(1)</script>"


def state(rep: Report, env: str, impl: str, column: str) -> str:
    cell = rep.cell(env, impl, column)
    return cell.state if cell is not None else "absent"


def n_rows(*dirs: Path) -> int:
    return sum(len(rf.rows) for rf in load(dirs))


@pytest.fixture(scope="module")
def run_a(recorded_results: dict[str, Path]) -> Path:
    return recorded_results["a"]


@pytest.fixture(scope="module")
def html_a(run_a: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = write_report([run_a], tmp_path_factory.mktemp("report") / "index.html")
    return out.read_text(encoding="utf-8")


def test_matrix_has_every_implementation_and_check(run_a: Path, html_a: str) -> None:
    rep = summarize([run_a])
    assert rep.envs == ["env-a"]
    assert {"naive", "flipped-conv", HOSTILE, "torch-cuda-strict", "torch-cuda-default"} <= set(rep.impls)
    assert rep.columns[:5] == ["forward", "grad_input", "grad_weight", "grad_bias", "golden"]
    assert "exact" in rep.columns
    for column in rep.columns[:5] + ["exact"]:
        cell = rep.cell("env-a", "naive", column)
        assert cell is not None and cell.state == "pass", (column, cell and cell.counts)
        assert 0 <= cell.worst_ratio <= 1
    assert 'id="matrix"' in html_a
    for column in rep.columns:
        assert f'<th scope="col">{column}</th>' in html_a
    naive_row = re.search(r'<tr data-impl="naive".*?</tr>', html_a, re.S)
    # every check naive runs passes; the others (the scale tier beyond its max_macs) say why they did not run
    ran = [c for c in rep.columns if rep.cell("env-a", "naive", c) and rep.cell("env-a", "naive", c).state == "pass"]
    assert naive_row and naive_row.group(0).count('class="cell st-pass') == len(ran) >= 6
    assert naive_row.group(0).count('class="cell st-') == len(rep.columns)


def test_not_run_cells_say_why(run_a: Path, html_a: str) -> None:
    cell = summarize([run_a]).cell("env-a", "torch-cuda-strict", "forward")
    assert cell is not None
    if cell.state != "unavailable":
        pytest.skip("torch-cuda-strict runs on this machine")
    assert cell.reason and str(escape(cell.reason)) in html_a
    title = r'<td class="cell st-unavailable[^"]*"[^>]*title="[^"]*'
    assert re.search(title + re.escape(str(escape(cell.reason))), html_a)


def test_failing_backend_shows_worst_case_and_reproduction(run_a: Path, html_a: str) -> None:
    cell = summarize([run_a]).cell("env-a", "flipped-conv", "forward")
    assert cell is not None and cell.state == "fail"
    assert cell.n_failing >= 1 and cell.worst_ratio > 1
    worst = cell.worst[0]
    assert worst["status"] == "failed" and worst["problem_text"]
    assert "reproduce(" in worst["repro"] and "report_backends.py:FlippedConv" in worst["repro"]
    drill = html_a[html_a.index(f'id="{cell.ident}"'):]
    drill = drill[:drill.find('<details class="drill', 1)]  # up to the next cell's drill-down
    assert str(escape(worst["repro"])) in drill
    assert str(escape(worst["problem_text"])) in drill
    for key in worst["problem"]:
        assert f"<th>{key}</th>" in drill
    assert "data:image/svg+xml" in drill  # the distribution plot
    # the matrix cell links to that drill-down and shows the worst ratio in units of the bound
    assert re.search(rf'<tr data-impl="flipped-conv".*?st-fail".*?href="#{cell.ident}"', html_a, re.S)


def test_backend_names_and_messages_are_escaped(html_a: str) -> None:
    assert HOSTILE not in html_a
    assert str(escape(HOSTILE)) in html_a
    assert html_a.count("<script") == 1  # the page's own script, nothing a backend brought


def test_merging_xdist_workers_and_repeated_files_adds_nothing(run_a: Path) -> None:
    files = sorted(run_a.glob("*.jsonl"))
    assert len(files) == 2 and {f.name.split("-")[3] for f in files} == {"gw0", "gw1"}
    once = summarize([run_a])
    assert once.n_rows == n_rows(run_a) and once.n_duplicates == 0
    twice = summarize([run_a, *files, run_a])  # the same files named again: read once
    assert twice.n_rows == once.n_rows
    copy = run_a.parent / "copied-run-a"
    copy.mkdir(exist_ok=True)
    for f in files:
        (copy / f.name.replace(".jsonl", "-copy.jsonl")).write_bytes(f.read_bytes())
    merged = summarize([run_a, copy])  # a copy under another name: its rows are duplicates
    assert merged.n_rows == once.n_rows and merged.n_duplicates == once.n_rows
    assert {k: c.counts for k, c in merged.cells.items()} == {k: c.counts for k, c in once.cells.items()}


def test_two_runs_two_environments(recorded_results: dict[str, Path], tmp_path: Path) -> None:
    a, b = recorded_results["a"], recorded_results["b"]
    rep = summarize([a, b])
    assert rep.n_rows == n_rows(a) + n_rows(b) and rep.n_duplicates == 0
    assert rep.envs == ["env-a", "env-b"] and len(rep.runs) == 2
    for env in rep.envs:
        assert state(rep, env, "naive", "forward") == "pass"
        assert state(rep, env, "flipped-conv", "forward") == "fail"
    html = write_report([a, b], tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<th>environment</th>" in html
    assert len(re.findall(r'<tr data-impl="naive" data-env="env-[ab]"', html)) == 2
    assert 'class="env"' in html and ">env-a" in html and ">env-b" in html
    summary = terminal_summary([a, b])
    assert "env-a/naive" in summary and "env-b/flipped-conv" in summary


def test_a_difference_between_environments_is_marked(recorded_results: dict[str, Path], tmp_path: Path) -> None:
    b = recorded_results["b"]
    src = sorted(b.glob("*.jsonl"))[0]
    lines, flipped = [], False
    for line in src.read_text().splitlines():
        row = json.loads(line)
        row["env"], row["run_id"] = "env-c", "other-run"
        if not flipped and row.get("impl") == "naive" and row.get("check") == "forward" \
                and row.get("tier") == "hypothesis" and row.get("status") == "passed":
            row["status"], row["max_ratio"], flipped = "failed", 2.5, True
        lines.append(json.dumps(row))
    assert flipped
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    rep = summarize([b, tmp_path / "c.jsonl"])
    assert state(rep, "env-b", "naive", "forward") == "pass"
    assert state(rep, "env-c", "naive", "forward") == "fail"
    html = render_html(rep)
    assert len(re.findall(r'<td class="cell st-(pass|fail) differs" data-column="forward"', html)) >= 2


def _partial_copy(src: Path, dst: Path, *, cut_last_line: bool) -> int:
    lines = src.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "end"
    lines = lines[:-1]
    if cut_last_line:
        lines[-1] = lines[-1][: len(lines[-1]) // 2]  # killed while writing a row
    dst.write_text("".join(lines))
    return sum(1 for line in lines[1:] if line.endswith("\n"))


@pytest.mark.parametrize("cut_last_line", [False, True], ids=["no-end-line", "last-line-cut"])
def test_partial_run_renders_what_it_recorded(run_a: Path, tmp_path: Path, cut_last_line: bool) -> None:
    src = max(run_a.glob("*.jsonl"), key=lambda f: f.stat().st_size)
    results = tmp_path / "results"
    results.mkdir()
    expected = _partial_copy(src, results / src.name, cut_last_line=cut_last_line)
    rep = summarize([results])
    assert rep.n_rows == expected > 0
    assert [f["name"] for f in rep.partial_files] == [src.name] and rep.runs[0].partial
    html = write_report([results], tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'id="partial-banner"' in html and "Partial run" in html
    assert 'class="cell st-pass' in html
    assert "PARTIAL" in terminal_summary([results])
    complete = write_report([run_a], tmp_path / "complete.html").read_text(encoding="utf-8")
    assert 'id="partial-banner"' not in complete


def test_a_run_killed_half_way_renders_as_partial(tmp_path: Path) -> None:
    """A real kill: SIGKILL the suite once it has recorded a few rows; the report shows them and says partial."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONV_CONFORMANCE_RUN_ID"))}
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider",
                             "-q", "-k", "naive", "--conv-max-examples", "500", "--conv-results", str(results)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(f.read_text().count('"type": "result"') for f in results.glob("*.jsonl")) >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and anything it started, at once: a hard kill
        proc.wait()
    rep = summarize([results])
    assert rep.n_rows >= 3 and rep.partial_files and rep.runs[0].partial
    html = write_report([results], tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'id="partial-banner"' in html and "no end line (partial)" in html
    assert 'class="cell st-pass' in html


def test_report_is_small_and_self_contained(recorded_results: dict[str, Path], tmp_path: Path) -> None:
    out = write_report([recorded_results["a"], recorded_results["b"]], tmp_path / "index.html")
    size = out.stat().st_size
    assert 10_000 < size < 4 * 2**20, size
    html = out.read_text(encoding="utf-8")
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r for r in refs if not r.startswith("data:")]
    assert "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!#|%23)", html)  # only the plots' references to their own clip paths
    assert "default-src 'none'" in html


def test_terminal_summary_fits_one_screen(run_a: Path) -> None:
    text = terminal_summary([run_a], report_path="reports/index.html")
    lines = text.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 160
    assert lines[-1] == "report: reports/index.html"
    assert any(line.startswith("naive") and "ok" in line for line in lines)
    fail = [line for line in lines if line.strip().startswith("flipped-conv forward:")]
    assert fail and "seed" in fail[0] and "float" in fail[0]
    assert "FAIL" in next(line for line in lines if line.startswith("flipped-conv"))


def test_report_command_rerenders_saved_results(recorded_results: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r" / "index.html"
    proc = subprocess.run([sys.executable, "-m", "conformance", "report", str(recorded_results["a"]),
                           str(recorded_results["b"]), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and f"report: {out}" in proc.stdout and "flipped-conv" in proc.stdout
