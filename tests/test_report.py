"""The HTML report and terminal summary from real recorded results: the matrix, the failing cell's worst case and
reproduction, escaping, merging (xdist workers, runs, environments) without duplicates, partial runs, size."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conformance.reports.render import render_html, write_report
from conformance.reports.summarize import Cell, Report, error_cause, fmt_num, fmt_ratio, summarize, terminal_summary
from conftest import recorded_once
from helpers import QUICK, child_env, run_suite, suite_command
from markupsafe import escape

from conformance.model.problem import ConvProblem
from conformance.results.records import load
from conformance.results.row import Row

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
        assert re.search(rf'<th scope="col" data-column="{re.escape(column)}"[^>]*>', html_a)
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
    assert worst.status == "failed" and worst.problem_text
    assert "reproduce(" in worst.repro and "report_backends.py:FlippedConv" in worst.repro
    drill = html_a[html_a.index(f'id="{cell.ident}"'):]
    drill = drill[:drill.find('<details class="drill', 1)]  # up to the next cell's drill-down
    assert str(escape(worst.repro)) in drill
    assert str(escape(worst.problem_text)) in drill
    for key in worst.problem:
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
    matrix = html[html.index('id="matrix"'):html.index("</table>", html.index('id="matrix"'))]
    assert len(re.findall(r'<tr data-impl="naive" data-env="env-[ab]"', matrix)) == 2
    assert 'class="env"' in html and ">env-a" in html and ">env-b" in html
    summary = terminal_summary([a, b])
    assert "env-a/naive" in summary and "env-b/flipped-conv" in summary


def test_a_difference_between_environments_is_marked(recorded_results: dict[str, Path], tmp_path: Path) -> None:
    b = recorded_results["b"]
    src = sorted(b.glob("*.jsonl"))[0]
    lines, flipped = [], False
    for line in src.read_text().splitlines():
        row = json.loads(line)  # the JSON lines as written: another environment's copy, one row flipped
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


@pytest.mark.slow
def test_a_run_killed_half_way_renders_as_partial(tmp_path: Path) -> None:
    """A real kill: SIGKILL the suite once it has recorded a few rows; the report shows them and says partial."""
    results = tmp_path / "results"
    proc = subprocess.Popen(suite_command(results, "-q", "-k", "naive", "--conv-max-examples", "500"),
                            cwd=tmp_path, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    # on a machine with a GPU the torch-cuda rows of run a fail too and may take the twelve lines: list them all
    full = terminal_summary([run_a], report_path="reports/index.html", max_failures=100).splitlines()
    fail = [line for line in full if line.strip().startswith("flipped-conv forward:")]
    assert fail and "seed" in fail[0] and "float" in fail[0]
    assert "FAIL" in next(line for line in lines if line.startswith("flipped-conv"))


def test_report_command_rerenders_saved_results(recorded_results: dict[str, Path], tmp_path: Path) -> None:
    """... and names an environment that recorded nothing (a tox environment whose framework did not install): the
    others still merge."""
    out, never_ran = tmp_path / "r" / "index.html", tmp_path / "results" / "jax"
    proc = subprocess.run([sys.executable, "-m", "conformance", "report", str(recorded_results["a"]),
                           str(never_ran), str(recorded_results["b"]), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and f"report: {out}" in proc.stdout and "flipped-conv" in proc.stdout
    assert f"no results at {never_ran}" in proc.stderr
    banner = section(out.read_text(encoding="utf-8"), 'id="missing-banner"', "</div>")
    assert "No results from 1 environment(s)" in banner and str(never_ran) in banner
    assert 'id="missing-banner"' not in render_html([recorded_results["a"]])


# -- speed: the backend's time per call beside its accuracy -------------------------------------------------------
SMALL = ConvProblem(batch=2, c_in=4, c_out=8, h=10, w=10, kh=3, kw=3, bias=True)    # 36,864 multiply-adds a pass
LARGE = ConvProblem(batch=4, c_in=8, c_out=16, h=18, w=18, kh=3, kw=3, bias=True)  # 1,179,648


def cell_in(rep: Report, env: str, impl: str, column: str) -> Cell:
    cell = rep.cell(env, impl, column)
    assert cell is not None, (env, impl, column, sorted(rep.cells))
    return cell


def timed_row(impl: str, check: str, seconds: float | None, problem: ConvProblem, *, tier: str = "hypothesis",
              status: str = "passed", seed: int = 0) -> dict:
    """A result row as the suite writes it; ``seconds`` None: a row from before rows carried it."""
    row = {"type": "result", "run_id": "timed-run", "worker": "gw0", "env": "timed", "status": status, "impl": impl,
           "check": check, "tier": tier, "problem": problem.to_dict(), "problem_text": str(problem),
           "dtype": problem.dtype, "data_kind": "normal", "seed": seed, "layout": "contiguous",
           "nodeid": f"test_{tier}.py::test_{check if tier == 'hypothesis' else tier}[{impl}]"}
    if status in ("passed", "failed", "error"):
        row.update(max_ratio=0.5, verdict={"k_at_worst": 36, "profile": "fp64", "bound_kind": "det"})
    if seconds is not None:
        row["seconds"] = seconds
    return row


def write_results(path: Path, rows: list[Any]) -> Path:
    """A results file of ``rows``: JSON-line dicts as written, or ``Row`` objects read back."""
    rows = [{"type": "result", **r.to_json()} if isinstance(r, Row) else r for r in rows]
    head = {"type": "run", "schema": 1, "run_id": rows[0]["run_id"], "worker": "gw0", "env": rows[0]["env"]}
    end = {"type": "end", "run_id": rows[0]["run_id"], "finished": "2026-01-01T00:00:00"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in [head, *rows, end]))
    return path


FORWARD_ROWS = [timed_row("quick", "forward", 0.001, SMALL, seed=1),
                timed_row("quick", "forward", 0.004, SMALL, seed=2),
                timed_row("quick", "forward", 0.002, LARGE, seed=3),
                timed_row("quick", "forward", 30.0, SMALL, status="error", seed=4),  # killed at the timeout: no speed
                timed_row("quick", "forward", None, LARGE, status="unsupported", seed=5)]
#: the golden tier's forward call (1 ms) and its backward call (6 ms, shared by its three gradient rows); two
#: hypothesis backward calls; contract and oracle-free rows, each timing several calls together
BACKWARD_ROWS = [timed_row("quick", "forward", 0.001, SMALL, tier="golden"),
                 *(timed_row("quick", c, 0.006, SMALL, tier="golden") for c in ("grad_input", "grad_weight",
                                                                                 "grad_bias")),
                 timed_row("quick", "grad_bias", 0.003, SMALL), timed_row("quick", "grad_input", 0.005, SMALL),
                 timed_row("quick", "contract", 0.5, SMALL, tier="contract"),
                 timed_row("quick", "adjoint", 0.25, SMALL, tier="oracle-free")]


@pytest.fixture
def timed(tmp_path: Path) -> Path:
    results = tmp_path / "timed"
    write_results(results / "timed-run-gw0-1.jsonl", FORWARD_ROWS + BACKWARD_ROWS)
    return results


def test_the_overview_shows_each_implementation_and_check_once_over_its_settings(tmp_path: Path) -> None:
    """Framework × check on one screen: a failure in one environment makes the check red for the implementation
    (counted among the settings where it ran); a backend that ran only in its own environment shows that outcome; a
    check it does not declare reads 'unsupp.' rather than the 'n/a' of an environment without its library."""
    def rows(env: str, spec: list[tuple[str, str, str]]) -> list[dict]:
        out = []
        for seed, (impl, check, status) in enumerate(spec):
            row = timed_row(impl, check, 0.001, SMALL, status=status, seed=seed)
            row.update(env=env, run_id=f"run-{env}", reason="why" if status in ("unavailable", "unsupported") else "")
            out.append(row)
        return out
    a = write_results(tmp_path / "a" / "r.jsonl", rows("env-a", [
        ("lib", "forward", "passed"), ("lib", "grad_input", "unsupported"),
        ("fw", "forward", "unavailable"), ("fw", "grad_input", "unavailable")]))
    b = write_results(tmp_path / "b" / "r.jsonl", rows("env-b", [
        ("lib", "forward", "failed"), ("lib", "grad_input", "unavailable"),
        ("fw", "forward", "xfailed"), ("fw", "grad_input", "unsupported")]))
    html = write_report([a.parent, b.parent], tmp_path / "index.html").read_text(encoding="utf-8")
    table = html[html.index('id="overview-table"'):html.index("</table>", html.index('id="overview-table"'))]
    cells = {(impl, col): (state, word, count) for impl, body in
             re.findall(r'<tr data-impl="([^"]+)">(.*?)</tr>', table, flags=re.S)
             for col, state, word, count in re.findall(r'data-column="([^"]+)" data-state="([^"]+)"[^>]*>'
                                                      r'<div class="big">([^<]*)</div><div class="small">([^<]*)<',
                                                      body)}
    assert cells[("lib", "forward")] == ("fail", "FAIL", "1/2")
    assert cells[("lib", "grad_input")] == ("unsupported", "—", "unsupp.")
    assert cells[("fw", "forward")] == ("xfail", "known", "1/1")
    assert cells[("fw", "grad_input")] == ("unsupported", "—", "unsupp.")
    assert len({impl for impl, _ in cells}) == 2  # one row per implementation, not per setting


def test_speed_statistics_of_a_cell(timed: Path) -> None:
    t = cell_in(summarize([timed]), "timed", "quick", "forward").timing
    assert t.n_calls == 3  # the error row's 30 s and the unsupported row are not speed
    assert t.total_s == pytest.approx(0.007)
    assert t.median_ms == pytest.approx(2.0) and t.max_ms == pytest.approx(4.0)
    assert t.gflops == pytest.approx(2 * (2 * SMALL.macs + LARGE.macs) / 0.007 / 1e9)
    assert SMALL.macs == 36_864 and fmt_num(t.gflops) == "0.358"


def test_backward_rows_of_one_call_are_timed_once(timed: Path, tmp_path: Path) -> None:
    rep = summarize([timed])
    golden = cell_in(rep, "timed", "quick", "golden").timing
    assert golden.n_calls == 2 and golden.total_s == pytest.approx(0.007)  # not 0.001 + 3 × 0.006
    assert golden.median_ms == pytest.approx(3.5) and golden.max_ms == pytest.approx(6.0)
    # a forward call does one pass, a backward call two (dx and dw; db is a sum)
    assert golden.gflops == pytest.approx((2 * SMALL.macs + 4 * SMALL.macs) / 0.007 / 1e9)
    assert cell_in(rep, "timed", "quick", "grad_input").timing.gflops == pytest.approx(4 * SMALL.macs / 0.005 / 1e9)
    bias = cell_in(rep, "timed", "quick", "grad_bias").timing
    assert bias.n_calls == 1 and bias.median_ms == pytest.approx(3.0) and bias.gflops is None
    for several in ("contract", "adjoint"):  # a row whose seconds covers several calls is no call's time
        assert cell_in(rep, "timed", "quick", several).timing.n_calls == 0
    total = rep.timing("timed", "quick")
    assert total.n_calls == 3 + 2 + 2
    assert total.total_s == pytest.approx(0.007 + 0.007 + 0.003 + 0.005)
    # the same rows in a second file (a copy of the run) change nothing
    write_results(timed / "copy" / "timed-run-gw0-2.jsonl", FORWARD_ROWS + BACKWARD_ROWS)
    again = summarize([timed])
    assert again.n_duplicates == len(FORWARD_ROWS + BACKWARD_ROWS)
    assert again.timing("timed", "quick").total_s == pytest.approx(total.total_s)


def section(html: str, start: str, end: str) -> str:
    return html[html.index(start):html.index(end, html.index(start))]


def test_speed_section_shows_the_numbers_and_the_plot(timed: Path) -> None:
    rep = summarize([timed])
    html = render_html(rep)
    speed = section(html, '<h2 id="speed">', "<h2>Drill-down")
    assert "benchmarks/bench_impls.py" in speed and "isolation" in speed
    row = re.search(r'<tr data-impl="quick".*?</tr>', speed, re.S)
    assert row, speed
    forward = re.search(r'<td data-column="forward" title="([^"]*)">(.*?)</td>', row.group(0), re.S)
    assert forward and "2 ms" in forward.group(2) and "0.358 GFLOP/s" in forward.group(2)
    assert "3 call(s), 0.007 s in all, median 2 ms, max 4 ms" in forward.group(1)
    golden = re.search(r'<td data-column="golden"[^>]*>(.*?)</td>', row.group(0), re.S)
    assert golden and "3.5 ms" in golden.group(1)
    bias = re.search(r'<td data-column="grad_bias"[^>]*>(.*?)</td>', row.group(0), re.S)
    assert bias and "3 ms" in bias.group(1) and "times only" in bias.group(1)
    assert "0.022 s" in row.group(0) and "7 calls" in row.group(0)  # the implementation's total
    assert 'data-column="contract"' not in speed and 'data-column="adjoint"' not in speed
    assert re.search(r'<img class="plot" id="speed-plot"[^>]*src="data:image/svg\+xml', speed)
    # the matrix cell shows its median beside its accuracy, and its drill-down the statistics
    cell = cell_in(rep, "timed", "quick", "forward")
    assert cell.state == "fail"  # the error row
    matrix_cell = re.search(rf'<td class="cell st-fail" data-column="forward".*?href="#{cell.ident}".*?</td>', html,
                            re.S)
    assert matrix_cell and '<div class="per-call"' in matrix_cell.group(0) and "2 ms/call" in matrix_cell.group(0)
    drill = section(html, f'id="{cell.ident}"', "</details>")
    assert "3 call(s), median 2 ms, max 4 ms, total 0.007 s, 0.358 GFLOP/s" in " ".join(drill.split())


def test_results_without_seconds_still_render(run_a: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    for f in run_a.glob("*.jsonl"):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        (old / f.name).parent.mkdir(exist_ok=True)
        (old / f.name).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "seconds"}) + "\n"
                                          for r in rows))
    rep = summarize([old])
    assert not rep.timed and all(c.timing.n_calls == 0 for c in rep.cells.values())
    assert cell_in(rep, "env-a", "naive", "forward").state == "pass"
    html = render_html(rep)
    assert 'id="speed-none"' in html and 'id="speed-table"' not in html and 'class="per-call"' not in html
    assert 'class="cell st-pass' in html
    # beside a timed run, the untimed implementation's row shows dashes
    rows = [timed_row("cost$1", "forward", 0.002, SMALL)] + [timed_row("legacy", "forward", None, SMALL, seed=s)
                                                            for s in range(3)]
    mixed = write_results(tmp_path / "mixed" / "m-gw0-1.jsonl", rows)
    html = render_html(summarize([mixed]))
    speed = section(html, '<h2 id="speed">', "<h2>Drill-down")
    legacy = re.search(r'<tr data-impl="legacy".*?</tr>', speed, re.S)
    assert legacy and legacy.group(0).count("—") == 2 and "ms" not in legacy.group(0)
    assert 'id="speed-plot"' in speed  # a "$" in a backend's name is drawn as text, not mathtext


def test_real_run_times_each_backend_call_once(run_a: Path, html_a: str) -> None:
    rep = summarize([run_a])
    rows = [r for rf in load([run_a]) for r in rf.rows if r.impl == "naive"]
    forward = cell_in(rep, "env-a", "naive", "forward")
    assert forward.timing.n_calls == forward.n_run > 0 and (forward.timing.gflops or 0) > 0
    golden = [r for r in rows if r.tier == "golden"]
    calls = sum(1 for r in golden if r.check in ("forward", "grad_input"))  # each backward call has one dx row
    cell = cell_in(rep, "env-a", "naive", "golden")
    assert cell.timing.n_calls == calls < cell.n_run
    assert cell_in(rep, "env-a", "naive", "contract").timing.n_calls == 0
    assert any(r.seconds is not None for r in rows if r.tier == "contract")  # recorded, but over several calls
    speed = section(html_a, '<h2 id="speed">', "<h2>Drill-down")
    assert 'id="speed-table"' in speed and 'id="speed-plot"' in speed and '<tr data-impl="naive"' in speed
    assert f"{fmt_num(forward.timing.median_ms)} ms" in speed


# -- size: many failing cells of many examples each ---------------------------------------------------------------
def many_failing_rows(n_impls: int = 16, n_rows: int = 300) -> list[dict]:
    """Rows of ``n_impls`` × 4 failing cells (forward and the three gradients), ``n_rows`` examples each: ratios
    spread over ten decades (some exact, some infinite), K from 1 to 4096, as a GPU run with float16 gaps records."""
    rng = random.Random(20261126)
    rows = []
    for i in range(n_impls):
        for check in ("forward", "grad_input", "grad_weight", "grad_bias"):
            for seed in range(n_rows):
                ratio = rng.choice([0.0, math.inf]) if seed % 50 == 7 else 10 ** rng.uniform(-7, 3)
                row = timed_row(f"gpu-{i}", check, None, SMALL, status="failed" if ratio > 1 else "passed", seed=seed)
                row.update(max_ratio=ratio, verdict={"k_at_worst": int(2 ** rng.uniform(0, 12)), "profile": "fp16",
                                                     "bound_kind": "det"})
                rows.append(row)
    return rows


@pytest.mark.slow
def test_many_failing_cells_keep_the_report_small(tmp_path: Path) -> None:
    """Each failing cell's drill-down embeds its plot: with every example a vector marker a plot of a few hundred
    examples took ~100 kB and a GPU run's report outgrew its 4 MiB limit; the examples are pixels now (one PNG in
    the SVG, whose text and axes stay vectors), so a plot stays a few kB however many examples it draws."""
    results = write_results(tmp_path / "many" / "many-run-gw0-1.jsonl", many_failing_rows())
    rep = summarize([results])
    failing = [c for c in rep.cells.values() if c.state == "fail"]
    assert len(failing) == 64 and all(c.n_run == 300 for c in failing)
    out = write_report([results], tmp_path / "index.html")
    html = out.read_text(encoding="utf-8")
    plots = dict(re.findall(r'<img class="plot" alt="distribution of error/bound for ([^"]*)" src="([^"]*)"', html))
    assert len(plots) == 64
    for name, src in plots.items():
        assert len(src) < 32_000, (name, len(src))  # was ~90 kB
        assert src.startswith("data:image/svg+xml"), name
        assert "error/bound over 300 examples" in src and "data:image/png;base64," in src, name  # all of them, drawn
    assert out.stat().st_size < 4 * 2**20, out.stat().st_size  # was ~6 MB


# -- the failure first: the Failing list, counts that add up, no phantom columns, errors read as errors ----------
ERROR_BACKENDS = textwrap.dedent('''
    """Backends that give no answer: one raises, one's worker dies of SIGABRT, one hangs past the timeout."""
    import os
    import time

    from conformance.impls.im2col import Im2col


    class Raising(Im2col):
        name = "raising"

        def forward(self, problem, x, w, b):
            raise RuntimeError("no kernel for this shape")


    class Crashing(Im2col):
        name = "crashing"

        def backward(self, problem, x, w, dy):
            os.abort()


    class Hanging(Im2col):
        name = "hanging"

        def forward(self, problem, x, w, b):
            time.sleep(60)
