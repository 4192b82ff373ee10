"""Recorded results: one JSON line per checked example, the only input the HTML report reads.

Each process (the pytest controller, every pytest-xdist worker, every tox environment) appends to its own file
``<dir>/<run>-<worker>-<pid>.jsonl``, flushed line by line, so that workers never share a file and a run that is
killed half-way keeps every row it recorded. A file opens with a ``run`` line (environment, profile, seed) and a
completed run closes it with an ``end`` line; a file without one is a partial run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from conformance.backends import machine
from conformance.backends.backend import installed_version
from conformance.results.row import Row

#: 2: rows are ``conformance.results.row.Row`` (the oracle-free tier spelled ``oracle_free``); schema 1 files read the
#: same
SCHEMA = 2


def environment() -> dict[str, Any]:
    """Versions and machine facts for the report's environment table."""
    import numpy
    import scipy

    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(), "numpy": numpy.__version__,
        "scipy": scipy.__version__, "tox_env": os.environ.get("TOX_ENV_NAME", ""),
        "ci": os.environ.get("CI", ""), "cpu_count": os.cpu_count(), **machine.facts(),
    }
    # torch's version from its metadata (as the torch backends report theirs, imported or not); cuDNN and the GPU
    # only where a backend already imported torch (importing it here would cost every numpy-only run seconds)
    env["torch"] = installed_version("torch") or ""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            env["cudnn"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else ""
            env["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
        except Exception:
            pass
    try:
        import hypothesis

        env["hypothesis"] = hypothesis.__version__
    except Exception:
        pass
    return env


@dataclass
class Recorder:
    """Appends rows to this process' own results file."""

    directory: Path
    run_id: str
    worker: str = "main"
    meta: dict[str, Any] = field(default_factory=dict)
    _fh: Any = None

    @property
    def path(self) -> Path:
        return self.directory / f"{self.run_id}-{self.worker}-{os.getpid()}.jsonl"

    def open(self) -> "Recorder":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._write({"type": "run", "schema": SCHEMA, "run_id": self.run_id, "worker": self.worker,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), **self.meta})
        return self

    def _write(self, row: dict[str, Any], flush: bool = True) -> None:
        if self._fh is None:
            self.open()
        try:  # most rows hold no inf/nan: skip the walk that rewrites them
            line = json.dumps(row, default=_jsonable, allow_nan=False)
        except ValueError:
            line = json.dumps(_finite(row), default=_jsonable, allow_nan=False)
        self._fh.write(line + "\n")
        if flush:
            self._fh.flush()

    def record(self, row: Row) -> None:
        self.record_many([row])

    def record_many(self, rows: list[Row]) -> None:
        """Append ``rows`` and flush once (a suite test's rows arrive together when it ends)."""
        for i, row in enumerate(rows):
            stamped = row.replace(run_id=self.run_id, worker=self.worker, env=self.meta.get("env", ""),
                                  machine=machine.summary(), time=time.time())
            self._write({"type": "result", **stamped.to_json()}, flush=i == len(rows) - 1)

    def close(self, **summary: Any) -> None:
        if self._fh is not None:
            self._write({"type": "end", "run_id": self.run_id, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         **summary})
            self._fh.close()
            self._fh = None


def _finite(v: Any) -> Any:
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan" (read back by ``as_float``)."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def as_float(v: Any) -> float:
    return float(v) if v is not None else float("nan")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, set)):
        return list(v)
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class RunFile:
    path: Path
    header: dict[str, Any]
    rows: list[Row]
    end: dict[str, Any] | None

    @property
    def partial(self) -> bool:
        return self.end is None


def read_file(path: Path) -> RunFile:
    header: dict[str, Any] = {}
    rows: list[Row] = []
    end = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut off by a kill: the rows before it still count
            kind = row.get("type")
            if kind == "run":
                header = row
            elif kind == "result":
                rows.append(Row.from_json(row))
            elif kind == "end":
                end = row
    return RunFile(path, header, rows, end)


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(p.rglob("*.jsonl"))
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"no results file or directory {p}")


def load(paths: Iterable[str | Path]) -> list[RunFile]:
    """Every run file under ``paths``; the same file named twice is read once. The one reader of results: the
    report, the gate and the tests read rows through it (``rows`` for all of them)."""
    seen: set[Path] = set()
    out = []
    for f in iter_files(paths):
        rf = f.resolve()
        if rf in seen:
            continue
        seen.add(rf)
        out.append(read_file(rf))
    return out


def rows(paths: Iterable[str | Path]) -> list[Row]:
    """Every result row of every run file under ``paths``."""
    return [r for f in load(paths) for r in f.rows]
