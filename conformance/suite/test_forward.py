"""Forward ``conv2d`` against the float64 oracle over hypothesis-generated problems.

Semantics: https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("forward")
@given(data=st.data())
def test_forward(conv, data):
    conv.hypothesis_example(data)
