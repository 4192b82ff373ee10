"""Tests of ``conformance.problem.ConvProblem``: validation messages, derived shapes, (de)serialisation, repr.

Semantics: ``torch.nn.functional.conv2d`` (https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html).
The invalid-problem table follows hypothesis' ``tests/numpy/test_argument_validation.py``: one row per broken
rule, ``e(message, **kwargs)`` gives each row a readable id, and every message is pinned with
``pytest.raises(InvalidProblem, match=re.escape(...))`` as numpy's ``testing/tests/test_utils.py`` does.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.errors import ConformanceError, InvalidProblem
from conformance.golden import shape_examples
from conformance.problem import ConvProblem
from conformance.strategies import conv_problems

#: a valid problem; each table row overrides a few fields of it
BASE: dict[str, Any] = dict(batch=1, c_in=1, c_out=1, h=5, w=5, kh=3, kw=3)


def e(message: str, **kwargs: Any) -> Any:
    """One row of the table: the overrides, the exact message, and an id that reads like the call."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return pytest.param(kwargs, message, id=f"ConvProblem({args})")


INVALID = [
    # groups must divide both channel counts
    e("groups=3 must divide c_in=4", groups=3, c_in=4, c_out=3),
    e("groups=2 must divide c_out=3", groups=2, c_in=4, c_out=3),
    e("groups=4 must divide c_in=2", groups=4, c_in=2, c_out=4),
    # the (dilated) kernel must fit in the padded input, on each axis
    e("dilation*(kh-1)+1=7 exceeds padded height h+2*padding=5 (h=5, kh=4, padding=0, dilation=2)",
      kh=4, dilation=2),
    e("dilation*(kh-1)+1=6 exceeds padded height h+2*padding=5 (h=5, kh=6, padding=0, dilation=1)", kh=6),
    e("dilation*(kh-1)+1=5 exceeds padded height h+2*padding=4 (h=2, kh=5, padding=1, dilation=1)",
      h=2, kh=5, padding=1),
    e("dilation*(kw-1)+1=6 exceeds padded width w+2*padding=5 (w=5, kw=6, padding=0, dilation=1)", kw=6),
    e("dilation*(kw-1)+1=10 exceeds padded width w+2*padding=7 (w=5, kw=4, padding=1, dilation=3)",
      kw=4, padding=(0, 1), dilation=(1, 3)),
    # sizes are positive ints
    e("batch=0, but it must be at least 1", batch=0),
    e("c_in=0, but it must be at least 1", c_in=0),
    e("c_out=-2, but it must be at least 1", c_out=-2),
    e("h=-1, but it must be at least 1", h=-1),
    e("w=0, but it must be at least 1", w=0),
    e("kh=0, but it must be at least 1", kh=0),
    e("kw=-3, but it must be at least 1", kw=-3),
    e("groups=0, but it must be at least 1", groups=0),
    e("c_in=2.0, but it must be an int", c_in=2.0),
    e("kh=True, but it must be an int", kh=True),
    # padding >= 0, stride >= 1, dilation >= 1, per axis
    e("padding=(-1, -1) (h=-1), but it must be at least 0", padding=-1),
    e("padding=(0, -2) (w=-2), but it must be at least 0", padding=(0, -2)),
    e("stride=(0, 0) (h=0), but it must be at least 1", stride=0),
    e("stride=(1, 0) (w=0), but it must be at least 1", stride=(1, 0)),
    e("dilation=(0, 1) (h=0), but it must be at least 1", dilation=(0, 1)),
    e("dilation=(1, -1) (w=-1), but it must be at least 1", dilation=(1, -1)),
    # dtype
    e("dtype='int8', but it must be one of float64, float32, float16, bfloat16", dtype="int8"),
    e("dtype='float', but it must be one of float64, float32, float16, bfloat16", dtype="float"),
    e("dtype=None, but it must be one of float64, float32, float16, bfloat16", dtype=None),
    # pairs: an int or a pair of ints, nothing else
    e("stride=True, but it must be an int or a pair of ints", stride=True),
    e("dilation=(True, 1), but it must be an int or a pair of ints", dilation=(True, 1)),
    e("stride=(1, 2, 3), but it must be an int or a pair of ints", stride=(1, 2, 3)),
    e("padding=(1,), but it must be an int or a pair of ints", padding=(1,)),
    e("stride=1.5, but it must be an int or a pair of ints", stride=1.5),
    e("padding=(1.0, 1), but it must be an int or a pair of ints", padding=(1.0, 1)),
    e("stride=None, but it must be an int or a pair of ints", stride=None),
    e("dilation='ab', but it must be an int or a pair of ints", dilation="ab"),
    # bias is a bool
    e("bias=1, but it must be True or False", bias=1),
    # the first broken rule is the one named
    e("c_in=0, but it must be at least 1", c_in=0, dtype="int8", stride=0),
]


