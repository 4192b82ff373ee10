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
    """The same convolution on the explicitly padded input, with no padding of its own."""
    top, bottom, left, right = p.pads
    return p.replace(h=p.h + top + bottom, w=p.w + left + right, padding=(0, 0), padding_end=None,
                     padding_mode="zeros")


def pad_input(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    top, bottom, left, right = p.pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=_NUMPY_MODE[p.padding_mode])


def _sources(n: int, before: int, after: int, mode: str) -> np.ndarray:
    if mode == "zeros":
        return np.pad(np.arange(n), (before, after), mode="constant", constant_values=-1)
    return np.pad(np.arange(n), (before, after), mode=_NUMPY_MODE[mode])


def fold(p: ConvProblem, dxp: np.ndarray) -> np.ndarray:
    """The gradient of ``pad_input``: dxp (on the padded grid) -> dx (on the input)."""
    top, bottom, left, right = p.pads
    rows = _sources(p.h, top, bottom, p.padding_mode)
    cols = _sources(p.w, left, right, p.padding_mode)
    keep_r, keep_c = rows >= 0, cols >= 0
    tmp = np.zeros(dxp.shape[:3] + (p.w,), dtype=dxp.dtype)
    np.add.at(tmp, (slice(None), slice(None), slice(None), cols[keep_c]), dxp[..., keep_c])
    dx = np.zeros(dxp.shape[:2] + (p.h, p.w), dtype=dxp.dtype)
    np.add.at(dx, (slice(None), slice(None), rows[keep_r]), tmp[:, :, keep_r])
    return dx
