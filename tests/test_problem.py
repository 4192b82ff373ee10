"""Tests of ``conformance.model.problem.ConvProblem``: validation messages, derived shapes, (de)serialisation, repr, the
descriptor (``str`` and ``ConvProblem.parse``, benchdnn's ``operator<<`` and ``str2desc``).

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

from conformance.backends.backend import Capabilities
from conformance.errors import ConformanceError, InvalidProblem
from conformance.inputs.golden import shape_examples
from conformance.inputs.strategies import conv_problems
from conformance.model.problem import DTYPES, PADDING_MODES, ConvProblem

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


@pytest.mark.parametrize("p, expected", shape_examples(), ids=[str(p) for p, _ in shape_examples()])
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
    assert str(a).endswith('_n"layer1.conv"') and str(b).endswith('_n"other"')
    assert str(FULL.replace(label="")) == "mb2ic4oc6ih7iw9kh3kw2sh2sw3ph1pw0dh2dw1g2_bias_float32"


def test_problem_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FULL.h = 3  # type: ignore[misc]


# -- the descriptor: str(problem) and ConvProblem.parse ---------------------------------------------------------------

#: draws every dtype, padding mode and asymmetric padding
EVERYTHING = Capabilities(dtypes=DTYPES, padding_modes=PADDING_MODES, asymmetric_padding=True)
LABELS = st.sampled_from(["", "conv1", "resnet50:layer1.0.conv1", "a label: with spaces", 'it\'s "quoted"',
                          "back\\slash\\", 'n"', "_float32", "\n"]) | st.text(max_size=12)


def _same(a: ConvProblem, b: ConvProblem) -> bool:
    return a == b and a.label == b.label and repr(a) == repr(b)


@settings(max_examples=200, deadline=None)
@given(p=conv_problems(dtypes=DTYPES, capabilities=EVERYTHING), label=LABELS)
def test_descriptor_round_trips(p: ConvProblem, label: str) -> None:
    p = p.replace(label=label)
    text = str(p)
    again = ConvProblem.parse(text)
    assert _same(again, p), (text, again, p)
    assert str(again) == text
    assert text.startswith(f"mb{p.batch}ic{p.c_in}oc{p.c_out}ih{p.h}iw{p.w}kh{p.kh}kw{p.kw}")
    assert p.dtype in text  # always written


BASIC = ConvProblem(batch=1, c_in=1, c_out=1, h=6, w=5, kh=3, kw=3)


@pytest.mark.parametrize("p, text", [
    pytest.param(BASIC, "mb1ic1oc1ih6iw5kh3kw3_float64", id="defaults omitted, the dtype written"),
    pytest.param(FULL, 'mb2ic4oc6ih7iw9kh3kw2sh2sw3ph1pw0dh2dw1g2_bias_float32_n"layer1.conv"', id="every key"),
    pytest.param(BASIC.replace(padding=(0, 1, 2, 3)), "mb1ic1oc1ih6iw5kh3kw3ph0pw2eh1ew3_float64",
                 id="asymmetric padding (top, bottom, left, right)"),
    pytest.param(BASIC.replace(padding_end=(1, 0)), "mb1ic1oc1ih6iw5kh3kw3eh1ew0_float64",
                 id="end padding only"),
    pytest.param(BASIC.replace(kh=4, padding="same"), "mb1ic1oc1ih6iw5kh4kw3ph1pw1eh2ew1_float64",
                 id="same: resolved, the odd extra row at the bottom"),
    pytest.param(BASIC.replace(padding="valid"), "mb1ic1oc1ih6iw5kh3kw3_float64", id="valid"),
    pytest.param(BASIC.replace(padding=(1, 2), padding_mode="reflect"), "mb1ic1oc1ih6iw5kh3kw3ph1pw2_reflect_float64",
                 id="reflect"),
    pytest.param(BASIC.replace(padding=1, padding_mode="circular", bias=True, dtype="bfloat16"),
                 "mb1ic1oc1ih6iw5kh3kw3ph1pw1_bias_circular_bfloat16", id="bias, mode, dtype in that order"),
    pytest.param(BASIC.replace(stride=(1, 2)), "mb1ic1oc1ih6iw5kh3kw3sh1sw2_float64", id="both axes of a pair"),
    pytest.param(BASIC.replace(dilation=(2, 1)), "mb1ic1oc1ih6iw5kh3kw3dh2dw1_float64", id="dilation 1 is none"),
    pytest.param(BASIC.replace(label="resnet50: layer1.0 conv1"),
                 'mb1ic1oc1ih6iw5kh3kw3_float64_n"resnet50: layer1.0 conv1"', id="label with spaces and colons"),
    pytest.param(BASIC.replace(label='say "hi" \\o/'), r'mb1ic1oc1ih6iw5kh3kw3_float64_n"say \"hi\" \\o/"',
                 id="label with quotes and a backslash, escaped"),
])
def test_descriptor_examples(p: ConvProblem, text: str) -> None:
    assert str(p) == text
    assert _same(ConvProblem.parse(text), p)


@pytest.mark.parametrize("dtype", DTYPES)
def test_descriptor_of_every_dtype(dtype: str) -> None:
    p = BASIC.replace(dtype=dtype)
    assert str(p) == f"mb1ic1oc1ih6iw5kh3kw3_{dtype}"
    assert ConvProblem.parse(str(p)).dtype == dtype


@pytest.mark.parametrize("text, p", [
    pytest.param("ic1oc1ih6kh3", BASIC.replace(w=6), id="mb1, square input and kernel, float64"),
    pytest.param("ic1oc1ih6iw5kh3", BASIC, id="missing kw is kh"),
    pytest.param("mb2ic1oc1ih6iw5kh3kw1", BASIC.replace(batch=2, kw=1), id="every size given"),
    pytest.param("ic1oc1ih9kh3sh2ph1dh2", BASIC.replace(h=9, w=9, stride=2, padding=1, dilation=2),
                 id="missing sw, pw, dw are sh, ph, dh"),
    pytest.param("ic1oc1ih6iw5kh3ph1eh2", BASIC.replace(padding=1, padding_end=2), id="missing ew is eh"),
    pytest.param("ic1oc1ih6iw5kh3ph1pw0eh2ew0", BASIC.replace(padding=(1, 0), padding_end=(2, 0)),
                 id="end padding per axis"),
    pytest.param("ic1oc1ih6iw5kh3ph1eh1", BASIC.replace(padding=1), id="end padding equal to the begin: symmetric"),
    pytest.param("_kh3_iw5__ih6_oc1_float64_ic1_", BASIC, id="any order, underscores anywhere"),
    pytest.param("float32ic1oc1ih6iw5kh3", BASIC.replace(dtype="float32"), id="flags first"),
    pytest.param("ic1oc1ih6iw5kh3_zeros", BASIC, id="zeros may be written"),
    pytest.param('ic1oc1ih6iw5kh3n"conv1"', BASIC.replace(label="conv1"), id="benchdnn's label, no underscore"),
    pytest.param('ic1oc1ih6iw5kh3_biasn"conv1"', BASIC.replace(bias=True, label="conv1"), id="a word before the label"),
    pytest.param("  ic1oc1ih6iw5kh3 \n", BASIC, id="surrounding whitespace"),
    pytest.param("ic1oc1ih06iw5kh3", BASIC, id="leading zero"),
])
def test_descriptor_shorthand(text: str, p: ConvProblem) -> None:
    assert _same(ConvProblem.parse(text), p)


GRAMMAR = ('expected [mb<n>]ic<n>oc<n>ih<n>[iw<n>]kh<n>[kw<n>][sh<n>[sw<n>]][ph<n>[pw<n>]][eh<n>[ew<n>]][dh<n>[dw<n>]]'
           '[oph<n>[opw<n>]][g<n>][_bias][_transposed][_zeros|_reflect|_replicate|_circular]'
           '[_float64|_float32|_float16|_bfloat16][_n"label"] '
           '(3-D: each d key before its h key; 1-D: the w keys alone), '
           'e.g. mb2ic3oc8ih9iw9kh3kw3sh2sw2ph1pw1_bias_float32_n"conv1"')


@pytest.mark.parametrize("text, why, pos", [
    pytest.param("ic3oc8ih9oh5kh3", "unknown token 'oh5' at position 9", 9, id="unknown key"),
    pytest.param("ic3oc8ih9kh3_bias1", "unknown token 'bias1' at position 13", 13, id="a flag with a number"),
    pytest.param("ic3oc8ih9kh3_float8", "unknown token 'float8' at position 13", 13, id="unknown dtype"),
    pytest.param("ic3 oc8ih9kh3", "unknown token ' ' at position 3", 3, id="a space"),
    pytest.param("IC3oc8ih9kh3", "unknown token 'IC3' at position 0", 0, id="upper case"),
    pytest.param("ic3oc8ih-9kh3", "key 'ih' at position 6 needs an integer: ih<n>", 6, id="negative"),
    pytest.param("ic3oc8ih=9kh3", "key 'ih' at position 6 needs an integer: ih<n>", 6, id="key=value"),
    pytest.param("ic3oc8ih9ih5kh3", "'ih5' at position 9 is a second ih (the first is 'ih9' at position 6)", 9,
                 id="duplicate key"),
    pytest.param("ic3oc8ih9kh3_float32_float64",
                 "'float64' at position 21 is a second dtype (the first is 'float32' at position 13)", 21,
                 id="two dtypes"),
    pytest.param("ic3oc8ih9kh3ph1_reflect_circular",
                 "'circular' at position 24 is a second padding mode (the first is 'reflect' at position 16)", 24,
                 id="two padding modes"),
    pytest.param("ic3oc8ih9kh3_bias_bias", "'bias' at position 18 is a second bias (the first is 'bias' at "
                 "position 13)", 18, id="bias twice"),
    pytest.param('ic3oc8ih9kh3n"a"n"b"', "'n\"b\"' at position 16 is a second label (the first is 'n\"a\"' at "
                 "position 12)", 16, id="two labels"),
    pytest.param("ic3oc8ih9kh3sw2", "'sw2' at position 12 without sh: a key of an inner axis needs the key of the "
                 "axis outside it (h-w)", 12, id="w without h"),
    pytest.param("ic3oc8id4ih9kd3kw2", "'kw2' at position 15 without kh: a key of an inner axis needs the key of the "
                 "axis outside it (d-h-w)", 15, id="3-d: w without h"),
    pytest.param("ic3oc8iw9", "missing required key kw", None, id="1-d without a kernel"),
    pytest.param('ic3oc8ih9kh3n"abc', "the label at position 12 has no closing quote", 12, id="unterminated label"),
    pytest.param('ic3oc8ih9kh3n"a\\xb"', "'\\\\x' at position 15: in a label only \\\" and \\\\ are escapes", 15,
                 id="unknown escape"),
    pytest.param("oc8ih9", "missing required keys ic, kh", None, id="missing keys"),
    pytest.param("ic3oc8iw9kh3", "missing required key ih", None, id="iw is not ih"),
    pytest.param("", "missing required keys ic, oc, ih, kh", None, id="empty"),
])
def test_descriptor_errors_name_the_token_and_position(text: str, why: str, pos: int | None) -> None:
    caret = "" if pos is None else "\n  " + " " * pos + "^"
    with pytest.raises(InvalidProblem) as info:
        ConvProblem.parse(text)
    assert str(info.value) == f"problem descriptor: {why}\n  {text}{caret}\n{GRAMMAR}"


def test_descriptor_error_caret_points_at_the_token() -> None:
    with pytest.raises(InvalidProblem) as info:
        ConvProblem.parse("ic3oc8ih9oh5kh3")
    _, shown, caret, _ = str(info.value).split("\n")
    assert shown[caret.index("^"):].startswith("oh5")


@pytest.mark.parametrize("text, fields", [
    pytest.param("ic4oc3ih5kh3g3", dict(c_in=4, c_out=3, h=5, w=5, kh=3, kw=3, groups=3), id="groups"),
    pytest.param("ic1oc1ih2kh3", dict(c_in=1, c_out=1, h=2, w=2, kh=3, kw=3), id="kernel too large"),
    pytest.param("ic1oc1ih5kh3dh0", dict(c_in=1, c_out=1, h=5, w=5, kh=3, kw=3, dilation=0),
                 id="benchdnn's dilation 0"),
    pytest.param("ic1oc1ih2kh3ph2_reflect", dict(c_in=1, c_out=1, h=2, w=2, kh=3, kw=3, padding=2,
                                                  padding_mode="reflect"), id="fine for zeros, not reflect"),
    pytest.param("mb0ic1oc1ih5kh3", dict(batch=0, c_in=1, c_out=1, h=5, w=5, kh=3, kw=3), id="batch 0"),
    pytest.param("ic1oc1ih1kh3_float32ph1eh0", dict(c_in=1, c_out=1, h=1, w=1, kh=3, kw=3, padding=1, padding_end=0,
                                                    dtype="float32"), id="asymmetric"),
])
def test_descriptor_geometry_errors_are_the_constructors(text: str, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidProblem) as expected:
        ConvProblem(**{"batch": 1, **fields})
    with pytest.raises(InvalidProblem, match=f"^{re.escape(str(expected.value))}$"):
        ConvProblem.parse(text)


def test_descriptor_is_a_string() -> None:
    with pytest.raises(InvalidProblem, match=re.escape("a problem descriptor must be a string, not int (5)")):
        ConvProblem.parse(5)  # type: ignore[arg-type]


# -- every spatial rank (conv1d, conv3d) ---------------------------------------------------------------------------
def test_a_problem_of_each_rank_has_torchs_shapes() -> None:
    p1 = ConvProblem(batch=2, c_in=4, c_out=6, w=16, kw=3, stride=2, padding=1, groups=2)
    assert (p1.rank, p1.axes, p1.input_shape, p1.weight_shape, p1.output_shape) == (
        1, ("w",), (2, 4, 16), (6, 2, 3), (2, 6, 8))
    p3 = ConvProblem(batch=1, c_in=3, c_out=8, d=16, h=56, w=56, kd=3, kh=3, kw=3, stride=(1, 2, 2), padding=1)
    assert (p3.rank, p3.axes, p3.input_shape, p3.weight_shape, p3.output_shape) == (
        3, ("d", "h", "w"), (1, 3, 16, 56, 56), (8, 3, 3, 3, 3), (1, 8, 16, 28, 28))
    assert p3.macs == 16 * 28 * 28 * 8 * 3 * 27
    same = ConvProblem(batch=1, c_in=1, c_out=1, d=5, h=5, w=5, kd=4, kh=3, kw=2, padding="same")
    assert same.out_sizes == same.in_sizes and same.padding == (1, 1, 0) and same.pad_end == (2, 1, 1)
    assert ConvProblem(batch=1, c_in=1, c_out=1, h=6, w=5, kh=3, kw=3).rank == 2  # 2-D as it always was


@pytest.mark.parametrize("fields, message", [
    (dict(w=0, kw=3), "w=0, but it must be at least 1"),
    (dict(d=4, w=4, kd=1, kw=1), "h=0, but it must be at least 1"),
    (dict(w=5, kw=3, stride=(1, 2)), "stride=(1, 2), but it must be an int"),
    (dict(d=4, h=4, w=4, kd=1, kh=1, kw=1, dilation=(1, 2)),
     "dilation=(1, 2), but it must be an int or 3 ints (one per axis d, h, w)"),
    (dict(d=2, h=4, w=4, kd=3, kh=1, kw=1),
     "dilation*(kd-1)+1=3 exceeds padded depth d+2*padding=2 (d=2, kd=3, padding=0, dilation=1)"),
    (dict(d=4, h=4, w=4, kd=1, kh=1, kw=1, stride=(1, 0, 1)), "stride=(1, 0, 1) (h=0), but it must be at least 1"),
    (dict(w=4, kw=3, padding=4, padding_mode="reflect"),
     "padding_mode='reflect' needs padding < the input size, but padding 4 >= w=4"),
    (dict(d=3, h=4, w=4, kd=1, kh=1, kw=1, padding=(4, 0, 0), padding_mode="circular"),
     "padding_mode='circular' needs padding <= the input size (it wraps around once), but padding 4 > d=3"),
    (dict(w=8, kw=3, stride=2, padding="same"), "padding='same' with stride=2, but 'same' is not supported for "
                                                "strided convolutions (as in torch)"),
])
def test_an_invalid_problem_of_any_rank_names_its_axis(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidProblem, match=f"^{re.escape(message)}$"):
        ConvProblem(batch=1, c_in=1, c_out=1, **fields)


@st.composite
def nd_problems(draw: Any, rank: int) -> ConvProblem:
    axes = ("d", "h", "w")[3 - rank:]
    k = {f"k{a}": draw(st.integers(1, 3)) for a in axes}
    sizes = {a: draw(st.integers(k[f"k{a}"], 7)) for a in axes}
    groups = draw(st.sampled_from([1, 2]))
    padding = tuple(draw(st.integers(0, 2)) for _ in axes)
    end = draw(st.none() | st.tuples(*[st.integers(0, 2) for _ in axes]))
    return ConvProblem(batch=draw(st.integers(1, 3)), c_in=2 * groups, c_out=groups * draw(st.integers(1, 2)),
                       **sizes, **k, stride=tuple(draw(st.integers(1, 3)) for _ in axes), padding=padding,
                       padding_end=end, groups=groups, bias=draw(st.booleans()),
                       dtype=draw(st.sampled_from(DTYPES)), label=draw(st.sampled_from(["", "x", 'a "q"'])))


@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_the_descriptor_round_trips_in_every_rank(data: Any) -> None:
    p = data.draw(nd_problems(data.draw(st.sampled_from([1, 3]))))
    text = str(p)
    back = ConvProblem.parse(text)
    assert back == p and back.label == p.label and back.rank == p.rank, text
    assert ("id" in text) == (p.rank == 3) and ("ih" in text) == (p.rank >= 2)


def test_descriptors_of_each_rank_and_their_shorthand() -> None:
    assert ConvProblem.parse("ic4oc4iw16kw3sw2g2") == ConvProblem(batch=1, c_in=4, c_out=4, w=16, kw=3, stride=2,
                                                                groups=2)
    cube = ConvProblem.parse("ic1oc1id8kd3pd1")  # a missing inner axis is the axis outside it
    assert cube.in_sizes == (8, 8, 8) and cube.kernel == (3, 3, 3) and cube.padding == (1, 1, 1)
    assert str(ConvProblem(batch=1, c_in=3, c_out=8, d=16, h=56, w=56, kd=3, kh=7, kw=7, stride=(1, 2, 2),
                           padding=(1, 3, 3))) == "mb1ic3oc8id16ih56iw56kd3kh7kw7sd1sh2sw2pd1ph3pw3_float64"


def test_a_backend_declares_its_ranks_and_conv2d_is_the_default() -> None:
    p1 = ConvProblem.parse("ic1oc1iw5kw3")
    assert Capabilities().unsupported_reason(p1) == "1-D convolution (conv1d) not declared (ranks=(2,))"
    assert Capabilities(ranks=(1, 2, 3)).unsupported_reason(p1) is None
    assert Capabilities().unsupported_reason(ConvProblem.parse("ic1oc1ih5kh3")) is None
