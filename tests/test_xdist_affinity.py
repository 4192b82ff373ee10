"""The pytest-xdist scheduler that keeps an implementation's tests on one worker: driven with stand-in workers
(what xdist's controller calls, in the order it calls it), then once for real with ``-n 2``; and the decision that
gives it only to runs of this suite (another project's ``-n 2`` keeps xdist's own scheduler)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("xdist", reason="pytest-xdist is not installed (the test extra)")

from xdist.scheduler.load import LoadScheduling  # noqa: E402

from conformance import pytest_plugin  # noqa: E402
from conformance.xdist_affinity import (  # noqa: E402
    SUITE_DIR,
    BackendAffinityScheduling,
    implementation_of,
    runs_the_suite,
)

NAMES = ("fft", "naive", "scipy", "torch-cpu", "torch-cuda-strict")
CHECKS = ("scale", "nonfinite", "layout", "forward", "grad_input", "golden")


class Config:
    """What the schedulers read of pytest's config: ``-n <workers>`` and ``--maxschedchunk``; and the collection
    errors they report."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.reports: list[Any] = []
        self.hook = SimpleNamespace(pytest_collectreport=lambda report: self.reports.append(report))

    def getvalue(self, name: str) -> Any:
        assert name == "tx"
        return [f"{self.workers}*popen"]

    def getoption(self, name: str, default: Any = None) -> Any:
        return default


class Worker:
    """A stand-in for xdist's WorkerController: records what it is sent, and holds its queue (the tests it was sent
    and has not reported; it runs the head)."""

    def __init__(self, name: str) -> None:
        self.name, self.shutting_down, self.received = name, False, []  # type: ignore[var-annotated]
        self.queue: list[int] = []
        self.gateway = SimpleNamespace(id=name)

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutting_down, f"{self.name} was sent tests after shutdown"
        self.received.append(list(indices))
        self.queue.extend(indices)

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
    while any(w.queue for w in workers):
        # a worker runs its queue's head only when a next test (or shutdown) is there, as pytest needs nextitem
        ready = [w for w in workers if w.queue and (len(w.queue) > 1 or w.shutting_down)]
        assert ready, "every worker waits for tests that never come"
        w = min(ready, key=lambda w: clock[w])
        index = w.queue.pop(0)
        clock[w] += cost(collection[index])
        ran.append((w, collection[index]))
        sched.mark_test_complete(w, index)
        if isinstance(sched, BackendAffinityScheduling):
            assert len(w.queue) <= sched.QUEUE
    assert all(w.shutting_down for w in workers), "a worker was never told that no more tests come"
    assert sched.tests_finished and not sched.has_pending
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


def test_tests_of_no_implementation_run_in_collection_order() -> None:
    """A test that belongs to no implementation is anyone's next test (rule 1): every test once, each worker's in
    collection order; and a collection smaller than the queues still starts every worker."""
    collection = [f"test_mod.py::test_{i}" for i in range(9)]
    workers = [Worker("gw0"), Worker("gw1")]
    ran = drive(BackendAffinityScheduling(Config(2), names=NAMES), collection, workers)
    assert sorted(n for _, n in ran) == sorted(collection)
    for w in workers:
        sent = [i for chunk in w.received for i in chunk]
        assert sent == sorted(sent) and sent
    two = [Worker("gw0"), Worker("gw1")]
    drive(BackendAffinityScheduling(Config(2), names=NAMES), collection[:2], two)
    assert [w.received for w in two] == [[[0]], [[1]]]


def test_workers_that_collected_different_tests_get_none() -> None:
    """As xdist's own schedulers: the difference is a collection error, and nothing is sent."""
    config, gw0, gw1 = Config(2), Worker("gw0"), Worker("gw1")
    sched = BackendAffinityScheduling(config, names=NAMES)
    for w in (gw0, gw1):
        sched.add_node(w)
    sched.add_node_collection(gw0, ["t.py::t[naive]", "t.py::t[scipy]"])
    sched.add_node_collection(gw1, ["t.py::t[naive]"])
    sched.schedule()
    assert not gw0.received and not gw1.received and sched.tests_finished
    assert [r.nodeid for r in config.reports] == ["gw1"] and "t.py::t[scipy]" in str(config.reports[0].longrepr)


