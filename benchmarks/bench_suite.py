"""How fast is the suite itself: examples per second, where the wall time goes, what ``-n 2`` and the gate cost.

    python benchmarks/bench_suite.py [--impls im2col,fft] [--repeat 2] [--xdist-k EXPR] [--skip-xdist]
                                     [--gate im2col] [--cwd neutral|repo] [--json out.json]

Three measurements, all of the suite as users run it (``--conv-profile ci``, backends isolated in worker
processes, results written to a temporary directory):

1. **Per implementation**: ``python -m pytest --pyargs conformance.suite -p no:cacheprovider --conv-profile ci
   -k <impl>`` (and the whole suite without ``-k``: the ``(suite)`` row) runs in a driver process that wraps,
   before pytest starts,

   - ``conformance.backends.runner.call`` (every backend call of every check): the time the call took in the parent, and
     ``Outcome.seconds``, the time inside the backend as its worker measured it (what results rows record as
     ``seconds``); the difference is the cost of isolation (pickling, the socket, the worker's input copies);
   - ``conformance.numerics.reference.forward / grad_input / grad_weight / grad_bias``: the float64 oracle, however it
   is
     reached (reference values, magnitudes ``op(|a|, |b|)``, term counts, the oracle-free bounds);
   - ``conformance.checks.differential._judge``: the oracle plus the bounds and the comparison;
   - ``SuiteContext.run / run_contract / run_oracle_free``: one call per example (a hypothesis example, a
     shrinking replay, a golden case), attributed to the suite test's check.

   Harness overhead = session wall − time inside the backend − oracle time: hypothesis, data generation, bounds,
   comparisons, isolation, recording, pytest. Its share is reported against the pytest session (collection to
   the end) and against the whole process (interpreter start and imports included).
2. **pytest-xdist**: the same suite (``-k`` ``--xdist-k``, default every runnable implementation) as one process
   and with ``-n 2``, alternated ``--repeat`` times; speed-up = median single-process wall / median ``-n 2`` wall.
   On a shared machine ``-n 2`` cannot have both cores, so the CPU time of each command is recorded too: one
   process keeps about one core busy, and ``2 x CPU(one process) / CPU(-n 2)`` estimates the speed-up on an
   otherwise idle 2-core machine (exact for perfectly balanced workers; torch's OpenMP threads spinning on a
   second core inflate the one-process CPU time, ``--env OMP_NUM_THREADS=1`` removes that).
3. **The gate**: ``python -m conformance gate --impl <name>`` (``--gate``, default im2col), whole-process wall.

The commands run in an empty directory (``--cwd neutral``), as in a user's project; from the repository root
(``--cwd repo``) pytest also loads ``tests/conftest.py`` through ``testpaths``, which costs start-up time. The
load average is printed before and after: other work on the machine slows the suite down, and ``-n 2``
cannot use a core someone else holds. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUITE = [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-q",
         "--conv-profile", "ci"]


# -- the driver: runs pytest in this process with the timers in place ------------------------------

def _driver(out_path: str, pytest_args: list[str]) -> int:
    import pytest

    from conformance.backends import runner
    from conformance.checks import differential as checks
    from conformance.checks import example as suite_support
    from conformance.numerics import reference

    stats: dict[str, Any] = {"call_s": 0.0, "inside_s": 0.0, "oracle_s": 0.0, "judge_s": 0.0, "calls": 0,
                             "oracle_in_judge_s": 0.0,
                             "per_check": defaultdict(lambda: {"examples": 0, "example_s": 0.0, "inside_s": 0.0,
                                                               "oracle_s": 0.0})}
    state: dict[str, Any] = {"check": "?", "oracle_depth": 0, "in_judge": False}

    def timed_call(inner: Any) -> Any:
        def call(backend: Any, method: str, *args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = inner(backend, method, *args, **kw)
            stats["call_s"] += time.perf_counter() - t0
            stats["inside_s"] += out.seconds
            stats["calls"] += 1
            stats["per_check"][state["check"]]["inside_s"] += out.seconds
            return out
        return call

    def timed_oracle(inner: Any) -> Any:
        def op(*args: Any, **kw: Any) -> Any:
            if state["oracle_depth"]:  # already inside a timed oracle call
                return inner(*args, **kw)
            state["oracle_depth"] += 1
            t0 = time.perf_counter()
            try:
                return inner(*args, **kw)
            finally:
                dt = time.perf_counter() - t0
                state["oracle_depth"] -= 1
                stats["oracle_s"] += dt
                stats["oracle_in_judge_s"] += dt if state["in_judge"] else 0.0
                stats["per_check"][state["check"]]["oracle_s"] += dt
        return op

    def timed_judge(inner: Any) -> Any:
        def judge(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            state["in_judge"] = True
            try:
                return inner(*args, **kw)
            finally:
                state["in_judge"] = False
                stats["judge_s"] += time.perf_counter() - t0
        return judge

    def timed_example(inner: Any) -> Any:
        def example(self: Any, *args: Any, **kw: Any) -> Any:
            state["check"] = f"{self.entry.name}::{self.check}"
            t0 = time.perf_counter()
            try:
                return inner(self, *args, **kw)
            finally:
                pc = stats["per_check"][state["check"]]
                pc["examples"] += 1
                pc["example_s"] += time.perf_counter() - t0
        return example

    runner.call = timed_call(runner.call)
    for name in ("forward", "grad_input", "grad_weight", "grad_bias"):
        setattr(reference, name, timed_oracle(getattr(reference, name)))
    checks._judge = timed_judge(checks._judge)
    for name in ("run", "run_contract", "run_oracle_free"):
        setattr(suite_support.SuiteContext, name, timed_example(getattr(suite_support.SuiteContext, name)))

    class Timeline:
        """Collection done, and the time inside the test functions (examples plus hypothesis' own work)."""

        @pytest.hookimpl(tryfirst=True)
        def pytest_collection_finish(self, session: Any) -> None:
            stats["collected_at_s"] = time.perf_counter() - t0

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_call(self, item: Any) -> Any:
            t = time.perf_counter()
            yield
            stats["tests_s"] = stats.get("tests_s", 0.0) + time.perf_counter() - t

    t0 = time.perf_counter()
    code = pytest.main(pytest_args, plugins=[Timeline()])
    stats["session_s"] = time.perf_counter() - t0
    stats["exit_code"] = int(code)
    stats["per_check"] = dict(stats["per_check"])
    Path(out_path).write_text(json.dumps(stats, indent=1), encoding="utf-8")
    return 0


# -- the measurements ----------------------------------------------------------------------------

#: where the commands run: a neutral directory by default, as a user's project would be (from the repository root
#: pytest also loads tests/conftest.py, the suite's own test fixtures, via ``testpaths``)
CWD: list[Path] = [ROOT]
ENV: dict[str, str] = dict(os.environ)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _run(cmd: list[str], cpu: list[float] | None = None) -> tuple[float, int, str]:
    """Wall time, exit code and output tail of ``cmd``; its CPU time (with its reaped children's) into ``cpu``."""
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=CWD[0], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_children_cpu() - c0)
    return wall, proc.returncode, proc.stdout[-2000:] + proc.stderr[-2000:]


