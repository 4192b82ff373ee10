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
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .compare import _np_dtype
from .problem import ConvProblem

DATA_KINDS = ("normal", "uniform", "wide", "int", "nonfinite")
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
    k_max = max(p.c_in // p.groups * p.kh * p.kw + 1, p.c_out // p.groups * p.kh * p.kw, p.batch * p.out_h * p.out_w)
    budget = 2.0 ** (exact_bits - 1) / (k_max * INT_RANGE**2)
    return float(min(1.0, np.sqrt(budget)))


def make_inputs(p: ConvProblem, seed: int, kind: str = "normal", *, exact_bits: int = 24) -> Inputs:
    """Operands of ``p`` in ``p.dtype``, reproducible from (seed, kind)."""
    rng = _rng(seed, kind)
    density = int_density(p, exact_bits) if kind == "int" else 1.0
    dt = _np_dtype(p.dtype)
    draw = lambda shape, plant=True: _draw(rng, kind, shape, p.dtype, density, plant).astype(dt)  # noqa: E731
    x, w = draw(p.input_shape), draw(p.weight_shape, plant=False)
    b = draw(p.bias_shape, plant=False) if p.bias else None
    dy = draw(p.output_shape)
    return Inputs(x, w, b, dy)
