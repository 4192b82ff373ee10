"""ONNX's own Conv backend node tests (shipped with the ``onnx`` package) as golden vectors, on every
implementation that supports their attributes (see ``conformance.inputs.onnx_golden``)."""

import pytest


@pytest.mark.conv_check("onnx")
def test_onnx(conv):
    conv.run_onnx()
