"""Memory layouts: the views keep their values and have the memory they claim, and the layout tier catches a
backend that reads its operands in memory order (the classic stride bug) which the plain tiers cannot see."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from conformance.model.layouts import LAYOUTS, arrange, describe, view
from conformance.results import records

SHAPE = (2, 3, 4, 5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_keep_the_values(layout: str) -> None:
    a = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE)
    if layout == "broadcast":
        a = np.full(SHAPE, 1.5)
    v = view(a, layout, is_dy=True)
    np.testing.assert_array_equal(v, a)
    assert not np.shares_memory(v, a), "a backend must never alias the caller's array"


def test_views_have_the_memory_they_claim() -> None:
    a = np.random.default_rng(0).standard_normal(SHAPE)
    cl = view(a, "channels_last")
    assert not cl.flags.c_contiguous and cl.transpose(0, 2, 3, 1).flags.c_contiguous
    assert all(s < 0 for s in view(a, "negative").strides)
    st = view(a, "strided")
    assert st.strides == tuple(2 * s for s in np.zeros(tuple(2 * d for d in SHAPE)).strides)
    assert view(np.ones(SHAPE), "broadcast", is_dy=True).strides == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="constant dy"):
        view(a, "broadcast", is_dy=True)
    assert describe(view(a, "contiguous")) == "C" and describe(cl) == "strided" and describe(a.T) == "F"


def test_arrange_only_broadcasts_dy() -> None:
    x, w, dy = np.ones(SHAPE), np.ones((3, 3, 1, 1)), np.ones(SHAPE)
    _, xf, wf, dyf = arrange("backward", (None, x, w, dy), "broadcast")
    assert xf.strides != (0, 0, 0, 0) and wf.strides != (0, 0, 0, 0) and dyf.strides == (0, 0, 0, 0)
    _, xf, wf, bf = arrange("forward", (None, x, w, None), "broadcast")
    assert bf is None and xf.flags.c_contiguous


MEMORY_ORDER = textwrap.dedent('''
    import numpy as np
    import conformance
    from conformance.numerics import reference as R

    def _as_if_c(a):
        # reads the buffer in memory order and assumes it is NCHW: right for C-contiguous arrays only
        return None if a is None else a.ravel(order="K").reshape(a.shape)

    class MemoryOrder:
        name = "memory-order"
        capabilities = conformance.Capabilities(dtypes=("float64",))

        def forward(self, p, x, w, b):
            return R.forward(p, _as_if_c(x), _as_if_c(w), b).astype(p.dtype)

        def backward(self, p, x, w, dy):
            x, w, dy = _as_if_c(x), _as_if_c(w), _as_if_c(dy)
            db = R.grad_bias(p, dy) if p.bias else None
            return R.grad_input(p, dy, w), R.grad_weight(p, x, dy), db
''')


def test_layout_tier_kills_what_plain_tiers_miss(pytester: pytest.Pytester, tmp_path: Path) -> None:
    mod = tmp_path / "memory_order.py"
    mod.write_text(MEMORY_ORDER)
    base = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--conv-profile", "ci",
            "--conv-no-entry-points", "--impl", f"{mod}:MemoryOrder", "--conv-no-isolate", "--conv-ranks", "2",
            "--conv-ops", "conv"]
    plain = pytester.runpytest(*base, "-k", "test_forward or test_grad")
    plain.assert_outcomes(passed=4)
    res = pytester.runpytest(*base, "-k", "test_layout", "--conv-results", str(pytester.path / "res"))
    # ravel(order="K") follows memory order but undoes negative strides and skips gaps: channels-last memory is
    # what it gets wrong
    res.assert_outcomes(failed=1, passed=3)
    rows = records.rows([pytester.path / "res"])
    failed = {r.tier for r in rows if r.status == "failed"}
    assert failed == {"layout-channels_last"}
    assert any("layout='channels_last'" in r.repro for r in rows if r.status == "failed")
