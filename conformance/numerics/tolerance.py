"""Per-element error bounds: how far from the float64 reference a correct implementation may land.

Every error is measured in units of a bound computed from the data actually fed in (see
``shared/design/tolerance.md``, Higham 2002 Lemma 3.1; Higham & Mary 2019). For a pass ``op`` (forward,
grad_input, grad_weight: each bilinear in its operands ``a, b``; grad_bias: a plain sum) and output element i::

    ref_i = op(a, b)_i          M1_i = op(|a|, |b|)_i          K_i = op(1, 1)_i          M2_i = sqrt(op(a², b²)_i)

An implementation declares a *precision profile* (``u_in``: rounding of inputs before multiplying, e.g. TF32;
``u_acc``: the accumulator; ``u_out``: the final rounding) and an *error model*. The bounds:

======  ==============================================================================  ==========================
kind    bound B_i                                                                        used for
======  ==============================================================================  ==========================
det     (2·u_in + γ(K_i, u_acc))·M1_i + u_out·|ref_i| + (K_i+1)·tiny                      any data; a theorem
prob    min(2·u_in·M1_i, 10·u_in·M2_i) + min(γ(K_i,u_acc), λ·√K_i·u_acc)·M1_i + …        seeded i.i.d. random data
exact   0 (bitwise), data of small integers with max M1 ≤ 2^p                          the exact-integer tier
norm    C·u_acc·(3·log2(F)+1)·S_plane + 2·u_in·M1_i + (u_acc+u_out)·|ref_i| + (K_i+1)·tiny  FFT/Winograd (normwise)
======  ==============================================================================  ==========================

Each bound also carries the oracle's own error, ``γ(K_i, 2^-53)·M1_i``: the reference is a float64 direct sum, not
exact, so a float64 implementation that sums in another order may differ from it by the two errors together (a
correct naive float64 loop once failed by 1.1× on a machine whose BLAS summed the oracle's products in another
order). For float32 and lower this term is far below the implementation's own.

with ``γ(K, u) = K·u / (1 − K·u)``, λ = 8, C = 1, ``S_plane`` the sum over the reduced channels of
``min(‖a‖₂·‖b‖₁, ‖a‖₁·‖b‖₂)`` for the output plane of element i, and F the padded FFT grid size; 3·log2(F)+1
counts the rounding stages of two forward transforms, the pointwise product and the inverse transform (with
log2(F) alone a correct scipy FFT exceeded the bound by up to 1.36× on grids of a few points). Where
``K_i = 0`` (only padding or stride gaps contribute) the componentwise bounds are 0: a direct method must give an
exact 0 there. The normwise bound is not: a transform spreads its rounding errors over the whole plane.

Profiles (``u = 2^-p`` is half of ``numpy.finfo(dtype).eps``):

==========  =======  =======  =======  ==============================================
profile     u_in     u_acc    u_out    who
==========  =======  =======  =======  ==============================================
fp64        0        2^-53    0        float64 direct methods
fp32        0        2^-24    0        float32 IEEE direct; torch CUDA with cuDNN and TF32 off
tf32        2^-11    2^-23    0        float32 through TF32 tensor cores (torch CUDA's default)
fp16-acc32  0        2^-23    2^-11    float16 in/out, float32 accumulation
bf16-acc32  0        2^-23    2^-8     bfloat16 in/out, float32 accumulation
..-mid16    0        2^-23    2^-11/8  fp16-/bf16-acc32 plus u_mid = 2^-11/2^-8: one intermediate result rounded
                                       to the storage dtype (torch CUDA half forward: the bias added to the rounded
                                       convolution), ``u_mid·M1_i`` added to every bound
fp16-acc16  0        2^-11    2^-11    float16 accumulated in float16 (torch CPU fp16 backward)
bf16-acc16  0        2^-8     2^-8     bfloat16 accumulated in bfloat16 (torch CPU: the padding fold of bf16 dx)
==========  =======  =======  =======  ==============================================

A ratio max_i err_i / B_i above 1 is a bug, or a wrongly declared profile; no fudge factor is applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from conformance.model.problem import ConvProblem
from conformance.numerics import reference as R
from conformance.numerics.transposed import grid as transposed_grid

LAMBDA = 8.0  #: probabilistic constant; Higham & Mary's bound needed <= 2.4 in our measurements
C_NORM = 1.0  #: normwise constant; measured need 0.26 (scipy.fft), 0.027 (cuDNN FFT/Winograd)
CHECKS = ("forward", "grad_input", "grad_weight", "grad_bias")


@dataclass(frozen=True)
class Profile:
    name: str
    u_in: float
    u_acc: float
    u_out: float
    tiny: float  #: smallest subnormal of the storage dtype: the underflow term per product
    description: str
    #: one intermediate result rounded to the storage dtype before a last step (a bias added to the rounded
    #: convolution, padding folded onto a rounded gradient, columns rounded before they are gathered): u_mid·M1
    u_mid: float = 0.0

    @property
    def looseness(self) -> tuple[float, float, float]:
        """Orders the profiles of one dtype from tightest to loosest: by the accumulator, then inputs, then u_mid."""
        return (self.u_acc, self.u_in, self.u_mid)

    @property
    def exact_bits(self) -> int:
        """Integers up to 2**exact_bits survive every rounding of this profile exactly."""
        us = [u for u in (self.u_in, self.u_acc, self.u_out, self.u_mid) if u > 0]
        return int(round(-math.log2(max(us))))


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("fp64", 0.0, 2.0**-53, 0.0, 2.0**-1074, "float64 direct summation"),
    Profile("fp32", 0.0, 2.0**-24, 0.0, 2.0**-149, "float32 IEEE direct summation"),
    Profile("tf32", 2.0**-11, 2.0**-23, 0.0, 2.0**-149, "float32 with inputs rounded to TF32 (10-bit mantissa)"),
    Profile("fp16-acc32", 0.0, 2.0**-23, 2.0**-11, 2.0**-24, "float16 storage, float32 accumulation"),
    Profile("bf16-acc32", 0.0, 2.0**-23, 2.0**-8, 2.0**-133, "bfloat16 storage, float32 accumulation"),
    Profile("fp16-acc32-mid16", 0.0, 2.0**-23, 2.0**-11, 2.0**-24,
            "float16 storage, float32 accumulation, one intermediate result rounded to float16", u_mid=2.0**-11),
    Profile("bf16-acc32-mid16", 0.0, 2.0**-23, 2.0**-8, 2.0**-133,
            "bfloat16 storage, float32 accumulation, one intermediate result rounded to bfloat16", u_mid=2.0**-8),
    Profile("fp16-acc16", 0.0, 2.0**-11, 2.0**-11, 2.0**-24, "float16 storage and accumulation"),
    Profile("bf16-acc16", 0.0, 2.0**-8, 2.0**-8, 2.0**-133, "bfloat16 storage and accumulation"),
)}

_DEFAULT = {"float64": "fp64", "float32": "fp32", "float16": "fp16-acc32", "bfloat16": "bf16-acc32"}


def default_profile(dtype: str) -> str:
    return _DEFAULT[dtype]


def profiles_of(dtype: str) -> list[Profile]:
    """The built-in profiles meant for ``dtype`` (its output rounding and underflow unit), tightest first."""
    base = PROFILES[_DEFAULT[dtype]]
    return sorted((p for p in PROFILES.values() if p.u_out == base.u_out and p.tiny == base.tiny),
                  key=lambda p: p.looseness)


def exact_bits_for(caps: object, problem: Any) -> int:
    """Integer data below 2**bits stays exact in every pass of ``problem``'s operation (its dtype, rank, transposed or
    not) by a backend with these capabilities."""
    return min(PROFILES[caps.profile_for(problem.dtype, c, problem.transposed,  # type: ignore[attr-defined]
                                         problem.rank)].exact_bits for c in CHECKS)


def gamma(k: np.ndarray | float, u: float) -> np.ndarray:
    """γ(K, u) = K·u / (1 − K·u); infinite where K·u >= 1 (no bound exists)."""
    ku = np.asarray(k, dtype=np.float64) * u
    with np.errstate(divide="ignore"):
        return np.where(ku < 1, ku / np.maximum(1 - ku, 0), np.inf)


# -- the quantities of each pass: one bilinear map per check ------------------------------------

Operands = tuple[np.ndarray, np.ndarray]


def _op(check: str) -> Callable[..., np.ndarray]:
    ops: dict[str, Callable[..., np.ndarray]] = {
        "forward": R.forward, "grad_input": R.grad_input, "grad_weight": R.grad_weight}
    return ops[check]


def operands(check: str, x: np.ndarray, w: np.ndarray, dy: np.ndarray | None) -> Operands:
    """The two operands of each pass, in the order the oracle takes them."""
    return {"forward": (x, w), "grad_input": (dy, w), "grad_weight": (x, dy)}[check]  # type: ignore[return-value]


#: term counts of at most this many elements are cached (512 KiB each, at most 32 MiB for the cache's 64 entries): a
#: problem's counts are asked for again (the oracle-free identities, Hypothesis' replays while it shrinks), and each
#: costs a reference pass on ones. Larger ones are computed afresh, so that no cache holds them once they are judged:
#: the scale tier's (65537 elements and, opted in, over 2^31, which it judges once each), and a drawn problem's
#: largest results, whose reference pass costs at most the strategies' work budget (``strategies.MAX_MACS``)
CACHED_TERM_COUNTS = 2**16


def term_counts(check: str, p: ConvProblem) -> np.ndarray:
    """K_i: the number of products that reach output element i (0 on untouched stride remainders)."""
    shape = {"forward": p.output_shape, "grad_input": p.input_shape, "grad_weight": p.weight_shape,
             "grad_bias": p.bias_shape}[check]
    return (_cached_term_counts if math.prod(shape) <= CACHED_TERM_COUNTS else _term_counts)(check, p)


@lru_cache(maxsize=64)
def _cached_term_counts(check: str, p: ConvProblem) -> np.ndarray:
    return _term_counts(check, p)


def _term_counts(check: str, p: ConvProblem) -> np.ndarray:
    ones = {"forward": (p.input_shape, p.weight_shape), "grad_input": (p.output_shape, p.weight_shape),
            "grad_weight": (p.input_shape, p.output_shape)}
    if check == "grad_bias":
        return np.full(p.bias_shape, p.batch * math.prod(p.out_sizes), dtype=np.float64)
    a, b = (np.ones(s) for s in ones[check])
    k = _op(check)(p, a, b)
    if check == "forward" and p.bias:
        k = k + 1.0
    k.setflags(write=False)
    return k


def _spatial(p: ConvProblem) -> tuple[int, ...]:
    """The spatial axes of an (N, C, *spatial) array of ``p``'s rank."""
    return tuple(range(2, 2 + p.rank))


