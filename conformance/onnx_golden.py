"""Golden vectors from outside: ONNX's backend node tests for ``Conv``, where the ``onnx`` package is installed.

ONNX ships, with its Python package, the cases it uses to test every ONNX backend (``onnx.backend.test.case.node
.conv``): inputs, attributes and expected outputs computed independently of PyTorch. Each case becomes a
``ConvProblem``; ONNX's ``pads`` are ``[top, left, bottom, right]`` and ``auto_pad`` SAME_UPPER / SAME_LOWER put
the odd extra row at the end / the beginning, which becomes explicit asymmetric padding here.
"""

from __future__ import annotations

import importlib
import math
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .problem import ConvProblem

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


def _auto_pads(mode: str, size: int, k: int, s: int, d: int) -> tuple[int, int]:
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
        (top, bottom), (left, right) = (_auto_pads(auto, size, k, s, dd) for size, k, s, dd in
                                        ((h, kh, stride[0], dilation[0]), (wd, kw, stride[1], dilation[1])))
    else:
        top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
    return ConvProblem(batch=n, c_in=c, c_out=o, h=h, w=wd, kh=kh, kw=kw, stride=stride, dilation=dilation,
                       padding=(top, bottom, left, right),  # type: ignore[arg-type]  # (top, bottom, left, right)
                       groups=attrs.get("group", 1), bias=bias,
                       dtype=str(x.dtype), label=f"onnx: {name}")


def _conv_testcases() -> list[Any]:
    """ONNX's Conv node test cases. ``collect_testcases("Conv")`` imports the module of every operator and runs
    each one's reference code (the pooling ones alone take seconds); importing the Conv module by itself, with the
    collector aimed at Conv, yields the same cases in about 1 % of the time. That leans on two module attributes
    of onnx's collector, so where they are missing or the Conv module was imported before, the public call runs."""
    from onnx.backend.test.case import node

    module = f"{node.__name__}.conv"
    collected = getattr(node, "_NodeTestCases", None)
    if isinstance(collected, list) and hasattr(node, "_TargetOpType") and module not in sys.modules:
        start, target = len(collected), node._TargetOpType
        setattr(node, "_TargetOpType", "Conv")  # noqa: B010 - a module attribute onnx's stubs type as None
        try:
            importlib.import_module(module)
        finally:
            setattr(node, "_TargetOpType", target)  # noqa: B010
        if len(collected) > start:
            return collected[start:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collecting imports every op's cases, some of which warn
        return list(node.collect_testcases("Conv"))


@lru_cache(maxsize=1)
def cases() -> tuple[OnnxCase, ...]:
    """Every 2-D Conv case ONNX ships, as (problem, inputs, expected output)."""
    import onnx

    out = []
    for tc in _conv_testcases():
        if tc.model is None or tc.data_sets is None or tc.model.graph.node[0].op_type != "Conv":
            continue
        graph_node = tc.model.graph.node[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in graph_node.attribute}
        for inputs, outputs in tc.data_sets:
            x, w = inputs[0], inputs[1]
            if x.ndim != 4:
                continue  # 1-D and 3-D convolutions are outside this suite
            b = inputs[2] if len(inputs) > 2 else None
            problem = _problem(tc.name, attrs, x, w, b is not None)
            out.append(OnnxCase(tc.name, problem, x, w, b, outputs[0]))
    return tuple(out)