WHOLE = "(suite)"  #: the row of the whole suite, every implementation in one process


def measure_impl(impl: str, workdir: Path) -> dict[str, Any]:
    results = workdir / f"results-{impl}"
    out = workdir / f"stats-{impl}.json"
    args = SUITE[3:] + (["-k", impl] if impl != WHOLE else []) + ["--conv-results", str(results)]
    wall, code, tail = _run([sys.executable, str(Path(__file__).resolve()), "--driver", str(out), "--", *args])
    if not out.exists():
        raise RuntimeError(f"driver for {impl} wrote nothing (exit {code}):\n{tail}")
    st = json.loads(out.read_text(encoding="utf-8"))
    st["impl"], st["process_s"] = impl, wall
    st["examples"] = sum(v["examples"] for v in st["per_check"].values())
    st["harness_s"] = st["session_s"] - st["inside_s"] - st["oracle_s"]
    st["isolation_s"] = st["call_s"] - st["inside_s"]
    st["bounds_s"] = st["judge_s"] - st["oracle_in_judge_s"]  # bounds and comparison
    st["rest_s"] = st["harness_s"] - st["isolation_s"] - st["bounds_s"]  # hypothesis, data, records, pytest
    st["example_s"] = sum(v["example_s"] for v in st["per_check"].values())
    return st