@pytest.mark.parametrize("overrides, message", INVALID)
def test_invalid_problem_is_rejected_with_its_message(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidProblem, match=f"^{re.escape(message)}$"):
        ConvProblem(**{**BASE, **overrides})


@pytest.mark.parametrize("overrides, message", INVALID)
def test_replace_revalidates(overrides: dict[str, Any], message: str) -> None:
    valid = ConvProblem(**BASE)
    # `replace` builds a new problem through the constructor, so it cannot smuggle in a broken rule
    with pytest.raises(InvalidProblem, match=f"^{re.escape(message)}$"):
        valid.replace(**overrides)


def test_invalid_problem_is_a_value_error() -> None:
    assert issubclass(InvalidProblem, ValueError)
    assert issubclass(InvalidProblem, ConformanceError)
    with pytest.raises(ValueError, match="groups=3 must divide c_in=4"):
        ConvProblem(**{**BASE, "c_in": 4, "c_out": 3, "groups": 3})


@pytest.mark.parametrize("overrides", [
    pytest.param(dict(h=2, kh=4, padding=1), id="span equals padded height"),
    pytest.param(dict(w=1, kw=7, padding=(0, 3)), id="span equals padded width"),
    pytest.param(dict(h=5, kh=3, dilation=2), id="dilated span equals height"),
    pytest.param(dict(c_in=6, c_out=4, groups=2), id="groups divides both"),
])
def test_boundary_problems_are_valid(overrides: dict[str, Any]) -> None:
    p = ConvProblem(**{**BASE, **overrides})
    assert p.out_h >= 1 and p.out_w >= 1


def test_numpy_dtype_object_is_normalised_or_rejected() -> None:
    try:
        p = ConvProblem(**{**BASE, "dtype": np.dtype("float32")})
    except InvalidProblem:
        return
    assert type(p.dtype) is str and p.dtype == "float32"


# -- derived shapes -----------------------------------------------------------------------------

def _count_positions(size: int, k: int, pad: int, dil: int, stride: int) -> int:
    """Output positions along one axis, counted: start i*stride with the dilated kernel inside the padded input."""
    return sum(1 for i in range(size + 2 * pad + 1) if i * stride + dil * (k - 1) + 1 <= size + 2 * pad)


@pytest.mark.parametrize("overrides, out_hw", [
    pytest.param(dict(h=6, w=5), (4, 3), id="docstring example 6x5 k3"),
    pytest.param(dict(h=7, w=8, stride=2), (3, 3), id="stride 2: 7 even, 8 leaves a remainder"),
    pytest.param(dict(h=10, w=11, stride=(3, 4)), (3, 3), id="uneven strides"),
    pytest.param(dict(h=7, w=9, dilation=(2, 3)), (3, 3), id="dilation"),
    pytest.param(dict(h=1, w=2, kh=1, kw=1, padding=(2, 1)), (5, 4), id="padding only"),
    pytest.param(dict(h=9, w=9, stride=(2, 3), padding=(1, 2), dilation=(3, 2)), (3, 3), id="all together"),
])
def test_output_size_by_hand(overrides: dict[str, Any], out_hw: tuple[int, int]) -> None:
    p = ConvProblem(**{**BASE, **overrides})
    assert (p.out_h, p.out_w) == out_hw
    assert p.output_shape == (p.batch, p.c_out, *out_hw)


