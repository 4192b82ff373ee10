"""The exact-integer tier: small-integer data makes every partial sum exact, so every direct method must match
the oracle bitwise, forward and backward (benchdnn's integer fill)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("exact")
@given(data=st.data())
def test_exact(conv, data):
    conv.hypothesis_example(data)
