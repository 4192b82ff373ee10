"""Golden vectors from outside: ONNX's backend node tests for ``Conv`` and ``ConvTranspose``, where the ``onnx``
package is installed.

ONNX ships, with its Python package, the cases it uses to test every ONNX backend (``onnx.backend.test.case.node
.conv``): inputs, attributes and expected outputs computed independently of PyTorch. Each case becomes a
``ConvProblem``; ONNX's ``pads`` are ``[top, left, bottom, right]`` and ``auto_pad`` SAME_UPPER / SAME_LOWER put
the odd extra row at the end / the beginning, which becomes explicit asymmetric padding here.
"""

from __future__ import annotations

import math
import types
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from conformance.model.problem import AXIS_NAMES, ConvProblem

MISSING = "onnx is not installed (pip install onnx): its Conv backend node tests are the golden vectors"


@dataclass(frozen=True)
class OnnxCase:
    name: str
    problem: ConvProblem
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    y: np.ndarray


def available() -> str | None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return MISSING
    return None


def auto_pads(mode: str, size: int, k: int, s: int, d: int) -> tuple[int, int]:
    if mode in ("", "NOTSET"):
        raise ValueError("explicit pads")
    if mode == "VALID":
        return 0, 0
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if mode == "SAME_UPPER" else (large, small)


def _spatial(x: np.ndarray, w: np.ndarray) -> dict[str, Any]:
    """The ConvProblem fields of the spatial sizes and the kernel, any rank (NCL, NCHW, NCDHW)."""
    axes = AXIS_NAMES[x.ndim - 2]
    return dict(zip(axes, x.shape[2:])) | {"k" + a: k for a, k in zip(axes, w.shape[2:])}


def _auto(attrs: dict[str, Any]) -> str:
    auto = attrs.get("auto_pad", b"NOTSET")
    return auto.decode() if isinstance(auto, bytes) else auto


def _problem(name: str, attrs: dict[str, Any], x: np.ndarray, w: np.ndarray, bias: bool) -> ConvProblem:
    """A ``Conv`` node: ``pads`` are ``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``."""
    r = x.ndim - 2
    stride = tuple(attrs.get("strides", (1,) * r))
    dilation = tuple(attrs.get("dilations", (1,) * r))
    auto = _auto(attrs)
    if auto not in ("", "NOTSET"):
        begin, end = zip(*(auto_pads(auto, n, k, s, d) for n, k, s, d in zip(x.shape[2:], w.shape[2:], stride,
                                                                              dilation)))
    else:
        pads = tuple(attrs.get("pads", (0,) * 2 * r))
        begin, end = pads[:r], pads[r:]
    return ConvProblem(batch=x.shape[0], c_in=x.shape[1], c_out=w.shape[0], **_spatial(x, w), stride=stride,
                       dilation=dilation, padding=tuple(begin), padding_end=tuple(end), groups=attrs.get("group", 1),
                       bias=bias, dtype=str(x.dtype), label=f"onnx: {name}")


