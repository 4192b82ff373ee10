"""Reproductions reproduce: also a bug of uninitialised memory, which a fresh process hides (the result of the first
call is built in zeroed memory) and the middle of a run shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conformance import ConvProblem, reproduce
from conformance.reference import grad_input

STALE = '''
import numpy as np
from impls.im2col import Im2col
from conformance.reference import grad_input


class StaleScratch(Im2col):
    """Forward and backward share one scratch buffer; grad_input writes only where some tap reads the input and
    leaves the rest as the last call left it (a kernel that never clears its workspace)."""

    name = "stale-scratch"

    def __init__(self):
        self.scratch = np.zeros(1 << 16)

    def forward(self, problem, x, w, b):
        y = super().forward(problem, x, w, b)
        self.scratch[:y.size] = y.ravel()
        return y

    def backward(self, problem, x, w, dy):
        g = super().backward(problem, x, w, dy)
        read = grad_input(problem, np.ones(problem.output_shape), np.ones(problem.weight_shape)) > 0
        view = self.scratch[:g.dx.size].reshape(g.dx.shape)
        view[read] = g.dx[read]
        return g._replace(dx=view.astype(g.dx.dtype))
'''


def test_a_reproduction_shows_a_stale_memory_bug_that_a_fresh_first_call_hides(tmp_path: Path) -> None:
    (tmp_path / "stale.py").write_text(STALE)
    spec = f"{tmp_path / 'stale.py'}:StaleScratch"
    # stride 2 leaves the odd rows and columns unread: their gradient is an exact 0
    problem = ConvProblem(batch=1, c_in=1, c_out=1, h=3, w=3, kh=1, kw=1, stride=2)
    assert (grad_input(problem, np.ones(problem.output_shape), np.ones(problem.weight_shape)) == 0).any()
    text = reproduce(spec, problem, seed=0, data_kind="normal", check="grad_input")
    assert "is not within tolerance" in text and "warm-up" in text, text
    assert reproduce(spec, problem, seed=0, data_kind="normal", check="forward").startswith("forward of 'stale-scratch'"
                                                                                           ": passed")


def test_the_repro_command_exits_1_while_the_failure_reproduces(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "stale.py").write_text(STALE)
    problem = "ConvProblem(batch=1, c_in=1, c_out=1, h=3, w=3, kh=1, kw=1, stride=(2, 2))"
    cmd = [sys.executable, "-m", "conformance", "repro", problem, "--impl", f"{tmp_path / 'stale.py'}:StaleScratch"]
    failing = subprocess.run(cmd + ["--check", "grad_input"], capture_output=True, text=True, timeout=120)
    passing = subprocess.run(cmd + ["--check", "forward"], capture_output=True, text=True, timeout=120)
    assert failing.returncode == 1 and "is not within tolerance" in failing.stdout, failing.stdout + failing.stderr
    assert passing.returncode == 0 and ": passed (" in passing.stdout, passing.stdout + passing.stderr
    bad = subprocess.run([sys.executable, "-m", "conformance", "repro", "ConvProblem(1, 2)", "--impl", "im2col"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a ConvProblem(...) call with keyword arguments" in bad.stderr
