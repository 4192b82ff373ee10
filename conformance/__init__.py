"""conv-conformance: differential testing and conformance for 2-D convolution, forward and backward.

Public API: the problem model, the backend protocol, the registry, the strategies and reproduction.
"""

from __future__ import annotations

from .backend import Backend, Capabilities, Grads
from .errors import BackendError, ConformanceError, InvalidProblem, RegistryError
from .problem import ConvProblem
from .repro import reproduce

__all__ = [
    "Backend", "BackendError", "Capabilities", "ConformanceError", "ConvProblem", "Grads", "InvalidProblem",
    "RegistryError", "reproduce",
]
__version__ = "0.1.0"
