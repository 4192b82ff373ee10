"""The shared base of the corpus: im2col (``impls/im2col.py``) cut into small overridable steps.

``Conv`` computes exactly what ``conformance.impls.im2col.Im2col`` computes, in the same order and precision; a mutant
overrides the one step its bug lives in (the unfold, the GEMM, the bias, col2im, the weight gradient, ...) and
keeps the rest correct, so each file in this folder reads as "the correct backend, except ...".

Class attributes every corpus member sets:

``name``            a unique backend name (``mut-...`` for mutants, ``ok-...`` for correct variants)
``expected``        the checks the gate MUST name for a mutant (gate columns: forward, grad_input, grad_weight,
                    grad_bias, golden, exact, nonfinite, contract, adjoint, finite_difference, linearity, batch);
                    ``()`` for a correct variant, which the gate must accept
``known_failures``  a known-failures file (relative to this folder) the gate is given for this member, or None
"""

from __future__ import annotations

import itertools

import numpy as np
from conformance.impls import explicit_padding
from conformance.impls.im2col import Im2col
from numpy.lib.stride_tricks import as_strided

from conformance.backends.backend import Capabilities, Grads
from conformance.model.problem import ConvProblem

Pair = tuple[int, int]


class Conv(Im2col):
    """im2col + GEMM, forward and backward, one overridable method per step. Correct as it stands."""

    name = "corpus-base"
    capabilities = Capabilities(dtypes=("float32", "float64"), notes="tests/mutants corpus member")
    expected: tuple[str, ...] = ()
    known_failures: str | None = None

    # -- the steps -------------------------------------------------------------------------------------
    def _unfold(self, problem: ConvProblem, xp: np.ndarray, stride: Pair | None = None,
                dilation: Pair | None = None) -> np.ndarray:
        """``(N, G, Cg*kh*kw, Ho*Wo)`` columns of the padded input (the problem's stride and dilation unless
        given; Ho, Wo always the problem's)."""
        (sh, sw), (dh, dw) = stride or problem.stride, dilation or problem.dilation
        s_n, s_c, s_h, s_w = xp.strides
        view = as_strided(xp, shape=(problem.batch, problem.c_in, problem.kh, problem.kw, problem.out_h,
                                     problem.out_w),
                          strides=(s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw), writeable=False)
        k = problem.c_in // problem.groups * problem.kh * problem.kw
        return np.ascontiguousarray(view.reshape(problem.batch, problem.groups, k, problem.out_h * problem.out_w))

    def _gemm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The batched matrix product every pass is made of (forward, dcols, dW)."""
        return np.matmul(a, b)

    def _add_bias(self, problem: ConvProblem, y: np.ndarray, b: np.ndarray) -> np.ndarray:
        y += np.asarray(b, dtype=problem.dtype)[None, :, None, None]
        return y

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        cols = self._unfold(problem, self._padded(problem, x))
        y = self._gemm(self._weight(problem, w), cols).reshape(problem.output_shape)
        return y if b is None else self._add_bias(problem, y, b)

    def _dy(self, problem: ConvProblem, dy: np.ndarray) -> np.ndarray:
        """``dy`` as ``(N, G, Og, Ho*Wo)``."""
        return np.asarray(dy, dtype=problem.dtype).reshape(problem.batch, problem.groups, -1,
                                                            problem.out_h * problem.out_w)

    def _grad_weight(self, problem: ConvProblem, xp: np.ndarray, dym: np.ndarray) -> np.ndarray:
        """dW = sum over the batch of dy @ cols^T."""
        cols = self._unfold(problem, xp)
        dwm = self._gemm(dym, cols.transpose(0, 1, 3, 2)).sum(axis=0)
        return np.ascontiguousarray(dwm.reshape(problem.weight_shape))

    def _dcols(self, problem: ConvProblem, wm: np.ndarray, dym: np.ndarray) -> np.ndarray:
        """The column gradients ``W^T @ dy`` as ``(N, C, kh, kw, Ho, Wo)``."""
        dcols = self._gemm(wm.transpose(0, 2, 1), dym)
        return dcols.reshape(problem.batch, problem.c_in, problem.kh, problem.kw, problem.out_h, problem.out_w)

    def _new_dxp(self, problem: ConvProblem, xp: np.ndarray) -> np.ndarray:
        """The padded-input-shaped accumulator of col2im."""
        return np.zeros(xp.shape, dtype=problem.dtype)

    def _col2im(self, problem: ConvProblem, dcols: np.ndarray, dxp: np.ndarray, stride: Pair | None = None,
                dilation: Pair | None = None, taps: Pair | None = None) -> np.ndarray:
        """Add each tap's column gradients back where the unfold read them (``taps``: how many (kh, kw))."""
        (sh, sw), (dh, dw) = stride or problem.stride, dilation or problem.dilation
        ho, wo = problem.out_h, problem.out_w
        for p in range(taps[0] if taps else problem.kh):
            rows = slice(p * dh, p * dh + (ho - 1) * sh + 1, sh)
            for q in range(taps[1] if taps else problem.kw):
                dxp[:, :, rows, q * dw:q * dw + (wo - 1) * sw + 1:sw] += dcols[:, :, p, q]
        return dxp

    def _crop(self, problem: ConvProblem, dxp: np.ndarray) -> np.ndarray:
        (ph, pw) = problem.padding
        return np.ascontiguousarray(dxp[:, :, ph:ph + problem.h, pw:pw + problem.w])

    def _grad_input(self, problem: ConvProblem, xp: np.ndarray, wm: np.ndarray, dym: np.ndarray) -> np.ndarray:
        dxp = self._col2im(problem, self._dcols(problem, wm, dym), self._new_dxp(problem, xp))
        return self._crop(problem, dxp)

    def _grad_bias(self, problem: ConvProblem, dy: np.ndarray) -> np.ndarray | None:
        """db[o] = sum of dy[n, o, i, j] over the batch and the output plane."""
        return np.asarray(dy, dtype=problem.dtype).sum(axis=(0, 2, 3))

    def _backward_weight(self, problem: ConvProblem, w: np.ndarray) -> np.ndarray:
        """The weight matrix ``(G, Og, K)`` the backward-data GEMM transposes."""
        return self._weight(problem, w)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        xp, wm, dym = self._padded(problem, x), self._backward_weight(problem, w), self._dy(problem, dy)
        dw = self._grad_weight(problem, xp, dym)
        dx = self._grad_input(problem, xp, wm, dym)
        db = self._grad_bias(problem, dy) if problem.bias else None
        return Grads(dx=dx, dw=dw, db=db)


