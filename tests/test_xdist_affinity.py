"""The pytest-xdist scheduler that keeps an implementation's tests on one worker: driven with stand-in workers
(what xdist's controller calls, in the order it calls it), then once for real with ``-n 2``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("xdist", reason="pytest-xdist is not installed (the test extra)")

from xdist.scheduler.load import LoadScheduling  # noqa: E402

from conformance.xdist_affinity import BackendAffinityScheduling, implementation_of  # noqa: E402

NAMES = ("fft", "naive", "scipy", "torch-cpu", "torch-cuda-strict")
CHECKS = ("scale", "nonfinite", "layout", "forward", "grad_input", "golden")


class Config:
    """What the schedulers read of pytest's config: ``-n <workers>`` and ``--maxschedchunk``."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def getvalue(self, name: str) -> Any:
        assert name == "tx"
        return [f"{self.workers}*popen"]

    def getoption(self, name: str, default: Any = None) -> Any:
        return default


class Worker:
    """A stand-in for xdist's WorkerController: records what it is sent."""

    def __init__(self, name: str) -> None:
        self.name, self.shutting_down, self.received = name, False, []  # type: ignore[var-annotated]
        self.gateway = SimpleNamespace(id=name)

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutting_down, f"{self.name} was sent tests after shutdown"
        self.received.append(list(indices))

    def shutdown(self) -> None:
        self.shutting_down = True

    def __repr__(self) -> str:
        return self.name


def suite_collection() -> list[str]:
    """Node ids as the suite collects them: the long checks first, each over every implementation."""
    return [f"test_{c}.py::test_{c}[{n}-strided]" if c == "layout" else f"test_{c}.py::test_{c}[{n}]"
            for c in CHECKS for n in NAMES]


def started(sched: Any, collection: list[str], workers: list[Worker]) -> Any:
    """What xdist's controller does first: the workers come up, each collects, then the first tests go out."""
    for w in workers:
        sched.add_node(w)
    for w in workers:
        sched.add_node_collection(w, collection)
    sched.schedule()
    return sched


def drive(sched: Any, collection: list[str], workers: list[Worker], cost: Any = lambda nodeid: 1.0) -> list[Any]:
    """Run the schedule to the end as xdist's controller does: the worker whose running test ends first (by
    ``cost``) reports it complete. Returns (worker, nodeid) in the order they ran."""
    return drive_started(started(sched, collection, workers), collection, workers, cost)


def drive_started(sched: Any, collection: list[str], workers: list[Worker],
                  cost: Any = lambda nodeid: 1.0) -> list[Any]:
    """``drive`` from where a schedule stands (after ``started``, or a crash and a replacement worker)."""
    ran, clock = [], {w: 0.0 for w in workers}
    while any(sched.node2pending[w] for w in workers):
        # a worker runs its queue's head only when a next test (or shutdown) is there, as pytest needs nextitem
        ready = [w for w in workers if sched.node2pending[w] and (len(sched.node2pending[w]) > 1 or w.shutting_down)]
        assert ready, "every worker waits for tests that never come"
        w = min(ready, key=lambda w: clock[w])
        index = sched.node2pending[w][0]
        clock[w] += cost(collection[index])
        ran.append((w, collection[index]))
        sched.mark_test_complete(w, index)
        if isinstance(sched, BackendAffinityScheduling) and sched.affinity:
            assert len(sched.node2pending[w]) <= sched.QUEUE
    assert all(w.shutting_down for w in workers), "a worker was never told that no more tests come"
    return ran


def shared_implementations(ran: list[Any]) -> list[str]:
    """The implementations whose tests ran on more than one worker."""
    where: dict[str, set[str]] = {}
    for w, nodeid in ran:
        where.setdefault(implementation_of(nodeid, NAMES) or "", set()).add(w.name)
    return [impl for impl, ws in where.items() if len(ws) > 1]


def test_implementation_of_reads_the_last_parameter_id() -> None:
    assert implementation_of("test_scale.py::test_scale[torch-cpu]", NAMES) == "torch-cpu"
    assert implementation_of("conformance/suite/test_layout.py::test_layout[torch-cpu-strided]", NAMES) == "torch-cpu"
    # the longest name that fits: torch-cuda-strict, not a shorter registered prefix of it
    assert implementation_of("t.py::t[torch-cuda-strict-negative]", NAMES + ("torch-cuda",)) == "torch-cuda-strict"
    assert implementation_of("t.py::t[fftw]", NAMES) is None          # a name only starts it
    assert implementation_of("t.py::test_plain", NAMES) is None
    assert implementation_of("t.py::t[naive]::sub", NAMES) is None     # the id must end the node id


