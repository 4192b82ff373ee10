"""Oracle-free checks in float64: adjoint identity, finite differences, linearity and batch independence of a
backend's own forward and backward (see ``conformance.checks.oracle_free``)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("oracle_free")
@given(data=st.data())
def test_oracle_free(conv, data):
    conv.hypothesis_example(data)
