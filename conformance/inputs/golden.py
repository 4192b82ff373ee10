"""The seed notebook's golden case: a 6×5 image, a 3×3 Sobel kernel, ``loss = out.sum()``.

``conformance/data/golden.json`` is a copy of ``shared/seed/golden.json``: PyTorch's own answers for the
forward output, the weight gradient ``[[15,18,25],[21,23,28],[30,31,34]]`` and the input gradient, with the
notebook's output-shape examples.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from conformance.inputs.data import Inputs
from conformance.model.problem import ConvProblem


@lru_cache(maxsize=1)
def golden_json() -> dict[str, Any]:
    return json.loads(resources.files("conformance").joinpath("data/golden.json").read_text())


def golden_case(dtype: str = "float32") -> tuple[ConvProblem, Inputs, dict[str, np.ndarray]]:
    """The problem, its operands (dy = ones: the gradient of ``out.sum()``) and the expected answers."""
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