def test_every_test_runs_once_and_each_implementation_stays_on_one_worker_until_the_end() -> None:
    collection = suite_collection()
    workers = [Worker("gw0"), Worker("gw1")]
    ran = drive(BackendAffinityScheduling(Config(2), names=NAMES), collection, workers)
    assert sorted(n for _, n in ran) == sorted(collection)
    # until the pool holds only tests of implementations that a worker already runs, no implementation is
    # started on a second worker: with 5 implementations and 2 workers, at most the last ones are shared
    shared = shared_implementations(ran)
    assert len(shared) <= 2, f"implementations run on both workers: {shared}"
    # xdist's load scheduling spreads more of them over both workers
    plain = drive(LoadScheduling(Config(2)), collection, [Worker("gw0"), Worker("gw1")])  # type: ignore[arg-type]
    assert len(shared_implementations(plain)) > len(shared)


def test_a_worker_starts_an_implementation_nobody_runs_before_sharing_one() -> None:
    """fft's tests come first in the collection; the second worker is sent naive's, not more of fft's."""
    collection = [f"t.py::test_{i}[fft]" for i in range(6)] + [f"t.py::test_{i}[naive]" for i in range(2)]
    gw0, gw1 = Worker("gw0"), Worker("gw1")
    started(BackendAffinityScheduling(Config(2), names=NAMES), collection, [gw0, gw1])
    assert [collection[i] for i in gw0.received[0]] == ["t.py::test_0[fft]", "t.py::test_1[fft]"]
    assert [collection[i] for i in gw1.received[0]] == ["t.py::test_0[naive]", "t.py::test_1[naive]"]


def test_an_idle_worker_takes_the_busy_workers_tests_at_the_end() -> None:
    """One implementation much slower than the rest: its owner keeps only a short queue, so the other worker,
    out of work of its own, takes the slow implementation's remaining tests (balance beats a second start)."""
    collection = suite_collection()
    workers = [Worker("gw0"), Worker("gw1")]
    cost = lambda nodeid: 10.0 if "[scipy" in nodeid else 1.0  # noqa: E731
    ran = drive(BackendAffinityScheduling(Config(2), names=NAMES), collection, workers, cost)
    scipy_on = {w.name for w, n in ran if "[scipy" in n}
    assert scipy_on == {"gw0", "gw1"}
    busy = {w.name: sum(cost(n) for v, n in ran if v is w) for w in workers}
    assert abs(busy["gw0"] - busy["gw1"]) <= 10.0, busy  # within one slow test


def test_without_implementations_it_is_xdists_load_scheduling() -> None:
    """Another project's tests (this plugin is installed, its suite not run): the same sends as xdist's own."""
    collection = [f"test_mod.py::test_{i}" for i in range(40)]
    ours, theirs = [Worker("gw0"), Worker("gw1")], [Worker("gw0"), Worker("gw1")]
    drive(BackendAffinityScheduling(Config(2), names=NAMES), collection, ours)
    drive(LoadScheduling(Config(2)), collection, theirs)  # type: ignore[arg-type]
    assert [w.received for w in ours] == [w.received for w in theirs]


def test_a_crashed_worker_s_queue_goes_back_to_the_pool() -> None:
    collection = suite_collection()
    gw0, gw1 = Worker("gw0"), Worker("gw1")
    sched = started(BackendAffinityScheduling(Config(2), names=NAMES), collection, [gw0, gw1])
    queued = list(sched.node2pending[gw0])
    owned = {impl for impl, holders in sched.owners.items() if gw0 in holders}
    assert owned
    crashed = sched.remove_node(gw0)
    assert crashed == collection[queued[0]]
    assert set(queued[1:]) <= set(sched.pending) | set(sched.node2pending[gw1])
    # what it owned is nobody's now, free for rule 2 (a replacement worker from --max-worker-restart)
    assert not any(gw0 in holders for holders in sched.owners.values())
    gw2 = Worker("gw2")
    sched.add_node(gw2)
    sched.add_node_collection(gw2, collection)
    sched.schedule()
    ran = drive_started(sched, collection, [gw1, gw2])
    assert sorted(n for _, n in ran) == sorted(set(collection) - {crashed})  # none lost, none twice


@pytest.mark.parametrize("dist, scheduler", [(None, "BackendAffinityScheduling"),
                                              ("worksteal", "WorkStealingScheduling")])
def test_pytest_n_2_uses_it_for_xdists_default_distribution(tmp_path: Path, dist: str | None,
                                                            scheduler: str) -> None:
    """``-n 2`` (xdist's default ``--dist load``) schedules with it and every selected test runs once; another
    ``--dist`` keeps xdist's own scheduler."""
    (tmp_path / "x.ini").write_text("[pytest]\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-n", "2",
           "-v", "-k", "(naive or im2col) and (forward or golden or grad_bias)", "--conv-max-examples", "3",
           "--conv-results", str(tmp_path / "results"), "--rootdir", str(tmp_path), "-c", str(tmp_path / "x.ini")]
    out = subprocess.run(cmd + (["--dist", dist] if dist else []), capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"scheduling tests via {scheduler}" in out.stdout
    passed = sorted(ln.split()[-1] for ln in out.stdout.splitlines() if " PASSED " in ln)
    assert len(passed) == 6 and len(set(passed)) == 6, out.stdout[-3000:]
