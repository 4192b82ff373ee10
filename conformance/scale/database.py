"""Hypothesis' example database shared between machines: ``--database DIR|redis://host:port/db``.

Hypothesis saves every failing example it finds (shrunk) under the test's key and, on the next run, replays the
saved ones first (its ``reuse`` phase) before it generates new ones. Pointing several machines at one database
makes a failure found on one shard the first example every other machine tries. What is built here is Hypothesis'
own:

- a directory: ``DirectoryBasedExampleDatabase`` (a CI cache, a shared file system);
- ``redis://host:port/db``: ``hypothesis.extra.redis.RedisExampleDatabase`` on ``redis.Redis.from_url`` (live
  sharing; needs the ``redis`` package), its keys under ``conv-conformance:``;
- ``--database-readonly SPEC``: the same wrapped in ``ReadOnlyDatabase`` (a developer's machine replays what CI
  found and writes nothing back);
- more than one: ``MultiplexedDatabase`` (a local directory and the shared one: saved to both, replayed from both).

Keys. Hypothesis keys a test by a digest of its function's source, plus, for a parametrized test, its pytest node id;
but it adds the node id only for ``@pytest.mark.parametrize`` or parametrized fixtures, not for the suite's
``pytest_generate_tests`` parametrization, so every implementation and operation of a check would share one key (a
failure of one backend replayed against the others, and deleted by the first that passes it); and a node id starts
with a path that differs between checkouts. ``DatabasePlugin`` gives each suite test the key of its stable id
(``conformance.scale.ids``: ``conformance.suite.test_forward::test_forward[im2col-conv2d]``), the same on every
machine, every working directory and every pytest-xdist worker.

Derandomized profiles. ``settings(derandomize=True)`` implies ``database=None`` in Hypothesis (passing both is an
``InvalidArgument``): a derandomized test reads and writes no database. With ``--database`` the derandomized ``ci``
profile therefore runs with ``derandomize=False``, each test seeded with exactly the seed derandomize would use (an
integer of its function's digest, as Hypothesis computes it): Hypothesis replays the database's saved failures
first (its ``reuse`` phase), then generates the same examples as the ``ci`` profile without a database. ``--seed``
(``--hypothesis-seed``) cannot be combined with a database: under a forced seed Hypothesis uses none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    ExampleDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
)

from conformance.errors import ConformanceError
from conformance.scale.ids import stable_id

REDIS_KEY_PREFIX = b"conv-conformance:"
#: Hypothesis' own attributes: the key suffix its pytest plugin sets for a parametrized test (hypothesis'
#: ``_hypothesis_pytestplugin``; ``function_digest`` hashes it), and the seed ``@hypothesis.seed`` sets (set here
#: directly: the decorator also sets the test's ``database=None``)
_ADD_DIGEST = "_hypothesis_internal_add_digest"
_USE_SEED = "_hypothesis_internal_use_seed"
_ABSENT = object()


def open_database(spec: str) -> ExampleDatabase:
    """The database a spec names: ``redis://host:port/db`` (``rediss://`` too), or a directory (created if needed)."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as exc:
            raise ConformanceError(f"--database {spec}: a Redis database needs the 'redis' package "
                                   f"(pip install 'redis>=5'): {exc}") from None
        try:
            client = redis.Redis.from_url(spec)
            client.ping()  # a server that is not there: one clear error before the run, not a failure of every test
        except ValueError as exc:
            raise ConformanceError(f"--database {spec}: not a Redis URL: {exc}") from None
        except redis.RedisError as exc:
            raise ConformanceError(f"--database {spec}: the Redis server does not answer "
                                   f"({type(exc).__name__}: {exc})") from None
        return RedisExampleDatabase(client, key_prefix=REDIS_KEY_PREFIX)
    if "://" in spec:
        raise ConformanceError(f"--database {spec}: a directory or a redis://host:port/db URL")
    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise ConformanceError(f"--database {spec}: exists and is not a directory")
    return DirectoryBasedExampleDatabase(str(path))


def build_database(read_write: Sequence[str] = (), read_only: Sequence[str] = ()) -> ExampleDatabase | None:
    """One database of the specs: None for none, the one for one, a ``MultiplexedDatabase`` of several; those of
    ``read_only`` wrapped in ``ReadOnlyDatabase``."""
    dbs = [open_database(s) for s in read_write] + [ReadOnlyDatabase(open_database(s)) for s in read_only]
    if not dbs:
        return None
    return dbs[0] if len(dbs) == 1 else MultiplexedDatabase(*dbs)


def derandomized_seed(test: Any) -> int:
    """The seed ``settings(derandomize=True)`` gives ``test`` (Hypothesis' inner test function): an integer of the
    digest of its function (``hypothesis.core.get_random_for_wrapped_test``)."""
    from hypothesis.internal.compat import int_from_bytes
    from hypothesis.internal.reflection import function_digest

    return int(int_from_bytes(function_digest(test)))


def key_of(item: Any) -> bytes:
    """The database key suffix of a suite test: its stable id."""
    return stable_id(item).encode()


class DatabasePlugin:
    """Registered by the conformance plugin with ``--conv-database``: each suite test's key, and for a derandomized
    profile each test's seed (see the module's docstring). ``is_suite_test`` says which items are the suite's."""

    def __init__(self, *, derandomized: bool, is_suite_test: Any) -> None:
        self.derandomized = derandomized
        self.is_suite_test = is_suite_test

    # innermost of the pytest_runtest_call wrappers: after Hypothesis' own has set (or not) its node-id key
    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        wrapped = getattr(item, "obj", None)
        inner = getattr(getattr(wrapped, "hypothesis", None), "inner_test", None)
        if inner is None or not self.is_suite_test(item):
            yield
            return
        # one function serves every implementation and operation of a check: set this test's key and seed for the
        # call, then put back what Hypothesis had, so that the next test's derandomized seed is computed as
        # Hypothesis computes it
        saved = (inner.__dict__.get(_ADD_DIGEST, _ABSENT), wrapped.__dict__.get(_USE_SEED, _ABSENT))
        try:
            if self.derandomized:  # the seed derandomize would use here: computed before the key changes
                setattr(wrapped, _USE_SEED, derandomized_seed(inner))
            setattr(inner, _ADD_DIGEST, key_of(item))
            yield
        finally:
            for obj, name, value in ((inner, _ADD_DIGEST, saved[0]), (wrapped, _USE_SEED, saved[1])):
                if value is _ABSENT:
                    obj.__dict__.pop(name, None)
                else:
                    setattr(obj, name, value)
