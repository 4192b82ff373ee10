"""Shared fixtures of the suite's own tests."""

from conformance.registry import build_registry

pytest_plugins = ["pytester"]

# pytester's in-process runs drop the modules a run imported; C extensions (numpy's, torch's) cannot be imported
# twice in one process, so import every built-in backend (and what it imports) once, up front.
build_registry()
