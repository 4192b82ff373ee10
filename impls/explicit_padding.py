"""Explicit padding for the numpy backends: pad first, then convolve without padding; fold the gradient back.

``torch.nn.Conv2d`` does the same for ``padding_mode != "zeros"``. ``np.pad`` (modes ``reflect``, ``edge``,
``wrap``, ``constant``) pads the input; its adjoint comes from padding the *indices* ``0..n-1`` the same way: the
padded position ``i`` holds a copy of input ``src[i]``, so its gradient is added to ``src[i]`` (``np.add.at``),
and a zero of the padding (``src[i] = -1``) sends its gradient nowhere.
"""

from __future__ import annotations

import numpy as np

from conformance.model.problem import ConvProblem

_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def needed(p: ConvProblem) -> bool:
    """Whether ``p`` needs the explicit step (zero symmetric padding is the backends' own business)."""
    return p.padding_mode != "zeros" or p.asymmetric


def unpadded_problem(p: ConvProblem) -> ConvProblem:
    """The same convolution on the explicitly padded input, with no padding of its own (any rank)."""
    padded = {a: n + b + e for a, n, b, e in zip(p.axes, p.in_sizes, p.padding, p.pad_end)}
    return p.replace(**padded, padding=(0,) * p.rank, padding_end=None, padding_mode="zeros")


def pad_input(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), *zip(p.padding, p.pad_end)), mode=_NUMPY_MODE[p.padding_mode])


def _sources(n: int, before: int, after: int, mode: str) -> np.ndarray:
    if mode == "zeros":
        return np.pad(np.arange(n), (before, after), mode="constant", constant_values=-1)
    return np.pad(np.arange(n), (before, after), mode=_NUMPY_MODE[mode])


def fold(p: ConvProblem, dxp: np.ndarray) -> np.ndarray:
    """The gradient of ``pad_input``: dxp (on the padded grid) -> dx (on the input), one axis at a time, the
    innermost first."""
    out = dxp
    for axis in reversed(range(p.rank)):
        src = _sources(p.in_sizes[axis], p.padding[axis], p.pad_end[axis], p.padding_mode)
        keep = src >= 0
        at = (slice(None),) * (2 + axis)
        folded = np.zeros(out.shape[:2 + axis] + (p.in_sizes[axis],) + out.shape[3 + axis:], dtype=dxp.dtype)
        np.add.at(folded, at + (src[keep],), out[at + (keep,)])
        out = folded
    return out