@dataclass
class Terms:
    """ref, M1, K (and M2 on demand) of one pass, all float64 arrays of the output's shape."""

    ref: np.ndarray
    m1: np.ndarray
    k: np.ndarray
    m2: np.ndarray | None = None


def terms(check: str, p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
          dy: np.ndarray | None, *, want_m2: bool = False) -> Terms:
    """Reference value and magnitudes of pass ``check``, from the (rounded) inputs the backend received."""
    if check == "grad_bias":
        d = np.asarray(dy, dtype=np.float64)
        reduced = (0, *_spatial(p))
        return Terms(R.grad_bias(p, d), np.abs(d).sum(axis=reduced), term_counts(check, p),
                     np.sqrt((d * d).sum(axis=reduced)) if want_m2 else None)
    a, c = (np.asarray(v, dtype=np.float64) for v in operands(check, x, w, dy))
    op = _op(check)
    bias = np.asarray(b, dtype=np.float64) if (check == "forward" and b is not None) else None
    ref = op(p, a, c, bias) if check == "forward" else op(p, a, c)
    m1 = op(p, np.abs(a), np.abs(c), None if bias is None else np.abs(bias)) if check == "forward" \
        else op(p, np.abs(a), np.abs(c))
    m2 = None
    if want_m2:
        sq = op(p, a * a, c * c, None if bias is None else bias * bias) if check == "forward" \
            else op(p, a * a, c * c)
        m2 = np.sqrt(sq)
    return Terms(ref, m1, term_counts(check, p), m2)