def print_impls(rows: list[dict[str, Any]]) -> None:
    print(f"{'impl':<11} {'examples':>8} {'ex/s':>6} {'session':>8} {'process':>8} {'backend':>8} {'oracle':>7} "
          f"{'harness':>8} {'isolation':>9} {'bounds':>7} {'rest':>6} {'harness share':>14}")
    for r in rows:
        outside = (r["process_s"] - r["inside_s"] - r["oracle_s"]) / r["process_s"]
        print(f"{r['impl']:<11} {r['examples']:>8d} {r['examples'] / r['session_s']:>6.1f} {r['session_s']:>8.1f} "
              f"{r['process_s']:>8.1f} {r['inside_s']:>8.2f} {r['oracle_s']:>7.2f} {r['harness_s']:>8.2f} "
              f"{r['isolation_s']:>9.2f} {r['bounds_s']:>7.2f} {r['rest_s']:>6.2f} "
              f"{r['harness_s'] / r['session_s']:>6.0%} / {outside:>4.0%}")
    print("\nseconds. backend = inside the backend (the rows' `seconds`); oracle = conformance.numerics.reference; "
          "harness = "
          "session - backend - oracle,\nof which isolation (worker round trips beyond the backend's own time), "
          "bounds (bounds and comparisons) and rest (hypothesis,\ndata, records, pytest); harness share = of the "
          "pytest session / of the whole process (interpreter start and imports included)\n")
    print("where the session goes (seconds): start-up and collection (plugin, registry, imports) | in the test "
          "functions: examples, hypothesis' own work | the rest (fixtures, reporting, teardown):")
    for r in rows:
        tests = r.get("tests_s", 0.0)
        print(f"  {r['impl']:<11} {r.get('collected_at_s', 0.0):>6.2f} | {r['example_s']:>6.2f} "
              f"{tests - r['example_s']:>6.2f} | {r['session_s'] - r.get('collected_at_s', 0.0) - tests:>6.2f}")
    print()
    print("time per implementation and check (milliseconds per example: the whole example / inside the backend / "
          "oracle):")
    for r in rows:
        if r["impl"] == WHOLE and len(rows) > 1:  # the same checks again
            continue
        for key, v in sorted(r["per_check"].items()):
            n = max(v["examples"], 1)
            print(f"  {key:<30} {v['examples']:>5d} examples  {1e3 * v['example_s'] / n:>8.2f} / "
                  f"{1e3 * v['inside_s'] / n:>8.2f} / {1e3 * v['oracle_s'] / n:>8.2f}")


def measure_xdist(k: str | None, repeat: int, workdir: Path) -> dict[str, Any]:
    """Wall and CPU seconds of one process and of ``-n 2``, alternated. Without -n the suite keeps about one core
    busy (the pytest process waits while its backend's worker computes), so on an otherwise idle machine
    ``2 * cpu(1 process) / cpu(-n 2)`` estimates the speed-up -n 2 would reach with both cores to itself."""
    one, two, cpu_one, cpu_two = [], [], [], []
    for r in range(repeat):
        for n, bucket, cpu in ((None, one, cpu_one), (2, two, cpu_two)) if r % 2 == 0 else \
                ((2, two, cpu_two), (None, one, cpu_one)):
            cmd = SUITE + ["--conv-results", str(workdir / f"xdist-{r}-{n}")] + (["-k", k] if k else [])
            cmd += ["-n", str(n)] if n else []
            wall, code, tail = _run(cmd, cpu)
            if code not in (0, 1):  # 1: some checks failed (known failures are not applied here): still timed
                raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{tail}")
            bucket.append(wall)
            print(f"  {'-n 2' if n else '1 process'}: {wall:.1f} s wall, {cpu[-1]:.1f} s CPU", flush=True)
    return {"k": k, "one_s": one, "two_s": two, "one_cpu_s": cpu_one, "two_cpu_s": cpu_two,
            "speedup": statistics.median(one) / statistics.median(two),
            "idle_estimate": 2 * statistics.median(cpu_one) / statistics.median(cpu_two)}


