"""A template backend for conv-conformance: copy this file, fill in forward and backward, then gate it.

    python -m conformance gate --impl path/to/backend_template.py:MyConv

Semantics are ``torch.nn.functional.conv2d``: cross-correlation, NCHW input ``x`` of shape ``problem.input_shape``,
weight ``w`` of shape ``problem.weight_shape`` = ``(C_out, C_in / groups, kh, kw)``, optional bias ``b`` of shape
``(C_out,)``; ``problem.stride``, ``problem.padding`` and ``problem.dilation`` are ``(h, w)`` int pairs. Return
C-contiguous numpy arrays of ``problem.dtype``; never modify the inputs (they may be non-contiguous views).
This template is conv2d only (the default ``Capabilities(ranks=(2,))``); ``examples/backend_ranks.py`` is a conv1d
and conv3d backend and lists the problem fields of every rank.

This template delegates to a plain numpy reference so that it passes as it stands; replace the bodies with calls
into your kernel (convert the arrays to your framework's tensors and back).
"""

from __future__ import annotations

import numpy as np

import conformance


class MyConv:
    name = "my-conv"
    # Declare what you support and how you compute; the suite generates nothing else for you and shows the rest
    # as unsupported, with the reason. error_model="normwise" for FFT/Winograd methods; precision={"float32":
    # "tf32"} if you round float32 inputs to TF32; deterministic=False if two calls may differ in the last bits.
    capabilities = conformance.Capabilities(dtypes=("float32", "float64"), groups=True, dilation=True,
                                            backward=True)

    def available(self) -> str | None:
        """Why this backend cannot run here (e.g. no GPU), or None when it can."""
        return None

    def forward(self, problem: conformance.ConvProblem, x: np.ndarray, w: np.ndarray,
                b: np.ndarray | None) -> np.ndarray:
        from conformance import reference  # replace with your kernel

        return reference.forward(problem, x, w, b).astype(problem.dtype)

    def backward(self, problem: conformance.ConvProblem, x: np.ndarray, w: np.ndarray,
                 dy: np.ndarray) -> conformance.Grads:
        from conformance import reference  # replace with your kernel

        dx = reference.grad_input(problem, dy, w).astype(problem.dtype)
        dw = reference.grad_weight(problem, x, dy).astype(problem.dtype)
        db = reference.grad_bias(problem, dy).astype(problem.dtype) if problem.bias else None
        return conformance.Grads(dx, dw, db)
