"""The passes of a convolution (benchdnn's ``dir_t``): what one call computes and one verdict judges.

``forward`` is the convolution itself; ``grad_input``, ``grad_weight`` and ``grad_bias`` are the three gradients
one ``backward`` call returns (dx, dw, db). Every table of the suite (bounds, checks, report columns, arithmetic
probes) names passes by these strings.
"""

from __future__ import annotations

FORWARD = "forward"
#: the gradients of one backward call, in the order it returns them: (dx, dw, db)
BACKWARD = ("grad_input", "grad_weight", "grad_bias")
PASSES = (FORWARD,) + BACKWARD