def measure_gate(impl: str, repeat: int, workdir: Path) -> dict[str, Any]:
    walls = []
    for r in range(repeat):
        d = workdir / f"gate-{r}"
        cmd = [sys.executable, "-m", "conformance", "gate", "--impl", impl, "--results", str(d / "results"),
               "--out", str(d / "gate.html"), "--junit", str(d / "gate.xml")]
        wall, code, tail = _run(cmd)
        if code != 0:
            raise RuntimeError(f"gate of {impl} failed (exit {code}):\n{tail}")
        walls.append(wall)
        print(f"  gate {impl}: {wall:.1f} s", flush=True)
    return {"impl": impl, "walls_s": walls, "median_s": statistics.median(walls)}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--driver":
        sys.exit(_driver(sys.argv[2], sys.argv[4:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--impls", default="", help="comma-separated implementations (default: every runnable one)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of the -n 2 comparison and of the gate")
    ap.add_argument("--xdist-k", default=None, help="-k expression for the -n 2 comparison (default: all)")
    ap.add_argument("--skip-xdist", action="store_true")
    ap.add_argument("--gate", default="im2col", help="the backend to time the gate on ('' to skip)")
    ap.add_argument("--cwd", choices=("neutral", "repo"), default="neutral",
                    help="run the commands in an empty directory (default; what a user's project sees) or in the "
                         "repository root (pytest then also loads tests/conftest.py)")
    ap.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                    help="set in the environment of every command (e.g. OMP_NUM_THREADS=1); repeatable")
    ap.add_argument("--skip-impls", action="store_true", help="skip the per-implementation measurement")
    ap.add_argument("--no-whole", dest="whole", action="store_false",
                    help=f"skip the {WHOLE} row: the whole suite (every implementation) in one process")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ENV.update(v.split("=", 1) for v in args.env)

    from conformance.backends.registry import build_registry

    impls = [i for i in args.impls.split(",") if i] or [e.name for e in build_registry() if e.runnable]
    load0 = os.getloadavg()
    print(f"{os.cpu_count()} cores, load average {load0[0]:.1f} at start, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"commands run in the {args.cwd} directory" + (f" with {' '.join(args.env)}" if args.env else "") + "\n")
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count(),
                              "loadavg_start": load0}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        work = Path(tmp)
        if args.cwd == "neutral":
            CWD[0] = work / "cwd"
            CWD[0].mkdir()
        report["cwd"] = args.cwd
        report["env"] = args.env
        rows = []
        for impl in [] if args.skip_impls else impls + ([WHOLE] if args.whole else []):
            rows.append(measure_impl(impl, work))
            print(f"  {impl}: {rows[-1]['session_s']:.1f} s", flush=True)
        if rows:
            print()
            print_impls(rows)
        report["impls"] = rows
        if not args.skip_xdist:
            print(f"\npytest -n 2 against one process ({args.xdist_k or 'every implementation'}):")
            x = measure_xdist(args.xdist_k, args.repeat, work)
            print(f"  speed-up {x['speedup']:.2f}x (median {statistics.median(x['one_s']):.1f} s -> "
                  f"{statistics.median(x['two_s']):.1f} s); estimate for an otherwise idle machine from CPU time "
                  f"(2 x {statistics.median(x['one_cpu_s']):.1f} s / {statistics.median(x['two_cpu_s']):.1f} s): "
                  f"{x['idle_estimate']:.2f}x")
            report["xdist"] = x
        if args.gate:
            print(f"\npython -m conformance gate --impl {args.gate}:")
            g = measure_gate(args.gate, args.repeat, work)
            print(f"  median {g['median_s']:.1f} s")
            report["gate"] = g
    load1 = os.getloadavg()
    report["loadavg_end"] = load1
    print(f"\nload average {load1[0]:.1f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
