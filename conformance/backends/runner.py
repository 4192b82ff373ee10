"""Call a backend so that whatever it does becomes an ``Outcome``, never an exception in the suite.

``invoke`` runs the call here and watches the contract around it: exceptions (with their traceback), wall time
(after the backend's optional ``warm_up(method, args)``, untimed: a compiler's compilation for these shapes),
inputs the backend modified, the memory layout of what it returned, and, with ``repeat=2``, a second call with
the very same objects. ``conformance.backends.isolation`` runs ``invoke`` inside a worker process, which adds timeouts,
crashes (a segfault, ``os.abort()``) and a memory budget on top.

The checks call a backend through a ``Caller``: ``DirectCaller`` (the backend in this process: ``invoke`` here) or
``conformance.backends.isolation.IsolatedBackend`` (its worker process). ``call`` takes either, or a plain backend,
which it
calls directly.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.model.layouts import arrange, describe


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None        #: one line: "forward raised ValueError: ..."
    traceback: str | None = None
    seconds: float = 0.0
    repeats: list[Any] = field(default_factory=list)   #: the values of calls after the first (repeat > 1)
    mutated: list[str] = field(default_factory=list)   #: names of the inputs the backend modified
    aliased: list[str] = field(default_factory=list)   #: results that share memory with an input or another call
    layouts: list[str] = field(default_factory=list)   #: memory layout of each returned array

    @property
    def ok(self) -> bool:
        return self.error is None


ARG_NAMES = {"forward": ("problem", "x", "w", "b"), "backward": ("problem", "x", "w", "dy")}


def _arrays(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _aliased(values: list[Any], args: tuple[Any, ...]) -> list[str]:
    """Results that share memory with an input, or with the result of another call: the caller owns what it gets
    back, so a reused workspace is overwritten under it by the next call."""
    first = [a for a in _arrays(values[0]) if isinstance(a, np.ndarray)]
    others = [a for v in values[1:] for a in _arrays(v) if isinstance(a, np.ndarray)]
    inputs = [a for a in args if isinstance(a, np.ndarray)]
    bad = []
    for i, a in enumerate(first):
        if any(np.shares_memory(a, b) for b in inputs):
            bad.append(f"result {i} shares memory with an input")
        elif any(np.shares_memory(a, b) for b in others):
            bad.append(f"result {i} is the same buffer on every call")
    return bad


def invoke(backend: Any, method: str, args: tuple[Any, ...], repeat: int = 1,
           layout: str | None = "contiguous") -> Outcome:
    """Call ``backend.method(*args)`` on fresh copies of the arrays in ``layout`` (``conformance.model.layouts``), made
    here, where the backend runs (a layout does not survive pickling); ``None`` passes the arrays themselves."""
    fn = getattr(backend, method, None)
    if fn is None:
        return Outcome(error=f"backend {getattr(backend, 'name', backend)!r} has no method {method}()")
    if layout is not None:
        args = arrange(method, args, layout)
    names = ARG_NAMES.get(method, tuple(f"arg{i}" for i in range(len(args))))
    before = [(n, a.copy()) for n, a in zip(names, args) if isinstance(a, np.ndarray)]
    values = []
    warm_up = getattr(backend, "warm_up", None)
    t0 = time.perf_counter()
    try:
        if callable(warm_up):  # untimed: a compiling backend compiles for these shapes here (torch.compile)
            warm_up(method, args)
            t0 = time.perf_counter()
        for _ in range(repeat):
            values.append(fn(*args))
    except Exception as exc:  # the backend's failure is a result, not our crash
        return Outcome(error=f"{method} raised {type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                       seconds=time.perf_counter() - t0)
    seconds = (time.perf_counter() - t0) / repeat
    current = dict(zip(names, args))
    mutated = [n for n, a in before if not _same(a, current[n])]
    layouts = [describe(a) for a in _arrays(values[0]) if a is not None]
    return Outcome(value=values[0], seconds=seconds, repeats=values[1:], mutated=mutated, layouts=layouts,
                   aliased=_aliased(values, args))


class Caller(ABC):
    """What the checks call a backend through: the backend's ``name`` and ``capabilities``, and ``call``, which runs
    one of its methods (``invoke``'s contract) wherever this caller runs the backend."""

    name: str
    capabilities: Any  #: the backend's ``conformance.Capabilities``

    @abstractmethod
    def call(self, method: str, *args: Any, repeat: int = 1, layout: str | None = "contiguous") -> Outcome:
        """``backend.method(*args)`` as an ``Outcome`` (see ``invoke``)."""

    def begin_check(self) -> None:
        """A new check starts (``IsolatedBackend`` calls again after a crash or a timeout stopped the last check's
        calls); nothing to do for a caller that never stops calling."""
        return None


class DirectCaller(Caller):
    """Calls a backend in this process (``--conv-no-isolate``): ``invoke`` here, no timeout, no crash containment."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name, self.capabilities = backend.name, backend.capabilities

    def __repr__(self) -> str:
        return f"<direct {self.name}>"

    def call(self, method: str, *args: Any, repeat: int = 1, layout: str | None = "contiguous") -> Outcome:
        return invoke(self.backend, method, args, repeat, layout)


def call(backend: Any, method: str, *args: Any, repeat: int = 1, layout: str | None = "contiguous") -> Outcome:
    """Run ``backend.method(*args)`` through ``backend`` if it is a ``Caller``; a plain backend is called here."""
    if isinstance(backend, Caller):
        return backend.call(method, *args, repeat=repeat, layout=layout)
    return invoke(backend, method, args, repeat, layout)
