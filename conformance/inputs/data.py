"""Operand data for a problem: a seed plus a named data kind gives x, w, b and dy, reproducibly.

Kinds:

``normal``   i.i.d. N(0, 1): the everyday case; judged by the probabilistic bound.
``uniform``  i.i.d. U(-1, 1): no large outliers; probabilistic bound.
``wide``     random sign × 2^U(-e, e) × U(1, 2): a wide dynamic range that exposes cancellation and
             normwise-only methods; judged by the deterministic bound.
``nonfinite`` normal data with a NaN, a +Inf and a -Inf planted in x and in dy (w stays finite): the reference
             (torch's semantics) says which outputs must be NaN or infinite, and the backend is held to it.
``int``      small integers in [-3, 3], sparsified until every partial sum of every pass stays below
             2^p (p = the profile's exact bits): any direct method must then match the reference bitwise
             (benchdnn's integer fill).

The extreme kinds (the extreme tier; each judged by the deterministic bound):

``huge``     one operand (x, w or dy, chosen by the seed) near the top of the dtype's range, as large as it can be
             while every pass's exact result stays finite: ``max / (4·K)``, K the longest sum it enters; the others
             have magnitudes in (1/2, 1]. A transform (FFT, Winograd) that sums before it multiplies overflows there.
``tiny``     two operands (and the bias) near the bottom of the normal range, ``tiny·2^U(-3, 3)`` (half of them
             subnormal), the third (chosen by the seed) of magnitude 2^U(-2, 2): products and sums straddle the
             normal/subnormal boundary, so flushing subnormals to zero (FTZ/DAZ) shows.
``signed_zeros`` N(0, 1) data with half of every operand +0.0 or -0.0 (either sign equally often): outputs whose
             every product is a zero must come out zero, and -0.0 must act as the zero it is.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from conformance.model.problem import ConvProblem

DATA_KINDS = ("normal", "uniform", "wide", "int", "nonfinite", "huge", "tiny", "signed_zeros")
EXTREME_KINDS = ("huge", "tiny", "signed_zeros")
#: how far below the top of the range the longest sum of the ``huge`` kind stays
HUGE_MARGIN = 4.0
WIDE_EXPONENT = {"float64": 12, "float32": 8, "float16": 3, "bfloat16": 8}
INT_RANGE = 3


@dataclass
class Inputs:
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    dy: np.ndarray


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(kind.encode())]))


def _draw(rng: np.random.Generator, kind: str, shape: tuple[int, ...], dtype: str, density: float,
          plant: bool = True) -> np.ndarray:
    if kind == "normal":
        a = rng.standard_normal(shape)
    elif kind == "uniform":
        a = rng.uniform(-1.0, 1.0, shape)
    elif kind == "wide":
        e = WIDE_EXPONENT[dtype]
        a = rng.choice([-1.0, 1.0], shape) * np.exp2(rng.uniform(-e, e, shape)) * rng.uniform(1, 2, shape)
    elif kind == "nonfinite":
        a = rng.standard_normal(shape)
        if not plant:
            return a
        flat = a.reshape(-1)
        spots = rng.choice(flat.size, size=min(3, flat.size), replace=False)
        flat[spots] = [np.nan, np.inf, -np.inf][: len(spots)]
    elif kind == "int":
        a = rng.integers(-INT_RANGE, INT_RANGE + 1, shape).astype(np.float64)
        if density < 1.0:
            a *= rng.random(shape) < density
    else:
        raise ValueError(f"data kind={kind!r}, but it must be one of {', '.join(DATA_KINDS)}")
    return a


def int_density(p: ConvProblem, exact_bits: int) -> float:
    """Keep the expected worst partial sum (K·range², K the longest accumulation) inside 2^exact_bits.

    Each product of two draws is at most INT_RANGE², so with a fraction ``d`` of non-zeros per operand a
    sum of K products has about K·d² non-zero terms. Chosen so K_max·d²·INT_RANGE² <= 2^(p-1); the tier
    then verifies max M1 <= 2^p with the magnitude convolution before it trusts bitwise equality.
    """
    taps, outputs = math.prod(p.kernel), math.prod(p.out_sizes)
    k_max = max(p.c_in // p.groups * taps + 1, p.c_out // p.groups * taps, p.batch * outputs)
    budget = 2.0 ** (exact_bits - 1) / (k_max * INT_RANGE**2)
    return float(min(1.0, np.sqrt(budget)))


def make_inputs(p: ConvProblem, seed: int, kind: str = "normal", *, exact_bits: int = 24) -> Inputs:
    """Operands of ``p`` in ``p.dtype``, reproducible from (seed, kind)."""
    rng = _rng(seed, kind)
    if kind in EXTREME_KINDS:
        return _extreme_inputs(p, rng, kind)
    density = int_density(p, exact_bits) if kind == "int" else 1.0
    dt = p.np_dtype
    for _ in range(16):
        draw = lambda shape, plant=True, d=density: _draw(rng, kind, shape, p.dtype, d, plant).astype(dt)  # noqa: E731
        x, w = draw(p.input_shape), draw(p.weight_shape, plant=False)
        b = draw(p.bias_shape, plant=False) if p.bias else None
        dy = draw(p.output_shape)
        if kind != "int" or _largest_sum(p, x, w, b, dy) <= 2.0 ** exact_bits:
            break
        density /= 2  # the density keeps the expected worst sum inside; a draw past it is drawn again, sparser
    return Inputs(x, w, b, dy)


def _largest_sum(p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dy: np.ndarray) -> float:
    """The largest sum of magnitudes (M1) any pass of these operands adds up: the exact tier's data must keep it
    within 2^exact_bits, where every partial sum of every declared profile is exact."""
    from conformance.numerics import reference as R

    a = [np.abs(np.asarray(v, dtype=np.float64)) for v in (x, w, dy)]
    sums = [R.forward(p, a[0], a[1], None if b is None else np.abs(np.asarray(b, dtype=np.float64))),
            R.grad_input(p, a[2], a[1]), R.grad_weight(p, a[0], a[2]), R.grad_bias(p, a[2])]
    return max(float(v.max()) if v.size else 0.0 for v in sums)


# -- the extreme kinds ----------------------------------------------------------------------------------------------

def dtype_range(dtype: str) -> tuple[float, float]:
    """(largest finite, smallest normal) of a problem dtype (bfloat16 through ml_dtypes)."""
    fi: Any
    if dtype == "bfloat16":
        import ml_dtypes

        fi = ml_dtypes.finfo(ml_dtypes.bfloat16)
    else:
        fi = np.finfo(np.dtype(dtype))
    return float(fi.max), float(fi.tiny)


def sum_lengths(p: ConvProblem) -> dict[str, int]:
    """The longest sum of each operand's passes (an upper bound of every K_i it enters)."""
    taps = math.prod(p.kernel)
    forward = p.c_in // p.groups * taps + (1 if p.bias else 0)
    grad_input = p.c_out // p.groups * taps
    grad_weight = p.batch * math.prod(p.out_sizes)  # grad_bias sums the same count
    return {"x": max(forward, grad_weight), "w": max(forward, grad_input), "dy": max(grad_input, grad_weight)}