class PaddingModes(Conv):
    """``Conv`` plus ``torch.nn.Conv2d``'s padding modes (reflect, replicate, circular) and asymmetric padding, done
    as torch does them: pad the input explicitly, convolve without padding, fold the padded input's gradient back
    onto the input (``conformance.impls.explicit_padding``). ``_fold`` is the step a mutant of the fold overrides."""

    capabilities = Capabilities(dtypes=("float32", "float64"), padding_modes=("zeros", "reflect", "replicate",
                                                                              "circular"),
                                asymmetric_padding=True, notes="tests/mutants corpus member: explicit padding modes")

    def _fold(self, problem: ConvProblem, dxp: np.ndarray) -> np.ndarray:
        return explicit_padding.fold(problem, dxp)

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if explicit_padding.needed(problem):
            return super().forward(explicit_padding.unpadded_problem(problem),
                                   explicit_padding.pad_input(problem, x), w, b)
        return super().forward(problem, x, w, b)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if explicit_padding.needed(problem):
            g = super().backward(explicit_padding.unpadded_problem(problem), explicit_padding.pad_input(problem, x),
                                 w, dy)
            return Grads(dx=self._fold(problem, g.dx), dw=g.dw, db=g.db)
        return super().backward(problem, x, w, dy)


def flush_subnormals(a: np.ndarray) -> np.ndarray:
    """Subnormals to zero (FTZ/DAZ)."""
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, np.zeros_like(a), a)


