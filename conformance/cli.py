"""conv-conformance (python -m conformance): list the implementations, run the suite, gate a backend, render a report.

    conv-conformance list [--impl SPEC] [--format text|json]
    conv-conformance run  [--impl SPEC] [--profile ci] [-k EXPR] [-n 2] [--max-time S] [-x] [--out PATH]
    conv-conformance gate --impl SPEC [--known-failures FILE] [--strict] [-k EXPR] [--json PATH]
    conv-conformance profile --impl SPEC [--dtypes LIST] [--passes LIST]
    conv-conformance report RESULTS... [--out reports/index.html]
    conv-conformance fuzz --impl SPEC --time 8h [--database DIR|redis://...] [-n WORKERS] [-k EXPR]

``run`` is the main job: the conformance suite over every available implementation (pytest, with the
``conv-conformance`` plugin), the results recorded under ``reports/results/<run id>/``, then the HTML report and
a one-screen summary; ``run -k EXPR`` or ``--impl`` (a part of the implementations) writes
``reports/run-<subset>.html`` unless ``--out`` is given, so that the full run's ``reports/index.html`` stays. The run
options are the plugin's (``conformance.options``), without the ``conv-`` prefix. The first line of this docstring is
the ``--help`` description: plain text.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from conformance.backends.registry import add_spec, build_registry, describe
from conformance.results import records
from conformance.results.records import new_run_id

from .errors import ConformanceError
from .options import DEFAULT_RESULTS, _int_at_least, add_run_options

#: the CLI imports conformance before pytest starts, so pytest cannot rewrite its asserts; that is expected
IGNORE_REWRITE = "ignore::pytest.PytestAssertRewriteWarning"

DEFAULT_REPORT = "reports/index.html"
BUILTIN_KNOWN_FAILURES = Path(__file__).parent / "data" / "known_failures.txt"
PROG = "conv-conformance"
#: the run options that the CLI chooses itself: each run's id (given to pytest as --conv-run-id)
CLI_EXCLUDES = ("run-id",)
#: and those that mean nothing for a gate of one backend (it selects its backend itself, from --impl)
GATE_EXCLUDES = ("impl", "select", "no-entry-points", "env-name", *CLI_EXCLUDES)
#: and those that fuzzing sets itself: its randomized profile, its time, all of the backend's checks
FUZZ_EXCLUDES = (*GATE_EXCLUDES, "profile", "max-time", "shard", "shard-durations")
#: exit status after the reader of stdout went away (`... | head`): a process killed by SIGPIPE, as a shell reports it
EXIT_BROKEN_PIPE = 128 + 13


def version() -> str:
    """The installed distribution's version, or the package's own where it is not installed (a source tree)."""
    try:
        return md.version(PROG)
    except md.PackageNotFoundError:
        from . import __version__

        return __version__


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors take two lines, not the whole usage block: what is wrong, then where the
    help is (``conv-conformance run: error: ...`` / ``see 'conv-conformance run --help'``), exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, ArgumentParser] = {}  #: the subcommands' parsers, by name

    def add_command(self, subparsers: Any, name: str, help: str) -> ArgumentParser:
        """A subcommand, its help line also the description its ``--help`` starts with."""
        parser = subparsers.add_parser(name, help=help, description=help)
        assert isinstance(parser, ArgumentParser)
        self.commands[name] = parser
        return parser

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nsee '{self.prog} --help'\n")


class _DeprecatedFlag(argparse.Action):
    """A hidden old spelling of an option: sets ``dest`` to ``const`` and says, on stderr, what to write instead."""

    def __init__(self, option_strings: list[str], dest: str, *, const: Any, instead: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, const=const, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS, **kwargs)
        self.instead = instead

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated; use {self.instead}", file=sys.stderr)
        setattr(namespace, self.dest, self.const)


def _add_pytest_stop_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-x", "--exitfirst", action="store_true", default=False,
                   help="stop at the first failing check (pytest -x)")
    p.add_argument("--maxfail", type=_int_at_least("maxfail", 1), default=None, metavar="N",
                   help="stop after N failing checks (pytest --maxfail=N)")


def parser() -> ArgumentParser:
    ap = ArgumentParser(prog=PROG, description=(__doc__ or PROG).split("\n")[0])
    ap.add_argument("--version", action="version", version=f"{PROG} {version()}",
                    help="print the version of conv-conformance and exit")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> ArgumentParser:
        return ap.add_command(sub, name, help)

    ls = command("list", "print the implementation table: names, origin, capabilities, runnable here?")
    ls.add_argument("--impl", action="append", default=[], dest="conv_impl", metavar="SPEC",
                    help="also list a backend given by import path (pkg.module:Name or path/file.py:Name); "
                         "repeatable")
    ls.add_argument("--format", choices=("text", "json"), default="text",
                    help="text: a table to read (the default); json: one object per implementation, for programs")
    ls.add_argument("--json", action=_DeprecatedFlag, dest="format", const="json", instead="--format json")

    run = command("run", "run the conformance suite and write the HTML report")
    add_run_options(run.add_argument, prefix="", exclude=CLI_EXCLUDES)
    run.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                     help="pytest -k expression over implementations and checks (e.g. an implementation)")
    run.add_argument("-n", dest="workers", default=None, help="pytest-xdist workers (e.g. 2 or auto)")
    run.add_argument("--seed", type=int, default=None, help="hypothesis seed (randomized exploration, reproducible)")
    _add_pytest_stop_options(run)
    run.add_argument("--out", default=None, metavar="PATH",
                     help=f"report path (default {DEFAULT_REPORT}; with -k, --impl or --select, "
                          f"{Path(DEFAULT_REPORT).parent}/run-<subset>.html, so that the full run's report stays)")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")

    gate = command("gate", "the CI gate for one backend: exit 0 only if every supported check passes")
    gate.add_argument("--impl", action="append", default=[], dest="conv_impl", metavar="SPEC", required=True,
                      help="the backend to gate, exactly one: an import path (pkg.module:Name or path/file.py:Name) "
                           "or a registered name")
    add_run_options(gate.add_argument, prefix="", exclude=GATE_EXCLUDES)
    gate.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                      help="pytest -k expression over the gate's checks, e.g. 'not scale'")
    gate.add_argument("-n", dest="workers", default=None, help="pytest-xdist workers")
    gate.add_argument("--seed", type=int, default=None, help="hypothesis seed (reproduces a randomized run)")
    _add_pytest_stop_options(gate)
    gate.add_argument("-v", "--verbose", action="count", default=0,
                      help="one line per check (pytest -v; repeat for more); the gate is quiet by default")
    gate.add_argument("-q", "--quiet", action="count", default=0, help="quieter than the default (pytest -qq)")
    gate.add_argument("--junit", default=None, metavar="PATH", help="JUnit XML path (default <results>/junit.xml)")
    gate.add_argument("--out", default="reports/gate.html", metavar="PATH",
                      help="HTML report path (default reports/gate.html)")
    gate.add_argument("--json", default=None, metavar="PATH", help="also write the gate's summary as JSON to PATH")
    gate.add_argument("--no-html", dest="html", action="store_false",
                      help="write no HTML report, only the JUnit XML, the results and --json (the report draws a plot "
                           "for each failing check: about 2 s of CPU for a gate with a dozen failing checks)")
    gate.add_argument("--merge", action="append", default=[], metavar="RESULTS",
                      help="run nothing: judge the results of the gate's shards (gate --shard K/N each), merged; "
                           "results files or directories, repeatable")
    gate.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")

    prof = command("profile", "measure a backend's arithmetic on this machine (accumulator bits, rounding, "
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

    rp = command("repro", "run one recorded example again; exit 1 while it still fails (a regression test)")
    rp.add_argument("problem", help="the problem's descriptor, as reproductions and test ids spell it: "
                    "'mb1ic1oc1ih6iw5kh3kw3_float64' (grammar: ConvProblem.parse); older reproductions' "
                    "\"ConvProblem(batch=1, c_in=1, ...)\" is read too")
    rp.add_argument("--impl", required=True, dest="conv_impl", metavar="SPEC",
                    help="the backend: a registered name or an import path (pkg.module:Name, path/file.py:Name)")
    rp.add_argument("--check", default="forward", help="the pass or check to run again (default forward)")
    rp.add_argument("--seed", type=int, default=0, help="the seed of the example's operands (default 0)")
    rp.add_argument("--data-kind", default="normal", help="the data kind of the example (default normal)")
    rp.add_argument("--layout", default="contiguous", help="the operands' layout (default contiguous)")

    fz = command("fuzz", "search one backend for failures for a given time: randomized rounds of every check it "
                         "declares, each failure printed with its reproduction as found, then the report")
    fz.add_argument("--impl", action="append", default=[], dest="conv_impl", metavar="SPEC", required=True,
                    help="the backend, exactly one: an import path (pkg.module:Name or path/file.py:Name) or a "
                         "registered name")
    fz.add_argument("--time", required=True, metavar="DURATION",
                    help="how long to search: 8h, 90m, 30s (the last round is stopped when it is up)")
    add_run_options(fz.add_argument, prefix="", exclude=FUZZ_EXCLUDES)
    fz.add_argument("-k", dest="keyword", default=None, metavar="EXPR", help="pytest -k expression over the checks")
    fz.add_argument("-n", dest="workers", default=None, help="pytest-xdist workers of each round")
    fz.add_argument("--out", default="reports/fuzz.html", metavar="PATH",
                    help="HTML report path (default reports/fuzz.html)")
    fz.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")

    rep = command("report", "render the HTML report from saved results")
    rep.add_argument("results", nargs="+", help="results files or directories (merged)")
    rep.add_argument("--out", default=DEFAULT_REPORT, metavar="PATH",
                     help=f"report path (default {DEFAULT_REPORT})")
    return ap


def cmd_list(args: argparse.Namespace) -> int:
    reg = build_registry(args.conv_impl)
    if args.format == "json":
        print(json.dumps([describe(e) for e in reg], indent=2))
        return 0
    width = max(len(e.name) for e in reg) if len(reg) else 4
    for e in reg:
        state = "runnable" if e.runnable else f"NOT RUNNABLE: {e.unavailable}"
        if e.runnable and (why := getattr(e.backend, "opt_in", "")):
            state += f" where a run names it, --select {e.name}: {why}"
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
    for name in getattr(args, "conv_select", ()):
        pa += ["--conv-select", name]
    if not getattr(args, "conv_entry_points", True):
        pa.append("--conv-no-entry-points")
    for opt, dest in (("--conv-profile", "conv_profile"), ("--conv-max-examples", "conv_max_examples"),
                      ("--conv-max-macs", "conv_max_macs"), ("--conv-env-name", "conv_env_name"),
                      ("--conv-max-time", "conv_max_time")):
        if getattr(args, dest, None) is not None:  # (the gate has no --env-name)
            pa += [opt, str(getattr(args, dest))]
    for opt, dest in (("--conv-dtypes", "conv_dtypes"), ("--conv-data-kinds", "conv_data_kinds"),
                      ("--conv-shapes", "conv_shapes")):
        if getattr(args, dest):
            pa += [opt, ",".join(getattr(args, dest))]
    if getattr(args, "conv_ranks", None):
        pa += ["--conv-ranks", ",".join(map(str, args.conv_ranks))]
    if getattr(args, "conv_ops", None):
        pa += ["--conv-ops", ",".join(args.conv_ops)]
    if args.conv_shapes_max_macs is not None:
        pa += ["--conv-shapes-max-macs", str(args.conv_shapes_max_macs)]
    if getattr(args, "conv_shard", None) is not None:
        pa += ["--conv-shard", str(args.conv_shard)]
    for opt, dest in (("--conv-shard-durations", "conv_shard_durations"), ("--conv-database", "conv_database"),
                      ("--conv-database-readonly", "conv_database_readonly")):
        for value in getattr(args, dest, None) or ():
            pa += [opt, value]
    if args.conv_scale_2g:
        pa.append("--conv-scale-2g")
    if args.keyword:
        pa += ["-k", args.keyword]
    if args.workers:
        pa += ["-n", str(args.workers)]
    if args.seed is not None:
        pa += [f"--hypothesis-seed={args.seed}"]
    if args.exitfirst:
        pa.append("-x")
    if args.maxfail is not None:
        pa.append(f"--maxfail={args.maxfail}")
    return pa + list(args.pytest_args)


def subset_report_path(parts: Sequence[str]) -> Path:
    """Where a run of a part of the implementations (``-k``, ``--impl``, ``--select``) writes its report when no
    ``--out`` is given: ``reports/run-<parts, filesystem-safe>.html``, beside the full run's ``reports/index.html``."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", "-".join(parts)).strip("-.")[:80].rstrip("-.")
    return Path(DEFAULT_REPORT).parent / f"run-{slug or 'subset'}.html"


