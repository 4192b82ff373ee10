"""The pytest side of shards: ``ShardPlugin`` keeps this shard's tests, ``DurationsRecorder`` writes each test's
time for the next run's balance (``conformance.scale.shards`` holds the partition and the durations files; the
conformance plugin registers these two)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import pytest

from conformance.scale.ids import stable_id
from conformance.scale.shards import Shard, partition, write_durations


class ShardPlugin:
    """Keeps this shard's tests: registered by the conformance plugin for ``--conv-shard K/N``."""

    def __init__(self, shard: Shard, durations: Mapping[str, float]) -> None:
        self.shard, self.durations = shard, durations

    @pytest.hookimpl(trylast=True)  # after -k / -m have deselected theirs: the shards split what this run selects
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        ids = [stable_id(item) for item in items]
        try:
            mine = set(partition(ids, self.shard.count, self.durations)[self.shard.index - 1])
        except ValueError as exc:
            raise pytest.UsageError(f"--conv-shard {self.shard}: {exc}") from None
        keep = [item for item, i in zip(items, ids) if i in mine]
        drop = [item for item, i in zip(items, ids) if i not in mine]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_report_header(self, config: pytest.Config) -> str:
        return (f"conv-conformance: shard {self.shard} (balanced by {len(self.durations)} recorded durations)"
                if self.durations else f"conv-conformance: shard {self.shard} (no recorded durations: round-robin)")


class DurationsRecorder:
    """Measures each test this process runs (setup, call and teardown, wall time) and writes them to ``path`` at the
    end of the session: the next run's ``--shard-durations``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.durations: dict[str, float] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Any:
        t0 = time.perf_counter()
        yield
        self.durations[stable_id(item)] = round(time.perf_counter() - t0, 4)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.durations:
            write_durations(self.path, self.durations)