def test_a_crashed_worker_s_queue_goes_back_to_the_pool() -> None:
    collection = suite_collection()
    gw0, gw1 = Worker("gw0"), Worker("gw1")
    sched = started(BackendAffinityScheduling(Config(2), names=NAMES), collection, [gw0, gw1])
    queued = list(gw0.queue)
    owned = {impl for impl, holders in sched.owners.items() if gw0 in holders}
    assert owned
    crashed = sched.remove_node(gw0)
    assert crashed == collection[queued[0]]
    assert set(queued[1:]) <= set(sched.pending) | set(gw1.queue)
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
           "--conv-ranks", "2", "--conv-ops", "conv", "--conv-results", str(tmp_path / "results"),
           "--rootdir", str(tmp_path), "-c", str(tmp_path / "x.ini")]
    out = subprocess.run(cmd + (["--dist", dist] if dist else []), capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"scheduling tests via {scheduler}" in out.stdout
    passed = sorted(ln.split()[-1] for ln in out.stdout.splitlines() if " PASSED " in ln)
    assert len(passed) == 6 and len(set(passed)) == 6, out.stdout[-3000:]


@pytest.mark.parametrize("args, expected", [
    (["--pyargs", "conformance.suite"], True),  # python -m conformance run / gate, the README
    (["--pyargs", "conformance.suite.test_forward"], True),
    (["--pyargs", "conformance.suite.test_forward::test_forward"], True),
    ([str(SUITE_DIR)], True),
    ([str(SUITE_DIR / "test_forward.py") + "::test_forward[naive]"], True),
    (["{relative}"], True),  # conformance/suite from where it lies, however the invocation directory reaches it
    (["tests", "--pyargs", "conformance.suite"], True),  # one argument naming it is enough
    ([], False),  # the invocation directory (another project's, or this repository's tests/)
    (["tests"], False),
    ([str(SUITE_DIR.parent)], False),  # a directory above the suite
    ([str(SUITE_DIR.parent / "suite_support.py")], False),  # a sibling whose name starts as the suite's
    (["conformance.suite"], False),  # an import name without --pyargs is a path, and there is none here
    (["--pyargs", "conformance"], False),
    (["--pyargs", "conformance.suitex"], False),
])
def test_runs_the_suite_reads_the_run_s_arguments(pytester: pytest.Pytester, args: list[str], expected: bool) -> None:
    args = [os.path.relpath(SUITE_DIR, pytester.path) if a == "{relative}" else a for a in args]
    assert runs_the_suite(pytester.parseconfig(*args)) is expected


def test_the_hook_gives_it_to_the_suite_only(pytester: pytest.Pytester) -> None:
    """``--dist load`` (what ``-n`` sets) over the suite: this scheduler, with the registry's names; over anything
    else, or with another ``--dist``: None, and the registry is not built."""
    suite = pytester.parseconfig("--dist", "load", "--tx", "2*popen", "--pyargs", "conformance.suite")
    sched = pytest_plugin.pytest_xdist_make_scheduler(suite, None)
    assert isinstance(sched, BackendAffinityScheduling) and sched.numnodes == 2 and "naive" in sched.names
    for args in (("--dist", "load", "--tx", "2*popen"), ("--dist", "worksteal", "--tx", "2*popen", "--pyargs",
                                                         "conformance.suite")):
        other = pytester.parseconfig(*args)
        assert pytest_plugin.pytest_xdist_make_scheduler(other, None) is None
        assert pytest_plugin.REGISTRY_KEY not in other.stash


OTHER_CONFTEST = '''
import json, os
import pytest
from conformance import pytest_plugin

@pytest.hookimpl(wrapper=True)
def pytest_xdist_make_scheduler(config, log):
    built_before = pytest_plugin.REGISTRY_KEY in config.stash
    sched = yield
    with open(os.environ["SCHEDULER_RECORD"], "w") as f:
        json.dump({"scheduler": type(sched).__module__ + "." + type(sched).__name__,
                   "plugin": config.pluginmanager.is_registered(pytest_plugin),
                   "registry_built": [built_before, pytest_plugin.REGISTRY_KEY in config.stash]}, f)
    return sched
'''


def test_another_project_s_pytest_n_2_keeps_xdists_scheduler(tmp_path: Path) -> None:
    """Another project's ``pytest -n 2``, in an environment where this plugin is installed (its ``pytest11`` entry
    point, or ``-p`` where the package is not installed): xdist's own load scheduling, even for parameter ids that
    are implementation names, and the controller builds no backend registry (``--no-header``: the plugin's report
    header lists the registry's names, which builds it)."""
    (tmp_path / "conftest.py").write_text(OTHER_CONFTEST, encoding="utf-8")
    (tmp_path / "test_other.py").write_text(textwrap.dedent('''
        import pytest

        def test_plain():
            pass

        @pytest.mark.parametrize("x", [1, 2, 3], ids=["naive", "scipy", "other"])
        def test_ids(x):
            pass
    '''), encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    installed = any(e.value == "conformance.pytest_plugin" for e in entry_points(group="pytest11"))
    record = tmp_path / "scheduler.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-v", "--no-header"]
    out = subprocess.run(cmd + ([] if installed else ["-p", "conformance.pytest_plugin"]), capture_output=True,
                         text=True, cwd=tmp_path, timeout=300, env={**os.environ, "SCHEDULER_RECORD": str(record)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "scheduling tests via LoadScheduling" in out.stdout
    assert json.loads(record.read_text(encoding="utf-8")) == {
        "scheduler": "xdist.scheduler.load.LoadScheduling", "plugin": True, "registry_built": [False, False]}
    assert out.stdout.count(" PASSED ") == 4, out.stdout[-3000:]