def run_report_path(args: argparse.Namespace, impl_names: Sequence[str] = ()) -> Path:
    """``--out`` if given; else the subset's report for ``-k``/``--impl``/``--select``; else ``reports/index.html``."""
    if args.out:
        return Path(args.out)
    parts = ([args.keyword] if args.keyword else []) + list(dict.fromkeys([*impl_names, *args.conv_select]))
    if getattr(args, "conv_shard", None) is not None:  # one shard's report: the merged one is `report`'s
        parts.append(f"shard-{args.conv_shard.index}of{args.conv_shard.count}")
    return subset_report_path(parts) if parts else Path(DEFAULT_REPORT)


def check_scale_args(args: argparse.Namespace) -> None:
    """Options that cannot go together, said before the run starts."""
    if getattr(args, "seed", None) is not None and (getattr(args, "conv_database", None)
                                                    or getattr(args, "conv_database_readonly", None)):
        raise ConformanceError("--seed with --database: under a forced seed Hypothesis reads and writes no example "
                               "database; leave one of them out")
    if getattr(args, "conv_database", None) or getattr(args, "conv_database_readonly", None):
        from conformance.scale.database import build_database

        build_database(args.conv_database, args.conv_database_readonly)  # a bad spec or no server: said here, once


def _render(paths: Sequence[str | Path], out: str, missing: Sequence[str] = ()) -> Path:
    from conformance.reports.render import write_report
    from conformance.reports.summarize import terminal_summary

    path = write_report(list(paths), out, missing=missing)
    print(terminal_summary(list(paths), report_path=path))
    return path


