"""Fuzzing for hours: a randomized, time-bounded search over every check one backend declares.

    python -m conformance fuzz --impl my_pkg.conv:MyConv --time 8h [--database DIR|redis://...] [-n WORKERS]

The search is rounds of the conformance suite, each a pytest process of its own over the backend's checks at the
``thorough`` profile (randomized; the corpus tier's layers at 1,000,000 multiply-adds, every distinct problem; the
scale tier's operands past 2^31 elements where the memory allows) with ``--max-examples`` per check (default
1000) and drawn problems of up to ``--max-macs`` multiply-adds a pass (default 2,000,000, ten times the gate's),
without Hypothesis' explain phase (``conformance.scale.fuzz_round``). Round after round until ``--time`` is up, each
with fresh randomness; the example database (``--database``; default a directory beside the results) gives every
round, and every machine that shares it, the failures found so far first.

As it goes: each failing check's minimal example is recorded in the round's results when its test ends (and saved
in the database when Hypothesis finds it); ``fuzz`` prints each failure it has not printed before (the finding,
the problem and its message, whose last lines are the reproduction) while the round runs. A backend that crashes
or hangs costs what it costs the gate (its worker process is restarted; a hung call times out). A round still
running when the time is up is sent SIGTERM, which the plugin turns into an interrupted run that writes its files
(SIGKILL after ``GRACE`` seconds); a round whose process dies costs that round only. At the end: the HTML report of
every round's results, the terminal summary, exit 1 if anything failed (or nothing was judged: a time shorter
than a round's start, a backend that declares nothing runnable here).

Why not HypoFuzz (Hypothesis' own fuzzing engine, 25.11): it runs each test's function itself, entering its pytest
fixtures by hand, outside pytest's run protocol, where this suite records its rows, expects its known failures
(HypoFuzz leaves xfail-marked tests out) and closes its worker processes; it leaves out derandomized tests; it needs
hypothesis>=6.140 and a web stack (starlette, hypercorn, trio, black, libcst); and its licence admits
non-commercial use only ("any use within a commercial organization, including internal tooling or testing"
requires a commercial licence), which excludes the vendors and framework teams this command is for.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

from conformance.errors import ConformanceError
from conformance.gate import IGNORE_REWRITE, finding_name, resolve
from conformance.results import records
from conformance.results.row import Row

DEFAULT_EXAMPLES = 1000  #: examples per check and round
#: multiply-adds a pass of the drawn problems (``--max-macs``): ten times the gate's budget (``strategies.MAX_MACS``),
#: layers the ci profile never draws, at about ten times its cost per example
DEFAULT_MAX_MACS = 2_000_000
GRACE = 30.0  #: seconds a round has, after SIGTERM at the end of the time, to write its files
POLL = 2.0  #: seconds between looks at the running round's results
MIN_ROUND = 5.0  #: no new round starts with less time than this left (a pytest process takes seconds to start)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: pytest's exit codes that end the search: internal error, usage error, no tests collected
_FATAL = {3: "internal error", 4: "usage error", 5: "no tests collected"}


def parse_duration(text: str) -> float:
    """``8h``, ``90m``, ``30s``, ``1.5h``, ``3600`` (seconds) -> seconds; an error naming the form otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"time {text!r}: a positive number with s, m, h or d (8h, 90m, 30s)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class FuzzResult:
    impl: str
    seconds: float
    rounds: int = 0
    judged: int = 0  #: examples judged (passed, failed or error) over every round
    failures: list[Row] = field(default_factory=list)  #: one row per distinct failure, in the order found
    results_dir: str = ""
    database: list[str] = field(default_factory=list)
    report: str = ""

    @property
    def passed(self) -> bool:
        """Nothing failed, and something was judged: a search that judged nothing found nothing either."""
        return not self.failures and self.judged > 0


def failure_key(row: Row) -> tuple[str, ...]:
    """A failure's identity across rounds: its finding and its (shrunk) example."""
    return (finding_name(row), row.check, row.dtype, row.problem_text, row.data_kind, str(row.seed), row.layout)


