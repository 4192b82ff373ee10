"""Golden vectors from outside: ONNX's backend node tests for ``Conv``, where the ``onnx`` package is installed.

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

from conformance.model.problem import ConvProblem

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


def _problem(name: str, attrs: dict[str, Any], x: np.ndarray, w: np.ndarray, bias: bool) -> ConvProblem:
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    stride = tuple(attrs.get("strides", (1, 1)))
    dilation = tuple(attrs.get("dilations", (1, 1)))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("", "NOTSET"):
        (top, bottom), (left, right) = (auto_pads(auto, size, k, s, dd) for size, k, s, dd in
                                        ((h, kh, stride[0], dilation[0]), (wd, kw, stride[1], dilation[1])))
    else:
        top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
    return ConvProblem(batch=n, c_in=c, c_out=o, h=h, w=wd, kh=kh, kw=kw, stride=stride, dilation=dilation,
                       padding=(top, bottom, left, right),  # type: ignore[arg-type]  # (top, bottom, left, right)
                       groups=attrs.get("group", 1), bias=bias,
                       dtype=str(x.dtype), label=f"onnx: {name}")


def conv_module_exports() -> list[tuple[str, Any, list[tuple[list[Any], list[Any]]]]]:
    """(name, node, data sets) of every case that the export functions of ONNX's ``Conv`` test class pass to
    ``expect``, the sink onnx's own collector gives them (``onnx.backend.test.case.node.expect(node, inputs, outputs,
    name, **kwargs)``). Each function is called as onnx's exporter calls it (numpy's global seed 0, restored after)
    but with its module's names and a collecting ``expect`` of our own, so that no state of onnx's collector is
    read or set (importing the module runs its exports into that collector once, as any import of it does); only
    the Conv module is imported (every operator's takes seconds, see ``conv_testcases``)."""
    from onnx.backend.test.case.node import conv as onnx_conv

    found: list[tuple[str, Any, list[tuple[list[Any], list[Any]]]]] = []

    def expect(node: Any, inputs: Any, outputs: Any, name: str, **kwargs: Any) -> None:
        found.append((name, node, [(list(inputs), list(outputs))]))

    names = dict(vars(onnx_conv), expect=expect)
    state = np.random.get_state()
    try:
        for attr, member in vars(onnx_conv.Conv).items():  # in definition order, as onnx's exporter runs them
            if attr.startswith("export") and isinstance(member, staticmethod):
                fn = member.__func__
                np.random.seed(0)
                types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__, fn.__closure__)()
    finally:
        np.random.set_state(state)
    return found


def conv_testcases() -> list[tuple[str, Any, list[tuple[list[Any], list[Any]]]]]:
    """(name, node, data sets) of ONNX's Conv node test cases whose graph is that one ``Conv`` node.

    onnx's public collector, ``collect_testcases("Conv")``, imports the module of every operator, which runs each
    one's reference code (the pooling ones alone take seconds: 3.7 s against 0.02 s for the Conv module alone,
    onnx 1.23), and the wheel no longer ships the node tests' data files; so the Conv module's own cases are read
    first (``conv_module_exports``), and the public collector runs only where that finds none (an onnx whose Conv test
    module is laid out otherwise). tests/test_onnx.py checks that both give the same cases."""
    try:
        found = [case for case in conv_module_exports() if case[1].op_type == "Conv"]
    except (ImportError, AttributeError):  # no Conv test module, or no Conv class in it
        found = []
    if found:
        return found
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collecting imports every op's cases, some of which warn
        collected = list(node.collect_testcases("Conv"))
    return [(tc.name, tc.model.graph.node[0], [(list(i), list(o)) for i, o in tc.data_sets]) for tc in collected
            if tc.model is not None and tc.data_sets is not None and len(tc.model.graph.node) == 1
            and tc.model.graph.node[0].op_type == "Conv"]


def _array(value: Any) -> np.ndarray:
    """A test case's input or output: ``expect`` takes numpy arrays or ``TensorProto``s."""
    import onnx

    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


@lru_cache(maxsize=1)
def cases() -> tuple[OnnxCase, ...]:
    """Every 2-D Conv case ONNX ships, as (problem, inputs, expected output)."""
    import onnx

    out = []
    for name, graph_node, data_sets in conv_testcases():
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in graph_node.attribute}
        for inputs, outputs in data_sets:
            x, w = _array(inputs[0]), _array(inputs[1])
            if x.ndim != 4:
                continue  # 1-D and 3-D convolutions are outside this suite
            b = _array(inputs[2]) if len(inputs) > 2 else None
            problem = _problem(name, attrs, x, w, b is not None)
            out.append(OnnxCase(name, problem, x, w, b, _array(outputs[0])))
    return tuple(out)
