"""The gate command end to end (subprocesses, as a backend author's CI runs it): the template passes, a backend
that checks nothing does not, known failures are honoured and stale ones reported (failing in strict mode)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import mutants
import pytest

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "examples" / "backend_template.py"
pytestmark = pytest.mark.slow  # every test here runs the gate in a subprocess


def gate(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[int | None, dict, str]:
    """The gate in ``tmp_path``, shrinking as a backend author's CI does: its exit code (None: killed at
    ``timeout``), its JSON summary and its whole output."""
    run = mutants.gate(tmp_path, *args, timeout=timeout, shrink=True)
    return run.returncode, run.summary, run.log


def test_template_passes_the_gate(tmp_path: Path) -> None:
    code, summary, log = gate(tmp_path, "--impl", f"{TEMPLATE}:MyConv")
    assert code == 0, log
    assert summary["passed"] and summary["failing_checks"] == []
    assert (tmp_path / "results").is_dir() and list((tmp_path / "results").rglob("junit.xml"))
    assert "GATE PASSED for 'my-conv'" in log and (tmp_path / "gate.html").is_file()


def test_a_backend_that_checks_nothing_fails(tmp_path: Path) -> None:
    mod = tmp_path / "half_only.py"
    mod.write_text(textwrap.dedent('''
        import conformance
        class HalfOnly:
            name = "half-only"
            capabilities = conformance.Capabilities(dtypes=("float16",))
            def forward(self, problem, x, w, b): raise NotImplementedError
            def backward(self, problem, x, w, dy): raise NotImplementedError
    '''))
    # every call raises: without the shrink phase, which would shrink each check's error for nothing here
    run = mutants.gate(tmp_path, "--impl", f"{mod}:HalfOnly", "--max-examples", "5", "--no-html", timeout=300,
                       shrink=False)
    code, summary, log = run.returncode, run.summary, run.log
    assert code == 1, log
    # --no-html: the verdict, the JUnit XML and the JSON summary, and no page
    assert not (tmp_path / "gate.html").exists() and list((tmp_path / "results").rglob("junit.xml"))
    assert "GATE FAILED for 'half-only'" in log
    assert not summary["passed"] and "no check ran and passed" in summary["reason"]


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_known_failures_and_stale_entries(tmp_path: Path, strict: bool) -> None:
    known = tmp_path / "known.txt"
    known.write_text("my-conv::grad_bias   # pretend the bias gradient is unfinished (stale: it passes)\n")
    args = ["--impl", f"{TEMPLATE}:MyConv", "--known-failures", str(known), "--max-examples", "5"]
    code, summary, log = gate(tmp_path, *args, *(["--strict"] if strict else []))
    assert summary["stale"] == ["grad_bias"], log
    assert code == (1 if strict else 0), log


def test_known_failure_is_honoured(tmp_path: Path) -> None:
    known = tmp_path / "known.txt"
    known.write_text("fft::nonfinite   # NaN spreads over the plane through the transform\n"
                     "fft::extreme     # spectra of huge data overflow where the exact result is finite\n")
    code, summary, log = gate(tmp_path, "--impl", "fft", "--known-failures", str(known), "--max-examples", "10",
                              "--ranks", "2", "--ops", "conv")  # (an entry's check is conv2d's)
    assert code == 0, log
    assert summary["checks"]["nonfinite"].get("xfailed", 0) >= 1 and "failed" not in summary["checks"]["nonfinite"]
    again = tmp_path / "without"
    again.mkdir()
    code, summary, log = gate(again, "--impl", "fft", "--max-examples", "10", "--ranks", "2", "--ops", "conv")
    assert code == 1 and summary["failing_checks"] == ["extreme", "nonfinite"], log


def test_a_known_failure_whose_requirements_this_environment_does_not_meet_expects_nothing(tmp_path: Path) -> None:
    """One file for a tox matrix: an entry for another numpy is not in force here, so its check fails as it is,
    and the run says which entry it left out and why; the entry for this numpy is honoured."""
    known = tmp_path / "known.txt"
    known.write_text("fft::nonfinite ; numpy<1.0    # a numpy from long ago\n"
                     "fft::extreme   ; numpy>=1.0   # spectra of huge data overflow\n")
    code, summary, log = gate(tmp_path, "--impl", "fft", "--known-failures", str(known), "--max-examples", "10",
                              "--ranks", "2", "--ops", "conv")
    assert code == 1 and summary["failing_checks"] == ["nonfinite"], log
    assert summary["checks"]["extreme"].get("xfailed", 0) >= 1, log
    assert "known failure not in force here: fft::nonfinite ; numpy<1.0 (" in log
    assert "fft::nonfinite ; numpy&lt;1.0 (" in (tmp_path / "gate.html").read_text(encoding="utf-8")


def test_a_bad_import_path_is_a_usage_error(tmp_path: Path) -> None:
    code, summary, log = gate(tmp_path, "--impl", "no_such_module_xyz:Conv")
    assert code == 2 and "cannot import module 'no_such_module_xyz'" in log


def test_a_failing_gates_log_alone_reproduces_the_failure(tmp_path: Path) -> None:
    """The CI log carries each failing check whole: the worst element, the bound and its formula, and a
    reproduction that, pasted into a fresh interpreter, fails the same way."""
    from mutants.forward_bugs import FlippedKernel

    run = mutants.run_gate(str(mutants.HERE / "forward_bugs.py"), FlippedKernel, tmp_path, timeout=240,
                           extra=("-x",))
    assert run.returncode == 1
    section = run.output[run.output.index("--- "):]
    assert "Worst element:" in section and "bound" in section and "Reproduce:" in section, run.output
    snippet = section[section.index("Reproduce:\n") + len("Reproduce:\n"):].split("\n\n")[0]
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(mutants.HERE.parent)})
    assert "is not within tolerance" in out.stdout, out.stdout + out.stderr
    assert run.summary["not_reached"], "with -x the checks after the first failure are not reached, and listed"


def test_junit_says_an_error_is_an_error(tmp_path: Path) -> None:
    """A check that failed because the backend raised carries conv_status=error and the cause in the JUnit file,
    not only a message that reads like a numeric failure."""
    import xml.etree.ElementTree as ET

    from mutants.contract_bugs import RaisesOnGroups

    junit = tmp_path / "gate.xml"
    run = mutants.run_gate(str(mutants.HERE / "contract_bugs.py"), RaisesOnGroups, tmp_path, timeout=240,
                           extra=("--junit", str(junit), "-k", "test_forward"))
    assert run.returncode == 1, run.output
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
    assert props.get("conv_status") == "error", props
    assert "raised NotImplementedError" in props.get("conv_cause", ""), props
