"""Tests of the hypothesis strategies in ``conformance.inputs.strategies``: validity, budget, shrinking, reach,
capabilities.

Modelled on hypothesis' ``tests/numpy/test_gen_data.py::test_minimise_array_shapes``: a strategy whose
minimal example is not the smallest problem makes every failure a user sees shrink badly, so the minimal
example of the strategy, and of each feature it can produce, is pinned here.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from conformance.backends.backend import Capabilities
from conformance.inputs.strategies import MAX_MACS, boundary_problems, conv_problems, data_kinds
from conformance.model.problem import ConvProblem

FIND = settings(database=None, derandomize=True, max_examples=1000, deadline=None,
                suppress_health_check=list(HealthCheck))

#: the smallest problem: one 1x1 image, one channel, a 1x1 kernel, nothing else
MINIMAL = ConvProblem(batch=1, c_in=1, c_out=1, h=1, w=1, kh=1, kw=1, stride=(1, 1), padding=(0, 0),
                      dilation=(1, 1), groups=1, bias=False, dtype="float64")


def _minimal(strategy: Any, condition: Callable[[ConvProblem], bool]) -> ConvProblem:
    return find(strategy, condition, settings=FIND)


def _remainder(size: int, k: int, pad: int, dil: int, stride: int) -> int:
    """Padded rows past the last window: the stride's remainder, which no output reads."""
    return (size + 2 * pad - dil * (k - 1) - 1) % stride


# -- every example is valid and within budget ----------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(data=st.data(), max_macs=st.integers(48, 50_000))
def test_every_problem_is_valid_and_within_budget(data: st.DataObject, max_macs: int) -> None:
    p = data.draw(conv_problems(max_macs=max_macs), label="problem")
    p.validate()  # the constructor validated it already; a second call must agree
    ConvProblem.from_dict(p.to_dict())
    assert 1 <= p.macs <= max_macs
    assert p.dtype in ("float64", "float32")
    assert p.h >= 1 and p.w >= 1


@settings(max_examples=50, deadline=None)
@given(p=conv_problems())
def test_default_budget(p: ConvProblem) -> None:
    assert p.macs <= MAX_MACS


@pytest.mark.parametrize("max_macs", [1, 5, 11])
def test_tiny_budget_is_honoured(max_macs: int) -> None:
    with pytest.raises(NoSuchExample):
        _minimal(conv_problems(max_macs=max_macs), lambda p: p.macs > max_macs)


# -- shrinking -------------------------------------------------------------------------------------

def test_minimal_problem_is_the_1x1_problem() -> None:
    found = find(conv_problems(), lambda p: True)
    assert found == MINIMAL
    assert repr(found) == repr(MINIMAL)  # label and dtype included


def _p(**changes: Any) -> ConvProblem:
    return MINIMAL.replace(**changes)


# (feature, condition, axes it may touch, the smallest problem with it: every other field stays minimal).
# Where the smallest problem is None, shrinking stops in one of several small local minima (the input size is
# derived from the output size, stride, kernel and padding together, so one field cannot shrink alone), e.g.
# `k2 p1` (4 MACs), `k3 p3 d3` (3 MACs), `k2 p2` (8 MACs) for a kernel taller than its 1-row input.
FEATURES = [
    ("stride>1 on h", lambda p: p.stride[0] > 1, "h", _p(stride=(2, 1))),
    ("stride>1 on w", lambda p: p.stride[1] > 1, "w", _p(stride=(1, 2))),
    # padding p needs a padded size of at least 2p+1 so that the input keeps a row: 1x1 input, 3 outputs
    ("padding>0 on h", lambda p: p.padding[0] > 0, "h", _p(padding=(1, 0))),
    ("padding>0 on w", lambda p: p.padding[1] > 0, "w", _p(padding=(0, 1))),
    # a dilation needs a kernel of 2 taps, which needs an input of dilation+1 = 3
    ("dilation>1 on h", lambda p: p.dilation[0] > 1, "h", _p(dilation=(2, 1), kh=2, h=3)),
    ("dilation>1 on w", lambda p: p.dilation[1] > 1, "w", _p(dilation=(1, 2), kw=2, w=3)),
    ("groups>1", lambda p: p.groups > 1, "c", _p(groups=2, c_in=2, c_out=2)),
    ("bias", lambda p: p.bias, "b", _p(bias=True)),
    ("kernel taller than the input", lambda p: p.kh > p.h, "h", None),
    ("kernel wider than the input", lambda p: p.kw > p.w, "w", None),
    ("stride remainder on h", lambda p: _remainder(p.h, p.kh, p.padding[0], p.dilation[0], p.stride[0]) > 0,
     "h", _p(stride=(2, 1), h=2)),
    ("stride remainder on w", lambda p: _remainder(p.w, p.kw, p.padding[1], p.dilation[1], p.stride[1]) > 0,
     "w", _p(stride=(1, 2), w=2)),
    ("float32", lambda p: p.dtype == "float32", "d", _p(dtype="float32")),
]

