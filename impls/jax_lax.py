"""``jax.lax.conv_general_dilated`` on JAX's CPU backend (XLA), gradients through ``jax.vjp``: JAX's convolution as
a user calls it, in every rank, the transposed convolution too.

One convolution call serves every rank: ``dimension_numbers`` name torch's layouts (``NCH``/``OIH`` in 1-D, ``NCHW``
/``OIHW``, ``NCDHW``/``OIDHW``), so no layout is converted; ``padding`` takes one ``(begin, end)`` pair per axis
(ONNX-style asymmetric padding as it is), ``rhs_dilation`` is torch's dilation and ``feature_group_count`` its
groups. The bias is added after the convolution, as Flax's ``nn.Conv`` adds it. reflect, replicate and circular
padding are ``jnp.pad``'s ``reflect``, ``edge`` and ``wrap`` before a convolution without padding (what torch's
``Conv2d(padding_mode=...)`` does with ``F.pad``); JAX differentiates the pad too.

The transposed convolution is the convolution's adjoint written as a convolution (``lax.conv_transpose`` has no
groups): the input dilated by the stride (``lhs_dilation``), the kernel flipped along every spatial axis with its
input and output channels exchanged within each group (``transposed_kernel``), and padded by ``d*(k-1) - padding``
at the start and ``d*(k-1) - padding_end + output_padding`` at the end (``transposed_padding``; a negative pad
crops, which XLA takes). That is the definition of ``jax.lax.conv_transpose`` with ``transpose_kernel=True``,
extended to groups. Its gradients are ``jax.vjp``'s of that expression.

Each problem's forward and backward are ``jax.jit``-compiled once and cached (compiled code per shape, as a user's
jitted model has); the runner's untimed ``warm_up`` compiles them before the first timed call, so the reported time
is the convolution's, not XLA's compilation (seconds per new shape on a busy 2-core machine). float64 needs JAX's
``jax_enable_x64``, which this backend switches on itself before its first call (``prepare``); every result's dtype
is checked against the problem's, so a float64 problem is never computed in float32 silently. JAX is imported
inside the methods, so that the suite loads without it; ``available()`` only looks for it.

Arithmetic on the CPU, measured with ``python -m conformance profile`` (README "Frameworks"): see ``PRECISION``.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from conformance.backends.backend import Capabilities, Grads, installed_version
from conformance.model.problem import ConvProblem

#: torch's layouts as ``lax.conv_general_dilated``'s dimension numbers (lhs, rhs, out), by rank
DIMENSION_NUMBERS: dict[int, tuple[str, str, str]] = {
    1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}
#: torch's padding modes as ``jnp.pad``'s modes (``zeros`` is the convolution's own padding)
PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
#: compiled problems kept per process (each holds its forward and backward executables)
CACHE_SIZE = 256

#: XLA on the CPU as measured with ``python -m conformance profile`` (jax 0.10.2, AMD EPYC with avx512_bf16,
#: 2026-12-07). float32 and float64: IEEE direct sums in the dtype (24 and 53 accumulator bits). float16 and
#: bfloat16: the convolution accumulates in float32 and rounds its result, to which the bias is then added in the
#: dtype (one intermediate rounding: -mid16); grad_input rounds the convolution too and jnp.pad's adjoint folds the
#: reflect/replicate/circular border back in the dtype (several roundings: -acc16); grad_weight is one float32-
#: accumulated convolution; grad_bias is XLA's reduce in the dtype itself (11 and 8 accumulator bits: -acc16).
#: float32, float64 and bfloat16 flush subnormals (DAZ and FTZ); float16 keeps them (they are normal in float32).
PRECISION: dict[str, str] = {
    "float16:forward": "fp16-acc32-mid16", "float16:grad_input": "fp16-acc16", "float16:grad_bias": "fp16-acc16",
    "bfloat16:forward": "bf16-acc32-mid16", "bfloat16:grad_input": "bf16-acc16", "bfloat16:grad_bias": "bf16-acc16"}


def dimension_numbers(rank: int) -> tuple[str, str, str]:
    """``lax.conv_general_dilated``'s ``dimension_numbers`` for torch's layouts of ``rank`` spatial axes."""
    return DIMENSION_NUMBERS[rank]


def padding_pairs(problem: ConvProblem) -> list[tuple[int, int]]:
    """The convolution's ``(begin, end)`` padding per spatial axis; none where ``pad_widths`` pads the input itself
    (a padding mode other than zeros)."""
    if problem.padding_mode != "zeros":
        return [(0, 0)] * problem.rank
    return list(zip(problem.padding, problem.pad_end))


def pad_widths(problem: ConvProblem) -> list[tuple[int, int]] | None:
    """``jnp.pad``'s widths for the whole input (batch and channels unpadded) where the padding mode is not zeros
    (``PAD_MODES[problem.padding_mode]`` is its mode); ``None`` for zero padding."""
    if problem.padding_mode == "zeros":
        return None
    return [(0, 0), (0, 0), *zip(problem.padding, problem.pad_end)]


def transposed_padding(problem: ConvProblem) -> list[tuple[int, int]]:
    """A transposed problem's padding of the stride-dilated input, per axis: ``d*(k-1) - padding`` before,
    ``d*(k-1) - padding_end + output_padding`` after (negative: cropped). The output is then
    ``(in-1)*s + 1 + 2*d*(k-1) - padding - padding_end + output_padding - d*(k-1)`` long, the problem's."""
    return [(d * (k - 1) - p, d * (k - 1) - e + op) for k, d, p, e, op in
            zip(problem.kernel, problem.dilation, problem.padding, problem.pad_end, problem.output_padding)]


