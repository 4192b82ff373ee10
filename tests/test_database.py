"""The shared example database (``--database DIR|redis://...``, ``--database-readonly``): Hypothesis' own databases
built from the specs, each suite test keyed by its stable id, and, end to end with a real Redis server, a failure
found by one process replayed first by another (in another directory, under pytest-xdist)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import mutants
import pytest
from helpers import child_env, no_shrink
from hypothesis.database import DirectoryBasedExampleDatabase, MultiplexedDatabase, ReadOnlyDatabase

from conformance import cli
from conformance.errors import ConformanceError
from conformance.results import records
from conformance.scale.database import REDIS_KEY_PREFIX, build_database, open_database

FLIPPED = f"{mutants.HERE / 'forward_bugs.py'}:FlippedKernel"
#: the key every machine gives the mutant's conv2d forward test
FORWARD_ID = "conformance.suite.test_forward::test_forward[mut-flipped-kernel-conv2d]"


def test_specs_build_hypothesis_databases(tmp_path: Path) -> None:
    assert build_database() is None
    one = build_database([str(tmp_path / "a")])
    assert isinstance(one, DirectoryBasedExampleDatabase)
    assert isinstance(build_database(read_only=[str(tmp_path / "a")]), ReadOnlyDatabase)
    assert isinstance(build_database([str(tmp_path / "a")], [str(tmp_path / "b")]), MultiplexedDatabase)
    with pytest.raises(ConformanceError, match="a directory or a redis://host:port/db URL"):
        open_database("http://example.org/db")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConformanceError, match="exists and is not a directory"):
        open_database(str(tmp_path / "file"))


def test_a_redis_server_that_is_not_there_is_a_clear_error() -> None:
    pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")
    with pytest.raises(ConformanceError, match="the Redis server does not answer"):
        open_database(f"redis://127.0.0.1:{free_port()}/0")


def test_seed_and_database_do_not_go_together(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["run", "--seed", "3", "--database", str(tmp_path / "db"), "-k", "naive"]) == 2
    assert "under a forced seed Hypothesis reads and writes no example database" in capsys.readouterr().err


def expected_key(test_id: str) -> bytes:
    """The key Hypothesis gives the suite's forward test with the stable id ``test_id`` (its digest of the function
    with that id added, as ``conformance.scale.database.DatabasePlugin`` adds it)."""
    from hypothesis.internal.reflection import function_digest

    from conformance.suite import test_forward

    inner = test_forward.test_forward.hypothesis.inner_test
    inner._hypothesis_internal_add_digest = test_id.encode()
    try:
        return function_digest(inner)
    finally:
        del inner._hypothesis_internal_add_digest


# -- end to end -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real Redis server (Debian's ``redis-server``) on a free loopback port, without persistence; stopped after."""
    redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server on port {port} did not answer within 5 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def gate(workdir: Path, *args: str) -> tuple[int, list, str]:
    """The gate of the mutant's conv2d forward test, without shrinking (the first failing example is the one saved),
    in ``workdir``: (exit code, its forward rows, its output)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = child_env()
    cmd = mutants.gate_command(workdir, "--impl", FLIPPED, "-k", "test_forward", "--ranks", "2", "--ops", "conv",
                               *args) + ["--", *no_shrink(env), "--hypothesis-show-statistics"]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    rows = [r for r in records.rows([workdir / "results"]) if r.check == "forward"]
    return proc.returncode, rows, proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_failure_found_by_one_process_is_replayed_first_by_another_through_redis(tmp_path: Path,
                                                                                    redis_url: str) -> None:
    import redis
    from hypothesis.extra.redis import RedisExampleDatabase

    code, first, log = gate(tmp_path / "one", "--database", redis_url)
    assert code == 1 and "failing checks: forward" in log, log[-3000:]
    passed = [r for r in first if r.status == "passed"]
    failed = [r for r in first if r.status == "failed"]
    assert passed and len(failed) == 1, "the first process found the failure after passing examples"
    # saved under the key of the test's stable id (no path in it), which every machine computes alike
    shared = RedisExampleDatabase(redis.Redis.from_url(redis_url), key_prefix=REDIS_KEY_PREFIX)
    assert list(shared.fetch(expected_key(FORWARD_ID)))

    # another process, in another directory, with two pytest-xdist workers: the saved failure is its first example
    code, second, log = gate(tmp_path / "two", "--database", redis_url, "-n", "2")
    assert code == 1 and "failing checks: forward" in log, log[-3000:]
    assert [(r.status, r.problem_text, r.seed, r.data_kind) for r in second] == \
        [("failed", failed[0].problem_text, failed[0].seed, failed[0].data_kind)]


@pytest.mark.slow
def test_a_read_only_database_replays_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "db"
    code, first, log = gate(tmp_path / "one", "--database", str(db))
    assert code == 1 and any(r.status == "passed" for r in first), log[-3000:]
    assert list(DirectoryBasedExampleDatabase(str(db)).fetch(expected_key(FORWARD_ID)))
    before = sorted(p.relative_to(db) for p in db.rglob("*"))
    code, second, log = gate(tmp_path / "two", "--database-readonly", str(db))
    assert code == 1 and "during reuse phase" in log, log[-3000:]
    assert [r.status for r in second] == ["failed"]  # replayed first, and nothing generated after it
    assert sorted(p.relative_to(db) for p in db.rglob("*")) == before


@pytest.mark.slow
def test_the_ci_profile_with_a_database_draws_its_derandomized_examples(tmp_path: Path) -> None:
    """Hypothesis reads no database under derandomize=True; with one, the ci profile runs each test under the seed
    derandomize would give it: the same examples as without a database (here, with an empty one)."""
    from helpers import run_suite

    def examples(results: Path, *args: str) -> list[tuple]:
        proc = run_suite(tmp_path, results, "-q", "-k", "(test_forward or test_grad_input) and im2col",
                         "--conv-ranks", "1,2", "--conv-no-isolate", *args)
        assert proc.returncode == 0, proc.stdout[-2000:]
        return sorted((r.nodeid, r.problem_text, r.seed, r.data_kind) for r in records.rows([results]))

    without = examples(tmp_path / "plain")
    assert len(without) > 50  # 25 examples a test
    assert examples(tmp_path / "with-db", "--conv-database", str(tmp_path / "examples")) == without
