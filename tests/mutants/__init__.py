"""The mutant corpus: realistic broken backends the gate must reject, correct variants it must accept.

Every member is a small class (most derive from ``_base.Conv``, a correct im2col cut into overridable steps)
with a unique ``name``, a docstring saying which real bug (or which legitimate difference) it models, and
``expected``: the gate checks that must be named in the gate's ``failing_checks`` (``()`` for a correct variant,
which the gate must pass). ``tests/test_mutants.py`` runs ``python -m conformance gate`` on each at the default
``ci`` profile; ``benchmarks/mutant_power.py`` measures the kill rate and the false-alarm rate.

Modules: ``forward_bugs``, ``backward_bugs``, ``precision_bugs``, ``contract_bugs``, ``rank_bugs``,
``transposed_bugs`` (mutants), ``correct_variants`` (must pass), ``misbehaving`` (crash, hang, huge memory,
non-answers: the isolation tests).

``SURVIVORS`` maps the name of a mutant the current suite does *not* kill to the reason. Survivors stay in the
corpus (they document what the suite misses) but are left out of the must-kill assertions: the tests mark them
strict xfails, so a suite improvement that kills one shows up as an XPASS, and the entry comes out.

Each member is loaded by file path (``--impl /abs/tests/mutants/forward_bugs.py:FlippedKernel``), in the gate's
process and again in its backend worker, where this folder is no package: every module imports ``_base``
relatively when it can and through ``sys.path`` (``tests/``) when it cannot.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import child_env, no_shrink, shrink_from_env

from conformance.results import records
from conformance.results.row import Row

HERE = Path(__file__).resolve().parent
MUTANT_MODULES = ("forward_bugs", "backward_bugs", "precision_bugs", "contract_bugs", "rank_bugs",
                  "transposed_bugs")
VARIANT_MODULES = ("correct_variants",)
MISBEHAVING_MODULES = ("misbehaving",)

SURVIVORS: dict[str, str] = {
    # none at present. "mut-output-buffer-reused" survived until contract.py gained its aliasing rule (results may
    # not share memory with an input or with the result of another call); "mut-half-precision-split-k-forward" is
    # out of reach of the hypothesis forward check (K <= 64) and is killed by the boundary and corpus tiers.
}

def module_members(module_name: str) -> list[tuple[str, Any]]:
    """``(module file, class)`` for every corpus class defined in ``module_name`` (in source order)."""
    mod = importlib.import_module(f"{__name__}.{module_name}")
    classes = [c for _, c in inspect.getmembers(mod, inspect.isclass)
               if c.__module__ == mod.__name__ and isinstance(getattr(c, "expected", None), tuple)
               and "name" in c.__dict__]
    classes.sort(key=lambda c: inspect.getsourcelines(c)[1])
    return [(str(HERE / f"{module_name}.py"), c) for c in classes]


def members(kind: str) -> list[tuple[str, Any]]:
    """``kind``: "mutants", "variants" or "misbehaving"."""
    modules = {"mutants": MUTANT_MODULES, "variants": VARIANT_MODULES, "misbehaving": MISBEHAVING_MODULES}[kind]
    return [m for name in modules for m in module_members(name)]


def spec(path: str, cls: type) -> str:
    """The gate's ``--impl`` for a member: ``/abs/path/module.py:ClassName``."""
    return f"{path}:{cls.__name__}"


def gate_options(cls: Any) -> list[str]:
    """The extra gate options a member needs (its known-failures file, its own options)."""
    out: list[str] = []
    if getattr(cls, "known_failures", None):
        out += ["--known-failures", str(HERE / cls.known_failures)]
    out += list(getattr(cls, "gate_args", ()))
    return out


@dataclass
class GateRun:
    """One ``python -m conformance gate`` run on a corpus member."""

    returncode: int | None          #: None: it did not finish within the timeout (and was killed)
    summary: dict[str, Any]         #: the gate's --json summary ({} if it wrote none)
    results_dir: Path
    seconds: float                  #: wall time
    cpu: float = 0.0                #: CPU time (user + system) of the gate and its backend worker
    output: str = ""                #: the tail of stdout and stderr
    rows: list[Row] = field(default_factory=list)
    log: str = ""                   #: the whole of stdout and stderr

    @property
    def failing_checks(self) -> list[str]:
        return list(self.summary.get("failing_checks", []))

    def bad_rows(self) -> list[Row]:
        """The results rows with status failed or error."""
        return [r for r in self.rows if r.status in ("failed", "error")]


def _rows(results: Path) -> list[Row]:
    return records.rows([results]) if results.exists() else []


def _kill_group(pid: int) -> None:
    """SIGKILL the process group of the gate we started (the gate and its backend worker, nothing else)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def gate_command(workdir: Path, *args: str) -> list[str]:
    """``python -m conformance gate`` writing its JSON summary, results and HTML report into ``workdir``
    (``gate.json``, ``results/``, ``gate.html``), then ``args``."""
    return [sys.executable, "-m", "conformance", "gate", "--json", str(workdir / "gate.json"),
            "--results", str(workdir / "results"), "--out", str(workdir / "gate.html"), *args]


def gate(workdir: Path, *args: str, timeout: float = 240.0, shrink: bool | None = None) -> GateRun:
    """Run the gate (``gate_command``) in a fresh interpreter, in ``workdir``, with ``helpers.child_env()``.

    It runs with ``workdir`` as its current directory, so that pytest does not pick up this repository's own
    ``tests/conftest.py``. A run that outlives ``timeout`` is killed with its whole process group (the gate's
    backend worker included) and comes back with ``returncode=None``. ``shrink=False`` adds the ``_no_shrink``
    plugin (the ci profile without the shrink phase; see that module); None: ``helpers.shrink_from_env()``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    summary, results = workdir / "gate.json", workdir / "results"
    cmd, env = gate_command(workdir, *args), child_env()
    if not (shrink_from_env() if shrink is None else shrink):
        cmd += ["--", *no_shrink(env)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    killer = threading.Timer(timeout, _kill_group, (proc.pid,))
    killer.start()
    try:
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)  # like proc.wait(), and the CPU time of the gate and its worker
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    code: int | None = None if proc.returncode == -signal.SIGKILL else proc.returncode
    seconds = time.perf_counter() - t0
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return GateRun(code, data, results, seconds, usage.ru_utime + usage.ru_stime, (out or "")[-4000:],
                   _rows(results) if results.exists() else [], log=out or "")


def run_gate(path: str, cls: type, workdir: Path, *, timeout: float = 240.0, extra: tuple[str, ...] = (),
             shrink: bool | None = None, html: bool = True) -> GateRun:
    """``gate`` on one member: its ``--impl``, its known failures and options (``gate_options``), then ``extra``;
    ``html=False``: without the HTML report (``--no-html``)."""
    return gate(workdir, "--impl", spec(path, cls), *gate_options(cls), *extra, *(() if html else ("--no-html",)),
                timeout=timeout, shrink=shrink)