def transposed_pads(attrs: dict[str, Any], x: np.ndarray, w: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...],
                                                                                   tuple[int, ...]]:
    """(pads begin, pads end, output padding) of a ``ConvTranspose`` node, resolved as the ONNX operator's spec and
    reference implementation resolve them: with ``output_shape`` (or ``auto_pad`` SAME_UPPER/SAME_LOWER, whose output
    shape is ``input * stride``) the total padding is ``stride*(in-1) + output_padding + dilation*(k-1) + 1 -
    output_shape``, split with its larger half at the end for SAME_UPPER and at the beginning otherwise (floor
    division, as onnx's reference); a negative end (an output longer than the scatter reaches) is output padding."""
    r = x.ndim - 2
    stride = tuple(attrs.get("strides", (1,) * r))
    dilation = tuple(attrs.get("dilations", (1,) * r))
    extra = list(attrs.get("output_padding", (0,) * r))
    auto = _auto(attrs)
    shape = attrs.get("output_shape")
    if shape is None and auto in ("SAME_UPPER", "SAME_LOWER"):
        shape = [n * s for n, s in zip(x.shape[2:], stride)]
    if shape is None:
        pads = tuple(attrs.get("pads", (0,) * 2 * r))
        return tuple(pads[:r]), tuple(pads[r:]), tuple(extra)
    begin, end = [], []
    for i, (n, k, s, d, out) in enumerate(zip(x.shape[2:], w.shape[2:], stride, dilation, shape)):
        total = s * (n - 1) + extra[i] + (k - 1) * d + 1 - out
        b, e = (total // 2, total - total // 2) if auto == "SAME_UPPER" else (total - total // 2, total // 2)
        if e < 0:
            extra[i], e = extra[i] - e, 0
        begin.append(b)
        end.append(e)
    return tuple(begin), tuple(end), tuple(extra)


def _transposed_problem(name: str, attrs: dict[str, Any], x: np.ndarray, w: np.ndarray, bias: bool) -> ConvProblem:
    """A ``ConvTranspose`` node: weight ``(C_in, C_out / group, *kernel)``, pads resolved by ``transposed_pads``."""
    r = x.ndim - 2
    begin, end, extra = transposed_pads(attrs, x, w)
    group = attrs.get("group", 1)
    return ConvProblem(batch=x.shape[0], c_in=x.shape[1], c_out=w.shape[1] * group, **_spatial(x, w),
                       stride=tuple(attrs.get("strides", (1,) * r)), dilation=tuple(attrs.get("dilations", (1,) * r)),
                       padding=begin, padding_end=end, output_padding=extra, groups=group, bias=bias,
                       dtype=str(x.dtype), transposed=True, label=f"onnx: {name}")


def conv_module_exports(op: str = "Conv") -> list[tuple[str, Any, list[tuple[list[Any], list[Any]]]]]:
    """(name, node, data sets) of every case that the export functions of ONNX's ``Conv`` test class pass to
    ``expect``, the sink onnx's own collector gives them (``onnx.backend.test.case.node.expect(node, inputs, outputs,
    name, **kwargs)``). Each function is called as onnx's exporter calls it (numpy's global seed 0, restored after)
    but with its module's names and a collecting ``expect`` of our own, so that no state of onnx's collector is
    read or set (importing the module runs its exports into that collector once, as any import of it does); only
    the Conv module is imported (every operator's takes seconds, see ``conv_testcases``)."""
    import importlib

    onnx_conv = importlib.import_module(f"onnx.backend.test.case.node.{op.lower()}")

    found: list[tuple[str, Any, list[tuple[list[Any], list[Any]]]]] = []

    def expect(node: Any, inputs: Any, outputs: Any, name: str, **kwargs: Any) -> None:
        found.append((name, node, [(list(inputs), list(outputs))]))

    names = dict(vars(onnx_conv), expect=expect)
    state = np.random.get_state()
    try:
        for attr, member in vars(getattr(onnx_conv, op)).items():  # in definition order, as onnx's exporter runs them
            if attr.startswith("export") and isinstance(member, staticmethod):
                fn = member.__func__
                np.random.seed(0)
                types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__, fn.__closure__)()
    finally:
        np.random.set_state(state)
    return found


def conv_testcases(op: str = "Conv") -> list[tuple[str, Any, list[tuple[list[Any], list[Any]]]]]:
    """(name, node, data sets) of ONNX's Conv node test cases whose graph is that one ``Conv`` node.

    onnx's public collector, ``collect_testcases("Conv")``, imports the module of every operator, which runs each
    one's reference code (the pooling ones alone take seconds: 3.7 s against 0.02 s for the Conv module alone,
    onnx 1.23), and the wheel no longer ships the node tests' data files; so the Conv module's own cases are read
    first (``conv_module_exports``), and the public collector runs only where that finds none (an onnx whose Conv test
    module is laid out otherwise). tests/test_onnx.py checks that both give the same cases."""
    try:
        found = [case for case in conv_module_exports(op) if case[1].op_type == op]
    except (ImportError, AttributeError):  # no Conv test module, or no Conv class in it
        found = []
    if found:
        return found
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collecting imports every op's cases, some of which warn
        collected = list(node.collect_testcases(op))
    return [(tc.name, tc.model.graph.node[0], [(list(i), list(o)) for i, o in tc.data_sets]) for tc in collected
            if tc.model is not None and tc.data_sets is not None and len(tc.model.graph.node) == 1
            and tc.model.graph.node[0].op_type == op]


def _array(value: Any) -> np.ndarray:
    """A test case's input or output: ``expect`` takes numpy arrays or ``TensorProto``s."""
    import onnx

    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


@lru_cache(maxsize=2)
def cases(op: str = "Conv") -> tuple[OnnxCase, ...]:
    """Every case ONNX ships of ``op`` (``Conv``; ``ConvTranspose``: transposed problems), of every rank, as
    (problem, inputs, expected output)."""
    import onnx

    build = {"Conv": _problem, "ConvTranspose": _transposed_problem}[op]
    out = []
    for name, graph_node, data_sets in conv_testcases(op):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in graph_node.attribute}
        for inputs, outputs in data_sets:
            x, w = _array(inputs[0]), _array(inputs[1])
            b = _array(inputs[2]) if len(inputs) > 2 else None
            problem = build(name, attrs, x, w, b is not None)
            out.append(OnnxCase(name, problem, x, w, b, _array(outputs[0])))
    return tuple(out)