_AXIS_FIELDS = {"h": ("h", "kh", "stride[0]", "padding[0]", "dilation[0]"),
                "w": ("w", "kw", "stride[1]", "padding[1]", "dilation[1]"),
                "c": ("c_in", "c_out", "groups"), "b": ("bias",), "d": ("dtype",)}


def _fields(p: ConvProblem) -> dict[str, Any]:
    d = {k: v for k, v in p.to_dict().items() if k not in ("stride", "padding", "dilation")}
    for pair in ("stride", "padding", "dilation"):
        d[f"{pair}[0]"], d[f"{pair}[1]"] = getattr(p, pair)
    return d


@pytest.mark.parametrize("condition, touches, smallest", [pytest.param(c, t, s, id=n) for n, c, t, s in FEATURES])
def test_each_feature_is_reached_and_shrinks(condition: Callable[[ConvProblem], bool], touches: str,
                                             smallest: ConvProblem | None) -> None:
    found = _minimal(conv_problems(), condition)
    assert condition(found)
    assert found.macs <= 8 and found.max_elements <= 4, f"the minimal example is not small: {found!r}"
    untouched = {k: v for k, v in _fields(MINIMAL).items() if k not in _AXIS_FIELDS[touches]}
    assert {k: _fields(found)[k] for k in untouched} == untouched, f"fields unrelated to the feature: {found!r}"
    if smallest is not None:
        assert found == smallest, f"shrank to {found!r}, expected {smallest!r}"


def test_larger_features_are_reached() -> None:
    # the strategy's upper ends are reachable too (not only 2 of everything)
    assert _minimal(conv_problems(), lambda p: p.groups == 3).groups == 3
    assert _minimal(conv_problems(), lambda p: max(p.padding) == 3).padding in ((3, 0), (0, 3))
    assert _minimal(conv_problems(), lambda p: p.dilation == (3, 3)).dilation == (3, 3)
    assert _minimal(conv_problems(), lambda p: p.stride == (3, 3)).stride == (3, 3)
    assert _minimal(conv_problems(), lambda p: p.kh == 4 and p.kw == 4).kh == 4


# -- capabilities -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(p=conv_problems(capabilities=Capabilities(groups=False)))
def test_no_groups_capability(p: ConvProblem) -> None:
    assert p.groups == 1


@settings(max_examples=60, deadline=None)
@given(p=conv_problems(capabilities=Capabilities(dilation=False)))
def test_no_dilation_capability(p: ConvProblem) -> None:
    assert p.dilation == (1, 1)


@settings(max_examples=60, deadline=None)
@given(p=conv_problems(dtypes=("float64", "float32", "float16"), capabilities=Capabilities(dtypes=("float16",
                                                                                                 "float32"))))
def test_dtypes_are_the_intersection(p: ConvProblem) -> None:
    assert p.dtype in ("float32", "float16")


