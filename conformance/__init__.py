"""conv-conformance: differential testing and conformance for 2-D convolution, forward and backward.

Public API: the problem model, the backend protocol, the errors, reproduction, and the oracle (``reference``) and
strategies modules that backends and their tests use. The package is laid out by concern: ``model`` (the problem),
``numerics`` (oracle, bounds, comparison, arithmetic), ``inputs`` (data, strategies, golden cases), ``checks`` (the
table of checks and the checks), ``backends`` (protocol, registry, calling and isolating a backend), ``results``
(rows, records, reproductions, known failures); the faces at the top: ``cli``, ``gate``, ``pytest_plugin``.
"""

from __future__ import annotations

from .backends.backend import Backend, Capabilities, Grads
from .errors import BackendError, BackendFailure, ConformanceError, InvalidProblem, RegistryError
from .inputs import strategies
from .model.problem import ConvProblem
from .numerics import reference
from .results.repro import reproduce

__all__ = [
    "Backend", "BackendError", "BackendFailure", "Capabilities", "ConformanceError", "ConvProblem", "Grads",
    "InvalidProblem", "RegistryError", "reference", "reproduce", "strategies",
]
__version__ = "0.1.0"
