"""``conv1d``/``conv2d``/``conv3d`` with torch on a CUDA GPU, twice: every fast path off (strict), and as a user
gets it (default).

Both reuse ``TorchCPU`` (inputs as given, autograd with ``grad_outputs=dy``, ``F.conv1d/2d/3d`` by the problem's
rank, padding modes through ``F.pad``) with the tensors moved to ``cuda`` and the results copied back; they differ
only in the flags held while torch computes. The profiles below were measured on conv2d; conv1d and conv3d declare
the same ones, to be confirmed on a GPU (torch routes conv1d through its 2-D kernels; conv3d has kernels of its own).
Transposed problems go to ``F.conv_transpose1d/2d/3d`` (inherited, asymmetric padding as a crop) and declare the same
profiles too, not yet measured on a GPU (the CPU's native slow_conv_transpose needs -acc16 in its half forward).

- ``torch-cuda-strict``: cuDNN disabled, so torch uses its own im2col + cuBLAS GEMM convolution, and TF32 off
  for both cuDNN and cuBLAS matmuls (that GEMM is a cuBLAS matmul, governed by
  ``torch.backends.cuda.matmul.allow_tf32``). Every product is an IEEE fp32 (or fp64) product summed directly:
  the componentwise error model at the dtype's own precision. In float16/bfloat16 the GEMM takes half inputs
  and accumulates in float32 (cuBLAS's split-K reduction in half precision,
  ``allow_fp16/bf16_reduced_precision_reduction``, on by default, is off here), but torch rounds intermediate
  results to the half dtype: the convolution before the bias is added, and the gradients are summed in the half
  dtype (grad_input over the gathered columns and the padding fold, grad_weight and grad_bias over the batch), so
  that a float32-accumulation profile is too tight for all four, and one intermediate rounding too tight for the
  gradients. Hence ``-mid16`` (one rounding of an intermediate result, ``u_mid·M1``) for the forward, ``-acc16``
  for the three gradients (how far over each profile they measured: docs/performance.md, docs/gpu.md).
  Not deterministic either: the backward of reflect/replicate padding adds with ``atomicAdd`` (a float64
  grad_input differed between two calls with the same inputs).
- ``torch-cuda-default``: cuDNN on and ``torch.backends.cudnn.allow_tf32 = True``, torch's default for
  convolutions (unlike matmuls, where TF32 is off by default). On Ampere and newer GPUs a float32 convolution
  then rounds its inputs to TF32 (10-bit mantissa), and cuDNN's heuristics may pick FFT or Winograd kernels,
  whose error is normwise; algorithm choice and split reductions also make it non-deterministic. In half
  precision torch adds the bias to the rounded convolution: ``-mid16`` profiles; grad_input folds reflect/replicate
  padding in the half dtype, several adds (more than one intermediate rounding): ``-acc16``.

Global flags are saved and restored around every call, so the two backends can run in one process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

from conformance.backends.backend import Capabilities
from conformance.model.problem import PADDING_MODES as ALL_PADDING_MODES

from .torch_cpu import TorchCPU

#: half precision as torch computes it on CUDA: float32 accumulation, one intermediate result rounded to the dtype
HALF_MID16 = {"float16": "fp16-acc32-mid16", "bfloat16": "bf16-acc32-mid16"}
#: ... except the gradients that torch sums in the half dtype (strict: over the batch, over gathered columns)
HALF_ACC16_GRADS = {f"{dtype}:{check}": profile for dtype, profile in (("float16", "fp16-acc16"),
                                                                       ("bfloat16", "bf16-acc16"))
                    for check in ("grad_input", "grad_weight", "grad_bias")}

#: a loaded NVIDIA kernel driver shows one of these on Linux (native; /dev/dxg: WSL 2's GPU paravirtualisation)
NVIDIA_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg")


class _TorchCuda(TorchCPU):
    """The shared CUDA mechanics; subclasses set ``cudnn_flags`` and ``matmul_allow_tf32``."""

    device = "cuda"
    #: keyword arguments of ``torch.backends.cudnn.flags`` held during each call
    cudnn_flags: ClassVar[dict[str, bool]] = {}
    #: ``torch.backends.cuda.matmul.allow_tf32`` held during each call
    matmul_allow_tf32: ClassVar[bool] = False
    #: ``torch.backends.cuda.matmul.allow_{fp16,bf16}_reduced_precision_reduction`` held during each call
    #: (None: as torch has it)
    matmul_reduced_precision_reduction: ClassVar[bool | None] = None

    def available(self) -> str | None:
        reason = super().available()
        if reason is not None:
            return reason
        if sys.platform == "linux" and not any(os.path.exists(p) for p in NVIDIA_DRIVER_FILES):
            # decided without importing torch (seconds in every pytest process of a machine without a GPU)
            return "no NVIDIA driver loaded (none of " + ", ".join(NVIDIA_DRIVER_FILES) + " exists)"
        import torch

        if not torch.cuda.is_available():
            return "torch.cuda.is_available() is False (no CUDA GPU)"
        return None

    @contextlib.contextmanager
    def _settings(self) -> Iterator[None]:
        import torch

        matmul = torch.backends.cuda.matmul
        wanted = {"allow_tf32": self.matmul_allow_tf32}
        if self.matmul_reduced_precision_reduction is not None:
            wanted["allow_fp16_reduced_precision_reduction"] = self.matmul_reduced_precision_reduction
            wanted["allow_bf16_reduced_precision_reduction"] = self.matmul_reduced_precision_reduction
        saved = {name: getattr(matmul, name) for name in wanted}
        try:
            for name, value in wanted.items():
                setattr(matmul, name, value)
            with torch.backends.cudnn.flags(**self.cudnn_flags):  # restores cuDNN's flags on exit
                yield
        finally:
            for name, value in saved.items():
                setattr(matmul, name, value)

    def environment(self) -> dict[str, Any]:
        """What the report needs to reproduce a run: versions, the device and the flags this backend holds."""
        env: dict[str, Any] = {"torch": self.version, "cuda": None, "cudnn": None, "device": None,
                               "capability": None, "cudnn_flags": dict(self.cudnn_flags),
                               "matmul_allow_tf32": self.matmul_allow_tf32,
                               "matmul_reduced_precision_reduction": self.matmul_reduced_precision_reduction}
        if self.available() is not None:
            return env
        import torch

        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["device"] = torch.cuda.get_device_name()
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        return env


class TorchCudaStrict(_TorchCuda):
    """CUDA without cuDNN and without TF32: IEEE arithmetic in the problem dtype."""

    name = "torch-cuda-strict"
    # padding modes and asymmetric padding go through F.pad, the same code as torch-cpu (inherited _conv)
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                precision={**HALF_MID16, **HALF_ACC16_GRADS},
                                deterministic=False, padding_modes=ALL_PADDING_MODES, asymmetric_padding=True,
                                ranks=(1, 2, 3), transposed=True,
                                notes="cuDNN off, TF32 off (cuDNN and cuBLAS), no half-precision split-K reduction")
    cudnn_flags: ClassVar[dict[str, bool]] = {"enabled": False, "allow_tf32": False, "benchmark": False,
                                              "deterministic": False}
    matmul_allow_tf32: ClassVar[bool] = False
    matmul_reduced_precision_reduction: ClassVar[bool | None] = False


class TorchCudaDefault(_TorchCuda):
    """CUDA as torch ships: cuDNN on, TF32 allowed for float32 convolutions, heuristic algorithm choice."""

    name = "torch-cuda-default"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                precision={"float32": "tf32", **HALF_MID16, "float16:grad_input": "fp16-acc16",
                                           "bfloat16:grad_input": "bf16-acc16"},
                                error_model="normwise", deterministic=False, padding_modes=ALL_PADDING_MODES,
                                asymmetric_padding=True, ranks=(1, 2, 3), transposed=True,
                                notes="cuDNN on, TF32 convolutions (torch's defaults)")
    cudnn_flags: ClassVar[dict[str, bool]] = {"enabled": True, "allow_tf32": True, "benchmark": False,
                                              "deterministic": False}
    matmul_allow_tf32: ClassVar[bool] = False
