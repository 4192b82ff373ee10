"""Shared fixtures of the suite's own tests."""

from conformance.backends.registry import build_registry
from conformance.inputs import onnx_golden

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules a run imported; C extensions (numpy's, torch's, onnx's protobuf)
# cannot be imported twice in one process, so import every built-in backend (and what it imports) and the ONNX
# cases once, up front.
build_registry()
if onnx_golden.available() is None:
    onnx_golden.cases()


# -- recorded results for the report tests (tests/test_report*.py) ------------------------------------------------
import os  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402
from helpers import QUICK, run_suite  # noqa: E402

REPORT_BACKENDS = textwrap.dedent('''
    """Backends for the report tests: one computes a convolution (a flipped kernel), one has a hostile name."""
    import numpy as np

    from conformance.impls.im2col import Im2col


    class FlippedConv(Im2col):
        """A convolution instead of a cross-correlation: forward flips the kernel (its gradients stay right)."""

        name = "flipped-conv"

        def forward(self, problem, x, w, b):
            return super().forward(problem, x, np.ascontiguousarray(w[:, :, ::-1, ::-1]), b)


    class HostileName(Im2col):
        name = "<script>alert(1)</script>"
''')


def _record(root: Path) -> None:
    (root / "report_backends.py").write_text(REPORT_BACKENDS)
    impls = ["--impl", "report_backends.py:FlippedConv", "--impl", "report_backends.py:HostileName"]
    runs = {"a": ("--conv-env-name", "env-a", "-n", "2", *impls, "-k", "naive or flipped or alert or cuda"),
            "b": ("--conv-env-name", "env-b", *impls, "-k", "naive or flipped")}
    for name, args in runs.items():
        proc = run_suite(root, root / name, *QUICK, *args, shrink=False)  # a failure's row, not its smallest form
        if proc.returncode != 1:
            raise RuntimeError(f"run {name}: expected failures (exit 1), got {proc.returncode}:\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def recorded_once(factory: pytest.TempPathFactory, name: str, record: Callable[[Path], None]) -> Path:
    """``record(root)`` once per session and once for all pytest-xdist workers (the first to take the lock records,
    the others wait for it); returns ``root``."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the directory every worker's basetemp lives in
    root, done, failed = base / name, base / f"{name}.done", base / f"{name}.failed"
    try:
        os.close(os.open(base / f"{name}.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another worker records them: wait for it
        deadline = time.monotonic() + 900
        while not done.exists() and not failed.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
    else:
        root.mkdir()
        try:
            record(root)
            done.touch()
        except BaseException as exc:
            failed.write_text(str(exc))
            raise
    if failed.exists():
        pytest.fail(f"recording {name} failed: {failed.read_text()}")
    if not done.exists():
        pytest.fail(f"timed out waiting for another worker to record {name}")
    return root


#: fixtures that record real runs of the suite in subprocesses (the first test to ask waits for them)
RECORDED_RUNS = {"recorded_results", "error_results"}


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist's ``load`` scheduling hands each worker a quarter of the tests up front and refills in chunks:
    with the slow tests first, one worker held a queue of mutant gates while the other had run everything else
    (minutes of one idle core at the end). Two at a time (``--maxschedchunk 2``, xdist's own option) keeps the
    slow tests in the common pool until a worker is free, unless the command line says otherwise."""
    if getattr(config.option, "maxschedchunk", False) is None:  # xdist is loaded and the option was not given
        config.option.maxschedchunk = 2


@pytest.hookimpl(tryfirst=True)  # before -m selects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses a recorded run (directly or through another fixture) is ``slow``; and the slow tests (the
    subprocess runs, 5 to 80 s each) go first, so that pytest-xdist's workers end on the quick ones together instead
    of one worker finishing a long gate while the other waits (the same order on every worker: a stable sort)."""
    for item in items:
        if RECORDED_RUNS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def recorded_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real runs of the suite: ``a`` with two pytest-xdist workers in environment ``env-a`` (naive, a failing
    third-party backend, a backend with a ``<script>`` name, the torch-cuda ones), ``b`` in one process in
    environment ``env-b`` (naive and the failing backend). Recorded once per session, shared by xdist workers."""
    root = recorded_once(tmp_path_factory, "recorded-results", _record)
    return {"a": root / "a", "b": root / "b"}
