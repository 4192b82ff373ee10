"""ONNX Runtime's ``Conv`` and ``ConvTranspose`` on its CPU execution provider: one ONNX model per problem, built with
``onnx.helper`` (opset 17), run in an ``onnxruntime.InferenceSession``. Forward only: ORT has no training graph here,
so the backend declares ``backward=False`` and the suite shows every backward check as unsupported.

The model is one node (``model_for``): inputs ``X``, ``W`` and, with a bias, ``B``; the attributes are the problem's
(``attributes``): ``kernel_shape``, ``strides``, ``dilations``, ``group`` and ``pads`` in ONNX's order, every
axis's begin then every axis's end, so asymmetric padding is native; ``ConvTranspose`` adds ``output_padding``
(its weight is ``(C_in, C_out/group, *k)`` as torch's). ORT refuses an output padding at least the stride, which
torch allows below the dilation: on such an axis the adapter folds it into the end padding, exactly
(``output_padding_plan``). ONNX has no padding mode on ``Conv``: reflect, replicate
and circular padding are a ``Pad`` node (modes ``reflect``, ``edge``, ``wrap``; ``wrap`` needs opset 19, which such
models then import) before a ``Conv`` without pads, as torch.onnx exports ``Conv2d(padding_mode=...)``.
Layouts are torch's (NCHW and its 1-D and 3-D kin): nothing is converted.

Dtypes are those ORT's CPU provider runs: float32 and float16 (measured with ``python -m conformance profile``:
float32 a float32 sum without FMA, float16 a 24-bit accumulator rounded once to float16, the default profiles);
there is no float64 Conv on the CPU (``NOT_IMPLEMENTED``) and bfloat16 is not a type ONNX's Conv admits.

Building and loading a session takes milliseconds, far longer than a small convolution: sessions are cached per
problem (its geometry, dtype and bias; the label aside) and built in the runner's untimed ``warm_up``. The graph
optimisation level (``optimization_level()``: ``ORT_ENABLE_ALL``, as a user's session gets it, unless the
environment variable ``CONV_CONFORMANCE_ORT_OPT_LEVEL`` names another) is recorded in ``environment()`` and so in
every row's facts. onnxruntime and onnx are imported inside the methods; ``available()`` only looks for them.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from typing import Any

import numpy as np

from conformance.backends.backend import Capabilities, Grads, installed_version
from conformance.model.problem import ConvProblem

#: the opset of every model; one with circular padding (Pad mode 'wrap') needs 19
OPSET = 17
OPSET_WRAP = 19
#: torch's padding modes as ONNX Pad's modes (zeros: the Conv's own pads)
PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
#: ONNX's TensorProto element types of the dtypes the CPU provider runs (onnx.TensorProto.FLOAT, FLOAT16)
ELEM_TYPES = {"float32": 1, "float16": 10}
#: sessions kept per process
CACHE_SIZE = 256
#: the SessionOptions.graph_optimization_level the sessions get (the name of onnxruntime.GraphOptimizationLevel)
OPT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def optimization_level() -> str:
    """The graph optimisation level of this process's sessions: ``CONV_CONFORMANCE_ORT_OPT_LEVEL`` or
    ``ORT_ENABLE_ALL``; a ``ValueError`` naming the choices for anything else."""
    level = os.environ.get("CONV_CONFORMANCE_ORT_OPT_LEVEL", "ORT_ENABLE_ALL")
    if level not in OPT_LEVELS:
        raise ValueError(f"CONV_CONFORMANCE_ORT_OPT_LEVEL={level!r}, but it must be one of {', '.join(OPT_LEVELS)}")
    return level


def attributes(problem: ConvProblem) -> dict[str, Any]:
    """The ``Conv``/``ConvTranspose`` node's attributes of ``problem`` (pads: every begin, then every end; none where
    a ``Pad`` node pads the input, i.e. a padding mode other than zeros)."""
    attrs: dict[str, Any] = {
        "kernel_shape": list(problem.kernel), "strides": list(problem.stride), "dilations": list(problem.dilation),
        "group": problem.groups}
    if problem.padding_mode == "zeros":
        attrs["pads"] = [*problem.padding, *problem.pad_end]
    else:
        attrs["pads"] = [0] * (2 * problem.rank)
    if problem.transposed:
        op, end, _ = output_padding_plan(problem)
        attrs["output_padding"] = op
        if problem.padding_mode == "zeros":
            attrs["pads"] = [*problem.padding, *end]
    return attrs


def output_padding_plan(problem: ConvProblem) -> tuple[list[int], list[int], list[int]]:
    """A transposed problem's ``(output_padding, pads_end, tail)`` per axis as ORT runs them. ORT refuses an output
    padding at least the stride ("output_padding may be too large for stride"), which torch allows below the dilation
    (ONNX's spec: "less than the corresponding stride/dilation dimension", read by ORT as the stride). On such an
    axis the output padding is folded into the end padding, exactly:
    the output ends ``pads_end - output_padding`` before the full result's end, and where that is negative the
    ``tail`` (``output_padding - pads_end``) elements past the full result, which no input reaches, are zeros that a
    ``Pad`` node appends before the bias is added (``model_for``). Other axes keep ONNX's own output_padding."""
    plan = [(op, e, 0) if op < s else (0, max(e - op, 0), max(op - e, 0))
            for op, s, e in zip(problem.output_padding, problem.stride, problem.pad_end)]
    return [p[0] for p in plan], [p[1] for p in plan], [p[2] for p in plan]


def pad_input(problem: ConvProblem) -> tuple[str, list[int]] | None:
    """``(mode, pads)`` of the ``Pad`` node before the convolution (``pads``: every axis's begin, batch and channels
    0, then every end), or ``None`` for zero padding."""
    if problem.padding_mode == "zeros":
        return None
    return PAD_MODES[problem.padding_mode], [0, 0, *problem.padding, 0, 0, *problem.pad_end]


def opset(problem: ConvProblem) -> int:
    return OPSET_WRAP if problem.padding_mode == "circular" else OPSET


def model_for(problem: ConvProblem) -> Any:
    """The ONNX model (``onnx.ModelProto``, checked) of ``problem``'s forward pass."""
    import onnx
    from onnx import helper

    if problem.dtype not in ELEM_TYPES:
        raise ValueError(f"dtype {problem.dtype} has no Conv kernel on the CPU provider "
                         f"(runs {', '.join(ELEM_TYPES)})")
    elem = ELEM_TYPES[problem.dtype]
    inputs = [helper.make_tensor_value_info("X", elem, list(problem.input_shape)),
              helper.make_tensor_value_info("W", elem, list(problem.weight_shape))]
    names = ["X", "W"]
    if problem.bias:
        inputs.append(helper.make_tensor_value_info("B", elem, list(problem.bias_shape)))
        names.append("B")
    nodes, initializers = [], []
    padded = pad_input(problem)
    if padded is not None:
        mode, pads = padded
        initializers.append(helper.make_tensor("pads", onnx.TensorProto.INT64, [len(pads)], pads))
        nodes.append(helper.make_node("Pad", ["X", "pads"], ["Xp"], mode=mode))
        names[0] = "Xp"
    op = "ConvTranspose" if problem.transposed else "Conv"
    tail = output_padding_plan(problem)[2] if problem.transposed else [0] * problem.rank
    if not any(tail):
        nodes.append(helper.make_node(op, names, ["Y"], **attributes(problem)))
    else:  # zeros past the full result (output_padding_plan), then the bias
        pads = [0] * (problem.rank + 2) + [0, 0, *tail]
        initializers.append(helper.make_tensor("tail", onnx.TensorProto.INT64, [len(pads)], pads))
        nodes.append(helper.make_node(op, names[:2], ["Y0"], **attributes(problem)))
        nodes.append(helper.make_node("Pad", ["Y0", "tail"], ["Y1" if problem.bias else "Y"], mode="constant"))
        if problem.bias:
            shape = [problem.c_out] + [1] * problem.rank
            initializers.append(helper.make_tensor("bshape", onnx.TensorProto.INT64, [len(shape)], shape))
            nodes.append(helper.make_node("Reshape", ["B", "bshape"], ["Bc"]))
            nodes.append(helper.make_node("Add", ["Y1", "Bc"], ["Y"]))
    graph = helper.make_graph(nodes, f"{problem.operation}", inputs,
                              [helper.make_tensor_value_info("Y", elem, list(problem.output_shape))],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset(problem))],
                              producer_name="conv-conformance")
    model.ir_version = 9  # what onnxruntime >= 1.17 reads; onnx's newest may be ahead of the installed runtime
    onnx.checker.check_model(model)
    return model