def cmd_run(args: argparse.Namespace) -> int:
    import pytest

    check_scale_args(args)
    # the registry must load before the run starts: a bad --impl or --select is a usage error, not a failed run
    reg = build_registry(entry_points=args.conv_entry_points)
    impl_names = [add_spec(reg, spec).name for spec in args.conv_impl]
    for name in args.conv_select:
        reg.get(name)
    out = run_report_path(args, impl_names)
    if not args.out and out != Path(DEFAULT_REPORT):
        print(f"{PROG} run: a part of the implementations: the report goes to {out} ({DEFAULT_REPORT} stays as it "
              "is; --out PATH to choose)")
    if not args.conv_known_failures:  # the built-ins' own known deviations, with their reasons
        args.conv_known_failures = [str(BUILTIN_KNOWN_FAILURES)]
    run_id = new_run_id()
    results_dir = Path(args.conv_results or DEFAULT_RESULTS) / run_id
    code = int(pytest.main(["--conv-run-id", run_id, *pytest_args_for_run(args, results_dir)]))
    if not results_dir.exists():
        print(f"conv-conformance: the run recorded no results (pytest exit {code})", file=sys.stderr)
        return code or 1
    _render([results_dir], str(out))
    # pytest: 0 all passed, 1 some failed; anything else is a usage or internal error worth passing on
    return code


