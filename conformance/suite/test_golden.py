"""The golden values on every implementation, in its rank (conv2d: the seed notebook's Sobel 6×5; conv1d, conv3d:
``conformance.inputs.golden``), ``loss = out.sum()``.

Semantics: https://pytorch.org/docs/stable/generated/torch.nn.functional.conv2d.html
"""

import pytest

from conformance.checks.example import dtypes_for
from conformance.inputs.golden import golden_case


@pytest.mark.conv_check("golden")
def test_golden(conv):
    caps = conv.backend.capabilities
    for dtype in dtypes_for(caps, conv.dtypes):
        problem, inputs, expected = golden_case(dtype, conv.rank, conv.transposed)
        conv.run(problem, seed=0, kind="int", inputs=inputs, expected=expected)
