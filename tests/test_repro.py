"""Reproductions reproduce: also a bug of uninitialised memory, which a fresh process hides (the result of the first
call is built in zeroed memory) and the middle of a run shows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conformance import ConvProblem, reproduce
from conformance.errors import ConformanceError
from conformance.numerics.reference import grad_input
from conformance.results.repro import snippet

STALE = '''
import numpy as np
from conformance.impls.im2col import Im2col
from conformance.numerics.reference import grad_input


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
    impl = ["--impl", f"{tmp_path / 'stale.py'}:StaleScratch"]
    # the descriptor, and the constructor call that older reproductions print
    failing = subprocess.run([sys.executable, "-m", "conformance", "repro", "mb1ic1oc1ih3iw3kh1kw1sh2sw2_float64",
                              *impl, "--check", "grad_input"], capture_output=True, text=True, timeout=120)
    old = "ConvProblem(batch=1, c_in=1, c_out=1, h=3, w=3, kh=1, kw=1, stride=(2, 2))"
    passing = subprocess.run([sys.executable, "-m", "conformance", "repro", old, *impl, "--check", "forward"],
                             capture_output=True, text=True, timeout=120)
    assert failing.returncode == 1 and "is not within tolerance" in failing.stdout, failing.stdout + failing.stderr
    assert passing.returncode == 0 and ": passed (" in passing.stdout, passing.stdout + passing.stderr
    bad = subprocess.run([sys.executable, "-m", "conformance", "repro", "ConvProblem(1, 2)", "--impl", "im2col"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a ConvProblem(...) call with keyword arguments" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "conformance", "repro", "mb1ic1oc1ih3oh1kh1", "--impl", "im2col"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "repro: error: problem descriptor: unknown token 'oh1' at position 12" in bad.stderr


PROBLEM = ConvProblem(batch=2, c_in=4, c_out=6, h=7, w=9, kh=3, kw=2, stride=(2, 3), padding=(1, 0, 2, 1),
                      dilation=(2, 1), groups=2, bias=True, dtype="float16", padding_mode="replicate",
                      label='resnet50:layer1 "a" \\ b')


@pytest.mark.parametrize("text", [
    pytest.param(str(PROBLEM), id="descriptor"),
    pytest.param(f"  {PROBLEM}\n", id="descriptor with spaces"),
    pytest.param(f"ConvProblem.parse({str(PROBLEM)!r})", id="as the snippet builds it"),
    pytest.param(repr(PROBLEM), id="older reproductions' constructor call"),
])
def test_the_repro_command_reads_every_spelling(text: str) -> None:
    from conformance.cli import parse_problem

    p = parse_problem(text)
    assert p == PROBLEM and p.label == PROBLEM.label


@pytest.mark.parametrize("text, message", [
    ("ConvProblem.parse(5)", "problem 'ConvProblem.parse(5)': a problem descriptor must be a string, not int (5)"),
    ("ConvProblem.parse(x)", "problem 'ConvProblem.parse(x)': malformed node or string"),
    ("ConvProblem(1, 2)", "problem 'ConvProblem(1, 2)': not a ConvProblem(...) call with keyword arguments (nor a "
                          "descriptor)"),
    ("mb1", "problem descriptor: missing required keys ic, oc, ih, kh"),
])
def test_the_repro_command_says_what_it_cannot_read(text: str, message: str) -> None:
    from conformance.cli import parse_problem

    with pytest.raises(ConformanceError, match=f"^{re.escape(message)}"):
        parse_problem(text)


def test_the_snippet_builds_the_problem_from_its_descriptor() -> None:
    text = snippet("im2col", PROBLEM, seed=3, data_kind="wide", check="forward", seen_on="here")
    lines = text.splitlines()
    assert lines[2] == f"problem = ConvProblem.parse({str(PROBLEM)!r})"
    namespace: dict = {}
    exec("\n".join(lines[:3]), namespace)  # noqa: S102 - the point of the test
    assert namespace["problem"] == PROBLEM and namespace["problem"].label == PROBLEM.label