class OnnxRuntimeConv:
    """ONNX ``Conv``/``ConvTranspose`` in an onnxruntime CPU session, forward only, one cached session per problem."""

    name = "onnxruntime"
    capabilities = Capabilities(dtypes=("float32", "float16"), backward=False,
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                ranks=(1, 2, 3), transposed=True,
                                notes="ONNX Conv/ConvTranspose (opset 17; Pad before it for reflect/edge/wrap) in an "
                                      "onnxruntime InferenceSession, CPUExecutionProvider; forward only")

    def __init__(self) -> None:
        self._sessions: OrderedDict[ConvProblem, Any] = OrderedDict()

    def available(self) -> str | None:
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        return f"{' and '.join(missing)} not installed" if missing else None

    @property
    def version(self) -> str:
        return installed_version("onnxruntime") or "n/a"

    def environment(self) -> dict[str, str]:
        """The session settings that decide which kernels run: the optimisation level and provider; onnx's version."""
        return {"ort_graph_optimization_level": optimization_level(), "ort_provider": "CPUExecutionProvider",
                "onnx": installed_version("onnx") or "n/a"}

    def prepare(self) -> None:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

    def warm_up(self, method: str, args: tuple[Any, ...]) -> None:
        """The runner's untimed hook before a timed call: build and load this problem's session."""
        if method == "forward":
            self._session(args[0] if args[3] is not None else args[0].replace(bias=False))

    def _session(self, problem: ConvProblem) -> Any:
        key = problem.replace(label="")
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization_level())
        session = ort.InferenceSession(model_for(problem).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        self._sessions[key] = session
        if len(self._sessions) > CACHE_SIZE:
            self._sessions.popitem(last=False)
        return session

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if b is None:  # no bias given (the oracle-free checks' convolutions): the model without one
            problem = problem.replace(bias=False)
        feeds = {"X": np.ascontiguousarray(x, dtype=problem.np_dtype),
                 "W": np.ascontiguousarray(w, dtype=problem.np_dtype)}
        if problem.bias:
            feeds["B"] = np.ascontiguousarray(b, dtype=problem.np_dtype)
        (y,) = self._session(problem).run(["Y"], feeds)
        if y.dtype != problem.np_dtype:
            raise TypeError(f"onnxruntime returned {y.dtype} for a {problem.dtype} problem")
        return np.array(y, order="C", copy=True)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        raise NotImplementedError("onnxruntime: forward only (Capabilities(backward=False))")