def gate_pytest_args(args: argparse.Namespace, results_dir: Path) -> list[str]:
    """The pytest options the gate adds to its own (``gate.run_gate``: the suite, its backend, ``-q``)."""
    extra = pytest_args_for_run(args, results_dir)
    extra = extra[extra.index("--conv-results") + 2:]  # the run options, without the suite/selection part
    extra = [a for i, a in enumerate(extra) if not (a == "--impl" or (i and extra[i - 1] == "--impl"))]
    louder = args.verbose - args.quiet
    if args.verbose or args.quiet:  # after the gate's -q, which --verbosity overrides: -v is pytest -v, -q pytest -qq
        extra.insert(0, f"--verbosity={louder if louder > 0 else louder - 1}")
    return extra


def cmd_gate(args: argparse.Namespace) -> int:
    from .gate import run_gate

    if len(args.conv_impl) != 1:
        print(f"{PROG} gate: give exactly one --impl (an import path or a registered name)", file=sys.stderr)
        return 2
    check_scale_args(args)
    if args.merge:
        from .gate import merge_results

        missing = [p for p in args.merge if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"--merge: no results at {', '.join(missing)}")
        res = merge_results(args.conv_impl[0], args.merge, strict=args.conv_strict)
        rendered: list[str | Path] = list(args.merge)
    else:
        run_id = new_run_id()
        results_dir = Path(args.conv_results or DEFAULT_RESULTS) / f"gate-{run_id}"
        junit = Path(args.junit) if args.junit else results_dir / "junit.xml"
        extra = gate_pytest_args(args, results_dir)
        res = run_gate(args.conv_impl[0], results_dir=results_dir, junit=junit, extra=extra, strict=args.conv_strict,
                       shard=str(args.conv_shard) if args.conv_shard else "")
        rendered = [results_dir] if results_dir.exists() else []
    try:
        if rendered and not getattr(args, "html", True):
            from conformance.reports.summarize import terminal_summary

            print(terminal_summary(list(rendered)))
        else:
            res.report = str(_render(rendered, args.out)) if rendered else ""
    except Exception as exc:  # the verdict stands even if the page cannot be drawn
        print(f"conv-conformance gate: the HTML report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    # the CI log carries each failure whole (worst element, bound and formula, reproduction): no artifact needed
    for col, message in res.messages.items():
        print(f"\n--- {col} ---\n{message}")
    print(f"\nGATE {'PASSED' if res.passed else 'FAILED'} for {res.impl!r}: {res.reason}")
    print((f"  JUnit XML: {res.junit}\n" if res.junit else "") + f"  results:   {res.results_dir}")
    if args.json:
        Path(args.json).write_text(res.to_json())
    return 0 if res.passed else 1


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import DEFAULT_EXAMPLES, DEFAULT_MAX_MACS, parse_duration, run_fuzz

    if len(args.conv_impl) != 1:
        print(f"{PROG} fuzz: give exactly one --impl (an import path or a registered name)", file=sys.stderr)
        return 2
    try:
        seconds = parse_duration(args.time)
    except ValueError as exc:
        raise ConformanceError(str(exc)) from None
    if args.conv_max_examples is None:
        args.conv_max_examples = DEFAULT_EXAMPLES
    if args.conv_max_macs is None:
        args.conv_max_macs = DEFAULT_MAX_MACS
    for name, default in (("seed", None), ("exitfirst", False), ("maxfail", None), ("verbose", 0), ("quiet", 0)):
        setattr(args, name, getattr(args, name, default))  # the gate's options that fuzzing has not
    check_scale_args(args)
    databases = list(args.conv_database)
    args.conv_database = []  # given to each round by run_fuzz (its default where none)
    run_id = f"fuzz-{new_run_id()}"
    root = Path(args.conv_results or DEFAULT_RESULTS)
    extra = gate_pytest_args(args, root / run_id)
    print(f"{PROG} fuzz: {args.conv_impl[0]} for {seconds:g} s ({args.conv_max_examples} examples a check a round, "
          f"problems of up to {args.conv_max_macs} multiply-adds a pass), results in {root / run_id}")
    res = run_fuzz(args.conv_impl[0], seconds=seconds, results_root=root, run_id=run_id, databases=databases,
                   extra=extra)
    rounds = sorted(Path(res.results_dir).glob("r[0-9]*/"))
    if any(records.rows([d]) for d in rounds):
        try:
            res.report = str(_render(rounds, args.out))
        except Exception as exc:  # the verdict stands even if the page cannot be drawn
            print(f"{PROG} fuzz: the HTML report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    verdict = (f"FOUND {len(res.failures)} FAILURE(S)" if res.failures else "CLEAN" if res.passed
               else "JUDGED NOTHING")
    print(f"\nFUZZ {verdict} for {res.impl!r}: {res.judged} examples judged in {res.rounds} round(s), "
          f"{seconds:g} s")
    print(f"  results:  {res.results_dir}\n  database: {', '.join(res.database)}")
    return 0 if res.passed else 1


def cmd_profile(args: argparse.Namespace) -> int:
    from conformance.backends import machine
    from conformance.backends.isolation import IsolatedBackend
    from conformance.backends.registry import add_spec
    from conformance.numerics import arithmetic

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
        findings = [c for c in comparisons if c.gaps]
        for c in comparisons:
            if c.gaps or c.looser:
                print(("FINDING: " if c.gaps else "lost power: ") + c.message())
        code = code or (1 if findings else 0)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"impl": entry.name, "machine": machine.facts(), "facts": facts,
                                                       "passes": [c.to_dict() for c in comparisons]}, indent=2))
    return code


