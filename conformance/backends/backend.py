"""The backend protocol: what a convolution implementation provides and declares.

A backend is any object with a ``name``, ``capabilities``, ``forward`` and ``backward``::

    class MyConv:
        name = "my-conv"
        capabilities = conformance.Capabilities(dtypes=("float32", "float64"), groups=True,
                                                dilation=True, backward=True)
        def forward(self, problem, x, w, b): ...    # numpy arrays in (b may be None), numpy array out
        def backward(self, problem, x, w, dy): ...  # -> (dx, dw, db); db may be None without bias

Optional: ``available(self) -> str | None`` returns why the backend cannot run here (``None``: it can),
and ``version`` (a string shown in the report); both are asked in the suite's own process, so keep them cheap
(find a library, do not import it). ``prepare(self)`` is called once where the backend runs, before its first
timed call: import the library, create the device context (seconds on a GPU), so that the times the report shows
are the convolution's, not the start-up's. ``warm_up(self, method, args)`` (``method`` ``"forward"`` or
``"backward"``, ``args`` the very arguments of the call that follows) is called before every timed call, untimed: a
backend that compiles per shape (``torch.compile``, ``jax.jit``) compiles there; an exception in it is the call's.
``opt_in`` (a string: why) makes a backend run only where a run names it (``--select NAME``; ``gate --impl NAME``
does): a run of every backend, such as the main job, lists it as unavailable with that reason (``torch-compile``:
Inductor compiles every problem, seconds each).
What a backend does not declare is never generated for it;
the runner reports it as unsupported, with the reason. A backend never calls ``pytest.skip`` itself.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np

from conformance.errors import RegistryError
from conformance.model.problem import DTYPES, RANKS, ConvProblem, operation_name

ERROR_MODELS = ("componentwise", "normwise")


class Grads(NamedTuple):
    """The three gradients of ``sum(conv2d(x, w, b) * dy)``."""

    dx: np.ndarray
    dw: np.ndarray
    db: Optional[np.ndarray]


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares it supports and how it computes.

    ``precision`` names the precision profile per dtype (see ``conformance.numerics.tolerance.PROFILES``) where the
    backend computes below its dtype, e.g. ``{"float32": "tf32"}``; a single string applies to every dtype.
    Dtypes it does not name get the IEEE profile of the dtype itself. Where the arithmetic depends on the machine
    (a library that picks other kernels on another CPU), ``precision`` may be a function of no arguments that
    returns the mapping; it is called once, where the profile is first needed (``python -m conformance profile``
    measures what a backend does on this machine).
    ``error_model`` is ``"componentwise"`` (direct summation; the default) or ``"normwise"`` (FFT, Winograd).
    ``max_macs`` caps the problem size the suite generates for a slow backend (naive loops).
    """

    dtypes: tuple[str, ...] = ("float32", "float64")
    groups: bool = True
    dilation: bool = True
    backward: bool = True
    error_model: str = "componentwise"
    precision: Mapping[str, str] | str | Callable[[], Mapping[str, str] | str | None] | None = None
    deterministic: bool = True
    max_macs: int | None = None
    #: padding modes of torch.nn.Conv2d(padding_mode=...) this backend handles ("zeros" only by default)
    padding_modes: tuple[str, ...] = ("zeros",)
    #: whether it takes ONNX-style asymmetric padding (problem.padding_end; also padding="same" with even kernels)
    asymmetric_padding: bool = False
    #: the spatial ranks it handles: 1 (conv1d, NCL), 2 (conv2d, NCHW), 3 (conv3d, NCDHW); conv2d only by default
    ranks: tuple[int, ...] = (2,)
    #: whether it implements transposed convolution too (conv_transpose1d/2d/3d, in its ranks): ``problem.transposed``
    transposed: bool = False
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtypes", tuple(self.dtypes))
        object.__setattr__(self, "padding_modes", tuple(self.padding_modes))
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad:
            raise RegistryError(f"Capabilities(dtypes={self.dtypes!r}), but {bad} are not among {DTYPES}")
        if self.error_model not in ERROR_MODELS:
            raise RegistryError(f"Capabilities(error_model={self.error_model!r}), but it must be one of {ERROR_MODELS}")
        object.__setattr__(self, "ranks", tuple(self.ranks))
        if not self.ranks or any(r not in RANKS for r in self.ranks):
            raise RegistryError(f"Capabilities(ranks={self.ranks!r}), but each rank must be one of {RANKS} "
                                "(1: conv1d, 2: conv2d, 3: conv3d)")

    @property
    def resolved_precision(self) -> Mapping[str, str] | str | None:
        """``precision``, with a function called (once) for the machine this process runs on."""
        if not callable(self.precision):
            return self.precision
        if "_resolved" not in self.__dict__:
            object.__setattr__(self, "_resolved", self.precision())
        return self.__dict__["_resolved"]  # type: ignore[no-any-return]

    def profile_for(self, dtype: str, check: str | None = None, transposed: bool = False, rank: int = 2) -> str:
        """The precision-profile name this backend computes ``dtype`` with; a key ``"float16:grad_weight"`` in
        ``precision`` declares one pass apart (torch CPU accumulates float16 backward passes in float16), a key
        ``"conv_transpose:float16:forward"`` (or ``"conv_transpose:float16"``) the transposed convolution's apart
        (``transposed``), and a key that starts with an operation's name, ``"conv3d:float16:forward"`` (or
        ``"conv3d:float16"``, ``"conv_transpose1d:..."``), one operation's apart (TensorFlow's float16 conv3d rounds
        where its conv2d does not). The most specific key given wins; the others fall back on the convolution's."""
        from conformance.numerics.tolerance import default_profile

        precision = self.resolved_precision
        if isinstance(precision, str):
            return precision
        if not precision:
            return default_profile(dtype)
        for prefix in [f"{operation_name(rank, transposed)}:"] + (["conv_transpose:"] if transposed else []) + [""]:
            for key in (f"{prefix}{dtype}:{check}", f"{prefix}{dtype}"):
                if key in precision:
                    return precision[key]
        return default_profile(dtype)

    def unsupported_reason(self, problem: ConvProblem, *, backward: bool = False) -> str | None:
        """Why this backend does not claim ``problem`` (``None`` when it does)."""
        if problem.rank not in self.ranks:
            return f"{problem.rank}-D convolution (conv{problem.rank}d) not declared (ranks={self.ranks})"
        if problem.transposed and not self.transposed:
            return f"transposed convolution ({problem.operation}) not declared (transposed=False)"
        if problem.dtype not in self.dtypes:
            return f"dtype {problem.dtype} not declared (declares {', '.join(self.dtypes)})"
        if problem.groups != 1 and not self.groups:
            return "groups > 1 not declared (groups=False)"
        if any(d != 1 for d in problem.dilation) and not self.dilation:
            return "dilation > 1 not declared (dilation=False)"
        if backward and not self.backward:
            return "backward not declared (backward=False)"
        if problem.padding_mode not in self.padding_modes:
            return f"padding_mode={problem.padding_mode!r} not declared (declares {', '.join(self.padding_modes)})"
        if problem.asymmetric and not self.asymmetric_padding:
            return "asymmetric padding not declared (asymmetric_padding=False)"
        if self.max_macs is not None and problem.macs > self.max_macs:
            return f"problem has {problem.macs} MACs, above the declared max_macs={self.max_macs}"
        return None

    def summary(self) -> str:
        parts = [",".join(self.dtypes)]
        parts.append("groups" if self.groups else "no-groups")
        parts.append("dilation" if self.dilation else "no-dilation")
        parts.append("backward" if self.backward else "forward-only")
        parts.append(self.error_model)
        precision = self.resolved_precision
        if precision:
            parts.append(f"precision={precision if isinstance(precision, str) else dict(precision)}")
        if self.padding_modes != ("zeros",):
            parts.append("padding=" + "/".join(self.padding_modes))
        if self.ranks != (2,):
            parts.append("ranks=" + ",".join(map(str, self.ranks)))
        if self.transposed:
            parts.append("transposed")
        if self.asymmetric_padding:
            parts.append("asymmetric")
        if not self.deterministic:
            parts.append("non-deterministic")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        precision = self.resolved_precision
        return {
            "dtypes": list(self.dtypes), "groups": self.groups, "dilation": self.dilation,
            "backward": self.backward, "error_model": self.error_model,
            "precision": {d: self.profile_for(d) for d in self.dtypes} | (
                {k: v for k, v in precision.items() if ":" in k} if isinstance(precision, Mapping) else {}),
            "deterministic": self.deterministic, "max_macs": self.max_macs, "notes": self.notes,
            "padding_modes": list(self.padding_modes), "asymmetric_padding": self.asymmetric_padding,
            "ranks": list(self.ranks), "transposed": self.transposed,
        }


@runtime_checkable
class Backend(Protocol):
    """The members the runner calls. ``available`` and ``version`` are optional."""

    name: str
    capabilities: Capabilities

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray: ...

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Any: ...


def installed_version(distribution: str) -> str | None:
    """The version of an installed distribution from its metadata (``None``: not installed), without importing it:
    the same answer in a process that imported the library and in one that did not."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def prepare(backend: Any) -> None:
    """Run the backend's optional ``prepare()`` (imports, device start-up) before anything is timed."""
    hook = getattr(backend, "prepare", None)
    if callable(hook):
        hook()


def availability(backend: Any) -> str | None:
    """Why ``backend`` cannot run here, or ``None``. A probe that raises counts as unavailable."""
    probe = getattr(backend, "available", None)
    if probe is None:
        return None
    try:
        reason = probe()
    except Exception as exc:  # a probe must never take the run down
        return f"available() raised {type(exc).__name__}: {exc}"
    return None if reason in (None, True) else str(reason)
