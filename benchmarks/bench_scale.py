"""What scaling out costs: sharding (the sum of the shards' times against one process) and a Redis example database
(examples per second with and without).

    python benchmarks/bench_scale.py [--impl im2col] [-k EXPR] [--shards 2,4] [--repeat 3] [--skip-redis]

1. **Shards**: ``python -m conformance run --impl-selection`` as one process, then as N shards (``--shard K/N``,
   balanced by the one-process run's recorded durations) run one after the other; overhead = sum of the shards'
   wall (and CPU) times − the one process'. Every shard pays a process start, the plugin table, collection and its
   backends' worker starts again; the tests themselves run once either way. On N machines the wall time of the run
   is the longest shard's, also printed.
2. **Redis**: the suite's checks of one backend at the ``ci`` profile, without a database and with
   ``--database redis://...`` (a ``redis-server`` started here on a free loopback port, no persistence), alternated
   ``--repeat`` times. The ``ci`` profile with a database draws exactly its derandomized examples
   (``conformance.scale.database``), so both runs judge the same examples: examples per second = judged rows /
   pytest's wall time. Run twice: for a correct backend (``--impl``) and for a failing mutant (its failures are
   saved while Hypothesis shrinks them, the database's busiest case; the Redis run replays the saved failures
   first, as it would on a second machine).

The commands run in an empty temporary directory with backends isolated, as users run them; the load average is
printed before and after (other work on the machine slows every command). Not a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance.backends import machine
from conformance.results import records

ROOT = Path(__file__).resolve().parents[1]
MUTANT = f"{ROOT / 'tests' / 'mutants' / 'forward_bugs.py'}:FlippedKernel"


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of it and its children, the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, cpu, proc


def run_cmd(impl: str, keyword: str, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "conformance", "run", "--impl", impl, "-k", keyword, "--ranks", "2", "--ops",
            "conv", "--results", str(results), "--out", str(results) + ".html", *extra]


def bench_shards(impl: str, keyword: str, counts: list[int], work: Path) -> None:
    whole = work / "whole"
    wall1, cpu1, _ = timed(run_cmd(impl, keyword, whole), work)
    print(f"\nshards: {impl}, -k {keyword!r}, conv2d, ci profile")
    print(f"  one process            wall {wall1:6.1f} s   CPU {cpu1:6.1f} s")
    for n in counts:
        walls, cpus = [], []
        for k in range(1, n + 1):
            w, c, _ = timed(run_cmd(impl, keyword, work / f"s{n}-{k}", "--shard", f"{k}/{n}", "--shard-durations",
                                    str(whole)), work)
            walls.append(w)
            cpus.append(c)
        print(f"  {n} shards, one by one   wall {sum(walls):6.1f} s   CPU {sum(cpus):6.1f} s   overhead "
              f"{sum(walls) - wall1:+6.1f} s wall ({(sum(walls) / wall1 - 1) * 100:+.0f}%), "
              f"{sum(cpus) - cpu1:+6.1f} s CPU ({(sum(cpus) / cpu1 - 1) * 100:+.0f}%); longest shard "
              f"{max(walls):.1f} s ({', '.join(f'{w:.1f}' for w in walls)})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_redis(impl: str, keyword: str, repeat: int, work: Path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        print("\nredis: redis-server is not installed: skipped")
        return
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        time.sleep(0.5)
        for label, spec in ((impl, impl), ("mutant (failing, shrunk)", MUTANT)):
            rates: dict[str, list[float]] = {"no database": [], "redis": []}
            for i in range(repeat):
                for mode in rates:
                    results = work / f"redis-{label[:6]}-{mode[:2]}-{i}"
                    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider",
                           "-q", "--tb=no", "--conv-results", str(results), "--conv-ranks", "2", "--conv-ops", "conv",
                           "-k", keyword, "--conv-no-entry-points" if spec == MUTANT else "--conv-select",
                           *(["--impl", spec] if spec == MUTANT else [impl])]
                    if mode == "redis":
                        cmd += ["--conv-database", url]
                    t0 = time.perf_counter()
                    timed(cmd, work)
                    wall = time.perf_counter() - t0
                    judged = [r for r in records.rows([results]) if r.status in ("passed", "failed", "error")]
                    rates[mode].append(len(judged) / wall)
            a, b = statistics.median(rates["no database"]), statistics.median(rates["redis"])
            print(f"\nredis: {label}, -k {keyword!r}, conv2d, ci profile, median of {repeat}")
            print(f"  no database  {a:7.1f} examples/s   ({', '.join(f'{r:.1f}' for r in rates['no database'])})")
            print(f"  redis        {b:7.1f} examples/s   ({', '.join(f'{r:.1f}' for r in rates['redis'])})"
                  f"   {(b / a - 1) * 100:+.1f}%")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--impl", default="im2col")
    ap.add_argument("-k", dest="keyword", default="im2col and not scale and not corpus",
                    help="the selection the shards split (default: im2col's conv2d checks but the scale and corpus "
                         "tiers)")
    ap.add_argument("--redis-k", default="test_forward or test_backward or test_boundary or test_exact",
                    help="the checks of the Redis measurement")
    ap.add_argument("--shards", default="2,4")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-shards", action="store_true")
    ap.add_argument("--skip-redis", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine.summary()}, {os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        if not args.skip_shards:
            bench_shards(args.impl, args.keyword, [int(n) for n in args.shards.split(",")], work)
        if not args.skip_redis:
            bench_redis(args.impl, args.redis_k, args.repeat, work)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