def parse_problem(text: str) -> Any:
    """The problem's descriptor (``mb1ic1oc1ih6iw5kh3kw3_float64``, see ``ConvProblem.parse``), also as a
    reproduction builds it (``ConvProblem.parse('...')``), or as older reproductions print it, ``ConvProblem(batch=1,
    ...)`` -> the problem, reading literals only."""
    import ast

    from conformance.model.problem import ConvProblem

    if not text.strip().startswith("ConvProblem"):
        return ConvProblem.parse(text)
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "parse"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "ConvProblem"
                and len(node.args) == 1 and not node.keywords):
            return ConvProblem.parse(ast.literal_eval(node.args[0]))
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ConvProblem"
                and not node.args):
            raise ValueError("not a ConvProblem(...) call with keyword arguments (nor a descriptor)")
        fields = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except (SyntaxError, ValueError) as exc:
        raise ConformanceError(f"problem {text!r}: {exc}") from None
    return ConvProblem(**fields)


def cmd_repro(args: argparse.Namespace) -> int:
    from conformance.results.repro import reproduce

    text = reproduce(args.conv_impl, parse_problem(args.problem), seed=args.seed, data_kind=args.data_kind,
                     check=args.check, layout=args.layout)
    print(text)
    return 0 if ": passed (" in text.splitlines()[0] else 1


