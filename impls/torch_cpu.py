"""``torch.nn.functional.conv1d/conv2d/conv3d`` (by the problem's rank; ``conv_transpose1d/2d/3d`` for a transposed
problem) and autograd on the CPU: the library whose semantics the suite tests.

The gradients are torch's own: ``torch.autograd.grad`` of ``conv2d(x, w, b)`` with ``grad_outputs=dy`` is
exactly ``d sum(conv2d(x, w, b) * dy)`` (conv1d, conv3d and the transposed ones alike). The bias gradient does
not depend on the bias values, so backward builds a zero bias that requires grad, which makes torch compute ``db``
through its own bias path.

The inputs go in as given (``torch.from_numpy``, strides and all), so non-contiguous layouts reach torch's
kernels too. Two exceptions need a copy or a guard: torch has no negative strides (a reversed view is
copied), and ``from_numpy`` warns on read-only arrays (torch never writes to them here: autograd only reads
its leaves). ``torch`` is imported inside the methods so that the suite still loads without it.
CUDA subclasses (``conformance.impls.torch_cuda``) reuse all of this by overriding ``device`` and ``_settings``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import warnings
from typing import Any

import numpy as np

from conformance.backends.backend import Capabilities, Grads, installed_version
from conformance.model.problem import ConvProblem

#: oneDNN's CPU ISAs in order (ONEDNN_MAX_CPU_ISA caps oneDNN at one of them)
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
               "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL", "DEFAULT")


def _onednn_allows(floor: str) -> bool:
    """Whether ONEDNN_MAX_CPU_ISA (unset: no cap) lets oneDNN use the ISA ``floor`` or a later one."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return limit not in ONEDNN_ISAS or ONEDNN_ISAS.index(limit) >= ONEDNN_ISAS.index(floor)


def half_kernels(dtype: str) -> str:
    """Which kernels torch runs for ``dtype`` (bfloat16 or float16) on this CPU:

    ``onednn-amx``: oneDNN on AMX tiles; ``onednn-avx512bf16`` / ``onednn-avx512fp16``: oneDNN with the CPU's own
    AVX-512 instructions for the dtype; ``onednn-emulated``: oneDNN converting to float32 (AVX-512 without them);
    ``native``: torch's own kernels (AVX2 CPUs, or oneDNN capped below AVX-512 by ONEDNN_MAX_CPU_ISA)."""
    import torch

    from conformance.backends.machine import cpu

    short = "bf16" if dtype == "bfloat16" else "fp16"
    probe = getattr(torch.ops.mkldnn, f"_is_mkldnn_{short}_supported", None)
    try:
        onednn = bool(torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled() and probe and probe())
    except Exception:  # an older torch without the probe: the native kernels' (looser) profiles are the safe side
        onednn = False
    if not onednn:
        return "native"
    isa = cpu()["isa"].split()
    if f"amx_{short}" in isa and _onednn_allows("AVX10_1_512_AMX" if short == "bf16" else "AVX10_1_512_AMX_FP16"):
        return "onednn-amx"
    if f"avx512_{short}" in isa and _onednn_allows("AVX512_CORE_BF16" if short == "bf16" else "AVX10_1_512"):
        return f"onednn-avx512{short}"
    return "onednn-emulated"


