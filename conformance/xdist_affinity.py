"""pytest-xdist scheduling that keeps each implementation's tests on the xdist worker that already runs it.

Every pytest process starts its own worker process for each backend it calls (``isolation.IsolatedBackend``), and
starting one costs what the backend imports: torch ~1 s, ``scipy.signal`` ~0.6 s, ``scipy.fft`` ~0.2 s of CPU.
xdist's ``load`` scheduling hands out tests in collection order, so with ``-n 2`` both xdist workers meet every
backend and pay every start twice (measured: 35.7 s of CPU against 31.5 s in one process, the gap that kept
``-n 2`` at 1.64x). pytest-xdist's ``--dist loadgroup`` pins a group to one worker for good, which loses the
balance at the end of the run (and with pytest 9.2 and xdist 3.8 its ``xdist_group`` marker does not group).

``BackendAffinityScheduling`` is a scheduler of its own, written against xdist's public extension point: the
``xdist.scheduler.Scheduling`` protocol (what xdist's controller calls on a scheduler), the ``WorkerController``
calls every built-in scheduler makes (``send_runtest_some``, ``shutdown``, ``shutting_down``), and the
``pytest_xdist_make_scheduler`` hook that installs it (``pytest_plugin``). It does what xdist's load scheduling does
(one collection, checked to be the same on every worker; a crashed worker's queue back in the pool; shutdown when
nothing is left) with two differences:

- *which* pending tests a worker is sent, in collection order (the long tiers first):

  1. tests of the implementations it has already been sent, and tests that belong to no implementation;
  2. when none are left: the tests of an implementation that no worker has been sent yet (it then owns it);
  3. when none are left either: anyone's (the end of the run, where balance is worth a second start);

- *how many*: a worker's queue is topped up to ``QUEUE`` = 2 tests (the one running and the next: an xdist worker
  starts a test once it holds the next), not to a quarter of what is left, so that the tests of a busy worker's
  implementations stay in the common pool, where rule 3 gives them to an idle worker (load scheduling's chunks
  queued all of scipy's tests behind its 6 s scale test: 1.6 s of imbalance at the end). A test's report and the
  next test cross in one controller round trip, well under a millisecond.

The implementation of a test is read from its node id: the suite parametrizes every test over the registered
implementations with ``ids=<impl name>`` (the layout test's id is ``<impl>-<layout>``).

It is used only where ``runs_the_suite`` says that the run is this suite's (its arguments name
``conformance.suite``), for ``-n`` with xdist's default ``--dist load`` (xdist sets the same value for ``-n`` alone
and for an explicit ``--dist load``, so both get it; ``--maxschedchunk`` has no effect on it); ``--dist worksteal``
(or any other) keeps xdist's own. Any other run, such as another project's ``pytest -n 2`` where this plugin is
installed, gets xdist's own scheduler, and the plugin's hook builds no registry for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

_LAST_ID = re.compile(r"\[([^\[\]]*)\]$")

SUITE_PACKAGE = f"{__package__}.suite"  #: the suite's import name, as ``--pyargs`` takes it
SUITE_DIR = Path(__file__).resolve().parent / "suite"  #: the suite's directory, as a path argument names it


def runs_the_suite(config: pytest.Config) -> bool:
    """Whether this run is the conformance suite's: one of its arguments (``config.args``: the command line's, or
    ``testpaths`` where it gives none) names the suite or something in it:

    - with ``--pyargs``, the suite's import name or a module under it: ``conformance.suite``,
      ``conformance.suite.test_forward`` (what ``python -m conformance run`` / ``gate`` and the README pass);
    - a path, relative to the invocation directory or absolute, to the suite's directory (``SUITE_DIR``, the
      ``suite`` directory of the ``conformance`` package this plugin is loaded from) or to anything inside it:
      ``conformance/suite``, ``.../conformance/suite/test_forward.py::test_forward[naive]``.

    A directory above the suite does not count (``pytest .`` in a project whose virtual environment holds this
    package collects none of it; ``--pyargs conformance`` is not the suite's documented spelling), nor does a copy
    of the suite elsewhere than the loaded package. Read from the configuration alone, before any collection and
    without the backend registry: it decides in xdist's controller, which collects nothing."""
    pyargs = bool(config.getoption("pyargs", False))
    suite_dir = SUITE_DIR
    for arg in config.args:
        target = str(arg).split("::", 1)[0]
        if pyargs and (target == SUITE_PACKAGE or target.startswith(SUITE_PACKAGE + ".")):
            return True
        try:
            path = (Path(config.invocation_params.dir) / target).resolve()
        except (OSError, RuntimeError, ValueError):  # not a path this system can resolve
            continue
        if path == suite_dir or suite_dir in path.parents:
            return True
    return False


def implementation_of(nodeid: str, names: Iterable[str]) -> str | None:
    """The implementation a test belongs to: the longest of ``names`` that its last parameter id is, or starts
    with followed by ``-`` (``test_layout[torch-cpu-strided]`` is torch-cpu's); None for any other test."""
    m = _LAST_ID.search(nodeid)
    if m is None:
        return None
    pid = m.group(1)
    found = [n for n in names if pid == n or pid.startswith(n + "-")]
    return max(found, key=len) if found else None


def _collection_diff(first: Sequence[str], other: Sequence[str], first_id: str, other_id: str) -> str:
    """What differs between two workers' collections, in the words of xdist's own message."""
    from difflib import unified_diff

    diff = "\n".join(line.rstrip() for line in unified_diff(list(first), list(other), fromfile=first_id,
                                                              tofile=other_id))
    return (f"Different tests were collected between {first_id} and {other_id}. The difference is:\n{diff}\n"
            "To see why this happens see 'Known limitations' in documentation for pytest-xdist")


class BackendAffinityScheduling:
    """An xdist scheduler (``xdist.scheduler.Scheduling``) that sends each worker the pending tests of the backends
    it already runs (rules 1-3 of the module docstring), two at a time.

    xdist's controller calls, in this order: ``add_node`` as each worker comes up, ``add_node_collection`` with its
    collected node ids, ``schedule`` once ``collection_is_completed``, then ``mark_test_complete`` for each report,
    ``remove_node`` for a worker that finished or crashed (``add_node`` again for a replacement, and ``schedule``),
    ``mark_test_pending`` for a crashed test a plugin reschedules; it ends the run once ``tests_finished``."""

    QUEUE = 2  #: tests queued on a worker: the one running and the next (a worker runs a test once it has the next)

    def __init__(self, config: Any, log: Any = None, *, names: Iterable[str] = ()) -> None:
        from xdist.workermanage import parse_tx_spec_config  # the workers xdist starts: -n, --tx 2*popen, ...

        self.config = config
        self.log = log if log is not None else (lambda *args, **kwargs: None)
        self.numnodes = len(parse_tx_spec_config(config))
        self.names = tuple(names)
        self.node2collection: dict[Any, list[str]] = {}  #: worker -> the node ids it collected
        self.queues: dict[Any, list[int]] = {}  #: worker -> the tests sent to it and not reported (its head runs)
        self.pending: list[int] = []  #: the tests sent to no worker, by index into ``collection``
        self.collection: list[str] | None = None  #: the collection, once every worker's is in and they agree
        self.impl: list[str | None] = []  #: the implementation of each collected test, by index
        self.owners: dict[str, set[Any]] = {}  #: implementation -> the workers that have been sent its tests

    # -- the Scheduling protocol: state ------------------------------------------------------------------------

    @property
    def nodes(self) -> list[Any]:
        return list(self.queues)

    @property
    def collection_is_completed(self) -> bool:
        """Whether every worker xdist starts at the beginning has sent its collection."""
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        """Whether nothing is left to send and each worker holds at most the test it runs last (it has been told to
        shut down, which is its next item)."""
        return self.collection_is_completed and not self.pending and all(len(q) < 2 for q in self.queues.values())

    @property
    def has_pending(self) -> bool:
        return bool(self.pending) or any(self.queues.values())

    # -- the Scheduling protocol: events ------------------------------------------------------------------------

    def add_node(self, node: Any) -> None:
        assert node not in self.queues
        self.queues[node] = []

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        assert node in self.queues
        if self.collection_is_completed:  # a worker started later (a crashed one's replacement)
            assert self.collection is not None
            if list(collection) != self.collection:
                first = next(iter(self.node2collection))
                self.log(_collection_diff(self.collection, collection, first.gateway.id, node.gateway.id))
                return
        self.node2collection[node] = list(collection)

    def schedule(self) -> None:
        """The first tests to every worker: a full queue each, one worker after the other (each then starts an
        implementation nobody else runs, rule 2), or, where the collection cannot fill them all, one test at a time
        round the workers, so that every worker has work; called again after a replacement worker came up, it
        tops up every worker."""
        assert self.collection_is_completed
        if self.collection is not None:
            for node in self.nodes:
                self._top_up(node)
            return
        if not self._same_collections():
            self.log("**Different tests were collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        self.pending = list(range(len(self.collection)))
        self.impl = [implementation_of(nodeid, self.names) for nodeid in self.collection]
        if not self.collection:
            return  # nothing to run: tests_finished ends the run
        if len(self.pending) >= self.QUEUE * len(self.nodes):
            for node in self.nodes:
                self._send(node, self.QUEUE)
        else:
            for _ in range(self.QUEUE):
                for node in self.nodes:
                    self._send(node, 1)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()

    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        self.queues[node].remove(item_index)
        self._top_up(node)

    def mark_test_pending(self, item: str) -> None:
        """A test to run again (``pytest_handlecrashitem``): it goes first."""
        assert self.collection is not None
        self.pending.insert(0, self.collection.index(item))
        for node in self.nodes:
            self._top_up(node)

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError  # work stealing only (``--dist worksteal``), which keeps xdist's scheduler

    def remove_node(self, node: Any) -> str | None:
        """A worker that finished or crashed. It owns nothing any more: its implementations go to the next worker
        that has none of its own (rule 2), as a replacement started by ``--max-worker-restart`` would need. Returns
        the test it was running when it crashed (None when it held none), and puts the rest of its queue back first
        in the pool."""
        queue = self.queues.pop(node)
        for holders in self.owners.values():
            holders.discard(node)
        if not queue:
            return None
        assert self.collection is not None
        crashed = self.collection[queue.pop(0)]
        self.pending[:0] = queue
        for other in self.nodes:
            self._top_up(other)
        return crashed

    # -- choosing ------------------------------------------------------------------------------------------------

    def _top_up(self, node: Any) -> None:
        """Fill ``node``'s queue to ``QUEUE`` tests, or tell it to shut down when nothing is left to send."""
        if node.shutting_down:
            return
        if self.pending:
            self._send(node, self.QUEUE - len(self.queues[node]))
        else:
            node.shutdown()

    def _next_position(self, node: Any) -> int:
        """Position in ``self.pending`` of the next test for ``node`` (rules 1-3 of the module docstring)."""
        unowned = None
        for pos, index in enumerate(self.pending):
            impl = self.impl[index]
            if impl is None or node in self.owners.get(impl, ()):
                return pos
            if unowned is None and not self.owners.get(impl):
                unowned = pos
        return unowned if unowned is not None else 0

    def _send(self, node: Any, num: int) -> None:
        chosen: list[int] = []
        while self.pending and len(chosen) < num:
            index = self.pending.pop(self._next_position(node))
            impl = self.impl[index]
            if impl is not None:
                self.owners.setdefault(impl, set()).add(node)
            chosen.append(index)
        if chosen:
            self.queues[node].extend(chosen)
            node.send_runtest_some(chosen)

    def _same_collections(self) -> bool:
        """Whether every worker collected the same tests; where not, each difference is reported as a collection
        error (as xdist's schedulers do), and nothing runs."""
        (first, collection), *others = self.node2collection.items()
        same = True
        for node, other in others:
            if other != collection:
                same = False
                msg = _collection_diff(collection, other, first.gateway.id, node.gateway.id)
                self.log(msg)
                self.config.hook.pytest_collectreport(
                    report=pytest.CollectReport(nodeid=node.gateway.id, outcome="failed", longrepr=msg, result=[]))
        return same
