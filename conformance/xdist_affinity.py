"""pytest-xdist scheduling that keeps each implementation's tests on the xdist worker that already runs it.

Every pytest process starts its own worker process for each backend it calls (``isolation.IsolatedBackend``), and
starting one costs what the backend imports: torch ~1 s, ``scipy.signal`` ~0.6 s, ``scipy.fft`` ~0.2 s of CPU.
xdist's ``load`` scheduling hands out tests in collection order, so with ``-n 2`` both xdist workers meet every
backend and pay every start twice (measured: 35.7 s of CPU against 31.5 s in one process, the gap that kept
``-n 2`` at 1.64x). pytest-xdist's ``--dist loadgroup`` pins a group to one worker for good, which loses the
balance at the end of the run (and with pytest 9.2 and xdist 3.8 its ``xdist_group`` marker does not group).

This is xdist's ``LoadScheduling`` (its collection checks, crash handling and shutdown) with two changes:

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
implementations with ``ids=<impl name>`` (the layout test's id is ``<impl>-<layout>``). Where no collected test
belongs to an implementation (another project's tests, with this plugin installed), this is plain load scheduling.
Used for ``-n`` with xdist's default ``--dist load`` (xdist sets the same value for ``-n`` alone and for an explicit
``--dist load``, so both get it; ``--maxschedchunk`` has no effect on it); ``--dist worksteal`` (or any other) keeps
xdist's own. Another project's tests whose parameter ids happen to be implementation names (``test_x[scipy]``)
are scheduled this way too: the same tests, run once each, in another order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from xdist.scheduler.load import LoadScheduling

_LAST_ID = re.compile(r"\[([^\[\]]*)\]$")


def implementation_of(nodeid: str, names: Iterable[str]) -> str | None:
    """The implementation a test belongs to: the longest of ``names`` that its last parameter id is, or starts
    with followed by ``-`` (``test_layout[torch-cpu-strided]`` is torch-cpu's); None for any other test."""
    m = _LAST_ID.search(nodeid)
    if m is None:
        return None
    pid = m.group(1)
    found = [n for n in names if pid == n or pid.startswith(n + "-")]
    return max(found, key=len) if found else None


class BackendAffinityScheduling(LoadScheduling):
    """xdist's load scheduling that sends each worker the pending tests of the backends it already runs."""

    QUEUE = 2  #: tests queued on a worker: the one running and the next (a worker runs a test once it has the next)

    def __init__(self, config: Any, log: Any = None, *, names: Iterable[str] = ()) -> None:
        super().__init__(config, log)
        self.names = tuple(names)
        self._impl: list[str | None] | None = None  #: the implementation of each collected test, by index
        self._affinity = False
        self.owners: dict[str, set[Any]] = {}  #: implementation -> the workers that have been sent its tests

    @property
    def impl(self) -> list[str | None]:
        if self._impl is None:
            if self.collection is None:  # not scheduling yet
                return []
            self._impl = [implementation_of(nodeid, self.names) for nodeid in self.collection]
            self._affinity = any(i is not None for i in self._impl)
        return self._impl

    @property
    def affinity(self) -> bool:
        """Whether any collected test belongs to an implementation (asked on every report: computed once)."""
        return bool(self.impl) and self._affinity

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if not self.affinity:
            return super().check_schedule(node, duration)
        if node.shutting_down:
            return
        if self.pending:
            self._send_tests(node, self.QUEUE - len(self.node2pending[node]))
        else:
            node.shutdown()

    def remove_node(self, node: Any) -> str | None:
        """A worker that crashed or finished owns nothing: its implementations go to the next worker that has none
        of its own (rule 2), as a replacement worker started by ``--max-worker-restart`` would need."""
        for holders in self.owners.values():
            holders.discard(node)
        return super().remove_node(node)

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

    def _send_tests(self, node: Any, num: int) -> None:
        if not self.affinity:
            return super()._send_tests(node, num)
        num = min(num, self.QUEUE - len(self.node2pending[node]))
        chosen: list[int] = []
        while self.pending and len(chosen) < num:
            index = self.pending.pop(self._next_position(node))
            impl = self.impl[index]
            if impl is not None:
                self.owners.setdefault(impl, set()).add(node)
            chosen.append(index)
        if chosen:
            self.node2pending[node].extend(chosen)
            node.send_runtest_some(chosen)
