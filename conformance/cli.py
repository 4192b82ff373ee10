"""``python -m conformance`` / ``conv-conformance``: list the implementations, run the suite, render a report.

    conv-conformance list [--impl SPEC]
    conv-conformance run  [--impl SPEC] [--profile ci] [-k EXPR] [-n 2] [--out reports/index.html]
    conv-conformance report RESULTS... [--out reports/index.html]

``run`` is the main job: the conformance suite over every available implementation (pytest, with the
``conv-conformance`` plugin), the results recorded under ``reports/results/<run id>/``, then the HTML report and
a one-screen summary. The run options are the plugin's (``conformance.options``), without the ``conv-`` prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import ConformanceError
from .options import DEFAULT_RESULTS, add_run_options
from .records import new_run_id
from .registry import build_registry, describe

#: the CLI imports conformance before pytest starts, so pytest cannot rewrite its asserts; that is expected
IGNORE_REWRITE = "ignore::pytest.PytestAssertRewriteWarning"

DEFAULT_REPORT = "reports/index.html"
BUILTIN_KNOWN_FAILURES = Path(__file__).parent / "data" / "known_failures.txt"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="conv-conformance", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="print the implementation table")
    ls.add_argument("--impl", action="append", default=[], dest="conv_impl", metavar="SPEC")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    run = sub.add_parser("run", help="run the conformance suite and write the HTML report")
    add_run_options(run.add_argument, prefix="")
    run.add_argument("-k", dest="keyword", default=None, help="pytest -k expression (e.g. an implementation)")
    run.add_argument("-n", dest="workers", default=None, help="pytest-xdist workers (e.g. 2 or auto)")
    run.add_argument("--seed", type=int, default=None, help="hypothesis seed (randomized exploration, reproducible)")
    run.add_argument("--out", default=DEFAULT_REPORT, help=f"report path (default {DEFAULT_REPORT})")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")

    gate = sub.add_parser("gate", help="the CI gate for one backend: exit 0 only if every supported check passes")
    add_run_options(gate.add_argument, prefix="")
    gate.add_argument("-n", dest="workers", default=None, help="pytest-xdist workers")
    gate.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproduces a randomized run)")
    gate.add_argument("--junit", default=None, help="JUnit XML path (default <results>/junit.xml)")
    gate.add_argument("--out", default="reports/gate.html", help="HTML report path (default reports/gate.html)")
    gate.add_argument("--json", default=None, help="also write the gate's summary as JSON to this path")
    gate.add_argument("-k", dest="keyword", default=None, help=argparse.SUPPRESS)
    gate.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)

    prof = sub.add_parser("profile", help="measure a backend's arithmetic on this machine (accumulator bits, rounding, "
                                          "subnormals, FMA, order, determinism) beside what it declares")
    prof.add_argument("--impl", action="append", default=[], dest="conv_impl", metavar="SPEC", required=True,
                      help="the backend: a registered name or an import path (pkg.module:Name, path/file.py:Name)")
    prof.add_argument("--dtypes", default=None, metavar="LIST",
                      help="comma-separated dtypes to probe (default: every dtype it declares)")
    prof.add_argument("--passes", default=None, metavar="LIST",
                      help="comma-separated passes (default: forward,grad_input,grad_weight,grad_bias)")
    prof.add_argument("--no-isolate", dest="isolate", action="store_false",
                      help="call the backend in this process (default: in a worker process, as the suite does)")
    prof.add_argument("--json", dest="json_out", default=None, metavar="PATH", help="also write the measurements")

    rep = sub.add_parser("report", help="render the HTML report from saved results")
    rep.add_argument("results", nargs="+", help="results files or directories (merged)")
    rep.add_argument("--out", default=DEFAULT_REPORT)
    return ap


def cmd_list(args: argparse.Namespace) -> int:
    reg = build_registry(args.conv_impl)
    if args.json:
        print(json.dumps([describe(e) for e in reg], indent=2))
        return 0
    width = max(len(e.name) for e in reg) if len(reg) else 4
    for e in reg:
        state = "runnable" if e.runnable else f"NOT RUNNABLE: {e.unavailable}"
        print(f"{e.name:<{width}}  {state}")
        print(f"{'':<{width}}  capabilities: {e.backend.capabilities.summary()}")
        print(f"{'':<{width}}  from {e.source}" + (f"  [{e.version}]" if e.version else ""))
    return 0


def pytest_args_for_run(args: argparse.Namespace, results_dir: Path) -> list[str]:
    pa = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-v", "--tb=no", "-rN", "-W", IGNORE_REWRITE,
          "--conv-results", str(results_dir)]
    for f in args.conv_known_failures:
        pa += ["--conv-known-failures", f]
    if args.conv_strict:
        pa.append("--conv-strict")
    if not args.conv_isolate:
        pa.append("--conv-no-isolate")
    for opt, dest in (("--conv-timeout", "conv_timeout"), ("--conv-memory-limit", "conv_memory_limit")):
        pa += [opt, str(getattr(args, dest))]
    for spec in args.conv_impl:
        pa += ["--impl", spec]
    for opt, dest in (("--conv-profile", "conv_profile"), ("--conv-max-examples", "conv_max_examples"),
                      ("--conv-env-name", "conv_env_name")):
        if getattr(args, dest) is not None:
            pa += [opt, str(getattr(args, dest))]
    for opt, dest in (("--conv-dtypes", "conv_dtypes"), ("--conv-data-kinds", "conv_data_kinds"),
                      ("--conv-shapes", "conv_shapes")):
        if getattr(args, dest):
            pa += [opt, ",".join(getattr(args, dest))]
    if args.conv_shapes_max_macs is not None:
        pa += ["--conv-shapes-max-macs", str(args.conv_shapes_max_macs)]
    if args.conv_scale_2g:
        pa.append("--conv-scale-2g")
    if args.keyword:
        pa += ["-k", args.keyword]
    if args.workers:
        pa += ["-n", str(args.workers)]
    if args.seed is not None:
        pa += [f"--hypothesis-seed={args.seed}"]
    return pa + list(args.pytest_args)


def _render(paths: Sequence[str | Path], out: str) -> Path:
    from reports.render import write_report
    from reports.summarize import terminal_summary

    path = write_report(list(paths), out)
    print(terminal_summary(list(paths), report_path=path))
    return path


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    # the registry must load before the run starts: a bad --impl is a usage error, not a failed run
    build_registry(args.conv_impl)
    if not args.conv_known_failures:  # the built-ins' own known deviations, with their reasons
        args.conv_known_failures = [str(BUILTIN_KNOWN_FAILURES)]
    run_id = new_run_id()
    results_dir = Path(args.conv_results or DEFAULT_RESULTS) / run_id
    os.environ["CONV_CONFORMANCE_RUN_ID"] = run_id
    code = int(pytest.main(pytest_args_for_run(args, results_dir)))
    if not results_dir.exists():
        print(f"conv-conformance: the run recorded no results (pytest exit {code})", file=sys.stderr)
        return code or 1
    _render([results_dir], args.out)
    # pytest: 0 all passed, 1 some failed; anything else is a usage or internal error worth passing on
    return code


def cmd_gate(args: argparse.Namespace) -> int:
    from .gate import run_gate

    if len(args.conv_impl) != 1:
        print("conv-conformance gate: give exactly one --impl (an import path or a registered name)", file=sys.stderr)
        return 2
    run_id = new_run_id()
    results_dir = Path(args.conv_results or DEFAULT_RESULTS) / f"gate-{run_id}"
    junit = Path(args.junit) if args.junit else results_dir / "junit.xml"
    extra = pytest_args_for_run(args, results_dir)
    extra = extra[extra.index("--conv-results") + 2:]  # the run options, without the suite/selection part
    extra = [a for i, a in enumerate(extra) if not (a == "--impl" or (i and extra[i - 1] == "--impl"))]
    res = run_gate(args.conv_impl[0], results_dir=results_dir, junit=junit, extra=extra, strict=args.conv_strict)
    try:
        res.report = str(_render([results_dir], args.out)) if results_dir.exists() else ""
    except Exception as exc:  # the verdict stands even if the page cannot be drawn
        print(f"conv-conformance gate: the HTML report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"\nGATE {'PASSED' if res.passed else 'FAILED'} for {res.impl!r}: {res.reason}")
    print(f"  JUnit XML: {res.junit}\n  results:   {res.results_dir}")
    if args.json:
        Path(args.json).write_text(res.to_json())
    return 0 if res.passed else 1


def cmd_profile(args: argparse.Namespace) -> int:
    from . import arithmetic, machine
    from .isolation import IsolatedBackend
    from .registry import add_spec

    reg = build_registry()
    entries = [add_spec(reg, spec) for spec in args.conv_impl]
    code = 0
    for entry in entries:
        if entry.unavailable:
            print(f"{entry.name}: not runnable here: {entry.unavailable}", file=sys.stderr)
            code = 1
            continue
        backend = IsolatedBackend(entry.backend, entry.spec) if args.isolate else entry.backend
        try:
            caps = entry.backend.capabilities
            results = arithmetic.profile_backend(backend, args.dtypes.split(",") if args.dtypes else None,
                                                 args.passes.split(",") if args.passes else None)
        finally:
            if args.isolate:
                backend.close()
        facts = machine.backend_facts(entry.backend)
        print(f"{entry.name} on {machine.summary()}" + "".join(f"; {k} {v}" for k, v in facts.items()))
        print(arithmetic.table(results, caps))
        print("\nwhat was measured, declared as Capabilities(...):\n  " + arithmetic.precision_line(results))
        comparisons = [arithmetic.compare_declared(caps, r) for r in results]
        findings = [c for c in comparisons if not c.ok]
        for c in comparisons:
            if not c.ok or c.looser:
                print(("FINDING: " if not c.ok else "lost power: ") + c.message())
        code = code or (1 if findings else 0)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"impl": entry.name, "machine": machine.facts(), "facts": facts,
                                                       "passes": [c.to_dict() for c in comparisons]}, indent=2))
    return code


def cmd_report(args: argparse.Namespace) -> int:
    present = [p for p in args.results if Path(p).exists()]
    for p in sorted(set(args.results) - set(present)):
        print(f"conv-conformance report: no results at {p} (skipped)", file=sys.stderr)
    if not present:
        raise FileNotFoundError(f"none of the results paths exist: {', '.join(args.results)}")
    _render(present, args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"list": cmd_list, "run": cmd_run, "gate": cmd_gate, "profile": cmd_profile,
                "report": cmd_report}[args.command](args)
    except (ConformanceError, FileNotFoundError) as exc:
        print(f"conv-conformance: error: {exc}", file=sys.stderr)
        return 2
