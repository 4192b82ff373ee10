"""The three gradients of ``sum(conv2d(x, w, b) * dy)`` against the float64 oracle, one test per gradient.

Semantics: https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.conv_check("grad_input")
@given(data=st.data())
def test_grad_input(conv, data):
    conv.hypothesis_example(data)


@pytest.mark.conv_check("grad_weight")
@given(data=st.data())
def test_grad_weight(conv, data):
    conv.hypothesis_example(data)


@pytest.mark.conv_check("grad_bias")
@given(data=st.data())
def test_grad_bias(conv, data):
    conv.hypothesis_example(data)