def precision_here() -> dict[str, str]:
    """torch CPU's precision profiles on this machine, by the kernels it runs (measured on each path with
    ``python -m conformance profile --impl torch-cpu`` and the ISA switches; README "torch CPU's arithmetic").

    Every path: grad_input's reflect/replicate/circular padding is folded back by F.pad's backward in the storage
    dtype, onto an already rounded gradient, up to four times at a corner (more than one intermediate rounding,
    so -acc16, not -mid16); torch's native kernels also sum a kernel's taps of grad_input in the storage dtype.
    native: the weight and bias gradients are summed across the batch in the storage dtype (a float32 GEMM per
    sample; the bias only on the dilated path, which is enough to need the profile).

    The same profiles hold in every rank (checked against the oracle in 1-D and 3-D on the onednn-avx512bf16,
    onednn-emulated and native paths, the last two by ONEDNN_MAX_CPU_ISA): conv1d runs conv2d's kernels on a height
    of 1; conv3d runs oneDNN where conv2d does, and otherwise torch's slow_conv3d / slow_conv_dilated3d, whose
    errors stay within the native profiles.

    Transposed convolution (conv_transpose1d/2d/3d) does not meet the half-precision forward profiles on the native
    path, measured against the oracle in every rank: torch's slow_conv_transpose rounds the GEMM's columns to the
    dtype and sums their overlaps in it (col2im), so its forward needs -acc16 (-mid16 is not enough), and its batch-
    summed weight gradient -acc16 too. float16 runs that path wherever half_kernels says ``native``; bfloat16 there
    and also, on the oneDNN paths, wherever an output padding is at least its stride (torch then bypasses oneDNN's
    deconvolution). They are declared for the transposed convolution alone (``conv_transpose:`` keys; the
    convolution's own forward meets -acc32): float16's forward on every path (measured on the native one; oneDNN's
    float16 deconvolution, on CPUs with AVX512_FP16 or AMX, unmeasured: the looser profile is the safe side), and
    bfloat16's forward and weight gradient on every path."""
    out = {"bfloat16:grad_input": "bf16-acc16", "float16:grad_input": "fp16-acc16",
           "conv_transpose:float16:forward": "fp16-acc16",
           "conv_transpose:bfloat16:forward": "bf16-acc16", "conv_transpose:bfloat16:grad_weight": "bf16-acc16"}
    if half_kernels("bfloat16") == "native":
        out |= {"bfloat16:grad_weight": "bf16-acc16", "bfloat16:grad_bias": "bf16-acc16"}
    if half_kernels("float16") == "native":
        out |= {"float16:grad_weight": "fp16-acc16", "float16:grad_bias": "fp16-acc16"}
    return out


def cpu_facts() -> dict[str, str]:
    import torch

    onednn = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    facts = {"torch_capability": torch.backends.cpu.get_cpu_capability(),
             "onednn": onednn.group(1) if onednn else "not built",
             "torch_bf16": half_kernels("bfloat16"), "torch_fp16": half_kernels("float16")}
    facts |= {var: os.environ[var] for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if var in os.environ}
    return facts


