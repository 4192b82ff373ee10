"""Memory layouts (``conformance.model.layouts``): x, w and dy as channels-last memory, strided slices, negative
strides, and dy broadcast from one value; judged by the same bounds, results still C-contiguous NCHW.
``pytest -k channels_last`` selects one layout."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.model.layouts import VIEW_LAYOUTS


@pytest.mark.conv_check("layout")
@pytest.mark.parametrize("layout", VIEW_LAYOUTS)
@given(data=st.data())
def test_layout(conv, layout, data):
    conv.layout_example(data, layout)
