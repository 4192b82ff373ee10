"""A backend of conv1d and conv3d for conv-conformance: the N-d problem fields in use. Gate it with

    python -m conformance gate --impl examples/backend_ranks.py:MyConv1d3d

A backend declares the spatial ranks it handles (``Capabilities(ranks=...)``; conv2d alone by default, so a conv2d
backend written before ranks existed is unchanged). The suite then checks it in those ranks only: every check of
conv1d (``problem.rank == 1``, NCL) and conv3d (``problem.rank == 3``, NCDHW), and records conv2d as unsupported,
with the reason. The fields of a problem of any rank, each a tuple over the spatial axes, outermost first:

==================  ==========================================================================================
``rank``, ``axes``  1, 2 or 3 and the axes' names: ``("w",)``, ``("h", "w")``, ``("d", "h", "w")``
``in_sizes``        the input's spatial sizes; ``input_shape`` = ``(N, C_in, *in_sizes)``
``kernel``          the kernel's sizes; ``weight_shape`` = ``(C_out, C_in / groups, *kernel)``
``stride``          per axis; ``dilation`` likewise
``padding``         the near side's zeros per axis; ``pad_end`` the far side's (equal unless asymmetric)
``out_sizes``       ``(in + padding + pad_end - dilation*(kernel - 1) - 1) // stride + 1`` per axis
==================  ==========================================================================================

Semantics are ``torch.nn.functional.conv1d`` / ``conv3d``. Return C-contiguous arrays of ``problem.dtype``; never
modify the inputs. This one is a direct method, one tensor contraction per kernel tap, accumulated in float64.
"""

from __future__ import annotations

import itertools

import numpy as np

import conformance


class MyConv1d3d:
    name = "my-conv1d3d"
    capabilities = conformance.Capabilities(dtypes=("float32", "float64"), ranks=(1, 3))

    def _padded(self, p: conformance.ConvProblem, x: np.ndarray) -> np.ndarray:
        xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), *zip(p.padding, p.pad_end)))
        return xp.reshape(p.batch, p.groups, p.c_in // p.groups, *xp.shape[2:])  # (N, G, Cg, *padded)

    def _taps(self, p: conformance.ConvProblem):  # type: ignore[no-untyped-def]
        """Each kernel tap and the window of the padded input it reads: along an axis, tap*dilation + stride*out."""
        for tap in itertools.product(*(range(k) for k in p.kernel)):
            yield tap, tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                             for t, d, s, o in zip(tap, p.dilation, p.stride, p.out_sizes))

    def forward(self, p: conformance.ConvProblem, x: np.ndarray, w: np.ndarray,
                b: np.ndarray | None) -> np.ndarray:
        xp, all_ = self._padded(p, x), (slice(None),) * 3
        wg = np.asarray(w, dtype=np.float64).reshape(p.groups, p.c_out // p.groups, p.c_in // p.groups, *p.kernel)
        y = np.zeros((p.batch, p.groups, p.c_out // p.groups, *p.out_sizes))
        for tap, window in self._taps(p):  # y[n, g, o, out] += sum_c xp[n, g, c, window] * w[g, o, c, tap]
            y += np.einsum("ngc...,goc->ngo...", xp[all_ + window], wg[all_ + tap])
        y = y.reshape(p.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=np.float64).reshape((-1,) + (1,) * p.rank)
        return np.ascontiguousarray(y, dtype=p.dtype)

    def backward(self, p: conformance.ConvProblem, x: np.ndarray, w: np.ndarray,
                 dy: np.ndarray) -> conformance.Grads:
        xp, all_ = self._padded(p, x), (slice(None),) * 3
        wg = np.asarray(w, dtype=np.float64).reshape(p.groups, p.c_out // p.groups, p.c_in // p.groups, *p.kernel)
        dyg = np.asarray(dy, dtype=np.float64).reshape(p.batch, p.groups, p.c_out // p.groups, -1)
        dxp, dw = np.zeros(xp.shape), np.zeros(wg.shape)
        for tap, window in self._taps(p):  # the adjoints of the forward's contraction, tap by tap
            read = xp[all_ + window]  # (N, G, Cg, *out_sizes)
            dw[all_ + tap] = np.einsum("ngcl,ngol->goc", read.reshape(read.shape[:3] + (-1,)), dyg)
            dxp[all_ + window] += np.einsum("ngol,goc->ngcl", dyg, wg[all_ + tap]).reshape(read.shape)
        inside = tuple(slice(b, b + n) for b, n in zip(p.padding, p.in_sizes))  # crop the padding away
        dx = dxp.reshape(p.batch, p.c_in, *xp.shape[3:])[(slice(None),) * 2 + inside]
        db = dyg.sum(axis=(0, 3)).reshape(-1) if p.bias else None
        return conformance.Grads(np.ascontiguousarray(dx, dtype=p.dtype),
                                 np.ascontiguousarray(dw.reshape(p.weight_shape), dtype=p.dtype),
                                 None if db is None else db.astype(p.dtype))
