"""Padding of the oracle, and its adjoint: ``torch.nn.Conv1d/2d/3d``'s four padding modes, symmetric or not, in
every rank.

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

from typing import Any

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


def _maps(p: ConvProblem) -> list[np.ndarray]:
    """One index map per spatial axis, outermost first."""
    return [index_map(n, b, e, p.padding_mode) for n, b, e in zip(p.in_sizes, p.padding, p.pad_end)]


def pad(p: ConvProblem, x: np.ndarray) -> np.ndarray:
    """x (N, C, *sizes) -> the padded input (N, C, *(size + begin + end)), float64."""
    x = np.asarray(x, dtype=np.float64)
    # append one zero along every spatial axis: index -1 then reads a zero
    xz = np.zeros(x.shape[:2] + tuple(n + 1 for n in p.in_sizes))
    xz[(slice(None), slice(None), *(slice(0, n) for n in p.in_sizes))] = x
    index: tuple[Any, ...] = (slice(None), slice(None), *np.ix_(*_maps(p)))
    return xz[index]


def pad_adjoint(p: ConvProblem, dxp: np.ndarray) -> np.ndarray:
    """The gradient of ``pad``: each padded position's gradient goes back to the input position it read."""
    # fold one axis at a time, the innermost first (padding is separable); index -1 collects the zero border,
    # dropped at the end
    out, maps = dxp, _maps(p)
    for axis in reversed(range(p.rank)):
        folded = np.zeros(out.shape[:2 + axis] + (p.in_sizes[axis] + 1,) + out.shape[3 + axis:])
        np.add.at(folded, (slice(None),) * (2 + axis) + (maps[axis],), out)  # type: ignore[arg-type]  # stubs
        out = folded
    return out[(slice(None), slice(None), *(slice(0, n) for n in p.in_sizes))]
