"""The golden cases, one per rank, each with ``loss = out.sum()`` (dy = ones).

conv2d: the seed notebook's case, a 6×5 image and a 3×3 Sobel kernel. ``conformance/data/golden.json`` is a copy of
``shared/seed/golden.json``: PyTorch's own answers for the forward output, the weight gradient
``[[15,18,25],[21,23,28],[30,31,34]]`` and the input gradient, with the notebook's output-shape examples.

conv1d and conv3d (``conformance/data/golden_nd.json``): the central difference ``[1, 0, -1]`` on pi's digits
``3 1 4 1 5 9 2 6`` with padding 1 (forward ``[-1, -1, 0, -1, -8, 3, 3, 2]``, weight gradient ``[25, 31, 28]``: the
sums of the padded input's three windows), and a 2×2×2 kernel ``w[a,b,c] = 1 + 2a + b - c`` on the 3×4×4 ramp
``x[d,h,w] = 3d + 2h + w`` (forward ``16·x[d,h,w] + 62``, weight gradient ``18·(3a + 2b + c) + 81``): values a reader
can check by hand, derived again in ``tests/test_golden_nd.py``; a kernel that is not symmetric, so a flipped kernel or
swapped axes (D ≠ H) show; every sum at most 256 in magnitude, so exact in bfloat16 too.

conv_transpose1d/2d/3d (the same file): ``[1 2 3]`` scattered through the kernel ``[1 2 3]`` with stride 2, padding 1
and output padding 1 (the uncropped ``[1 2 5 4 9 6 9]`` less its first element: ``[2 5 4 9 6 9]``; the input gradient
``[5 6 6]``: the first input's first tap lands on the cropped element); ``[[1 2] [3 4]]`` through the same 2×2 kernel
with stride 2 (U-Net's up-convolution: four 2×2 blocks ``x[i,j]·w``; every gradient 10); and a 3-D case, depth stride
2, width stride 1, where the width taps overlap (``tests/test_golden_nd.py`` derives each by hand).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from conformance.inputs.data import Inputs
from conformance.model.problem import ConvProblem, operation_name


@lru_cache(maxsize=1)
def golden_json() -> dict[str, Any]:
    return json.loads(resources.files("conformance").joinpath("data/golden.json").read_text())


@lru_cache(maxsize=1)
def golden_nd_json() -> dict[str, Any]:
    return json.loads(resources.files("conformance").joinpath("data/golden_nd.json").read_text())


def golden_case(dtype: str = "float32", rank: int = 2,
                transposed: bool = False) -> tuple[ConvProblem, Inputs, dict[str, np.ndarray]]:
    """The problem of ``rank`` (``transposed``: of the transposed convolution), its operands (dy = ones: the gradient
    of ``out.sum()``) and the expected answers."""
    if (rank, transposed) != (2, False):
        return _golden_nd(dtype, operation_name(rank, transposed))
    g = golden_json()
    n, c, h, w = g["x_shape"]
    o, _, kh, kw = g["w_shape"]
    p = ConvProblem(batch=n, c_in=c, c_out=o, h=h, w=w, kh=kh, kw=kw, stride=tuple(g["stride"]),
                    padding=tuple(g["padding"]), dilation=tuple(g["dilation"]), groups=g["groups"],
                    bias=g["bias"] is not None, dtype=dtype, label="golden: Sobel 6x5")
    x = np.asarray(g["x"], dtype=p.np_dtype).reshape(p.input_shape)
    wt = np.asarray(g["w"], dtype=p.np_dtype).reshape(p.weight_shape)
    dy = np.ones(p.output_shape, dtype=p.np_dtype)
    expected = {
        "forward": np.asarray(g["expected_out"], dtype=np.float64).reshape(p.output_shape),
        "grad_weight": np.asarray(g["expected_grad_weight"], dtype=np.float64).reshape(p.weight_shape),
        "grad_input": np.asarray(g["expected_grad_input"], dtype=np.float64).reshape(p.input_shape),
    }
    return p, Inputs(x, wt, None, dy), expected


def shape_examples() -> list[tuple[ConvProblem, tuple[int, ...]]]:
    """The notebook's (problem, expected output shape) pairs."""
    out = []
    for ex in golden_json()["shape_examples"]:
        n, c, h, w = ex["input"]
        p = ConvProblem(batch=n, c_in=c, c_out=ex["C_out"], h=h, w=w, kh=ex["kernel"], kw=ex["kernel"],
                        stride=ex["stride"], padding=ex["padding"])
        out.append((p, tuple(ex["expected_output_shape"])))
    return out


def _golden_nd(dtype: str, operation: str) -> tuple[ConvProblem, Inputs, dict[str, np.ndarray]]:
    g = golden_nd_json()[operation]
    p = ConvProblem.parse(g["descriptor"]).replace(dtype=dtype, label=g["label"])
    x = np.asarray(g["x"], dtype=p.np_dtype).reshape(p.input_shape)
    w = np.asarray(g["w"], dtype=p.np_dtype).reshape(p.weight_shape)
    expected = {"forward": np.asarray(g["expected_out"], dtype=np.float64).reshape(p.output_shape),
                "grad_weight": np.asarray(g["expected_grad_weight"], dtype=np.float64).reshape(p.weight_shape),
                "grad_input": np.asarray(g["expected_grad_input"], dtype=np.float64).reshape(p.input_shape)}
    return p, Inputs(x, w, None, np.ones(p.output_shape, dtype=p.np_dtype)), expected
