"""Call a backend so that whatever it does becomes an ``Outcome``, never an exception in the suite.

In-process here: exceptions (with their traceback) and the wall time are captured. The gate's isolated
worker process (timeouts, crashes) builds on the same ``Outcome``.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    value: Any = None
    error: str | None = None        #: one line: "forward raised ValueError: ..."
    traceback: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def call(backend: Any, method: str, *args: Any) -> Outcome:
    fn = getattr(backend, method, None)
    if fn is None:
        return Outcome(error=f"backend {getattr(backend, 'name', backend)!r} has no method {method}()")
    t0 = time.perf_counter()
    try:
        value = fn(*args)
    except Exception as exc:  # the backend's failure is a result, not our crash
        return Outcome(error=f"{method} raised {type(exc).__name__}: {exc}", traceback=traceback.format_exc(),
                       seconds=time.perf_counter() - t0)
    return Outcome(value=value, seconds=time.perf_counter() - t0)
