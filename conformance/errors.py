"""Exception types of conv-conformance; every message names the values and the rule broken."""

from __future__ import annotations


class ConformanceError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidProblem(ConformanceError, ValueError):
    """A convolution problem that breaks a rule of ``torch.nn.functional.conv2d``.

    Messages read ``name=value, but <rule>``, e.g. ``groups=3 must divide c_in=4``.
    """


class RegistryError(ConformanceError, LookupError):
    """A backend could not be loaded or registered (bad import path, duplicate name, bad protocol)."""


class BackendError(ConformanceError, RuntimeError):
    """A backend raised, crashed, hung or returned something that is not an answer."""


class BackendFailure(ConformanceError):
    """A backend failed a check: a verdict out of bounds, or no result to judge. The message is the verdict(s) with
    a reproduction; the suite raises it (never ``AssertionError``, which means a bug of the suite itself)."""


class SuiteBug(ConformanceError, AssertionError):
    """A precondition of the suite itself was broken (not the backend's failure)."""