def describe(n: int, row: Row) -> str:
    where = f"{row.check or '?'} {row.dtype}, {row.problem_text}".strip(", ")
    return f"--- failure {n}: {finding_name(row)} [{where}] ---\n{(row.message or row.reason).strip()}"


def round_command(select: Sequence[str], results_dir: Path, run_id: str, seconds_left: float,
                  databases: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The pytest command line of one round."""
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-q",
           "--tb=no", "-rN", "-W", IGNORE_REWRITE, "-p", "conformance.scale.fuzz_round",
           "--conv-results", str(results_dir), "--conv-run-id", run_id, *select, "--conv-profile", "thorough",
           "--conv-max-time", f"{max(seconds_left, 0.1):.1f}"]
    for db in databases:
        cmd += ["--conv-database", db]
    return cmd + list(extra)


def run_fuzz(spec: str, *, seconds: float, results_root: Path, run_id: str, databases: Sequence[str] = (),
             extra: Sequence[str] = (), echo: Callable[[str], Any] = print, grace: float = GRACE,
             poll: float = POLL) -> FuzzResult:
    """Fuzz the backend ``spec`` for ``seconds``: rounds of the suite into ``results_root/run_id/rNNN/``, each new
    failure given to ``echo`` as it is recorded. ``databases``: where failures are saved and replayed from (default
    ``results_root/run_id/examples``); ``extra``: further pytest options (the run options, ``-k``, ``-n``)."""
    name, select = resolve(spec)
    root = results_root / run_id
    databases = list(databases) or [str(root / "examples")]
    res = FuzzResult(name, seconds, results_dir=str(root), database=databases)
    seen: set[tuple[str, ...]] = set()

    def collect(round_dir: Path) -> None:
        if not round_dir.exists():
            return
        for row in records.rows([round_dir]):
            if row.impl == name and row.failing and (key := failure_key(row)) not in seen:
                seen.add(key)
                res.failures.append(row)
                echo(describe(len(res.failures), row))

    deadline = time.monotonic() + seconds
    while res.rounds == 0 or deadline - time.monotonic() > MIN_ROUND:
        res.rounds += 1
        round_dir = root / f"r{res.rounds:03d}"
        round_dir.mkdir(parents=True, exist_ok=True)
        cmd = round_command(select, round_dir, f"{run_id}-r{res.rounds:03d}", deadline - time.monotonic(),
                            databases, extra)
        with open(root / f"r{res.rounds:03d}.log", "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            code = _wait(proc, deadline, grace, poll, partial(collect, round_dir))
        collect(round_dir)
        ran = [r for r in records.rows([round_dir]) if r.impl == name and r.status in ("passed", "failed", "error")]
        res.judged += len(ran)
        echo(f"fuzz round {res.rounds}: pytest exit {code}, {len(ran)} examples judged, "
             f"{len(res.failures)} distinct failure(s) so far, {max(deadline - time.monotonic(), 0):.0f} s left")
        if code in _FATAL:
            tail = (root / f"r{res.rounds:03d}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
            raise ConformanceError(f"fuzz round {res.rounds} ended with pytest's {_FATAL[code]} (exit {code}):\n{tail}")
        if not ran and code not in (-signal.SIGTERM, -signal.SIGKILL, 2):  # ended on its own, having judged nothing
            echo("fuzz: the round judged no example (nothing runnable here, or every check skipped): stopping")
            break
    return res


def _wait(proc: subprocess.Popen[Any], deadline: float, grace: float, poll: float,
          tick: Callable[[], None]) -> int:
    """Wait for ``proc``, calling ``tick`` every ``poll`` seconds; at ``deadline`` SIGTERM, after ``grace`` more
    seconds SIGKILL. Its exit status."""
    terminated_at = None
    while True:
        try:
            return proc.wait(timeout=poll)
        except subprocess.TimeoutExpired:
            pass
        tick()
        now = time.monotonic()
        if terminated_at is None and now >= deadline:
            proc.send_signal(signal.SIGTERM)
            terminated_at = now
        elif terminated_at is not None and now - terminated_at > grace:
            proc.kill()
            return proc.wait()
