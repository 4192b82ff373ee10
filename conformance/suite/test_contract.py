"""The call contract: result types, shapes and C-contiguous layout, inputs left unmodified, and the same
answer twice (see ``conformance.checks.contract``)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("contract")
@given(data=st.data())
def test_contract(conv, data):
    conv.hypothesis_example(data)
