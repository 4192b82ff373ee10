"""The backend's arithmetic measured with designed inputs (``conformance.numerics.arithmetic``) against its declared
precision
profiles: a declaration tighter than what the backend does on this machine is one finding naming the pass, what was
measured and the declaration to write; a looser one passes, recorded as lost power."""

import pytest


@pytest.mark.conv_check("arithmetic")
def test_arithmetic(conv):
    conv.run_arithmetic()