def cmd_report(args: argparse.Namespace) -> int:
    present = [p for p in args.results if Path(p).exists()]
    missing = [p for p in args.results if p not in present]
    for p in missing:
        print(f"conv-conformance report: no results at {p} (skipped; the report names it)", file=sys.stderr)
    if not present:
        raise FileNotFoundError(f"none of the results paths exist: {', '.join(args.results)}")
    _render(present, args.out, missing)
    return 0


def _main(argv: Sequence[str] | None) -> int:
    ap = parser()
    args, unknown = ap.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser (argparse's parse_args would say it as the top level's)
        after = " (pytest's own options go after --)" if args.command in ("run", "gate", "fuzz") else ""
        ap.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}{after}")
    try:
        return {"list": cmd_list, "run": cmd_run, "gate": cmd_gate, "profile": cmd_profile, "repro": cmd_repro,
                "report": cmd_report, "fuzz": cmd_fuzz}[args.command](args)
    except (ConformanceError, FileNotFoundError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(argv)
        finally:  # also after --help and --version (SystemExit): a closed pipe shows here, not at interpreter exit
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader of stdout went away (`conv-conformance list --format json | head -1`); as the Python docs
        # recommend (signal module, "Note on SIGPIPE"), point stdout at devnull so that the interpreter's last flush
        # does not fail again, and end quietly, with the status of a process stopped by SIGPIPE
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no file descriptor (captured): nothing will be flushed to the pipe
            pass
        return EXIT_BROKEN_PIPE
