"""torch on the CPU with oneDNN and NNPACK switched off (``torch.backends.mkldnn.flags(enabled=False)``,
``torch.backends.nnpack.flags(enabled=False)``) held around every call, so that torch runs its own native kernels
(``slow_conv2d``/``slow_conv3d``, ``slow_conv_dilated2d/3d``, ``slow_conv_transpose2d/3d``: im2col or vol2col plus a
BLAS GEMM), another code path than ``torch-cpu``'s default, which hands float32 and (on AVX-512 CPUs)
bfloat16/float16 to oneDNN. A wrong result in one path only is a known class of bug (pytorch#21597: the mkldnn path
alone wrong on one shape). NNPACK goes too: with oneDNN off, torch sends a float32 conv2d forward with a batch of 16
or more to NNPACK (a bundled library, Winograd/FFT: normwise, and NaN at operands near the top of the range, 2^127,
where the exact result is 2^125: measured by the arithmetic check, 2026-12-07, torch 2.13.0), not to its own kernels.

Everything else is ``TorchCPU``'s (inputs as given, autograd with ``grad_outputs=dy``, padding modes and ONNX's
asymmetric padding through ``F.pad`` or a crop); only ``_settings`` differs. The precision profiles are the native
path's on every CPU: ``precision_here()`` evaluated with oneDNN off, where ``half_kernels`` answers ``native`` (the
half-precision weight and bias gradients summed over the batch in the storage dtype, grad_input's taps too), never
the oneDNN profiles of the machine's ISA. ``environment()`` reports the kernels the same way (``torch_bf16=native``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from conformance.backends.backend import Capabilities

from .torch_cpu import TorchCPU, cpu_facts, precision_here


def _mkldnn_off() -> contextlib.AbstractContextManager[Any]:
    """``torch.backends.mkldnn.flags(enabled=False)``, the other flags passed as they are (``flags`` would otherwise
    also set oneDNN's TF32 switch, which warns on a CPU-only build; with oneDNN off it decides nothing)."""
    import torch

    mkldnn = torch.backends.mkldnn
    fp32_precision = torch._C._get_fp32_precision_getter("mkldnn", "all")
    return mkldnn.flags(enabled=False, deterministic=mkldnn.deterministic,  # type: ignore[no-any-return]
                        allow_tf32=mkldnn.allow_tf32, fp32_precision=fp32_precision)


@contextlib.contextmanager
def _native_only() -> Iterator[None]:
    """oneDNN and NNPACK off (each restored on exit): torch's own CPU kernels."""
    import torch

    with _mkldnn_off(), torch.backends.nnpack.flags(enabled=False):
        yield


def precision_native() -> dict[str, str]:
    """torch CPU's profiles on its native path, whatever this CPU is: ``precision_here()`` with oneDNN off."""
    with _mkldnn_off():
        return precision_here()


class TorchNative(TorchCPU):
    """``torch-cpu`` with oneDNN and NNPACK disabled: torch's own CPU convolution kernels."""

    name = "torch-native"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                precision=precision_native, ranks=(1, 2, 3), transposed=True,
                                notes="torch CPU with oneDNN and NNPACK off (torch.backends.mkldnn/nnpack.flags): "
                                      "torch's native kernels")

    def environment(self) -> dict[str, str]:
        """torch's dispatch capability and the half kernels as this backend runs them (oneDNN off: native)."""
        with _mkldnn_off():
            return cpu_facts() | {"mkldnn_enabled": "False", "nnpack_enabled": "False"}

    def _settings(self) -> contextlib.AbstractContextManager[Any]:
        """oneDNN and NNPACK off while torch computes (restored on exit)."""
        return _native_only()
