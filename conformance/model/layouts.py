"""Operand memory layouts: the same values, laid out in memory the ways real callers hand them over.

The most repeated class of convolution bugs (pytorch#1246, #16018, #55781, #4500, #82060, #192212; candle#3405):
a kernel reads a strided view as if it were C-contiguous, or picks a layout by comparing strides or sizes, which is
ambiguous when C = 1, H = W = 1 or C = H = W. The layout tiers pass x, w and dy as

================  ===========================================================================
contiguous        C-contiguous NCL / NCHW / NCDHW (every other check)
channels_last     channels innermost in memory, viewed as channels-first: NLC, NHWC (torch.channels_last), NDHWC
                  (torch.channels_last_3d); 1-D arrays (the bias) stay contiguous
strided           every other element of an array twice as large in every dimension
negative          a reversed copy viewed backwards: negative strides in every dimension
broadcast         dy as one value broadcast to its shape (stride 0), as ``loss = out.sum()`` feeds back; x and w
                  contiguous
================  ===========================================================================

Values are unchanged, so results are judged by the same bounds; results must still be C-contiguous (NCHW in 2-D).
"""

from __future__ import annotations

from typing import Any

import numpy as np

LAYOUTS = ("contiguous", "channels_last", "strided", "negative", "broadcast")
VIEW_LAYOUTS = LAYOUTS[1:]  #: the layout tiers (contiguous is the default of every check)


def view(a: np.ndarray, layout: str, *, is_dy: bool = False) -> np.ndarray:
    """A fresh array with ``a``'s values in ``layout`` (never ``a`` itself: backends may not alias the caller)."""
    if layout == "contiguous" or (layout == "broadcast" and not is_dy):
        return np.array(a, order="C", copy=True)
    if layout == "channels_last":
        if a.ndim < 3:
            return np.array(a, order="C", copy=True)
        last = (0, *range(2, a.ndim), 1)  # (N, C, *spatial) -> (N, *spatial, C) in memory
        return np.ascontiguousarray(a.transpose(last)).transpose(np.argsort(last))
    if layout == "strided":
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        index = tuple(slice(None, None, 2) for _ in a.shape)
        big[index] = a
        return big[index]
    if layout == "negative":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return a[flip].copy()[flip]
    if layout == "broadcast":
        first = a.reshape(-1)[:1].copy()  # not a view: the backend must not alias the caller
        if a.size and not np.all((a == first[0]) | (np.isnan(a) & np.isnan(first[0]))):
            raise ValueError("the broadcast layout needs a constant dy")
        return np.broadcast_to(first.reshape((1,) * a.ndim), a.shape)
    raise ValueError(f"layout={layout!r}, but it must be one of {', '.join(LAYOUTS)}")


def arrange(method: str, args: tuple[Any, ...], layout: str) -> tuple[Any, ...]:
    """The call's array arguments in ``layout``: (problem, x, w, b) for forward, (problem, x, w, dy) for
    backward."""
    out = list(args)
    for i in range(1, len(out)):
        if isinstance(out[i], np.ndarray):
            out[i] = view(out[i], layout, is_dy=(method == "backward" and i == 3))
    return tuple(out)


def describe(a: Any) -> str:
    """The layout of a result: C, F or strided (and the type, for something that is no array)."""
    if not isinstance(a, np.ndarray):
        return type(a).__name__
    if a.flags.c_contiguous:
        return "C"
    return "F" if a.flags.f_contiguous else "strided"
