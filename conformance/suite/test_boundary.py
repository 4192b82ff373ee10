"""The boundary tier: channel counts, group sizes, channel multipliers, widths and heights next to the block and tile
widths of blocked kernels (7, 8, 9, 15, 16, 17, ... 255, 256, 257), depthwise with a channel multiplier, and the
XLA:CPU backward-data crash shape; every pass of each problem (see
``conformance.inputs.strategies.boundary_problems``)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("boundary")
@given(data=st.data())
def test_boundary(conv, data):
    conv.hypothesis_example(data)