def flip(w: np.ndarray) -> np.ndarray:
    """The kernel rotated by 180 degrees (both spatial axes reversed), C-contiguous."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1])


def round_to_mantissa(a: np.ndarray, bits: int) -> np.ndarray:
    """``a`` rounded (to nearest even) to ``bits`` explicit mantissa bits, exponent range kept: TF32 is 10."""
    a = np.asarray(a)
    m, e = np.frexp(a.astype(np.float64))
    scale = 2.0 ** (bits + 1)
    with np.errstate(invalid="ignore"):
        return np.ldexp(np.round(m * scale) / scale, e).astype(a.dtype)


def kahan_matmul(a: np.ndarray, b: np.ndarray, *, finite_guard: bool = True) -> np.ndarray:
    """``a @ b`` as a Kahan-compensated sum over the reduction axis, in the operands' dtype.

    Textbook Kahan turns an infinite sum into NaN: once the running sum is Inf, the compensation ``(t - s) - y`` is
    ``Inf - Inf``, and the next term picks the NaN up. ``finite_guard`` drops the compensation where it is not
    finite, as production compensated kernels do; without it the summation is the textbook one.
    """
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    s = np.zeros(shape, dtype=np.result_type(a, b))
    c = np.zeros_like(s)
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(a.shape[-1]):
            y = a[..., :, k, None] * b[..., None, k, :] - c
            t = s + y
            c = (t - s) - y
            if finite_guard:
                c[~np.isfinite(c)] = 0
            s = t
    return s


class NdConv:
    """A correct direct convolution of any rank (conv1d, conv2d, conv3d): zero padding, then one tensor contraction
    per kernel tap over the channels of each group. With ``t`` a tap, ``reads(t)`` the strided window of the padded
    input it reads (one slice per spatial axis)::

        y[n, g, o, *out]       += sum_c xp[n, g, c, reads(t)] * w[g, o, c, t]
        dxp[n, g, c, reads(t)] += sum_o dy[n, g, o, *out] * w[g, o, c, t]
        dw[g, o, c, t]          = sum_{n, out} xp[n, g, c, reads(t)] * dy[n, g, o, *out]

    The rank-generic base of the corpus' rank mutants (``rank_bugs``) and rank variants: each overrides one step."""

    name = "corpus-nd-base"
    capabilities = Capabilities(dtypes=("float32", "float64"), ranks=(1, 2, 3), notes="tests/mutants corpus member")
    expected: tuple[str, ...] = ()
    known_failures: str | None = None

    # -- the steps -------------------------------------------------------------------------------------
    def _padded(self, p: ConvProblem, x: np.ndarray) -> np.ndarray:
        """The zero-padded input as (N, G, Cg, *padded), in float64: every sum is accumulated in float64 and
        rounded once to the problem's dtype."""
        xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), *zip(p.padding, p.pad_end)))
        return xp.reshape(p.batch, p.groups, p.c_in // p.groups, *xp.shape[2:])

    def _reads(self, p: ConvProblem, tap: tuple[int, ...], stride: tuple[int, ...] | None = None) -> tuple:
        """The window of the padded input tap ``tap`` reads: along axis a, ``tap_a*dil_a + s_a*o_a``."""
        stride = stride or p.stride
        return tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                     for t, d, s, o in zip(tap, p.dilation, stride, p.out_sizes))

    def _taps(self, p: ConvProblem):  # type: ignore[no-untyped-def]
        return itertools.product(*(range(k) for k in p.kernel))

    def _weight(self, p: ConvProblem, w: np.ndarray) -> np.ndarray:
        return np.asarray(w, dtype=np.float64).reshape(p.groups, p.c_out // p.groups, p.c_in // p.groups, *p.kernel)

    def _forward_batch(self, p: ConvProblem, xp: np.ndarray, wg: np.ndarray) -> np.ndarray:
        y = np.zeros((xp.shape[0], p.groups, p.c_out // p.groups, *p.out_sizes))
        for tap in self._taps(p):
            window = xp[(slice(None),) * 3 + self._reads(p, tap)]
            y += np.einsum("ngc...,goc->ngo...", window, wg[(slice(None),) * 3 + tap])
        return y

    def forward(self, p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = self._forward_batch(p, self._padded(p, x), self._weight(p, w)).reshape(p.output_shape)
        if b is not None:
            y += np.asarray(b, dtype=np.float64).reshape((-1,) + (1,) * p.rank)
        return np.ascontiguousarray(y, dtype=p.dtype)

    def _scatter_stride(self, p: ConvProblem) -> tuple[int, ...]:
        """The stride of backward-data's scatter (the forward's)."""
        return p.stride

    def backward(self, p: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        xp, wg = self._padded(p, x), self._weight(p, w)
        dyg = np.asarray(dy, dtype=np.float64).reshape(p.batch, p.groups, p.c_out // p.groups, *p.out_sizes)
        dxp, dw = np.zeros(xp.shape), np.zeros(wg.shape)
        for tap in self._taps(p):
            at = (slice(None),) * 3
            window = xp[at + self._reads(p, tap)]
            flat = (p.batch, p.groups, -1, int(np.prod(p.out_sizes)))
            dw[at + tap] = np.einsum("ngcl,ngol->goc", window.reshape(flat), dyg.reshape(flat))
            dxp[at + self._reads(p, tap, self._scatter_stride(p))] += np.einsum("ngo...,goc->ngc...", dyg, wg[at + tap])
        crop = tuple(slice(b, b + n) for b, n in zip(p.padding, p.in_sizes))
        dx = np.ascontiguousarray(dxp.reshape(p.batch, p.c_in, *dxp.shape[3:])[(slice(None),) * 2 + crop],
                                  dtype=p.dtype)
        db = dyg.sum(axis=(0, *range(3, 3 + p.rank))).reshape(-1).astype(p.dtype) if p.bias else None
        return Grads(dx=dx, dw=np.ascontiguousarray(dw.reshape(p.weight_shape), dtype=p.dtype), db=db)


class NdConvTranspose(NdConv):
    """``NdConv`` plus a correct transposed convolution of any rank: each input element scattered through each tap
    onto the uncropped output grid, the output the window ``[padding, padding + out)`` of it. With ``lands(t)`` the
    grid positions ``i*s + t*d`` of tap ``t``::

        grid[n, g, o, lands(t)] += sum_c x[n, g, c, i] * w[g, c, o, t]          y = grid[window]
        dx[n, g, c, i]           = sum_{o, t} dy_grid[n, g, o, lands(t)] * w[g, c, o, t]
        dw[g, c, o, t]           = sum_{n, i} x[n, g, c, i] * dy_grid[n, g, o, lands(t)]

    The base of the corpus' transposed mutants (``transposed_bugs``); each overrides one step."""

    name = "corpus-nd-transpose-base"
    capabilities = Capabilities(dtypes=("float32", "float64"), ranks=(1, 2, 3), transposed=True,
                                notes="tests/mutants corpus member")

    def _grid(self, p: ConvProblem) -> tuple[int, ...]:
        return tuple(max((n - 1) * s + d * (k - 1) + 1, b + o) for n, s, d, k, b, o in
                     zip(p.in_sizes, p.stride, p.dilation, p.kernel, p.padding, p.out_sizes))

    def _window(self, p: ConvProblem) -> tuple:
        return (slice(None),) * 3 + tuple(slice(b, b + o) for b, o in zip(p.padding, p.out_sizes))

    def _lands(self, p: ConvProblem, tap: tuple[int, ...]) -> tuple:
        return (slice(None),) * 3 + tuple(slice(t * d, t * d + (n - 1) * s + 1, s)
                                          for t, d, s, n in zip(tap, p.dilation, p.stride, p.in_sizes))

    def _tweight(self, p: ConvProblem, w: np.ndarray) -> np.ndarray:
        """(C_in, Og, *k) -> (G, Cg, Og, *k)."""
        return np.asarray(w, dtype=np.float64).reshape(p.groups, p.c_in // p.groups, p.c_out // p.groups, *p.kernel)

    def _new_grid(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)

    def _xg(self, p: ConvProblem, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).reshape(p.batch, p.groups, p.c_in // p.groups, *p.in_sizes)

    def _output_of(self, p: ConvProblem, grid: np.ndarray) -> np.ndarray:
        return grid[self._window(p)]

    def forward(self, p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        if not p.transposed:
            return super().forward(p, x, w, b)
        xg, wg = self._xg(p, x), self._tweight(p, w)
        grid = self._new_grid((p.batch, p.groups, p.c_out // p.groups, *self._grid(p)))
        for tap in self._taps(p):
            grid[self._lands(p, tap)] += np.einsum("ngc...,gco->ngo...", xg, wg[(slice(None),) * 3 + tap])
        y = self._output_of(p, grid).reshape(p.output_shape)
        if b is not None:
            y = y + np.asarray(b, dtype=np.float64).reshape((-1,) + (1,) * p.rank)
        return np.ascontiguousarray(y, dtype=p.dtype)

    def _grad_weight_t(self, p: ConvProblem, xg: np.ndarray, dyg: np.ndarray) -> np.ndarray:
        dw = np.zeros((p.groups, p.c_in // p.groups, p.c_out // p.groups, *p.kernel))
        flat = (p.batch, p.groups, -1, int(np.prod(p.in_sizes)))
        for tap in self._taps(p):
            dw[(slice(None),) * 3 + tap] = np.einsum("ngcl,ngol->gco", xg.reshape(flat),
                                                     dyg[self._lands(p, tap)].reshape(flat))
        return dw

    def backward(self, p: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        if not p.transposed:
            return super().backward(p, x, w, dy)
        xg, wg = self._xg(p, x), self._tweight(p, w)
        dyg = np.zeros((p.batch, p.groups, p.c_out // p.groups, *self._grid(p)))
        dyg[self._window(p)] = np.asarray(dy, dtype=np.float64).reshape(p.batch, p.groups, -1, *p.out_sizes)
        dx = np.zeros(xg.shape)
        for tap in self._taps(p):
            dx += np.einsum("ngo...,gco->ngc...", dyg[self._lands(p, tap)], wg[(slice(None),) * 3 + tap])
        dw = self._grad_weight_t(p, xg, dyg)
        db = np.asarray(dy, dtype=np.float64).sum(axis=(0, *range(2, 2 + p.rank))) if p.bias else None
        return Grads(dx=np.ascontiguousarray(dx.reshape(p.input_shape), dtype=p.dtype),
                     dw=np.ascontiguousarray(dw.reshape(p.weight_shape), dtype=p.dtype),
                     db=None if db is None else db.astype(p.dtype))
