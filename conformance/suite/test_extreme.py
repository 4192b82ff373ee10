"""The extreme tier: data near the top of the dtype's range whose exact results stay finite (``huge``), near the
bottom of the normal range (``tiny``) and with signed zeros (``signed_zeros``); every pass, judged by the
deterministic bound, so Inf/NaN where the reference is finite, or a flushed subnormal, fails
(``conformance.inputs.data``)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("extreme")
@given(data=st.data())
def test_extreme(conv, data):
    conv.hypothesis_example(data)