# -- bounds ---------------------------------------------------------------------------------------

@dataclass
class Bound:
    values: np.ndarray  #: B_i, same shape as the output
    kind: str           #: det | prob | exact | norm
    profile: str
    formula: str


def _zero_where_untouched(b: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.where(k > 0, b, 0.0)


def det_bound(t: Terms, prof: Profile) -> np.ndarray:
    b = (2 * prof.u_in + prof.u_mid + gamma(t.k, prof.u_acc)) * t.m1 + prof.u_out * np.abs(t.ref) \
        + (t.k + 1) * prof.tiny
    return _zero_where_untouched(b, t.k)


def prob_bound(t: Terms, prof: Profile) -> np.ndarray:
    assert t.m2 is not None, "prob_bound needs M2"
    acc = np.minimum(gamma(t.k, prof.u_acc), LAMBDA * np.sqrt(t.k) * prof.u_acc)
    inp = np.minimum(2 * prof.u_in * t.m1, 10 * prof.u_in * t.m2)
    b = inp + (acc + prof.u_mid) * t.m1 + prof.u_out * np.abs(t.ref) + (t.k + 1) * prof.tiny
    return _zero_where_untouched(b, t.k)


def plane_norm_sum(check: str, p: ConvProblem, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """S per output plane: Σ over reduced channels of min(‖a‖₂‖c‖₁, ‖a‖₁‖c‖₂), broadcastable to the output."""
    n1 = lambda v: np.abs(v).sum(axis=_spatial(p))  # noqa: E731  (per (outer, channel) plane)
    n2 = lambda v: np.sqrt((v * v).sum(axis=_spatial(p)))  # noqa: E731

    def grouped(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        # lhs (A, C), rhs (B, C/g or C) -> (A, B) summing the channels each pair shares within a group
        if p.transposed:  # each pass is a convolution's pass with C_in and C_out exchanged (weight (C_in, Og, k))
            dual = p.replace(c_in=p.c_out, c_out=p.c_in)
            if check == "grad_weight":  # dW (C_in, Og) = the convolution's dW with x and dy exchanged
                return _group_matmul("grad_weight", dual, rhs, lhs)
            return _group_matmul({"forward": "grad_input", "grad_input": "forward"}[check], dual, lhs, rhs)
        return _group_matmul(check, p, lhs, rhs)

    s = np.minimum(grouped(n2(a), n1(c)), grouped(n1(a), n2(c)))
    return s.reshape(s.shape + (1,) * p.rank)


def _group_matmul(check: str, p: ConvProblem, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    g = p.groups
    if check == "forward":      # lhs (N, C_in) from x, rhs (C_out, Cg) from w -> (N, C_out)
        n = lhs.shape[0]
        l_ = lhs.reshape(n, g, 1, p.c_in // g)
        r_ = rhs.reshape(1, g, p.c_out // g, p.c_in // g)
        return (l_ * r_).sum(-1).reshape(n, p.c_out)
    if check == "grad_input":   # lhs (N, C_out) from dy, rhs (C_out, Cg) from w -> (N, C_in)
        n = lhs.shape[0]
        l_ = lhs.reshape(n, g, p.c_out // g, 1)
        r_ = rhs.reshape(1, g, p.c_out // g, p.c_in // g)
        return (l_ * r_).sum(2).reshape(n, p.c_in)
    # grad_weight: lhs (N, C_in) from x, rhs (N, C_out) from dy -> (C_out, Cg), summed over the batch
    n = lhs.shape[0]
    l_ = lhs.reshape(n, g, 1, p.c_in // g)
    r_ = rhs.reshape(n, g, p.c_out // g, 1)
    return (l_ * r_).sum(0).reshape(p.c_out, p.c_in // g)


def fft_grid(p: ConvProblem) -> int:
    """The points of the transform grid an FFT convolution of ``p`` needs: per axis the padded input (both sides'
    padding, asymmetric or not) plus the dilated kernel's extent, over every spatial axis; of a transposed one, the
    uncropped scatter grid (the stride-dilated input's full convolution with the dilated kernel)."""
    if p.transposed:
        return math.prod(transposed_grid(p))
    return math.prod(n + b + e + d * (k - 1) for n, k, b, e, d in
                     zip(p.in_sizes, p.kernel, p.padding, p.pad_end, p.dilation))


def norm_bound(check: str, p: ConvProblem, t: Terms, prof: Profile, x: np.ndarray, w: np.ndarray,
               dy: np.ndarray | None) -> np.ndarray:
    if check == "grad_bias":
        s = t.m1
        logf = max(math.log2(max(p.batch * math.prod(p.out_sizes), 2)), 1.0)
    else:
        # non-finite inputs are judged where the reference has NaN/Inf (compare's location check); the rounding
        # error of the finite outputs is bounded from the finite inputs (one NaN would void its whole plane's bound)
        a, c = (np.asarray(v, dtype=np.float64) for v in operands(check, x, w, dy))
        a, c = (np.where(np.isfinite(v), v, 0.0) for v in (a, c))
        s = plane_norm_sum(check, p, a, c)
        logf = max(math.log2(fft_grid(p)), 1.0)
    # rounding stages: two forward transforms, the pointwise product, one inverse transform
    stages = 3 * logf + 1
    # the final rounding to a float16/bfloat16 output (u_out) is componentwise, as in the direct bounds
    b = (C_NORM * prof.u_acc * stages * s + (2 * prof.u_in + prof.u_mid) * t.m1
         + (prof.u_acc + prof.u_out) * np.abs(t.ref) + (t.k + 1) * prof.tiny)
    # no exact zeros here: a transform spreads rounding errors over the whole plane, K_i = 0 included
    return np.broadcast_to(b, t.ref.shape).copy()


def bound_kind(error_model: str, data_kind: str) -> str:
    """Which bound judges a backend of ``error_model`` on data of ``data_kind``."""
    if error_model == "normwise":
        return "norm"
    return {"int": "exact", "normal": "prob", "uniform": "prob"}.get(data_kind, "det")  # wide, nonfinite: det


ORACLE_U = 2.0**-53  #: the oracle's unit roundoff (float64 direct sums); its error bound is added to every bound
_ORACLE = " + γ(K,2⁻⁵³)·|a|*|b| (oracle)"
FORMULAS = {
    "det": "(2·u_in + u_mid + γ(K,u_acc))·|a|*|b| + u_out·|ref|" + _ORACLE,
    "prob": "min(2·u_in·M1, 10·u_in·M2) + (u_mid + min(γ(K,u_acc), 8·√K·u_acc))·|a|*|b| + u_out·|ref|" + _ORACLE,
    "exact": "0 (small-integer data: every partial sum is exact, the oracle's too)",
    "norm": "u_acc·(3·log2(F)+1)·Σ_c min(‖a‖₂‖b‖₁, ‖a‖₁‖b‖₂) per plane + (2·u_in + u_mid)·|a|*|b| + (u_acc+u_out)·|ref|"
            + _ORACLE,
}


def bound(check: str, p: ConvProblem, t: Terms, profile: str, kind: str, x: np.ndarray, w: np.ndarray,
          dy: np.ndarray | None) -> Bound:
    prof = PROFILES[profile]
    if kind == "exact":
        values = np.zeros_like(t.ref)
    elif kind == "det":
        values = det_bound(t, prof)
    elif kind == "prob":
        values = np.minimum(prob_bound(t, prof), det_bound(t, prof))
    elif kind == "norm":
        values = norm_bound(check, p, t, prof, x, w, dy)
    else:
        raise ValueError(f"kind={kind!r}, but it must be one of det, prob, exact, norm")
    if kind != "exact":
        values = values + gamma(t.k, ORACLE_U) * t.m1  # the float64 oracle's own rounding (0 where K = 0)
    return Bound(values, kind, profile, FORMULAS[kind])
