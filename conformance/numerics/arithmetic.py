"""Measure a backend's arithmetic with designed inputs: what it does, not what it declares.

Every bound of the suite rests on a declared precision profile (``conformance.numerics.tolerance``). This module
measures
the profile instead, black-box, through problems built so that one output element of a pass is a known sum, in
the manner of Fasi, Higham, Mikaitis & Pranesh ("Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021) and of
FPRev (Xie, Gao & Xue, 2024). A 1×1 convolution is a dot product over the channels; a 1-D kernel over its taps;
the weight gradient sums over the batch and the image; the bias gradient is a plain sum. Each *axis* below puts
one probe vector ``a`` (with a shared vector ``b``) on one such reduction of one pass, many rows per call::

    forward     channels  y[r]     = Σ_k x[r, k] · w[k]             (N = rows, C_in = K, 1×1)
                taps      y[r]     = Σ_k x[r, 0, 0, k] · w[0, 0, 0, k]   (kernel 1×K)
    grad_input  channels  dx[r]    = Σ_k dy[r, k] · w[k]           (C_out = K, 1×1)
                taps      dx[r, K-1] = Σ_k dy[r, K-1-k] · w[k]     (kernel 1×K on 2K-1 columns)
    grad_weight batch     dw[r]    = Σ_k x[k, r] · dy[k]           (N = K, C_in = rows)
                spatial   dw[r]    = Σ_k x[0, r, 0, k] · dy[0, 0, 0, k]
    grad_bias   batch     db[r]    = Σ_k dy[k, r]                   (N = K, C_out = rows)
                spatial   db[r]    = Σ_k dy[0, r, 0, k]

The probes, each with an exact expected value (Python fractions, not floats):

* **accumulator**: ``[1, 2⁻ᵗ, −1]`` in every order and spread over a longer sum; the smallest ``t`` whose term is
  lost is the accumulator's precision ``p`` in bits (1 + 2⁻ᵖ is a tie that rounds to 1; 1 + 2¹⁻ᵖ is exact);
  the worst axis and placement count, so an accumulator that is wide inside a block and narrow across blocks
  (torch's native bfloat16 weight gradient: a float32 GEMM per sample, the batch summed in bfloat16) shows as narrow.
* **inputs**: ``[1 + 2⁻ᵗ, −1]``: inputs rounded to fewer bits than the dtype (TF32: 11) lose ``2⁻ᵗ``.
* **products**: ``a·a − (1 + 2ulp)`` with ``a = 1 + ulp`` needs a product of ``2p − 1`` bits: exact with a fused
  multiply-add (or an accumulator that wide), lost when each product is rounded first.
* **rounding**: ``1 ± f·ulp`` for f = ¼, ½, ¾, 1½: to nearest (ties to even or away), toward zero, up or down.
* **subnormals**: ``[3·tiny, min_normal]`` loses ``3·tiny`` where subnormal inputs are flushed (DAZ);
  ``[1.5·min_normal, −min_normal]`` becomes 0 where subnormal results are flushed (FTZ).
* **intermediate rounding** (``-mid16``): the forward's ``Σ + bias`` with ``Σ = 1 + 2⁻⁽ᵖˢ⁺²⁾`` and bias −1, and the
  padding fold of grad_input (reflect padding: two partial sums added after the GEMM) lose the small term where
  the intermediate is rounded to the storage dtype ``ps`` first.
* **order** (FPRev): ``M`` at position i, ``−M`` at j, ones elsewhere, ``M`` large enough to swamp every partial
  sum of ones: the result counts the ones outside the smallest subtree of the summation tree holding both i and
  j. The subtree sizes of all pairs give the tree, which is named where it is a known one (sequential, pairwise,
  blocks of B, B interleaved lanes).
* **determinism**: a random problem computed three times, compared bitwise.

``profile_backend`` runs them for each dtype and pass a backend declares; ``PassArithmetic.profile`` names the
tightest built-in precision profile that covers what was measured, and ``compare_declared`` sets it beside the
declaration: tighter than measured is a finding (the bounds would fail for a reason this names in one line),
looser is lost power. The suite's bounds always stay those of the declared profile.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np

from conformance.backends import runner
from conformance.model.problem import ConvProblem, numpy_dtype
from conformance.numerics.tolerance import PROFILES, Profile, default_profile, profiles_of

PASSES = ("forward", "grad_input", "grad_weight", "grad_bias")
#: the reductions of each pass a probe can be put on (the first carries the probes that need one axis only)
#: (-1x1: a 1×1 kernel; -dilated: dilation 2; libraries pick other kernels for each, and torch's native bfloat16
#: bias gradient is summed in bfloat16 across the batch only on its dilated path)
AXES = {"forward": ("channels", "channels-1x1", "channels-dilated", "taps"),
        "grad_input": ("channels", "channels-1x1", "channels-dilated", "taps"),
        "grad_weight": ("batch", "batch-1x1", "batch-dilated", "spatial", "batch×spatial"),
        "grad_bias": ("batch", "batch-1x1", "batch-dilated", "spatial", "batch×spatial")}
ROUNDINGS = ("nearest-even", "nearest-away", "toward-zero", "up", "down")


# -- the storage dtype's numbers ------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    """The floating-point format of a dtype: ``p`` significand bits (with the implicit one), exponents."""

    dtype: str
    p: int
    min_exp: int   #: log2 of the smallest normal
    max_exp: int   #: log2 of the largest power of two

    @classmethod
    def of(cls, dtype: str) -> "Format":
        if dtype == "bfloat16":
            import ml_dtypes

            fi: Any = ml_dtypes.finfo(numpy_dtype(dtype))
        else:
            fi = np.finfo(dtype)
        return cls(dtype, int(fi.nmant) + 1, int(round(math.log2(float(fi.smallest_normal)))),
                   int(math.floor(math.log2(float(fi.max)))))

    @property
    def ulp1(self) -> Fraction:
        """The distance from 1 to the next number."""
        return Fraction(1, 2 ** (self.p - 1))

    @property
    def min_normal(self) -> Fraction:
        return Fraction(2) ** self.min_exp

    @property
    def tiny(self) -> Fraction:
        """The smallest subnormal."""
        return Fraction(2) ** (self.min_exp - self.p + 1)

    def representable(self, v: Fraction) -> bool:
        if v == 0:
            return True
        e = math.floor(math.log2(abs(v)))
        if e > self.max_exp:
            return False
        quantum = Fraction(2) ** (max(e, self.min_exp) - self.p + 1)
        return (v / quantum).denominator == 1


def _pow2(e: int) -> Fraction:
    return Fraction(2) ** e


# -- putting rows of dot products onto one pass -----------------------------------------------------

@dataclass
class Batch:
    """Rows of dot products sharing one ``b``: row r is Σ_k a[r][k]·b[k] (``b`` all ones for a plain sum)."""

    rows: list[list[Fraction]]
    b: list[Fraction]
    tags: list[Any]                 #: what each row probes (t, placement, ...)

    @property
    def k(self) -> int:
        return len(self.b)

    def exact(self) -> list[Fraction]:
        return [sum((a * b for a, b in zip(row, self.b) if a), Fraction(0)) for row in self.rows]


def _problem(dtype: str, **kw: Any) -> ConvProblem:
    base = dict(batch=1, c_in=1, c_out=1, h=1, w=1, kh=1, kw=1)
    return ConvProblem(dtype=dtype, **(base | kw))


def _layout(pass_: str, axis: str, rows: np.ndarray, b: np.ndarray, dtype: str
            ) -> tuple[str, ConvProblem, tuple[Any, ...], Callable[[Any], np.ndarray]]:
    """(method, problem, call arguments, result -> the rows' values) putting ``rows`` (R×K) on ``pass_``.

    The kernel is 1×2 with its second tap on zeros unless the axis says ``1x1``: libraries take other paths for
    1×1 kernels (a plain matrix product), and what is measured must be the general one as well."""
    r, k = rows.shape
    name, _, variant = axis.partition("-")
    kw = 1 if variant == "1x1" else 2
    dil = 2 if variant == "dilated" else 1
    span = dil * (kw - 1)  # the extra columns the zero tap reads
    geo: dict[str, Any] = dict(kw=kw, dilation=(1, dil))
    if name == "batch×spatial" and k % 2:
        name = "batch"
    if pass_ == "forward":
        if name == "channels":
            p = _problem(dtype, batch=r, c_in=k, w=1 + span, **geo)
        else:
            p = _problem(dtype, batch=r, w=k, kw=k)
        x, w = np.zeros(p.input_shape), np.zeros(p.weight_shape)
        if name == "channels":
            x[:, :, 0, 0], w[0, :, 0, 0] = rows, b
        else:
            x[:, 0, 0, :], w[0, 0, 0, :] = rows, b
        return "forward", p, _cast(dtype, p, x, w, None), lambda y: np.asarray(y)[:, 0, 0, 0]
    if pass_ == "grad_input":
        if name == "channels":
            p = _problem(dtype, batch=r, c_out=k, w=1 + span, **geo)
        else:  # dx[r, K-1] = Σ_k dy[r, K-1-k]·w[k]: every tap reaches the middle column
            p = _problem(dtype, batch=r, w=2 * k - 1, kw=k)
        dy, w = np.zeros(p.output_shape), np.zeros(p.weight_shape)
        if name == "channels":
            dy[:, :, 0, 0], w[:, 0, 0, 0] = rows, b
            col = 0
        else:
            dy[:, 0, 0, :], w[0, 0, 0, :] = rows[:, ::-1], b
            col = k - 1
        return ("backward", p, _cast(dtype, p, np.zeros(p.input_shape), w, dy),
                lambda g: np.asarray(g[0])[:, 0, 0, col])
    # the weight and bias gradients sum over the batch and the image: dw[0, r] = Σ x[., r]·dy, db[r] = Σ dy[., r]
    weight = pass_ == "grad_weight"
    chans = dict(c_in=r, c_out=1) if weight else dict(c_out=r, bias=True)
    if name == "batch":
        p = _problem(dtype, batch=k, w=1 + span, **geo, **chans)
        ks, cols = np.arange(k), np.zeros(k, dtype=int)
    elif name == "spatial":
        p = _problem(dtype, w=k + span, **geo, **chans)
        ks, cols = np.zeros(k, dtype=int), np.arange(k)
    else:  # batch×spatial: term k at sample k // 2, column k % 2
        p = _problem(dtype, batch=k // 2, w=2 + span, **geo, **chans)
        ks, cols = np.arange(k) // 2, np.arange(k) % 2
    x, dy = np.zeros(p.input_shape), np.zeros(p.output_shape)
    if weight:
        x[ks, :, 0, cols], dy[ks, 0, 0, cols] = rows.T, b
        pick: Callable[[Any], np.ndarray] = lambda g: np.asarray(g[1])[0, :, 0, 0]  # noqa: E731
    else:
        dy[ks, :, 0, cols] = rows.T
        pick = lambda g: np.asarray(g[2])[:]  # noqa: E731
    return "backward", p, _cast(dtype, p, x, np.zeros(p.weight_shape), dy), pick


def _cast(dtype: str, p: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray | None) -> tuple[Any, ...]:
    dt = numpy_dtype(dtype)
    return (p, x.astype(dt), w.astype(dt), None if dy is None else dy.astype(dt))


class ProbeError(Exception):
    """The backend did not answer a probe (it raised, crashed, or returned no array of the right shape)."""


def run_batch(backend: Any, pass_: str, axis: str, batch: Batch, dtype: str) -> list[Fraction | None]:
    """The backend's values of the batch's rows, exactly (None where it gave NaN/Inf)."""
    if pass_ == "grad_bias" and any(v != 1 for v in batch.b):
        rows = [[a * b for a, b in zip(row, batch.b)] for row in batch.rows]
        b = [Fraction(1)] * batch.k
    else:
        rows, b = batch.rows, batch.b
    arr = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    bvec = np.array([float(v) for v in b])
    limit = backend.capabilities.max_macs
    # a slow backend's max_macs holds for every call: as many rows a call as it allows (at least one)
    chunk = len(arr) if limit is None else max(1, limit // max(1, 2 * batch.k * (batch.k + 2)))
    values: list[Fraction | None] = []
    for start in range(0, len(arr), chunk):
        method, problem, args, pick = _layout(pass_, axis, arr[start:start + chunk], bvec, dtype)
        out = runner.call(backend, method, *args)
        if not out.ok:
            raise ProbeError(f"{str(problem)}: {out.error}")
        try:
            got = np.asarray(pick(out.value), dtype=np.float64).reshape(-1)
        except Exception as exc:
            raise ProbeError(f"{method} on {str(problem)} returned no readable result: {type(exc).__name__}: "
                             f"{exc}") from None
        if got.size != min(chunk, len(arr) - start):
            raise ProbeError(f"{method} on {str(problem)} returned {got.size} values for "
                             f"{min(chunk, len(arr) - start)} rows")
        values += [Fraction(float(v)) if np.isfinite(v) else None for v in got]
    return values


# -- what was measured ----------------------------------------------------------------------------

@dataclass
class PassArithmetic:
    """What one pass of one dtype measurably does. ``None`` where a probe could not tell."""

    dtype: str
    pass_: str
    acc_bits: int | None = None          #: the accumulator's precision (worst over axes and placements)
    acc_bits_by_axis: dict[str, int | None] = field(default_factory=dict)
    acc_bits_limit: int = 0              #: the probes reach this far: acc_bits None means "at least this"
    widest_bits: int | None = None       #: the widest stage seen (for the order probe's swamping)
    input_bits: int | None = None        #: inputs rounded to this many bits before use (TF32: 11); None: not
    products_exact: bool | None = None
    rounding: str | None = None
    daz: bool | None = None
    ftz: bool | None = None
    mid: bool | None = None              #: an intermediate result rounded to the storage dtype
    fold16: bool | None = None           #: grad_input's padding fold summed in the storage dtype
    deterministic: bool | None = None
    order: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped_axes: dict[str, str] = field(default_factory=dict)  #: axes the backend does not claim, and why
    seconds: float = 0.0                 #: wall time of the probes

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "pass": self.pass_, "acc_bits": self.acc_bits,
                "acc_bits_by_axis": dict(self.acc_bits_by_axis), "acc_bits_limit": self.acc_bits_limit,
                "input_bits": self.input_bits, "products_exact": self.products_exact, "rounding": self.rounding,
                "daz": self.daz, "ftz": self.ftz, "mid": self.mid, "fold16": self.fold16,
                "deterministic": self.deterministic,
                "order": dict(self.order), "errors": list(self.errors), "skipped_axes": dict(self.skipped_axes),
                "fits": self.profile(), "described": self.describe()}

    @property
    def fmt(self) -> Format:
        return Format.of(self.dtype)

    @property
    def u_acc(self) -> float:
        """The accumulator's unit roundoff: 2^-p to nearest, 2^(1-p) for a directed rounding."""
        bits = self.acc_bits if self.acc_bits is not None else self.acc_bits_limit
        directed = self.rounding in ("toward-zero", "up", "down")
        return 2.0 ** (-bits + (1 if directed else 0))

    @property
    def u_in(self) -> float:
        return 0.0 if self.input_bits is None else 2.0 ** -self.input_bits

    @property
    def u_mid(self) -> float:
        return 2.0 ** -self.fmt.p if self.mid else 0.0

    def covered_by(self, prof: Profile) -> list[str]:
        """What of this measurement ``prof`` does not cover (empty: it covers it all)."""
        gaps = []
        if self.u_acc > prof.u_acc * (1 + 1e-12):
            gaps.append(f"accumulator {self._acc_text()} > declared u_acc 2^{math.log2(prof.u_acc):g}")
        if self.u_in > prof.u_in * (1 + 1e-12):
            gaps.append(f"inputs rounded to {self.input_bits} bits (u_in 2^-{self.input_bits}) > declared u_in "
                        + ("0" if prof.u_in == 0 else f"2^{math.log2(prof.u_in):g}"))
        if self.fold16 and prof.u_acc < 2.0 ** -self.fmt.p:
            gaps.append(f"the padding fold of grad_input summed in {self.dtype} (several roundings: u_acc 2^-"
                        f"{self.fmt.p}), which the declared u_acc 2^{math.log2(prof.u_acc):g} does not cover")
        if self.u_mid > max(prof.u_mid, prof.u_acc) * (1 + 1e-12):
            gaps.append(f"an intermediate result rounded to {self.dtype} (u_mid 2^-{self.fmt.p}), which the declared "
                        "profile has no term for")
        return gaps

    def _acc_text(self) -> str:
        bits = "≥ " + str(self.acc_bits_limit) if self.acc_bits is None else str(self.acc_bits)
        return f"of {bits} bits (u_acc 2^{math.log2(self.u_acc):g})"

    def profile(self) -> str | None:
        """The tightest built-in profile of this dtype that covers the measurement (None: none does)."""
        fitting = [p for p in profiles_of(self.dtype) if not self.covered_by(p)]
        return fitting[0].name if fitting else None  # profiles_of lists them tightest first

    def describe(self) -> str:
        """One line: what the pass does."""
        parts = [f"accumulator {self._acc_text()}"]
        slow = [f"{a} {b if b is not None else '≥' + str(self.acc_bits_limit)}"
                for a, b in self.acc_bits_by_axis.items()]
        if len(set(self.acc_bits_by_axis.values())) > 1:
            parts.append("by axis: " + ", ".join(slow))
        if self.input_bits is not None:
            parts.append(f"inputs rounded to {self.input_bits} bits")
        if self.mid:
            parts.append(f"an intermediate result rounded to {self.dtype}")
        if self.fold16:
            parts.append(f"the padding fold summed in {self.dtype}")
        return "; ".join(parts)


# -- the probes -------------------------------------------------------------------------------------

def _ones(k: int) -> list[Fraction]:
    return [Fraction(1)] * k


def _placements(k_long: int) -> list[tuple[int, tuple[int, int, int]]]:
    """(K, positions of 1, 2^-t and -1): every order of three terms, and the three spread over a longer sum
    (a blocked or lane-interleaved accumulator adds them in different blocks or lanes)."""
    out = [(3, perm) for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))]
    last = k_long - 1
    for small in (1, k_long // 2, last - 1):
        out += [(k_long, (0, small, last)), (k_long, (last, small, 0))]
    out += [(k_long, (0, last, k_long // 2)), (k_long, (k_long // 2 + 1, 0, last))]
    return out


def probe_accumulator(call: Callable[[str, Batch], list[Fraction | None]], fmt: Format, axes: Sequence[str],
                      k_long: int = 34) -> tuple[dict[str, int | None], int, int | None]:
    """Per axis the accumulator's precision in bits (None: no term lost within reach), the reach, and the widest
    stage seen (the largest t at which some placement still kept its term, plus one)."""
    e0 = fmt.max_exp - 1 if fmt.max_exp < 64 else 0
    reach = min(64, e0 - fmt.min_exp)
    by_axis: dict[str, int | None] = {}
    widest: int | None = None
    for axis in axes:
        lost_at: int | None = None
        for k in sorted({k for k, _ in _placements(k_long)}):  # one call per length: every placement, every t
            rows, tags = [], []
            for kk, (i1, ismall, im) in _placements(k_long):
                if kk != k:
                    continue
                for t in range(2, reach + 1):
                    row = [Fraction(0)] * k
                    row[i1], row[ismall], row[im] = _pow2(e0), _pow2(e0 - t), -_pow2(e0)
                    rows.append(row)
                    tags.append(((i1, ismall, im), t))
            batch = Batch(rows, _ones(k), tags)
            first: dict[Any, int] = {}
            for (where, t), g, w in zip(tags, call(axis, batch), batch.exact()):
                if g != w and where not in first:
                    first[where] = t
            for keep in first.values():  # a placement that lost its term tells one stage's precision
                widest = keep if widest is None or keep > widest else widest
            if first and (lost_at is None or min(first.values()) < lost_at):
                lost_at = min(first.values())
        by_axis[axis] = lost_at
    return by_axis, reach, widest


def probe_exact_sums(call: Callable[[str, Batch], list[Fraction | None]], axis: str, k: int = 6) -> str:
    """Small integers whose sums every format holds exactly: a pass that gets them wrong is wrong, not imprecise.
    Returns what went wrong ("" where nothing did)."""
    rows = [[Fraction((i * 3 + j * 5) % 7 - 3) for j in range(k)] for i in range(4)]
    b = [Fraction(j % 3 - 1 if j % 2 else j % 3 + 1) for j in range(k)]
    batch = Batch(rows, b, list(range(len(rows))))
    for got, want in zip(call(axis, batch), batch.exact()):
        if got != want:
            return f"a sum of {k} small integer products on the {axis} axis came out {got} where {want} is exact"
    return ""


def probe_inputs(call: Callable[[str, Batch], list[Fraction | None]], fmt: Format, axis: str) -> int | None:
    """The bits inputs are rounded to before use, where fewer than the format's own (TF32: 11)."""
    rows = [[1 + _pow2(-t), Fraction(-1)] for t in range(1, fmt.p)]
    batch = Batch(rows, _ones(2), list(range(1, fmt.p)))
    lost = [t for t, g, w in zip(batch.tags, call(axis, batch), batch.exact()) if g != w]
    return min(lost) if lost else None


def probe_products(call: Callable[[str, Batch], list[Fraction | None]], fmt: Format, axis: str) -> bool:
    """Whether ``a·a − (1 + 2ulp)`` with ``a = 1 + ulp`` comes out exact (fused, or products of 2p−1 bits)."""
    ulp = fmt.ulp1
    a = 1 + ulp
    # a power-of-two scale keeps the exact result ulp², tiny in a narrow format, a normal number
    s = _pow2(max(0, fmt.min_exp + 2 * (fmt.p - 1) + 1))
    exact_seen = False
    for row, b in (([a * s, -(1 + 2 * ulp) * s], [a, Fraction(1)]), ([-(1 + 2 * ulp) * s, a * s], [Fraction(1), a])):
        batch = Batch([row], b, ["fma"])
        exact_seen |= call(axis, batch) == batch.exact()
    return exact_seen


def probe_rounding(call: Callable[[str, Batch], list[Fraction | None]], fmt: Format, axis: str) -> str | None:
    """How a sum that falls between two numbers of the format is rounded."""
    ulp = fmt.ulp1
    fracs = [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), Fraction(3, 2)]
    rows = [[sign * Fraction(1), sign * f * ulp] for sign in (1, -1) for f in fracs]
    batch = Batch(rows, _ones(2), [(sign, f) for sign in (1, -1) for f in fracs])
    got = call(axis, batch)
    for mode in ROUNDINGS:
        if all(g == _round(w, fmt, mode) for g, w in zip(got, batch.exact())):
            return mode
    return None


def _round(v: Fraction, fmt: Format, mode: str) -> Fraction:
    """``v`` rounded to the format (normal range) by ``mode``."""
    if v == 0:
        return v
    e = math.floor(math.log2(abs(v)))
    q = _pow2(e - fmt.p + 1)
    lo = math.floor(v / q) * q
    hi = lo + q
    if lo == v:
        return v
    if mode == "toward-zero":
        return lo if v > 0 else hi
    if mode == "up":
        return hi
    if mode == "down":
        return lo
    if v - lo != hi - v:
        return lo if v - lo < hi - v else hi
    if mode == "nearest-away":
        return hi if v > 0 else lo
    return lo if (lo / q) % 2 == 0 else hi  # ties to even


def probe_subnormals(call: Callable[[str, Batch], list[Fraction | None]], fmt: Format, axis: str
                     ) -> tuple[bool, bool]:
    """(subnormal inputs flushed: DAZ, subnormal results flushed: FTZ)."""
    tiny, mn = fmt.tiny, fmt.min_normal
    daz_batch = Batch([[3 * tiny, mn]], _ones(2), ["daz"])
    ftz_batch = Batch([[mn * Fraction(3, 2), -mn]], _ones(2), ["ftz"])
    daz = call(axis, daz_batch) != daz_batch.exact()
    ftz = call(axis, ftz_batch) != ftz_batch.exact()
    return daz, ftz


def swamp_rows(k: int, fmt: Format, bits: int) -> tuple[list[list[Fraction]], list[tuple[int, int]]] | None:
    """FPRev's rows: M at i, −M at j, ones elsewhere, M large enough that M plus any partial sum of ones (at most
    K−2 of them) rounds back to M in ``bits`` bits (or fewer). None where the format's range is too narrow."""
    m_exp = bits + math.ceil(math.log2(k))  # half an ulp of M = 2^m in ``bits`` bits is 2^(m-bits) >= K > K-2
    one_exp = max(fmt.min_exp, -(m_exp // 2))
    if one_exp + m_exp > fmt.max_exp:
        return None
    one, big = _pow2(one_exp), _pow2(one_exp + m_exp)
    rows, pairs = [], []
    for i in range(k):
        for j in range(i + 1, k):
            row = [one] * k
            row[i], row[j] = big, -big
            rows.append(row)
            pairs.append((i, j))
    return rows, pairs


def subtree_sizes(k: int, pairs: list[tuple[int, int]], values: list[Fraction | None], one: Fraction
                  ) -> dict[tuple[int, int], int] | None:
    """The size of the smallest subtree holding i and j, per pair: K minus the ones that survived."""
    out = {}
    for (i, j), v in zip(pairs, values):
        if v is None or (v / one).denominator != 1:
            return None
        out[(i, j)] = k - int(v / one)
    return out


def tree_from_sizes(k: int, sizes: dict[tuple[int, int], int]) -> Any:
    """FPRev's reconstruction: join the clusters whose pairs have the smallest common subtree first."""
    clusters: dict[int, Any] = {i: i for i in range(k)}
    owner = list(range(k))
    for (i, j), _ in sorted(sizes.items(), key=lambda kv: kv[1]):
        a, b = owner[i], owner[j]
        if a == b:
            continue
        merged = (clusters.pop(a), clusters.pop(b))
        clusters[a] = merged
        owner = [a if o == b else o for o in owner]
    (tree,) = clusters.values() if len(clusters) == 1 else (tuple(clusters.values()),)
    return tree


def _leaves(tree: Any) -> list[int]:
    return [tree] if isinstance(tree, int) else [leaf for sub in tree for leaf in _leaves(sub)]


def sizes_of_tree(tree: Any, k: int) -> dict[tuple[int, int], int]:
    out: dict[tuple[int, int], int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, int):
            return
        leaves = _leaves(node)
        for sub in node:
            walk(sub)
        groups = [_leaves(sub) for sub in node]
        for gi, ga in enumerate(groups):
            for gb in groups[gi + 1:]:
                for a in ga:
                    for b in gb:
                        out[(min(a, b), max(a, b))] = len(leaves)

    walk(tree)
    return out


def _sequential(items: Sequence[Any]) -> Any:
    tree = items[0]
    for item in items[1:]:
        tree = (tree, item)
    return tree


def _pairwise(items: Sequence[Any]) -> Any:
    if len(items) == 1:
        return items[0]
    half = (len(items) + 1) // 2 if len(items) & (len(items) - 1) else len(items) // 2
    return (_pairwise(items[:half]), _pairwise(items[half:]))


def known_orders(k: int) -> dict[str, Any]:
    """Summation trees of known orders over K terms, by name."""
    idx = list(range(k))
    out = {"sequential": _sequential(idx), "reverse sequential": _sequential(idx[::-1]), "pairwise": _pairwise(idx)}
    b = 2
    while b < k:
        blocks = [idx[s:s + b] for s in range(0, k, b)]
        out[f"blocks of {b}, each sequential, blocks in sequence"] = _sequential([_sequential(x) for x in blocks])
        out[f"blocks of {b}, each sequential, blocks pairwise"] = _pairwise([_sequential(x) for x in blocks])
        lanes = [idx[lane::b] for lane in range(b)]
        out[f"{b} interleaved lanes (k mod {b}), lanes in sequence"] = _sequential([_sequential(x) for x in lanes])
        out[f"{b} interleaved lanes (k mod {b}), lanes pairwise"] = _pairwise([_sequential(x) for x in lanes])
        b *= 2
    return out


def name_order(k: int, sizes: dict[tuple[int, int], int]) -> str:
    """The name of the known order with these subtree sizes, or the tree itself."""
    for name, tree in known_orders(k).items():
        if sizes_of_tree(tree, k) == sizes:
            return name
    return "other: " + _tree_text(tree_from_sizes(k, sizes))


def _tree_text(tree: Any) -> str:
    return str(tree) if isinstance(tree, int) else "(" + "+".join(_tree_text(t) for t in tree) + ")"


def probe_order(call: Callable[[str, Batch], list[Fraction | None]], fmt: Format, axis: str, bits: int,
                k: int = 16) -> str:
    made = swamp_rows(k, fmt, bits)
    if made is None:
        return f"not measured: {fmt.dtype}'s range cannot hold M and 1 for a {bits}-bit accumulator"
    rows, pairs = made
    batch = Batch(rows, _ones(k), pairs)
    one = min(abs(v) for v in rows[0])
    sizes = subtree_sizes(k, pairs, call(axis, batch), one)
    if sizes is None:
        return "not measured: the results were not whole counts of the ones (no clean swamping)"
    return name_order(k, sizes)


def probe_mid(backend: Any, dtype: str, pass_: str) -> bool | None:
    """Whether an intermediate result is rounded to the storage dtype: the forward's sum before its bias, the
    grad_input GEMM before the reflect padding's fold. None: the backend declares no such path."""
    fmt = Format.of(dtype)
    dt = numpy_dtype(dtype)
    small = 2.0 ** -(fmt.p + 2)
    caps = backend.capabilities
    if pass_ == "forward":
        p = ConvProblem(batch=2, c_in=2, c_out=1, h=1, w=1, kh=1, kw=1, bias=True, dtype=dtype)
        x = np.array([[1.0, small], [small, 1.0]]).reshape(2, 2, 1, 1).astype(dt)
        out = runner.call(backend, "forward", p, x, np.ones((1, 2, 1, 1), dt), np.array([-1.0]).astype(dt))
        got = None if not out.ok else np.asarray(out.value, dtype=np.float64).ravel()
        return None if got is None else bool((got != small).any())
    if pass_ == "grad_input" and "reflect" in caps.padding_modes:
        # width 2 padded by 1 on each side reads [x1, x0, x1, x0]: dx[x0] = dxp[1] + dxp[3]
        p = ConvProblem(batch=1, c_in=1, c_out=2, h=1, w=2, kh=1, kw=1, padding=(0, 1), padding_mode="reflect",
                        dtype=dtype)
        dy = np.zeros(p.output_shape)
        dy[0, :, 0, 1] = [1.0, small]
        dy[0, :, 0, 3] = [-1.0, 0.0]
        out = runner.call(backend, "backward", p, np.zeros(p.input_shape, dt), np.ones(p.weight_shape, dt),
                          dy.astype(dt))
        if not out.ok:
            return None
        return bool(float(np.asarray(out.value[0], dtype=np.float64)[0, 0, 0, 0]) != small)
    return None


def probe_fold(backend: Any, dtype: str) -> bool | None:
    """Whether grad_input's reflect-padding fold is summed in the storage dtype (None: no reflect padding declared).
    A 2×2 input padded by 1 on every side is read four times at its corner; the four gradients are 1, 2^-(ps+1),
    2^-(ps+1) and -1, each a number of the dtype, so one rounding of each (``-mid16``) keeps their sum 2^-ps
    exact, and a running sum in the dtype loses both small terms in at least one order."""
    if "reflect" not in backend.capabilities.padding_modes:
        return None
    fmt = Format.of(dtype)
    small = 2.0 ** -(fmt.p + 1)
    orders = [(1.0, small, small, -1.0), (small, 1.0, small, -1.0), (1.0, -1.0, small, small),
              (-1.0, small, 1.0, small)]
    p = ConvProblem(batch=len(orders), c_in=1, c_out=1, h=2, w=2, kh=1, kw=1, padding=(1, 1),
                    padding_mode="reflect", dtype=dtype)
    dy = np.zeros(p.output_shape)  # padded rows/columns 1 and 3 both read input row/column 0
    for n, vals in enumerate(orders):
        for (i, j), v in zip(((1, 1), (1, 3), (3, 1), (3, 3)), vals):
            dy[n, 0, i, j] = v
    dt = numpy_dtype(dtype)
    out = runner.call(backend, "backward", p, np.zeros(p.input_shape, dt), np.ones(p.weight_shape, dt),
                      dy.astype(dt))
    if not out.ok:
        return None
    got = np.asarray(out.value[0], dtype=np.float64)[:, 0, 0, 0]
    return bool((got != 2 * small).any())


def probe_determinism(backend: Any, dtype: str, pass_: str, repeats: int = 3) -> bool | None:
    p = ConvProblem(batch=2, c_in=4, c_out=4, h=8, w=8, kh=3, kw=3, padding=(1, 1), bias=True, dtype=dtype)
    rng = np.random.default_rng(0)
    dt = numpy_dtype(dtype)
    x, w, dy = (rng.standard_normal(s).astype(dt) for s in (p.input_shape, p.weight_shape, p.output_shape))
    b = rng.standard_normal(p.bias_shape).astype(dt)
    if pass_ == "forward":
        out = runner.call(backend, "forward", p, x, w, b, repeat=repeats)
        pick: Callable[[Any], Any] = lambda v: v  # noqa: E731
    else:
        out = runner.call(backend, "backward", p, x, w, dy, repeat=repeats)
        index = {"grad_input": 0, "grad_weight": 1, "grad_bias": 2}[pass_]
        pick = lambda v: v[index]  # noqa: E731
    if not out.ok:
        return None
    first = np.asarray(pick(out.value)).tobytes()
    return all(np.asarray(pick(v)).tobytes() == first for v in out.repeats)


# -- one backend --------------------------------------------------------------------------------------

def measure_pass(backend: Any, dtype: str, pass_: str) -> PassArithmetic:
    fmt = Format.of(dtype)
    res = PassArithmetic(dtype, pass_)

    def call(axis: str, batch: Batch) -> list[Fraction | None]:
        return run_batch(backend, pass_, axis, batch, dtype)

    axes = []
    for axis in AXES[pass_]:
        _, p, *_ = _layout(pass_, axis, np.zeros((1, 4)), np.zeros(4), dtype)
        why = backend.capabilities.unsupported_reason(p.replace(batch=1, c_in=1, c_out=1), backward=pass_ != "forward")
        if why:
            res.skipped_axes[axis] = why
        else:
            axes.append(axis)
    t0 = time.perf_counter()
    try:
        for axis in axes:  # a pass that gets exact sums wrong computes something else: no precision to measure
            wrong = probe_exact_sums(call, axis)
            if wrong:
                res.errors.append(f"not measured: {wrong}; that is no rounding (the value checks judge it)")
                res.seconds = time.perf_counter() - t0
                return res
        res.acc_bits_by_axis, res.acc_bits_limit, res.widest_bits = probe_accumulator(call, fmt, axes)
        known = [b for b in res.acc_bits_by_axis.values() if b is not None]
        res.acc_bits = min(known) if known else None
        main = axes[0]
        if pass_ != "grad_bias":
            res.input_bits = probe_inputs(call, fmt, main)
            res.products_exact = probe_products(call, fmt, main)
        res.rounding = probe_rounding(call, fmt, main)
        res.daz, res.ftz = probe_subnormals(call, fmt, main)
        swamp_bits = res.widest_bits if res.widest_bits is not None else res.acc_bits_limit
        swamp_bits = min(swamp_bits, res.acc_bits_limit)
        for axis in axes:
            res.order[axis] = probe_order(call, fmt, axis, swamp_bits)
        res.mid = probe_mid(backend, dtype, pass_) if (res.acc_bits or 99) > fmt.p else None
        if pass_ == "grad_input" and fmt.p < 24:
            res.fold16 = probe_fold(backend, dtype)
        if backend.capabilities.max_macs is None or backend.capabilities.max_macs >= 20000:
            res.deterministic = probe_determinism(backend, dtype, pass_)
    except ProbeError as exc:
        res.errors.append(f"not measured: the backend did not answer a probe: {exc}")
    res.seconds = time.perf_counter() - t0
    return res


@dataclass
class Comparison:
    """A declared profile beside the measured one, for one dtype and pass."""

    dtype: str
    pass_: str
    declared: str
    measured: str | None           #: the tightest built-in profile covering the measurement
    gaps: list[str]                #: what the declaration misses (non-empty: a finding)
    looser: bool                   #: the declaration is looser than measured (lost power)
    arithmetic: PassArithmetic

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.arithmetic.errors

    def to_dict(self) -> dict[str, Any]:
        return {"declared": self.declared, "measured": self.measured, "gaps": list(self.gaps), "looser": self.looser,
                "declared_bits": _bits(PROFILES[self.declared].u_acc), **self.arithmetic.to_dict()}

    def message(self) -> str:
        a = self.arithmetic
        if a.errors:
            return f"{self.dtype} {self.pass_}: the arithmetic could not be measured: {a.errors[0]}"
        if self.gaps:
            fix = (f"declare precision={{'{self.dtype}:{self.pass_}': '{self.measured}'}}" if self.measured
                   else "no built-in profile covers it: declare a looser one or report the deviation")
            return (f"{self.dtype} {self.pass_}: declared {self.declared}, but measured {a.describe()}: "
                    f"{'; '.join(self.gaps)}. The bounds of {self.declared} fail for this reason alone; {fix}")
        if self.looser:
            return (f"{self.dtype} {self.pass_}: declared {self.declared} is looser than measured ({self.measured} "
                    f"fits: {a.describe()}); the bounds lose power")
        return f"{self.dtype} {self.pass_}: declared {self.declared} matches what was measured ({a.describe()})"


def _bits(u: float) -> float:
    return -math.log2(u) if u > 0 else math.inf


def compare_declared(caps: Any, measured: PassArithmetic) -> Comparison:
    """The declaration beside the measurement. A normwise backend (FFT, Winograd) is measured but not compared: a
    transform is no sum of products, and its profile's units feed the normwise bound, not a summation's."""
    declared = caps.profile_for(measured.dtype, measured.pass_)
    prof = PROFILES[declared]
    gaps = [] if measured.errors or caps.error_model == "normwise" else measured.covered_by(prof)
    fit = measured.profile()
    looser = (fit is not None and not gaps and caps.error_model != "normwise"
              and PROFILES[fit].looseness < prof.looseness)
    return Comparison(measured.dtype, measured.pass_, declared, fit, gaps, looser, measured)


def profile_backend(backend: Any, dtypes: Sequence[str] | None = None, passes: Sequence[str] | None = None
                    ) -> list[PassArithmetic]:
    caps = backend.capabilities
    wanted = [d for d in (dtypes or caps.dtypes) if d in caps.dtypes]
    chosen = [p for p in (passes or PASSES) if p == "forward" or caps.backward]
    return [measure_pass(backend, d, p) for d in wanted for p in chosen]


def precision_line(results: Sequence[PassArithmetic]) -> str:
    """The ``Capabilities(precision=...)`` argument that declares what was measured (defaults left out)."""
    entries: dict[str, str] = {}
    by_dtype: dict[str, list[PassArithmetic]] = {}
    for r in results:
        by_dtype.setdefault(r.dtype, []).append(r)
    for dtype, rs in by_dtype.items():
        fits = {r.pass_: (r.profile() or "?") for r in rs}
        common = set(fits.values())
        if len(common) == 1:
            (only,) = common
            if only != default_profile(dtype):
                entries[dtype] = only
            continue
        base = default_profile(dtype) if default_profile(dtype) in common else max(
            common, key=lambda n: list(fits.values()).count(n))
        if base != default_profile(dtype):
            entries[dtype] = base
        entries.update({f"{dtype}:{p}": n for p, n in fits.items() if n != base})
    return f"precision={entries!r}" if entries else "precision=None  (every dtype's default profile)"


def table(results: Sequence[PassArithmetic], caps: Any = None) -> str:
    """The measurements as a text table, with the declaration beside them where ``caps`` is given."""
    head = ["dtype", "pass", "acc bits", "inputs", "products", "rounding", "DAZ", "FTZ", "mid", "det.",
            "fits", "declared"]
    lines = []
    for r in results:
        acc = "?" if r.errors else (str(r.acc_bits) if r.acc_bits is not None else f">={r.acc_bits_limit}")
        if len({*r.acc_bits_by_axis.values()}) > 1:
            acc += " (" + ",".join(f"{a[:2]}{'≥' + str(r.acc_bits_limit) if b is None else b}"
                                   for a, b in r.acc_bits_by_axis.items()) + ")"
        yn = lambda v: "-" if v is None else ("yes" if v else "no")  # noqa: E731
        mid = "fold" if r.fold16 else yn(r.mid)
        row = [r.dtype, r.pass_, acc, "exact" if r.input_bits is None else f"{r.input_bits} bits",
               "-" if r.products_exact is None else ("exact" if r.products_exact else "rounded"),
               r.rounding or "?", yn(r.daz), yn(r.ftz), mid, yn(r.deterministic), r.profile() or "none",
               caps.profile_for(r.dtype, r.pass_) if caps is not None else ""]
        lines.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt_row = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [fmt_row(head), fmt_row(["-" * w for w in widths])] + [fmt_row(x) for x in lines]
    orders = []
    for r in results:  # axes with the same order on one line
        by_order: dict[str, list[str]] = {}
        for axis, o in r.order.items():
            by_order.setdefault(o, []).append(axis)
        orders += [f"  {r.dtype} {r.pass_} ({', '.join(axes)}): {o}" for o, axes in by_order.items()]
    errors = [f"  {r.dtype} {r.pass_}: {e}" for r in results for e in r.errors]
    return "\n".join(out + (["", "order of accumulation (16 terms, FPRev):"] + orders if orders else [])
                     + (["", "not measured:"] + errors if errors else []))
