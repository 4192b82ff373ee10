"""A suite test's id as every machine spells it: ``<module>::<test name>``, e.g.
``conformance.suite.test_forward::test_forward[im2col-conv2d]``.

pytest's node id starts with the test file's path relative to the run's root directory
(``conformance/suite/test_forward.py::...`` in a checkout, something else under ``site-packages`` or another
working directory), so it differs between machines that run the same test. The module's import name and the test's
name (function and parameter ids: the implementation's name and the operation) do not: shards (recorded durations)
and the shared example database key by this id.
"""

from __future__ import annotations

from typing import Any


def stable_id(item: Any) -> str:
    """``<module import name>::<item name>`` for a test of a Python module, its node id for anything else."""
    module = getattr(getattr(item, "module", None), "__name__", None)
    cls = getattr(item, "cls", None)
    if not module:
        return str(item.nodeid)
    return f"{module}::{cls.__name__ + '::' if cls is not None else ''}{item.name}"