def _extreme_inputs(p: ConvProblem, rng: np.random.Generator, kind: str) -> Inputs:
    dt = p.np_dtype
    shapes = {"x": p.input_shape, "w": p.weight_shape, "dy": p.output_shape, "b": p.bias_shape}
    sign = lambda shape: rng.choice([-1.0, 1.0], shape)  # noqa: E731
    out: dict[str, np.ndarray] = {}
    if kind == "signed_zeros":
        for name, shape in shapes.items():
            a = rng.standard_normal(shape)
            zero = rng.random(shape) < 0.5
            out[name] = np.where(zero, np.where(rng.random(shape) < 0.5, -0.0, 0.0), a)
    elif kind == "huge":
        top, _ = dtype_range(p.dtype)
        role = ("x", "w", "dy")[int(rng.integers(3))]
        lengths = sum_lengths(p)
        for name, shape in shapes.items():
            if name == role:
                scale = top / (HUGE_MARGIN * lengths[role])
                out[name] = sign(shape) * scale * rng.uniform(0.5, 1.0, shape)
            else:
                out[name] = sign(shape) * np.exp2(rng.uniform(-1.0, 0.0, shape))
    elif kind == "tiny":
        _, tiny = dtype_range(p.dtype)
        moderate = ("x", "w", "dy")[int(rng.integers(3))]
        for name, shape in shapes.items():
            if name == moderate:
                out[name] = sign(shape) * np.exp2(rng.uniform(-2.0, 2.0, shape))
            else:
                out[name] = sign(shape) * tiny * np.exp2(rng.uniform(-3.0, 3.0, shape))
    else:
        raise ValueError(f"data kind={kind!r} is not one of {EXTREME_KINDS}")
    cast = {k: v.astype(dt) for k, v in out.items()}
    return Inputs(cast["x"], cast["w"], cast["b"] if p.bias else None, cast["dy"])