@settings(max_examples=60, deadline=None)
@given(p=conv_problems(capabilities=Capabilities(max_macs=200)))
def test_capability_max_macs(p: ConvProblem) -> None:
    assert p.macs <= 200


@settings(max_examples=30, deadline=None)
@given(p=conv_problems(capabilities=Capabilities(max_macs=100_000), max_macs=300))
def test_the_smaller_budget_wins(p: ConvProblem) -> None:
    assert p.macs <= 300


def test_capabilities_do_not_restrict_what_they_allow() -> None:
    caps = Capabilities(dtypes=("float16",), groups=True, dilation=True)
    found = _minimal(conv_problems(dtypes=("float16",), capabilities=caps),
                     lambda p: p.groups > 1 and p.dilation != (1, 1))
    assert found.dtype == "float16"


@settings(max_examples=30, deadline=None)
@given(off=conv_problems(bias=False), on=conv_problems(bias=True))
def test_bias_can_be_fixed(off: ConvProblem, on: ConvProblem) -> None:
    assert off.bias is False and on.bias is True


def test_no_common_dtype_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"dtypes=\('float16',\), but the capabilities declare only "
                                         r"\('float32', 'float64'\)"):
        find(conv_problems(dtypes=("float16",), capabilities=Capabilities()), lambda p: True)


def test_data_kinds() -> None:
    assert find(data_kinds(), lambda k: True) == "normal"
    assert find(data_kinds(("wide", "int")), lambda k: True) == "wide"
    with pytest.raises(ValueError, match=r"data kinds \['gaussian'\], but they must be among"):
        data_kinds(("normal", "gaussian"))


# -- every rank (#16) ------------------------------------------------------------------------------------------------
EVERY_RANK = Capabilities(dtypes=("float64", "float32"), ranks=(1, 2, 3))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rank=st.sampled_from((1, 3)), max_macs=st.integers(48, 50_000))
def test_every_rank_is_valid_and_within_budget(data: st.DataObject, rank: int, max_macs: int) -> None:
    for strategy in (conv_problems, boundary_problems):
        p = data.draw(strategy(capabilities=EVERY_RANK, ranks=(rank,), max_macs=max_macs), label=strategy.__name__)
        assert p.rank == rank and 1 <= p.macs <= max_macs
        assert ConvProblem.parse(str(p)) == p


@pytest.mark.parametrize("rank, minimal", [(1, "mb1ic1oc1iw1kw1_float64"), (3, "mb1ic1oc1id1ih1iw1kd1kh1kw1_float64")])
def test_each_rank_shrinks_to_its_1_element_problem(rank: int, minimal: str) -> None:
    assert find(conv_problems(capabilities=EVERY_RANK, ranks=(rank,)), lambda p: True) == ConvProblem.parse(minimal)
    # a feature of the depth axis shrinks to the smallest problem that has it, the other axes minimal
    deep = _minimal(conv_problems(capabilities=EVERY_RANK, ranks=(3,)), lambda p: p.stride[0] == 2 and p.rank == 3)
    assert (deep.in_sizes, deep.kernel, deep.stride) == ((1, 1, 1), (1, 1, 1), (2, 1, 1))


def test_ranks_outside_the_capabilities_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"ranks=\(3,\), but the capabilities declare only ranks=\(2,\)"):
        find(conv_problems(capabilities=Capabilities(), ranks=(3,)), lambda p: True)


def test_the_boundary_tier_reaches_the_depth_axis() -> None:
    """conv3d's depth is a focus of its own: block tails on the depth axis (issue #16)."""
    from conformance.inputs.strategies import NEAR_POWERS_OF_TWO

    found = _minimal(boundary_problems(capabilities=EVERY_RANK, ranks=(3,)),
                     lambda p: p.out_sizes[0] in NEAR_POWERS_OF_TWO or p.d in NEAR_POWERS_OF_TWO)
    assert found.rank == 3 and (found.out_sizes[0] in NEAR_POWERS_OF_TWO or found.d in NEAR_POWERS_OF_TWO)
