"""The gate's power, measured: run ``python -m conformance gate`` (ci profile) on every member of the mutant corpus
(``tests/mutants``) and print a markdown table, the kill rate and the false-alarm rate.

    python benchmarks/mutant_power.py [-j 2] [--misbehaving] [--no-shrink] [--also reach_bugs] [--only NAME ...]
                                      [--keep DIR]

A mutant counts as killed when the gate fails it *and* names every check in its ``expected``; one the gate fails
for other reasons only is reported as "wrong check". A correct variant is a false alarm when the gate fails it.
Survivors the corpus already knows about (``tests/mutants.SURVIVORS``) are marked as such.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import mutants  # noqa: E402  (tests/mutants: the corpus and its gate runner)
from mutants.misbehaving import calls_file  # noqa: E402


def _verdict(kind: str, cls: Any, run: mutants.GateRun) -> str:
    if run.returncode is None:
        return "TIMEOUT"
    rejected = run.returncode != 0
    if kind == "variants":
        return "false alarm" if rejected else "accepted"
    missing = [c for c in cls.expected if c not in run.failing_checks]
    if not rejected:
        return "survived"
    return "killed" if not missing else f"wrong check (missing {', '.join(missing)})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-j", type=int, default=2, help="gate runs in parallel (default 2)")
    ap.add_argument("--misbehaving", action="store_true", help="also run the misbehaving set (crash, hang, ...)")
    ap.add_argument("--only", nargs="*", default=None, help="only these class names or backend names")
    ap.add_argument("--also", nargs="*", default=[], metavar="MODULE",
                    help="more mutant modules of tests/mutants to include, e.g. reach_bugs (tests/test_tiers.py's)")
    ap.add_argument("--keep", default=None, help="keep each run's results, JSON and HTML under this directory")
    ap.add_argument("--no-shrink", action="store_true",
                    help="the ci profile without Hypothesis's shrink phase (tests/mutants/_no_shrink.py)")
    args = ap.parse_args(argv)

    kinds = ["mutants", "variants"] + (["misbehaving"] if args.misbehaving else [])
    found = [(k, path, cls) for k in kinds for path, cls in mutants.members(k)]
    found += [("mutants", path, cls) for module in args.also for path, cls in mutants.module_members(module)]
    todo = [(k, path, cls) for k, path, cls in found
            if not args.only or cls.__name__ in args.only or cls.name in args.only]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mutant-power-"))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.j) as pool:
        runs = list(pool.map(lambda t: mutants.run_gate(t[1], t[2], base / t[2].__name__, shrink=not args.no_shrink),
                             todo))
    wall = time.perf_counter() - t0
    for (_, _, cls), run in zip(todo, runs):  # the intermittent members' call counters (see tests/mutants/misbehaving)
        if "results_dir" in run.summary and getattr(cls, "times", None):
            calls_file(cls.name, Path(run.summary["results_dir"]).name).unlink(missing_ok=True)

    print("| kind | member | expected check(s) | checks that failed | verdict | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for (kind, _, cls), run in zip(todo, runs):
        verdict = _verdict(kind, cls, run)
        if cls.name in mutants.SURVIVORS and verdict != "killed":
            verdict += " (known survivor)"
        expected = ", ".join(cls.expected) or "— (must pass)"
        failed = ", ".join(run.failing_checks) or "—"
        print(f"| {kind[:-1] if kind != 'misbehaving' else kind} | `{cls.name}` | {expected} | {failed} | {verdict} "
              f"| {run.seconds:.1f} | {run.cpu:.1f} |")

    rows = list(zip(todo, runs))
    mut = [(c, r) for (k, _, c), r in rows if k == "mutants"]
    var = [(c, r) for (k, _, c), r in rows if k == "variants"]
    killed = sum(_verdict("mutants", c, r) == "killed" for c, r in mut)
    rejected = sum(r.returncode not in (0, None) for _, r in mut)
    alarms = sum(_verdict("variants", c, r) != "accepted" for c, r in var)
    print()
    if mut:
        print(f"Kill rate: {killed}/{len(mut)} mutants = {100 * killed / len(mut):.0f}% rejected with the expected "
              f"check(s) named ({rejected}/{len(mut)} rejected at all)")
    if var:
        print(f"False-alarm rate: {alarms}/{len(var)} correct variants rejected = {100 * alarms / len(var):.0f}%")
    mode = "ci profile without shrinking" if args.no_shrink else "ci profile"
    print(f"Wall time: {wall:.0f} s for {len(rows)} gate runs at -j {args.j}, {mode} "
          f"(sum over the runs: {sum(r.seconds for r in runs):.0f} s wall, {sum(r.cpu for r in runs):.0f} s CPU)")
    if args.keep:
        print(f"Results: {base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