class TorchCPU:
    """torch's ``conv1d``/``conv2d``/``conv3d`` forward and autograd backward, on ``device`` (``"cpu"`` here)."""

    name = "torch-cpu"
    # torch picks its bfloat16/float16 kernels by the CPU: oneDNN where it takes the dtype (AVX-512 with bf16 support;
    # AVX512_FP16 or AMX for float16), its own native kernels elsewhere (AVX2 CPUs, or ONEDNN_MAX_CPU_ISA below
    # that); each path's profiles were measured with `python -m conformance profile --impl torch-cpu` (README)
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                padding_modes=("zeros", "reflect", "replicate", "circular"), asymmetric_padding=True,
                                precision=precision_here, ranks=(1, 2, 3), transposed=True,
                                notes="torch.nn.functional.conv1d/2d/3d, conv_transpose1d/2d/3d + autograd")
    device = "cpu"

    def available(self) -> str | None:
        # found, not imported: the suite asks this in its own process, and importing torch there costs each
        # pytest(-xdist) process seconds; the backend's worker process imports it for the first call
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        return None

    def prepare(self) -> None:
        """Import torch and touch the device once (CUDA creates its context here), outside any timed call."""
        import torch

        torch.zeros(1, device=self.device)

    @property
    def version(self) -> str:
        # the installed distribution's, never torch.__version__: the same answer in a process that has imported
        # torch and in one that has not (a GPU image's torch said 2.11.0 in its metadata, 2.11.0+cu130 once imported)
        return installed_version("torch") or "n/a"

    def environment(self) -> dict[str, str]:
        """What decides torch's CPU arithmetic here: its dispatch capability and the kernels of each half dtype."""
        return cpu_facts()

    def _settings(self) -> contextlib.AbstractContextManager[Any]:
        """Backend flags to hold while torch computes; none on the CPU."""
        return contextlib.nullcontext()

    def _tensor(self, problem: ConvProblem, a: np.ndarray) -> Any:
        import torch

        if problem.dtype == "bfloat16":  # numpy has no bfloat16 of its own (ml_dtypes'): go through float32, exactly
            return torch.from_numpy(np.asarray(a, dtype=np.float32)).to(self.device, torch.bfloat16)
        a = np.asarray(a, dtype=problem.dtype)
        if any(s < 0 for s in a.strides):
            # torch tensors cannot have negative strides; a copy, not ascontiguousarray, which returns a size-1
            # array as it is (it counts as contiguous whatever its strides)
            a = a.copy(order="C")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            t = torch.from_numpy(a)
        return t.to(self.device)

    @staticmethod
    def _numpy(t: Any) -> np.ndarray:
        """A C-contiguous numpy copy that owns its memory (torch may return a channels-last layout)."""
        import torch

        if t.dtype == torch.bfloat16:
            from ml_dtypes import bfloat16

            return np.array(t.detach().float().cpu().numpy(), order="C").astype(bfloat16)
        return np.array(t.detach().cpu().numpy(), order="C", copy=True)

    def _conv(self, problem: ConvProblem, x: Any, w: Any, b: Any) -> Any:
        from torch.nn import functional

        if problem.transposed:
            return self._conv_transpose(problem, x, w, b)
        conv = (functional.conv1d, functional.conv2d, functional.conv3d)[problem.rank - 1]
        padding: Any = problem.padding
        if problem.padding_mode != "zeros" or problem.asymmetric:
            # what torch.nn.Conv1d/2d/3d do for padding_mode != "zeros": F.pad first, then a conv without padding;
            # F.pad takes (begin, end) pairs from the last axis back ((left, right, top, bottom) in 2-D), which also
            # expresses ONNX's asymmetric pads
            pads = tuple(n for begin_end in reversed(tuple(zip(problem.padding, problem.pad_end))) for n in begin_end)
            mode = "constant" if problem.padding_mode == "zeros" else problem.padding_mode
            x = functional.pad(x, pads, mode=mode)
            padding = 0
        return conv(x, w, b, stride=problem.stride, padding=padding, dilation=problem.dilation, groups=problem.groups)

    @staticmethod
    def _conv_transpose(problem: ConvProblem, x: Any, w: Any, b: Any) -> Any:
        """``conv_transpose1d/2d/3d`` by the rank. torch pads a transposed convolution symmetrically only (its
        padding crops the full result on both sides); ONNX's asymmetric pads are the full result (padding 0, the
        output padding as given: ``(in - 1)*s + d*(k - 1) + 1 + output_padding`` long) cropped to
        ``[padding, padding + out)``, which ends ``pad_end`` before its end. A slice, so autograd carries dy back into
        the window and zeros elsewhere."""
        from torch.nn import functional

        conv_t = (functional.conv_transpose1d, functional.conv_transpose2d,
                  functional.conv_transpose3d)[problem.rank - 1]
        padding: Any = 0 if problem.asymmetric else problem.padding
        y = conv_t(x, w, b, stride=problem.stride, padding=padding, output_padding=problem.output_padding,
                   groups=problem.groups, dilation=problem.dilation)
        if problem.asymmetric:
            window: tuple[Any, ...] = (..., *(slice(p, p + n) for p, n in zip(problem.padding, problem.out_sizes)))
            y = y[window]
        return y

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        import torch

        with self._settings(), torch.no_grad():
            bt = self._tensor(problem, b) if b is not None else None
            y = self._conv(problem, self._tensor(problem, x), self._tensor(problem, w), bt)
            return self._numpy(y)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        import torch

        with self._settings():
            xt = self._tensor(problem, x).requires_grad_(True)
            wt = self._tensor(problem, w).requires_grad_(True)
            leaves = [xt, wt]
            bt = None
            if problem.bias:
                bt = torch.zeros(problem.c_out, dtype=xt.dtype, device=xt.device, requires_grad=True)
                leaves.append(bt)
            y = self._conv(problem, xt, wt, bt)
            grads = torch.autograd.grad(y, leaves, grad_outputs=self._tensor(problem, dy))
            return Grads(dx=self._numpy(grads[0]), dw=self._numpy(grads[1]),
                         db=self._numpy(grads[2]) if problem.bias else None)
