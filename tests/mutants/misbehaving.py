"""Backends that misbehave instead of computing a wrong number (issue #4, item 4): they kill their process, hang,
exhaust memory, raise, or return something that is not an answer. The gate runs every backend in a worker process
(``conformance.backends.isolation``), so each of these must become a recorded failure of the check that met it, with a
message saying what happened, while the run itself carries on to its verdict.

Each misbehaves in ``backward``, on the first problem of the gate run with h == 3 (and only there: an
intermittent fault, like a race or a driver hiccup), then computes correctly. The suite runs its long tiers
first (``conformance.pytest_plugin.LONG_CHECKS``); the first, ``scale``, draws problems 1 high, so ``nonfinite``
is the check that meets it. Why only once: Hypothesis replays a failing example over and over
while it shrinks (106 to 177 failing replays per check, measured with a deterministic ``os.abort()`` on h == 3),
so a backend that hangs *deterministically* costs that many timeouts per check, minutes to an hour for the whole
gate, and one that crashes costs that many worker restarts (161 s of CPU for the abort). The one-shot members
test what isolation promises (the crash, hang or error is contained, recorded and named; a hang costs the
timeout) at the cost of one bad call each. The count of bad calls lives in a file in the gate's working directory
(``mutants.run_gate`` gives each run its own, and the backend's worker process inherits it), because the worker that
misbehaved is killed and restarted, and the tests read it back.

Besides ``expected`` (the checks the gate must name), each class has ``message``: a fragment (or a tuple of
alternatives) that the message of at least one ``error``/``failed`` results row must contain; ``gate_args`` are
extra gate options for it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

try:
    from ._base import Conv
except ImportError:  # loaded by file path (the gate's --impl tests/mutants/misbehaving.py:Name): no package
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv


def calls_file(name: str, workdir: Path) -> Path:
    """Where member ``name`` counts its misbehaving calls during the gate run in ``workdir``."""
    return workdir / f"conv-corpus-{name}.calls"


class Intermittent(Conv):
    """Misbehaves (``misbehave``) in backward on the first ``times`` calls of a gate run whose problem has h == 3,
    and computes correctly otherwise."""

    times = 1
    message: str | tuple[str, ...] = ""
    gate_args: tuple[str, ...] = ()

    @staticmethod
    def trigger(problem) -> bool:
        return problem.h == 3

    def _now(self, problem) -> bool:
        if not self.trigger(problem):
            return False
        path = calls_file(self.name, Path.cwd())  # the gate's working directory: this run's own
        if path.exists() and path.stat().st_size >= self.times:
            return False
        with open(path, "a") as f:  # one byte per misbehaving call, written before misbehaving
            f.write("x")
        return True

    def misbehave(self, problem, grads):
        """What the backend does instead of returning ``grads``."""
        raise NotImplementedError

    def backward(self, problem, x, w, dy):
        grads = super().backward(problem, x, w, dy)
        return self.misbehave(problem, grads) if self._now(problem) else grads


class AbortsOnOneProblem(Intermittent):
    """A compiled kernel hitting an assertion: ``os.abort()``, the process dies with SIGABRT."""

    name = "bad-aborts"
    expected = ("nonfinite",)
    message = "crashed: the worker process died with signal SIGABRT"

    def misbehave(self, problem, grads):
        os.abort()


class HangsOnOneProblem(Intermittent):
    """A deadlock: ``time.sleep(1000)``. The gate runs with ``--timeout 5``: the call must cost 5 s, not 1000."""

    name = "bad-hangs"
    expected = ("nonfinite",)
    message = "timed out after 5 s"
    gate_args = ("--timeout", "5")

    def misbehave(self, problem, grads):
        time.sleep(1000)


class AsksForHugeMemory(Intermittent):
    """A workspace size computed from a garbage value: ``np.empty(2**30)``, 8 GiB. The gate runs with
    ``--memory-limit 4`` (GiB), so the worker's memory limit turns it into a ``MemoryError``; without the
    limit the allocation would succeed on most machines (untouched pages cost nothing), so the test shows that the
    limit is in force, not only that the machine is out of memory."""

    name = "bad-huge-memory"
    expected = ("nonfinite",)
    message = "MemoryError"
    gate_args = ("--memory-limit", "4")

    def misbehave(self, problem, grads):
        workspace = np.empty(2**30)  # never touched: without the limit this costs nothing
        del workspace
        return grads


class ReturnsWrongShape(Intermittent):
    """dx without its last column (an input-size formula off by one)."""

    name = "bad-wrong-shape"
    expected = ("nonfinite",)
    message = "has shape"

    def misbehave(self, problem, grads):
        dx, dw, db = grads
        return np.ascontiguousarray(dx[..., :-1]), dw, db


class ReturnsNonArray(Intermittent):
    """dx as nested Python lists (``.tolist()``, from a code path written for a JSON API)."""

    name = "bad-non-array"
    expected = ("nonfinite",)
    # the first is what compare() says; the second what the layout check says of a result that is no array
    message = ("not a numpy.ndarray", "returned a list, not a numpy array")

    def misbehave(self, problem, grads):
        dx, dw, db = grads
        return dx.tolist(), dw, db


class ReturnsNaNEverywhere(Intermittent):
    """dx never written: NaN everywhere (a debug allocator's poison pattern) where a kernel launch silently
    failed."""

    name = "bad-nan-everywhere"
    expected = ("nonfinite",)
    message = "NaN/Inf where the reference is finite"

    def misbehave(self, problem, grads):
        dx, dw, db = grads
        return np.full_like(dx, np.nan), dw, db


class Raises(Intermittent):
    """Raises, the way a library reports a configuration it has no kernel for."""

    name = "bad-raises"
    expected = ("nonfinite",)
    message = "raised RuntimeError: CUDNN_STATUS_NOT_SUPPORTED"

    def misbehave(self, problem, grads):
        raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED: no kernel for this configuration")
