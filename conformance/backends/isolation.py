"""Run a backend in a worker process, so that a crash, a hang or a memory blow-up is a recorded failure.

A real compiled backend can segfault or abort on an unusual shape; a Python exception is the easy case. The
``IsolatedBackend`` proxy has the backend's name and capabilities, and sends each call (the problem and the
arrays) to a worker process that loads the backend from its import path and runs ``runner.invoke`` there (it is the
``runner.Caller`` of an isolated backend, as ``runner.DirectCaller`` is of one called in this process). The
parent waits at most ``timeout`` seconds. A worker that died (a signal, an exit) or timed out is killed and
restarted for the next call, and the call becomes an ``Outcome`` whose error says what happened.

Bounded time: a call that crashed or timed out is remembered (by its method, layout and the bytes of its inputs)
and answered from memory if it comes again (Hypothesis replays a failing example while it shrinks); after a crash or
a timeout the rest of the current check is answered "not called" (``begin_check`` starts the next one afresh), and
after ``DEAD_AFTER`` timeouts in a row with no answer between them the backend is taken for dead for the rest of
the run: a backend that hangs on every call costs a few timeouts, not one per example. The worker runs
under a memory limit (``memory_limit`` bytes), so a backend asking for huge memory gets a ``MemoryError`` instead
of taking the machine down. On Linux that is ``RLIMIT_DATA`` (since Linux 4.7 it counts every private writable
mapping, which is where numpy's and torch's host arrays live), not ``RLIMIT_AS``: CUDA reserves address space of
the size of host plus device memory when it creates a context (inaccessible mappings, which ``RLIMIT_DATA`` does
not count), so under an address-space limit a CUDA backend could not even start. Elsewhere: ``RLIMIT_AS``.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from conformance.backends.backend import prepare
from conformance.backends.runner import Caller, Outcome, invoke

DEFAULT_TIMEOUT = 60.0
DEAD_AFTER = 2  #: timeouts in a row, with no answer between them, after which a backend is not called again
START_TIMEOUT = 180.0
DEFAULT_MEMORY_LIMIT = 16 * 2**30


def _worker_main(conn: Any, spec: str, memory_limit: int | None) -> None:
    """The worker's loop: load the backend, then answer (method, args, repeat) requests until EOF."""
    if memory_limit:
        try:
            import resource

            which = resource.RLIMIT_DATA if sys.platform == "linux" else resource.RLIMIT_AS
            resource.setrlimit(which, (memory_limit, memory_limit))
        except (ImportError, ValueError, OSError):
            pass
    try:
        from conformance.backends.registry import instantiate, load_import_path

        backend = instantiate(load_import_path(spec), spec)
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        conn.send(("load-error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        prepare(backend)
    except BaseException as exc:  # noqa: BLE001
        conn.send(("load-error", f"prepare() raised {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            method, args, repeat, layout = conn.recv()
        except EOFError:
            return
        out = invoke(backend, method, args, repeat, layout)
        try:
            conn.send(("outcome", out))
        except Exception as exc:  # an unpicklable result
            conn.send(("outcome", Outcome(error=f"{method} returned something that cannot be sent back: "
                                                f"{type(exc).__name__}: {exc}", seconds=out.seconds)))


def _digest(method: str, args: tuple[Any, ...], layout: str | None) -> str:
    """What makes two calls the same: the method, the layout, the problem and the bytes of every array."""
    h = hashlib.sha1(f"{method}|{layout}".encode())
    for a in args:
        if isinstance(a, np.ndarray):
            h.update(f"|{a.dtype}{a.shape}|".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(f"|{a!r}".encode())
    return h.hexdigest()


def _death(proc: Any) -> str:
    code = proc.poll()
    if code is None:
        return "the worker process stopped answering"
    if code < 0:
        try:
            return f"the worker process died with signal {signal.Signals(-code).name}"
        except ValueError:
            return f"the worker process died with signal {-code}"
    return f"the worker process exited with code {code}"


class IsolatedBackend(Caller):
    """A stand-in for a backend that forwards every call to a worker process."""

    def __init__(self, backend: Any, spec: str, *, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> None:
        self.name = backend.name
        self.capabilities = backend.capabilities
        self.version = getattr(backend, "version", "")
        self.spec, self.timeout, self.memory_limit = spec, timeout, memory_limit
        self._proc: Any = None
        self._conn: Any = None
        self.restarts = 0
        self._remembered: dict[str, str] = {}  #: a call's digest -> the crash or timeout it caused
        self._tripped = ""                     #: why the rest of this check is not called ("": it is)
        self._timeouts_in_a_row = 0
        self._dead = ""                        #: why the backend is not called again in this run

    def __repr__(self) -> str:
        return f"<isolated {self.name} from {self.spec}>"

    # -- the worker's life ---------------------------------------------------------------------------
    def _start(self) -> str | None:
        # a fresh interpreter (not multiprocessing's spawn, which re-imports the parent's __main__), connected by a
        # socket pair it inherits: private to the two processes, and an end that dies reads as EOF
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        # the suite's problems are tiny: one thread per worker avoids oversubscribing the cores that pytest-xdist
        # workers already share (2 OpenMP threads on a busy 2-core machine made 0.2 ms torch calls take 20-130 ms)
        threads = os.environ.get("CONV_CONFORMANCE_WORKER_THREADS", "1")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
        cmd = [sys.executable, "-m", "conformance.backends.isolation", str(theirs.fileno()), self.spec,
               str(self.memory_limit or 0)]
        try:
            self._proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        if not self._conn.poll(START_TIMEOUT):
            self.close()
            return f"the worker process did not load {self.spec} within {START_TIMEOUT:.0f} s"
        try:
            kind, detail = self._conn.recv()
        except (EOFError, OSError):
            self._proc.wait(5)
            why = _death(self._proc)
            self.close()
            return f"loading {self.spec}: {why}"
        if kind != "ready":
            self.close()
            return f"loading {self.spec} in the worker failed: {detail}"
        return None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- one call ---------------------------------------------------------------------------------------
    def begin_check(self) -> None:
        """A new check starts: a crash or a timeout of the previous one no longer stops its calls."""
        self._tripped = ""

    def call(self, method: str, *args: Any, repeat: int = 1, layout: str | None = "contiguous") -> Outcome:
        key = _digest(method, args, layout)
        if key in self._remembered:
            return Outcome(error=f"{self._remembered[key]} (remembered: the same call was not made again)")
        if self._dead or self._tripped:
            return Outcome(error=f"not called: {self._dead or self._tripped}")
        out = self._call(method, args, repeat, layout)
        if out.error and (" timed out after " in out.error or " crashed: " in out.error):
            self._remembered[key] = out.error
            where = getattr(args[0], "short", lambda: "")() if args else ""
            self._tripped = f"an earlier call of this check failed ({out.error.split(' (')[0]}; {where})"
            self._timeouts_in_a_row = self._timeouts_in_a_row + 1 if " timed out after " in out.error else 0
            if self._timeouts_in_a_row >= DEAD_AFTER:
                self._dead = (f"{self.name} timed out on {self._timeouts_in_a_row} calls in a row, the last "
                              f"{out.error.split(' (')[0]!r}: taken for dead for the rest of the run")
        else:
            self._timeouts_in_a_row = 0
        return out

    def _call(self, method: str, args: tuple[Any, ...], repeat: int, layout: str | None) -> Outcome:
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:
                self.restarts += 1
                self.close()
            failed = self._start()
            if failed:
                return Outcome(error=failed)
        t0 = time.perf_counter()
        try:
            self._conn.send((method, args, repeat, layout))
            if not self._conn.poll(self.timeout * repeat):
                self.close()
                return Outcome(error=f"{method} timed out after {self.timeout * repeat:g} s (the worker was killed "
                                     "and is restarted for the next call)", seconds=time.perf_counter() - t0)
            kind, out = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._proc.wait(5)
            why = _death(self._proc)
            self.close()
            return Outcome(error=f"{method} crashed: {why} (restarted for the next call)",
                           seconds=time.perf_counter() - t0)
        return out

    def forward(self, problem: Any, x: Any, w: Any, b: Any) -> Any:  # pragma: no cover - protocol shape only
        raise RuntimeError("an IsolatedBackend is called through conformance.backends.runner.call")

    backward = forward


if __name__ == "__main__":  # the worker: python -m conformance.backends.isolation FD SPEC MEMORY_LIMIT
    _fd, _spec, _limit = sys.argv[1:4]
    _worker_main(Connection(int(_fd)), _spec, int(_limit))