@settings(max_examples=60, deadline=None)
@given(p=conv_problems(dtypes=("float64", "float32", "float16")))
def test_derived_shapes_match_counting(p: ConvProblem) -> None:
    assert p.out_h == _count_positions(p.h, p.kh, p.padding[0], p.dilation[0], p.stride[0])
    assert p.out_w == _count_positions(p.w, p.kw, p.padding[1], p.dilation[1], p.stride[1])
    assert p.input_shape == (p.batch, p.c_in, p.h, p.w)
    assert p.weight_shape == (p.c_out, p.c_in // p.groups, p.kh, p.kw)
    assert p.bias_shape == (p.c_out,)
    assert p.output_shape == (p.batch, p.c_out, p.out_h, p.out_w)
    # every output element reads C_in/groups * kh * kw weights
    assert p.macs == int(np.prod(p.output_shape)) * (p.c_in // p.groups) * p.kh * p.kw
    assert p.max_elements == max(int(np.prod(s)) for s in (p.input_shape, p.output_shape, p.weight_shape))


def test_grouped_weight_shape() -> None:
    p = ConvProblem(batch=2, c_in=6, c_out=9, h=4, w=4, kh=2, kw=3, groups=3)
    assert p.weight_shape == (9, 2, 2, 3)
    assert p.macs == 2 * 9 * 3 * 2 * 2 * 2 * 3


def test_int_is_used_for_both_axes() -> None:
    p = ConvProblem(**{**BASE, "h": 9, "w": 9, "stride": 2, "padding": 1, "dilation": 2})
    assert (p.stride, p.padding, p.dilation) == ((2, 2), (1, 1), (2, 2))
    assert ConvProblem(**{**BASE, "stride": [2, 1]}).stride == (2, 1)  # any 2-sequence becomes a tuple


@pytest.mark.parametrize("p, expected", shape_examples(), ids=[p.short() for p, _ in shape_examples()])
def test_golden_shape_examples(p: ConvProblem, expected: tuple[int, ...]) -> None:
    assert p.output_shape == expected


def test_golden_shape_examples_are_the_notebooks() -> None:
    # the three examples of the seed notebook, typed in from it
    assert [e for _, e in shape_examples()] == [(1, 2, 6, 6), (1, 5, 6, 6), (20, 28, 48, 48)]


# -- (de)serialisation and repr -----------------------------------------------------------------

FULL = ConvProblem(batch=2, c_in=4, c_out=6, h=7, w=9, kh=3, kw=2, stride=(2, 3), padding=(1, 0), dilation=(2, 1),
                   groups=2, bias=True, dtype="float32", label="layer1.conv")


def test_to_dict_is_plain_json() -> None:
    d = FULL.to_dict()
    assert d == {"batch": 2, "c_in": 4, "c_out": 6, "h": 7, "w": 9, "kh": 3, "kw": 2, "stride": [2, 3],
                 "padding": [1, 0], "dilation": [2, 1], "groups": 2, "bias": True, "dtype": "float32",
                 "label": "layer1.conv"}
    assert "label" not in FULL.replace(label="").to_dict()
    assert json.loads(json.dumps(d)) == d


def test_from_dict_rejects_unknown_fields() -> None:
    d = {**FULL.to_dict(), "kernel_flip": True}
    with pytest.raises(InvalidProblem, match=re.escape("unknown problem fields ['kernel_flip']; known are [")):
        ConvProblem.from_dict(d)


def test_from_dict_validates() -> None:
    with pytest.raises(InvalidProblem, match=re.escape("groups=4 must divide c_in=6")):
        ConvProblem.from_dict({**FULL.to_dict(), "c_in": 6, "c_out": 8, "groups": 4})


def test_repr_is_a_constructor_call() -> None:
    assert repr(FULL) == ("ConvProblem(batch=2, c_in=4, c_out=6, h=7, w=9, kh=3, kw=2, stride=(2, 3), padding=(1, 0),"
                          " dilation=(2, 1), groups=2, bias=True, dtype='float32', label='layer1.conv')")
    assert "label" not in repr(FULL.replace(label=""))


@settings(max_examples=60, deadline=None)
@given(p=conv_problems(dtypes=("float64", "float32", "float16", "bfloat16")),
       label=st.sampled_from(["", "conv1", "it's \"quoted\""]))
def test_round_trips(p: ConvProblem, label: str) -> None:
    p = p.replace(label=label)
    again = eval(repr(p), {"ConvProblem": ConvProblem})  # noqa: S307 - the point of the test
    assert again == p and again.label == p.label and repr(again) == repr(p)
    back = ConvProblem.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p and back.label == p.label
    assert hash(back) == hash(p)


def test_label_is_not_geometry() -> None:
    a, b = FULL, FULL.replace(label="other")
    assert a == b and hash(a) == hash(b)
    assert a.short().startswith("layer1.conv: ") and b.short().startswith("other: ")
    assert FULL.replace(label="").short() == "N2 C4->6 7x9 k3x2 s2,3 p1,0 d2,1 g2 +b float32"


def test_problem_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FULL.h = 3  # type: ignore[misc]
