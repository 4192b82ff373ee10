"""Backends that misbehave on every call: they hang, or abort their process. Unlike ``misbehaving`` (one bad call
each, to test that isolation contains it), these test that the gate's time stays bounded whatever a backend does:
a crash or timeout is remembered and not replayed while Hypothesis shrinks, the rest of a check is answered "not
called" after one, and a backend that times out twice in a row is taken for dead (``conformance.backends.isolation``).
They are gated by ``tests/test_bounded_time.py`` at the default timeout, not by the corpus tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

try:
    from ._base import Conv
except ImportError:  # loaded by file path (the gate's --impl): no package
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mutants._base import Conv


class HangsOnEveryCall(Conv):
    """A deadlock on every call: ``time.sleep(1000)``."""

    name = "bad-hangs-always"

    def forward(self, problem, x, w, b):
        time.sleep(1000)

    backward = forward  # type: ignore[assignment]


class AbortsOnEveryCall(Conv):
    """An assertion in a compiled kernel on every call: ``os.abort()``."""

    name = "bad-aborts-always"

    def forward(self, problem, x, w, b):
        os.abort()

    backward = forward  # type: ignore[assignment]