def transposed_kernel(w: Any, groups: int) -> Any:
    """torch's transposed weight ``(C_in, C_out/G, *k)`` as the forward convolution's ``(C_out, C_in/G, *k)`` that
    computes the transposed convolution on the stride-dilated input: the channels exchanged within each group and
    every spatial axis flipped. Works on numpy and jax arrays alike (``reshape``, ``swapaxes``, slicing)."""
    c_in, og, *k = w.shape
    rank = len(k)
    g = w.reshape(groups, c_in // groups, og, *k).swapaxes(1, 2).reshape(groups * og, c_in // groups, *k)
    return g[(slice(None), slice(None)) + (slice(None, None, -1),) * rank]


def convolution(problem: ConvProblem, lax: Any, jnp: Any) -> Callable[..., Any]:
    """``f(x, w[, b]) -> y`` of ``problem`` in JAX (``lax``, ``jnp`` passed in, so this module imports no JAX)."""
    dn = dimension_numbers(problem.rank)

    def conv(x: Any, w: Any) -> Any:
        if problem.transposed:
            return lax.conv_general_dilated(
                x, transposed_kernel(w, problem.groups), window_strides=(1,) * problem.rank,
                padding=transposed_padding(problem), lhs_dilation=problem.stride, rhs_dilation=problem.dilation,
                dimension_numbers=dn, feature_group_count=problem.groups)
        widths = pad_widths(problem)
        if widths is not None:
            x = jnp.pad(x, widths, mode=PAD_MODES[problem.padding_mode])
        return lax.conv_general_dilated(
            x, w, window_strides=problem.stride, padding=padding_pairs(problem), rhs_dilation=problem.dilation,
            dimension_numbers=dn, feature_group_count=problem.groups)

    if not problem.bias:
        return conv

    def conv_bias(x: Any, w: Any, b: Any) -> Any:
        return conv(x, w) + b.reshape((1, -1) + (1,) * problem.rank)

    return conv_bias


def _checked(problem: ConvProblem, what: str, a: Any) -> np.ndarray:
    """A C-contiguous numpy copy of a JAX result, which must be of the problem's dtype (never a silent float32)."""
    out = np.array(a, order="C", copy=True)
    if out.dtype != problem.np_dtype:
        raise TypeError(f"jax returned {what} as {out.dtype} for a {problem.dtype} problem (jax_enable_x64 is "
                        "needed for float64; this backend sets it in prepare())")
    return out


class JaxLax:
    """JAX's ``lax.conv_general_dilated`` (XLA on the CPU), forward and ``jax.vjp`` backward, jitted per problem."""

    name = "jax"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                precision=PRECISION, ranks=(1, 2, 3), transposed=True,
                                notes="jax.lax.conv_general_dilated (transposed: lhs_dilation and the flipped kernel) "
                                      "+ jax.vjp, jitted per problem, XLA CPU, jax_enable_x64 on")

    def __init__(self) -> None:
        self._compiled: OrderedDict[ConvProblem, tuple[Any, Any]] = OrderedDict()
        self._warm: set[tuple[ConvProblem, str]] = set()  #: (problem, pass) compiled by warm_up

    def available(self) -> str | None:
        # found, not imported (the suite asks in its own process); the worker imports JAX in prepare()
        if importlib.util.find_spec("jax") is None:
            return "jax is not installed"
        return None

    @property
    def version(self) -> str:
        return installed_version("jax") or "n/a"

    def environment(self) -> dict[str, str]:
        """What decides XLA's arithmetic here besides the CPU: the jaxlib build, x64 on, any XLA_FLAGS."""
        return {"jaxlib": installed_version("jaxlib") or "n/a", "jax_enable_x64": "True",
                "xla_flags": os.environ.get("XLA_FLAGS", "")}

    def prepare(self) -> None:
        """Import JAX and switch on float64 (``jax_enable_x64``) before any array is made."""
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.numpy.zeros(1).block_until_ready()

    def warm_up(self, method: str, args: tuple[Any, ...]) -> None:
        """The runner's untimed hook before a timed call: trace and compile this problem's pass (run once on the
        call's own operands) the first time it is met, so that the reported time is the convolution's."""
        problem = args[0]
        if method == "forward" and args[3] is None:
            problem = problem.replace(bias=False)
        key = (problem.replace(label=""), method)
        if key not in self._warm:
            getattr(self, method)(*args)
            self._warm.add(key)

    def _functions(self, problem: ConvProblem) -> tuple[Any, Any]:
        """The jitted forward and backward of ``problem`` (compiled on first call, kept in an LRU cache)."""
        key = problem.replace(label="")
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        import jax
        import jax.numpy as jnp
        from jax import lax

        if not jax.config.jax_enable_x64:
            self.prepare()
        f = convolution(problem, lax, jnp)

        def backward(x: Any, w: Any, dy: Any) -> Any:
            args = (x, w, jnp.zeros(problem.c_out, dtype=x.dtype)) if problem.bias else (x, w)
            _, pull = jax.vjp(f, *args)
            return pull(dy)

        fns = (jax.jit(f), jax.jit(backward))
        self._compiled[key] = fns
        if len(self._compiled) > CACHE_SIZE:
            evicted, _ = self._compiled.popitem(last=False)
            self._warm -= {(evicted, "forward"), (evicted, "backward")}
        return fns

    @staticmethod
    def _array(problem: ConvProblem, a: np.ndarray) -> Any:
        import jax.numpy as jnp

        return jnp.asarray(np.asarray(a, dtype=problem.np_dtype))

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if b is None:  # no bias given (the oracle-free checks' convolutions): the convolution alone
            problem = problem.replace(bias=False)
        fwd, _ = self._functions(problem)
        args = [self._array(problem, x), self._array(problem, w)]
        if b is not None and problem.bias:
            args.append(self._array(problem, b))
        return _checked(problem, "the forward result", fwd(*args))

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        _, bwd = self._functions(problem)
        grads = bwd(self._array(problem, x), self._array(problem, w), self._array(problem, dy))
        return Grads(dx=_checked(problem, "grad_input", grads[0]), dw=_checked(problem, "grad_weight", grads[1]),
                     db=_checked(problem, "grad_bias", grads[2]) if problem.bias else None)
