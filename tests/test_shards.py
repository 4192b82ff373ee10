"""Shards (``--shard K/N``): the partition (each test in exactly one shard, deterministic, balanced by recorded
durations, round-robin without), the durations every run records, and, end to end, two shards of ``python -m
conformance run`` merging into the report of the unsharded run: the same rows, the same verdicts."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import child_env

from conformance.results import records
from conformance.scale.shards import Shard, load_durations, parse_shard, partition, write_durations

# -- the partition -----------------------------------------------------------------------------------------------


def test_parse_shard() -> None:
    assert parse_shard("1/4") == Shard(1, 4) and str(Shard(3, 4)) == "3/4"
    for bad, says in (("0/4", "between 1 and N"), ("5/4", "between 1 and N"), ("2", "not K/N"), ("a/b", "not K/N"),
                      ("1/0", "between 1 and N")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            parse_shard(bad)


def test_each_key_in_exactly_one_part_whatever_the_order() -> None:
    keys = [f"mod::test_{i}[impl-{i % 3}]" for i in range(23)]
    durations = {k: float(i % 7) for i, k in enumerate(keys) if i % 4}  # some recorded, some not
    for n in (1, 2, 3, 5, 30):
        parts = partition(keys, n, durations)
        assert len(parts) == n
        assert sorted(k for p in parts for k in p) == sorted(keys)  # nothing lost, nothing twice
        assert partition(list(reversed(keys)), n, durations) == [list(reversed(p)) for p in parts]  # order-free


def test_balanced_by_recorded_durations_longest_first() -> None:
    durations = {"a": 10.0, "b": 6.0, "c": 5.0, "d": 4.0, "e": 1.0}
    parts = partition(list(durations), 2, durations)
    # a (10) to 1, b (6) to 2, c (5) to 2 (6 < 10), d (4) to 1 (10 < 11), e (1) to 2 (11 < 14): 14 s and 12 s
    assert parts == [["a", "d"], ["b", "c", "e"]]
    loads = [sum(durations[k] for k in p) for p in parts]
    assert max(loads) - min(loads) <= max(durations.values())


def test_unrecorded_tests_weigh_the_median_and_none_recorded_is_round_robin() -> None:
    parts = partition(["a", "b", "c", "new"], 2, {"a": 9.0, "b": 1.0, "c": 2.0})
    assert ["a"] in parts  # "new" weighs 2 s (the median): b, c and new together are 5 s against a's 9 s
    counts = [len(p) for p in partition([f"t{i}" for i in range(11)], 4)]
    assert sorted(counts) == [2, 3, 3, 3]


def test_duplicate_ids_are_an_error() -> None:
    with pytest.raises(ValueError, match="duplicate test ids a"):
        partition(["a", "b", "a"], 2)


def test_durations_files_merge_keeping_the_longest(tmp_path: Path) -> None:
    write_durations(tmp_path / "r1" / "x-main-1.durations.json", {"a": 1.0, "b": 2.0})
    write_durations(tmp_path / "r2" / "y-gw0-2.durations.json", {"a": 3.0})
    (tmp_path / "r2" / "z-gw1-3.durations.json").write_text('{"durations": {"c": 1', encoding="utf-8")  # cut off
    assert load_durations([tmp_path]) == {"a": 3.0, "b": 2.0}
    assert load_durations([tmp_path / "r1" / "x-main-1.durations.json"]) == {"a": 1.0, "b": 2.0}
    with pytest.raises(FileNotFoundError, match="--shard-durations .*nowhere"):
        load_durations([tmp_path / "nowhere"])


# -- end to end ---------------------------------------------------------------------------------------------------

#: naive's cheap checks of conv2d (its arithmetic, nonfinite and corpus tiers take seconds: left out)
SELECT = ("-k", "naive and not arithmetic and not nonfinite and not corpus", "--ranks", "2", "--ops", "conv",
          "--max-examples", "3", "--no-isolate")


def conformance_run(workdir: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "conformance", "run", "--results", str(results), "--out",
           str(workdir / f"{results.name}.html"), *SELECT, *args]
    proc = subprocess.run(cmd, cwd=workdir, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def row_keys(paths: list[Path]) -> Counter:
    """Every row as what it checked and found (not when or where: run id, worker, time, seconds)."""
    return Counter((r.nodeid, r.impl, r.check, r.tier, r.status, r.dtype, r.problem_text, r.seed, r.data_kind,
                    r.layout, r.rank, r.transposed, r.max_ratio, r.reason) for r in records.rows(paths))


def verdicts(paths: list[Path]) -> dict:
    """The report's cells (``python -m conformance report``'s merge): state, counts and worst error/bound of each."""
    from conformance.reports.summarize import summarize

    rep = summarize(paths)
    return {key: (cell.state, dict(cell.counts), max(cell.ratios, default=None)) for key, cell in rep.cells.items()}


@pytest.mark.slow
def test_two_shards_merge_into_the_unsharded_run(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    conformance_run(tmp_path, whole)
    recorded = load_durations([whole])  # the unsharded run recorded each test's time: it balances the shards
    assert recorded and all(k.startswith("conformance.suite.test_") and "[naive-conv2d" in k for k in recorded)
    shards = []
    for k in (1, 2):
        shards.append(tmp_path / f"shard{k}")
        out = conformance_run(tmp_path, shards[-1], "--shard", f"{k}/2", "--shard-durations", str(whole)).stdout
        assert f"shard {k}/2 (balanced by {len(recorded)} recorded durations)" in out
    ran = [{r.nodeid for r in records.rows([s])} for s in shards]
    assert ran[0] and ran[1] and not ran[0] & ran[1]  # each shard ran some tests, none ran one twice
    # (the CLI hands --shard to pytest as the plugin's --conv-shard: plain pytest's shards are these)
    assert row_keys(shards) == row_keys([whole])
    assert verdicts(shards) == verdicts([whole])


@pytest.mark.slow
def test_the_gates_shards_merge_into_the_unsharded_gates_verdict(tmp_path: Path) -> None:
    """``gate --shard K/N`` per CI job, then ``gate --merge`` over their results: the unsharded gate's verdict."""
    import mutants

    args = ("--impl", f"{mutants.HERE / 'forward_bugs.py'}:FlippedKernel", "-k", "golden or exact or forward",
            "--ranks", "2", "--ops", "conv", "--max-examples", "3")
    whole = mutants.gate(tmp_path / "whole", *args, shrink=False)
    assert whole.returncode == 1 and whole.failing_checks, whole.log[-3000:]
    parts = [mutants.gate(tmp_path / f"shard{k}", *args, "--shard", f"{k}/2", shrink=False) for k in (1, 2)]
    assert all(p.returncode in (0, 1) for p in parts), [p.log[-2000:] for p in parts]
    merged = mutants.gate(tmp_path / "merged", *args, "--merge", str(parts[0].results_dir), "--merge",
                          str(parts[1].results_dir))
    assert merged.returncode == 1, merged.log[-3000:]
    assert merged.summary["failing_checks"] == whole.failing_checks
    assert merged.summary["checks"] == whole.summary["checks"]
    # a test in two merged runs (shards that partitioned differently, or a run merged twice) is not a verdict
    twice = mutants.gate(tmp_path / "twice", *args, "--merge", str(parts[0].results_dir), "--merge",
                         str(whole.results_dir))
    assert twice.returncode == 1 and "recorded by more than one run" in twice.summary["reason"], twice.log[-2000:]
