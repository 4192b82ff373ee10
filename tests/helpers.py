"""The project's own tests' subprocess runs of the conformance suite, and their environment.

A child run is a session of its own: it starts in a fresh interpreter, in a directory of the caller's (a temporary
one, so that pytest does not load this repository's ``tests/conftest.py``), with this session's pytest variables
and run id left out of its environment (``child_env``). The gate's runs are ``mutants.gate`` (tests/mutants), which
uses the same environment and the same switch for shrinking.

Shrinking: a run without Hypothesis's shrink phase (``tests/mutants/_no_shrink.py``) checks the same examples and
reports the first failing one instead of a minimal one, at a fraction of the cost. The gate runs of the corpus go
without it where ``CONV_MUTANTS_NO_SHRINK`` is set (``shrink_from_env``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MUTANTS = Path(__file__).resolve().parent / "mutants"

#: a few examples per check: the recorded runs of the report tests and the like
QUICK = ("-q", "--conv-profile", "quick", "--conv-max-examples", "4")


def child_env() -> dict[str, str]:
    """This process' environment without this pytest session's variables (``PYTEST_*``, pytest-xdist's among them)
    and the conformance run id, which a child run would otherwise take for its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CONV_CONFORMANCE_RUN_ID"))}


def shrink_from_env() -> bool:
    """False where ``CONV_MUTANTS_NO_SHRINK`` is set (to anything but 0): corpus runs without Hypothesis's shrinking."""
    return os.environ.get("CONV_MUTANTS_NO_SHRINK", "") in ("", "0")


def no_shrink(env: dict[str, str]) -> list[str]:
    """The pytest arguments that load ``tests/mutants/_no_shrink.py`` (the loaded profile without the shrink phase),
    whose folder this puts on ``env``'s ``PYTHONPATH``."""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(MUTANTS), env.get("PYTHONPATH", "")) if p)
    return ["-p", "_no_shrink"]


#: the operations a child run checks unless its arguments name them: conv2d, which these tests are about; the ranks
#: and transposed convolution are tested where the arguments name them (``--conv-ranks``, ``--conv-ops``:
#: tests/test_ranks.py, tests/test_transposed.py)
DEFAULT_RANKS = ("--conv-ranks", "2")
DEFAULT_OPS = ("--conv-ops", "conv")


def suite_command(results: Path, *args: str) -> list[str]:
    """``pytest --pyargs conformance.suite`` recording its rows under ``results``, then ``args`` (conv2d only, unless
    they name ``--conv-ranks``)."""
    ranks = () if any(a.startswith("--conv-ranks") for a in args) else DEFAULT_RANKS
    ops = () if any(a.startswith("--conv-ops") for a in args) else DEFAULT_OPS
    return [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider",
            "--conv-results", str(results), *ranks, *ops, *args]


def run_suite(cwd: Path, results: Path, *args: str, timeout: float = 600,
              shrink: bool = True) -> subprocess.CompletedProcess:
    """The conformance suite in a fresh interpreter in ``cwd``, its rows under ``results`` (``QUICK`` among ``args``
    for a quick run); ``shrink=False``: without Hypothesis's shrink phase."""
    env = child_env()
    cmd = suite_command(results, *args) + ([] if shrink else no_shrink(env))
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def small_int_operands(p: Any, seed: int) -> tuple[Any, Any, Any, Any]:
    """x, w, b (None without a bias) and dy of problem ``p`` as float64 arrays of integers in [-4, 4]: every sum of
    the oracle's is exact, so an oracle of Python ints must match it bit for bit (tests/test_reference_nd.py,
    tests/test_transposed.py)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    draw = lambda shape: rng.integers(-4, 5, shape).astype(np.float64)  # noqa: E731
    return draw(p.input_shape), draw(p.weight_shape), draw(p.bias_shape) if p.bias else None, draw(p.output_shape)
