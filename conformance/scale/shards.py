"""Shards: a deterministic partition of a run's tests over N machines, balanced by recorded durations.

``--shard K/N`` (pytest: ``--conv-shard``) keeps the K-th of N parts of the collected tests (after ``-k``/``-m``) and
deselects the rest. Every shard computes the same partition from the same inputs (the collected tests, which the same
options give on every machine, and the same durations files), so each test runs on exactly one shard and the shards'
results merge (``python -m conformance report shard-1/ shard-2/ ...``) into the report of the whole run.

Balance: every run writes the wall time of each test it ran (setup, call and teardown) beside its results, one
``<run>-<worker>-<pid>.durations.json`` per process, keyed by the test's stable id (``conformance.scale.ids``: no
path in it). ``--shard-durations PATH`` (files or directories, repeatable; a test seen in several keeps its longest)
weighs each test by them; a test without a recorded time weighs the median of those recorded (1 where there are
none, which makes the partition a round-robin over the tests' ids). Tests are placed longest first, each on the
shard with the least time so far (ties: the lowest K): the greedy longest-processing-time rule.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

DURATIONS_SUFFIX = ".durations.json"


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (1-based) of ``count`` shards."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``K/N`` with 1 <= K <= N -> ``Shard(K, N)``; an ``argparse.ArgumentTypeError`` naming the rule otherwise."""
    k, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError
        shard = Shard(int(k), int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard {text!r} is not K/N (e.g. 1/4: the first of four shards)") from None
    if shard.count < 1 or not 1 <= shard.index <= shard.count:
        raise argparse.ArgumentTypeError(f"shard {text!r}: K must be between 1 and N, and N at least 1")
    return shard


def partition(keys: Sequence[str], count: int, durations: Mapping[str, float] | None = None) -> list[list[str]]:
    """``keys`` split into ``count`` parts, each key in exactly one, balanced by ``durations`` (seconds per key; a
    key without one weighs the median of the others, or 1) longest first onto the least-loaded part. Deterministic:
    the result depends on the set of keys and the durations only, not on their order. Each part keeps the keys in
    their given order."""
    if count < 1:
        raise ValueError(f"partition: count {count} must be at least 1")
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"partition: duplicate test ids {', '.join(dup[:5])}: a shard could not tell them apart")
    durations = durations or {}
    known = [durations[k] for k in keys if k in durations]
    default = statistics.median(known) if known else 1.0
    weight = {k: float(durations.get(k, default)) for k in keys}
    load = [0.0] * count
    where: dict[str, int] = {}
    for k in sorted(keys, key=lambda k: (-weight[k], k)):
        i = min(range(count), key=lambda j: (load[j], j))
        where[k] = i
        load[i] += weight[k]
    parts: list[list[str]] = [[] for _ in range(count)]
    for k in keys:
        parts[where[k]].append(k)
    return parts


def load_durations(paths: Iterable[str | Path]) -> dict[str, float]:
    """The recorded durations under ``paths`` (``*.durations.json`` files, or directories searched for them); a test
    in several files keeps its longest time. A path that does not exist is an error naming it."""
    out: dict[str, float] = {}
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.rglob(f"*{DURATIONS_SUFFIX}"))
        elif p.is_file():
            files = [p]
        else:
            raise FileNotFoundError(f"--shard-durations {p}: no such file or directory")
        for f in files:
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # a file cut off by a kill: the others still count
            for k, v in data.get("durations", {}).items():
                if isinstance(v, (int, float)):
                    out[k] = max(out.get(k, 0.0), float(v))
    return out


def write_durations(path: Path, durations: Mapping[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"durations": dict(sorted(durations.items()))}, indent=0), encoding="utf-8")
    os.replace(tmp, path)
