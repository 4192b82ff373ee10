"""Padding of the oracle, and its adjoint: ``torch.nn.Conv2d``'s four padding modes, symmetric or not.

Each axis is padded through an index map: padded position ``i`` (``0 <= i < before + n + after``) reads input
position ``src[i]``, or nothing (a zero) where ``src[i] = -1``. With ``j = i - before`` the unpadded position:

==========  ===================================  ============================================
mode        src[i]                               torch / numpy name
==========  ===================================  ============================================
zeros       j if 0 <= j < n, else -1             F.pad(mode="constant"), np.pad "constant"
reflect     |j| mirrored about 0 and n-1         "reflect" (the edge is not repeated)
replicate   clip(j, 0, n-1)                      "replicate", np.pad "edge"
circular    j mod n                              "circular", np.pad "wrap"
==========  ===================================  ============================================

Padding is linear, so its adjoint (the backward of the padding step) sums every padded position's gradient into
the input position it read: for zeros that just crops; for the other modes the border's gradient folds back
onto the input (``np.add.at`` over the same map). Written from these maps, not from ``np.pad``, so that backends
that pad with ``np.pad`` or ``F.pad`` are checked against an independent derivation.
"""

from __future__ import annotations

import numpy as np

from conformance.model.problem import ConvProblem


def index_map(n: int, before: int, after: int, mode: str) -> np.ndarray:
    j = np.arange(-before, n + after)
    if mode == "zeros":
        return np.where((j >= 0) & (j < n), j, -1)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    if mode == "circular":
        return np.mod(j, n)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(j)
        period = 2 * (n - 1)
        k = np.mod(j, period)
        return np.where(k < n, k, period - k)
    raise ValueError(f"padding_mode={mode!r}, but it must be one of zeros, reflect, replicate, circular")


def _maps(p: ConvProblem) -> tuple[np.ndarray, np.ndarray]:
    top, bottom, left, right = p.pads
    return index_map(p.h, top, bottom, p.padding_mode), index_map(p.w, left, right, p.padding_mode)


def pad(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    """x (N, C, H, W) -> the padded input (N, C, H + top + bottom, W + left + right), float64."""
    rows, cols = _maps(p)
    x = np.asarray(x, dtype=np.float64)
    # append one zero row and column: index -1 then reads a zero
    xz = np.zeros(x.shape[:2] + (p.h + 1, p.w + 1))
    xz[:, :, :p.h, :p.w] = x
    return xz[:, :, rows[:, None], cols[None, :]]


def pad_adjoint(p: ConvProblem, dxp: np.ndarray) -> np.ndarray:
    """The gradient of ``pad``: each padded position's gradient goes back to the input position it read."""
    rows, cols = _maps(p)
    out = np.zeros(dxp.shape[:2] + (p.h + 1, p.w + 1))
    # fold the columns, then the rows (padding is separable); index -1 collects the zero border, dropped below
    tmp = np.zeros(dxp.shape[:3] + (p.w + 1,))
    np.add.at(tmp, (slice(None), slice(None), slice(None), cols), dxp)  # type: ignore[arg-type]  # numpy stubs
    np.add.at(out, (slice(None), slice(None), rows), tmp)  # type: ignore[arg-type]
    return out[:, :, :p.h, :p.w]
