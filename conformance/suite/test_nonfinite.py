"""NaN and ±Inf in x and dy propagate to exactly the outputs where the reference (torch's IEEE semantics, zero
padding multiplied like any other value) puts them, forward and backward."""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("nonfinite")
@given(data=st.data())
def test_nonfinite(conv, data):
    conv.hypothesis_example(data)