''')
ERROR_TIMEOUT = 3  #: seconds: the hanging backend's calls time out after it; far above a call of the other two


def _record_errors(root: Path) -> None:
    (root / "report_errors.py").write_text(ERROR_BACKENDS)
    tests = "test_forward or test_grad_input or test_layout or test_oracle_free or test_golden or test_contract"
    impls = [a for name in ("Raising", "Crashing", "Hanging") for a in ("--impl", f"report_errors.py:{name}")]
    proc = run_suite(root, root / "results", *QUICK, "--conv-env-name", "env-a", "--conv-timeout", str(ERROR_TIMEOUT),
                     *impls, *(a for name in ("raising", "crashing", "hanging") for a in ("--conv-select", name)),
                     "-k", f"(raising or crashing) and ({tests}) or hanging and test_forward")
    if proc.returncode != 1:
        raise RuntimeError(f"the error run: expected failures (exit 1), got {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def record_error_results(factory: pytest.TempPathFactory) -> Path:
    """A real run in environment ``env-a`` (run a's) of three backends that give no answer: ``raising`` (forward
    raises RuntimeError), ``crashing`` (backward aborts its worker: SIGABRT), ``hanging`` (forward sleeps past the
    timeout; its test_forward only). Recorded once per session (tests/test_report_browser.py uses it too)."""
    return recorded_once(factory, "error-results", _record_errors) / "results"


@pytest.fixture(scope="session")
def error_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_error_results(tmp_path_factory)


def matrix_counts(html: str) -> dict[str, int]:
    """The matrix's cells by what they show: a merged row counts its colspan; an absent cell is ``absent``."""
    matrix = section(html, 'id="matrix"', "</table>")
    counts: dict[str, int] = {}
    for state, attrs in re.findall(r'<td class="cell st-([\w-]+)[^"]*"([^>]*)>', matrix):
        span = re.search(r'colspan="(\d+)"', attrs)
        key = state if "data-state=" in attrs else "absent"
        counts[key] = counts.get(key, 0) + (int(span.group(1)) if span else 1)
    return counts


def chip_counts(html: str) -> dict[str, int]:
    totals = section(html, 'id="totals"', "</p>")
    found = {}
    for key, pattern in (("fail", r"(\d+) failing cell"), ("pass", r"(\d+) passing"), ("known", r"(\d+) known"),
                         ("explained", r"(\d+) following from"), ("grey", r"(\d+) not run"),
                         ("absent", r"(\d+) without results"), ("cells", r"= (\d+) cells"),
                         ("checks", r"(\d+) checks")):
        m = re.search(pattern, totals)
        found[key] = int(m.group(1)) if m else 0
    return found


def test_skip_rows_fold_into_the_columns_their_test_covers(run_a: Path, html_a: str, tmp_path: Path) -> None:
    """A skipped layout test records tier ``layout`` and an oracle-free one ``oracle-free``: no column of their own
    (it showed "—" for every backend that ran), but the four layout-* columns and the four identities."""
    rows = [r for rf in load([run_a]) for r in rf.rows]
    skips = [r for r in rows if r.check in ("layout", "oracle_free")]  # a test-level row of either test
    assert skips and all(r.status == "unavailable" for r in skips)  # the torch-cuda backends, without a GPU
    rep = summarize([run_a])
    assert not {"layout", "oracle_free", "oracle-free"} & set(rep.columns)
    assert len(rep.columns) == 22 and f"{len(rep.columns)} checks" in html_a
    for impl in {r.impl for r in skips}:
        for col in ("layout-channels_last", "layout-broadcast", "adjoint", "finite_difference", "linearity", "batch"):
            assert state(rep, "env-a", impl, col) == "unavailable", (impl, col)
        assert len([c for c in rep.cells.values() if c.impl == impl]) == len(rep.columns)  # every check: one row
        assert re.search(rf'<tr data-impl="{re.escape(impl)}"[^>]*>\s*<th[^>]*>.*?</th>\s*'
                         rf'<td class="cell st-unavailable merged" colspan="{len(rep.columns)}"', html_a, re.S)
    # a layout test's row names its layout in the test id: that column alone; an oracle-free one covers all four
    synthetic = [dict(type="result", run_id="r", worker="gw0", env="e", impl="gpu", status="skipped",
                      check="layout", tier="layout", reason="no GPU",
                      nodeid="test_layout.py::test_layout[gpu-strided]"),
                 dict(type="result", run_id="r", worker="gw0", env="e", impl="gpu", status="skipped",
                      check="oracle_free", tier="oracle-free", reason="no GPU",
                      nodeid="test_oracle_free.py::test_oracle_free[gpu]"),
                 dict(type="result", run_id="r", worker="gw0", env="e", impl="gpu", status="error", check="layout",
                      tier="layout", reason="setup failed: def setup():\n>   open_device()\nE   OSError: no device\n",
                      nodeid="test_layout.py::test_layout[gpu-broadcast]")]
    rep = summarize([write_results(tmp_path / "synthetic" / "r-gw0-1.jsonl", synthetic)])
    gpu = {c.column: c.state for c in rep.cells.values() if c.impl == "gpu"}
    assert gpu == {"layout-strided": "skipped", "adjoint": "skipped", "finite_difference": "skipped",
                   "linearity": "skipped", "batch": "skipped", "layout-broadcast": "fail"}, gpu
    assert rep.cell("e", "gpu", "layout-broadcast").cause == "OSError: no device"


def test_header_counts_add_up_to_what_the_matrix_shows(recorded_results: dict[str, Path], error_results: Path,
                                                      tmp_path: Path) -> None:
    for sources in ([recorded_results["a"]], [recorded_results["a"], recorded_results["b"], error_results]):
        rep = summarize(sources)
        html = render_html(rep)
        chips, shown = chip_counts(html), matrix_counts(html)
        rows = len(re.findall(r'<tr data-impl="[^"]*" data-env="[^"]*" data-failing=', section(
            html, 'id="matrix"', "</table>")))
        assert chips["checks"] == len(rep.columns)
        assert chips["cells"] == rows * len(rep.columns) == sum(shown.values()), (chips, shown)
        assert chips["fail"] == shown.get("fail", 0) == len(rep.failing)
        assert chips["pass"] == shown.get("pass", 0)
        assert chips["known"] == shown.get("xfail", 0) + shown.get("stale", 0)
        assert chips["explained"] == shown.get("explained", 0)
        assert chips["grey"] == sum(shown.get(s, 0) for s in ("unavailable", "unsupported", "skipped",
                                                         "not_reached", "empty"))
        assert chips["absent"] == shown.get("absent", 0)
        assert sum(v for k, v in chips.items() if k not in ("cells", "checks")) == chips["cells"]


def test_failing_list_comes_first_and_links_every_failing_cell(run_a: Path, html_a: str) -> None:
    rep = summarize([run_a])
    failing = rep.failing
    assert len(failing) >= 10 and {c.impl for c in failing} >= {"flipped-conv"}
    assert html_a.index('<section id="failing"') < html_a.index('id="matrix"')
    assert re.search(rf'<a class="c-fail" id="failing-chip" href="#failing">{len(failing)} failing cell\(s\)</a>',
                     html_a)
    listed = section(html_a, '<section id="failing"', "</section>")
    assert f"Failing: {len(failing)} cell(s)" in listed
    for cell in failing:  # a line each, linking to (and opening) its drill-down, in the matrix's order
        assert f'<a href="#{cell.ident}" data-open="{cell.ident}">{cell.column}</a>' in listed, cell.column
        assert f'<details class="drill st-fail-border" id="{cell.ident}"' in html_a
    order = re.findall(r'<a href="#(cell-\d+)" data-open', listed)
    assert order == [c.ident for c in failing]
    forward = rep.cell("env-a", "flipped-conv", "forward")
    line = re.search(rf'<tr class="st-fail" data-open="{forward.ident}".*?</tr>', listed, re.S).group(0)
    assert f"worst {fmt_ratio(forward.worst_ratio)}" in line and forward.worst_ratio > 1e3, line  # a flipped kernel
    assert forward.counts_text in line and "flipped-conv" in line


def test_no_failing_cell_is_said_in_green(run_a: Path, tmp_path: Path) -> None:
    rows = [r for rf in load([run_a]) for r in rf.rows if r.impl == "naive"]
    rep = summarize([write_results(tmp_path / "naive" / "n-gw0-1.jsonl", rows)])
    assert not rep.failing
    html = render_html(rep)
    assert '<a class="c-pass" id="failing-chip" href="#failing">no failing cell</a>' in html
    assert 'class="c-fail"' not in section(html, 'id="totals"', "</p>")
    assert '<section id="failing" class="clear">' in html and "<h2>No failing cell</h2>" in html
    assert 'id="failing-list"' not in html


def test_errors_show_their_cause_not_infinity(error_results: Path, tmp_path: Path) -> None:
    rep = summarize([error_results])
    causes = {("raising", "forward"): "forward raised RuntimeError",
              ("raising", "golden"): "forward raised RuntimeError",
              ("raising", "layout-strided"): "forward raised RuntimeError",
              ("raising", "adjoint"): "forward raised RuntimeError",
              ("raising", "contract"): "forward raised RuntimeError",
              ("crashing", "grad_input"): "backward crashed: SIGABRT",
              ("crashing", "layout-channels_last"): "backward crashed: SIGABRT",
              ("hanging", "forward"): f"forward timed out after {ERROR_TIMEOUT} s"}
    for (impl, column), cause in causes.items():
        cell = cell_in(rep, "env-a", impl, column)
        assert cell.is_error and cell.cause == cause, (impl, column, cell.counts, cell.causes)
        assert cell.headline == "error" and "∞" not in cell.label and cause in cell.label
    assert cell_in(rep, "env-a", "raising", "forward").full_cause == (
        "forward raised RuntimeError: no kernel for this shape")
    assert cell_in(rep, "env-a", "crashing", "forward").state == "pass"  # only its backward aborts
    html = render_html(rep)
    for (impl, column), cause in causes.items():
        ident = cell_in(rep, "env-a", impl, column).ident
        matrix_cell = re.search(rf'<td class="cell st-fail" data-column="{column}"[^>]*>\s*<a href="#{ident}".*?</td>',
                                html, re.S)
        assert matrix_cell, (impl, column)
        assert '<div class="big">error</div>' in matrix_cell.group(0) and cause in matrix_cell.group(0)
        assert "∞" not in matrix_cell.group(0)
        line = re.search(rf'<tr class="st-fail" data-open="{ident}".*?</tr>', html, re.S)
        assert line and "<strong>error:</strong>" in line.group(0) and cause in line.group(0)
        assert "∞" not in line.group(0)
        drill = section(html, f'id="{ident}"', "</details>")
        assert cause in drill and "∞" not in drill
    text = terminal_summary([error_results], max_failures=100)
    for (impl, column), cause in causes.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  {impl} {column}:"))
        assert f"error: {cause}" in line and "∞" not in line, line
    raising = next(ln for ln in text.splitlines() if ln.startswith("raising"))
    assert raising.startswith("raising") and "forward (error)" in raising and "∞" not in raising


def test_error_causes_of_each_kind_of_non_answer() -> None:
    def row(status: str, why: str = "", **extra: Any) -> Row:
        return Row(status=status, impl="x", verdict={"problem_text": why} if why else None, **extra)

    assert error_cause(row("failed", "grad_input has shape (1, 2, 3, 3), expected (1, 2, 4, 4)")) == (
        "grad_input has shape (1, 2, 3, 3), expected (1, 2, 4, 4)")
    assert error_cause(row("failed", "backward returned list, not a (dx, dw, db) triple")) == (
        "backward returned list, not a (dx, dw, db) triple")
    assert error_cause(row("failed", "forward returned None")) == "forward returned None"
    assert error_cause(row("error", "forward crashed: the worker process exited with code 3 (restarted for the "
                                    "next call)")) == "forward crashed: exit code 3"
    assert error_cause(row("error", "not called: an earlier call of this check failed (forward timed out after 5 s; "
                                    "N1 C1->1 1x1 k1x1 s1,1 p0,0 d1,1 g1 float64)")) == "forward timed out after 5 s"
    # a test that failed outside its examples: the plugin's row, with pytest's report as its reason
    assert error_cause(row("error", reason="setup failed: def f():\n>       boom()\nE       ValueError: bad x\n"
                                           "E       (more)\n")) == "ValueError: bad x"
    # measured failures are no errors, whatever their ratio (a contract finding, a known failure's note)
    assert error_cause(row("failed", "forward modified its input(s) x in place")) == ""
    assert error_cause(row("failed", reason="known: raised on purpose")) == ""
    assert error_cause(row("passed")) == ""


def test_known_failures_read_as_known_in_the_terminal(tmp_path: Path) -> None:
    """A backend whose only failure is a known one: ``ok 3/3, known 1``, the worst ratio over its passing cells,
    never ``ok … ∞×``."""
    rows = [timed_row("fft", check, 0.001, SMALL, seed=i) | {"max_ratio": 0.25 * (i + 1)}
            for i, check in enumerate(("forward", "grad_input", "grad_weight"))]
    known = timed_row("fft", "forward", 0.001, SMALL, tier="nonfinite", status="failed") | {"max_ratio": "inf"}
    rows.append(known | {"status": "xfailed", "reason": "known: fft spreads a NaN over its tile (known_failures)"})
    rep = summarize([write_results(tmp_path / "known" / "k-gw0-1.jsonl", rows)])
    assert cell_in(rep, "timed", "fft", "nonfinite").state == "xfail"
    line = next(ln for ln in terminal_summary(rep).splitlines() if ln.startswith("fft"))
    assert "ok 3/3, known 1; worst 0.75× (grad_weight); known: nonfinite" in line, line
    assert "∞" not in line


def test_failures_explained_by_the_arithmetic_finding_are_listed_apart(tmp_path: Path) -> None:
    """The failures a wrong precision declaration causes are one finding (the arithmetic column, failing) and the
    cells they explain (orange), each listed with its link under the Failing list, and counted in the header."""
    finding = timed_row("bf", "grad_weight", None, SMALL, tier="arithmetic", status="failed") | {
        "dtype": "bfloat16", "max_ratio": None, "verdict": None,
        "arithmetic": {"declared": "bf16-acc32", "measured": "bf16-acc16"},
        "reason": "bfloat16 grad_weight: declared bf16-acc32, but measured bf16-acc16"}
    follows = timed_row("bf", "grad_weight", 0.001, SMALL, status="failed", seed=1) | {
        "dtype": "bfloat16", "max_ratio": 3.0,
        "verdict": {"k_at_worst": 36, "profile": "bf16-acc32", "bound_kind": "det", "passes_under": ["bf16-acc16"]}}
    ok = timed_row("bf", "forward", 0.001, SMALL, seed=2)
    rep = summarize([write_results(tmp_path / "bf" / "bf-gw0-1.jsonl", [finding, follows, ok])])
    assert [c.column for c in rep.failing] == ["arithmetic"]
    assert [c.column for c in rep.explained] == ["grad_weight"]
    html = render_html(rep)
    chips = chip_counts(html)
    assert chips["fail"] == 1 and chips["explained"] == 1 and chips["pass"] == 1 and chips["cells"] == 3
    listed = section(html, '<section id="failing"', "</section>")
    explained = rep.explained[0]
    assert f'<a href="#{explained.ident}" data-open="{explained.ident}">grad_weight</a>' in section(
        listed, 'id="explained-list"', "</table>")
    assert "declared bf16-acc32, measured bf16-acc16" in listed
    line = next(ln for ln in terminal_summary(rep).splitlines() if ln.startswith("bf "))
    assert line.startswith("bf") and "FAIL 1/3: arithmetic" in line
