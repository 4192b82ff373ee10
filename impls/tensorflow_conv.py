"""TensorFlow on the CPU (``tensorflow-cpu``): ``tf.nn.convolution`` in ranks 1-3, the transposed convolution as
TensorFlow defines it (the gradient of the convolution with respect to its input: the op behind
``tf.nn.conv_transpose``), gradients by ``tf.GradientTape``, in eager mode.

Layout: TF's CPU kernels take channels-last operands (NWC, NHWC, NDHWC) and filters ``(*kernel, C_in/G, C_out)``;
the NCL/NCHW/NCDHW arrays are transposed inside the tape (``tf.transpose``), so the tape's gradients come back in the
suite's layout and the transposes' gradients are transposes (exact).

Mapping torch's semantics onto TF, exactly (no operation below changes a value):

- padding: ``tf.pad`` first (CONSTANT for zeros, REFLECT for reflect: TF's own modes), then ``padding="VALID"``,
  which also takes ONNX's asymmetric pads. TF has no replicate or circular mode: not declared.
- stride with dilation: ``tf.nn.convolution`` refuses ``strides > 1`` with ``dilation_rate > 1`` (it realises
  dilation by space-to-batch); the stride-1 result is sliced (``y[:, ::s]``): the same sums, more of them computed.
- groups: TF's CPU has grouped kernels only in conv1d/conv2d and, for the gradients, only on its oneDNN path (float32,
  bfloat16; float64/float16 raise "Gradients for grouped convolutions are not supported on CPU", conv3d "input and
  filter must have the same depth"). Where TF has them they are used; a depthwise conv1d/conv2d (one group per
  channel) in float64/float16 goes to ``tf.nn.depthwise_conv2d``; elsewhere one convolution per group
  (``tf.split``/``tf.concat`` along the channels, exact). The scale tier's 65537 groups in conv3d are 65537 TF calls:
  13 s forward, 31 s backward, 25 s and 49 s transposed on an idle 2-core AMD EPYC, past the default 60 s timeout
  when the machine is loaded: run it with ``--timeout 180``.
- transposed: ``tape.gradient`` of ``tf.nn.convolution(z, w)`` with respect to ``z``, ``output_gradients=x``, on the
  full output ``(in - 1)*s + d*(k - 1) + 1`` (TF's ``Conv{2,3}DBackpropInput``, the kernel of ``tf.nn.conv_transpose``,
  which itself refuses dilation on the CPU in float64/float16); torch's output padding appends zeros at the far end
  (no tap reaches them), its padding crops both ends. Its own gradients: the same tape, taken again.
- bias: ``tf.nn.bias_add``; its gradient is TF's ``BiasAddGrad`` (a zero bias is watched, as torch-cpu does).

TF sends float32 and bfloat16 to oneDNN (``TF_ENABLE_ONEDNN_OPTS``, on by default on x86 Linux; ``_MklNative*`` ops),
float64 and float16 to its Eigen kernels. ``tensorflow`` is imported in the worker (``prepare``), never in the suite's
process.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np

from conformance.backends.backend import Capabilities, Grads, installed_version
from conformance.model.problem import ConvProblem

#: TF's channels-last data formats by rank, given explicitly: with the default ``data_format=None`` the gradient of
#: ``tf.nn.convolution`` in 3-D fails in eager mode (TF 2.21: ``_Conv3DGrad`` reads the op's data_format as None)
DATA_FORMATS = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
#: the dtypes TF hands to oneDNN when its oneDNN ops are on (the rest run on Eigen)
ONEDNN_DTYPES = ("float32", "bfloat16")


def to_channels_last(rank: int) -> tuple[int, ...]:
    """The permutation NC(D)(H)W -> N(D)(H)WC: ``(0, 2, ..., rank + 1, 1)``."""
    return (0, *range(2, rank + 2), 1)


def to_channels_first(rank: int) -> tuple[int, ...]:
    """The inverse permutation N(D)(H)WC -> NC(D)(H)W: ``(0, rank + 1, 1, ..., rank)``."""
    return (0, rank + 1, *range(1, rank + 1))


def filter_layout(rank: int) -> tuple[int, ...]:
    """The permutation of torch's weight ``(O, I/G, *k)`` into TF's filter ``(*k, I/G, O)``."""
    return (*range(2, rank + 2), 1, 0)


def pad_pairs(begin: tuple[int, ...], end: tuple[int, ...]) -> list[list[int]]:
    """``tf.pad``'s paddings of a channels-last operand: none on batch and channels, (begin, end) per spatial axis."""
    return [[0, 0], *([b, e] for b, e in zip(begin, end)), [0, 0]]


def full_sizes(problem: ConvProblem) -> tuple[int, ...]:
    """A transposed problem's uncropped output, without output padding: ``(in - 1)*s + d*(k - 1) + 1`` per axis."""
    return tuple((n - 1) * s + d * (k - 1) + 1
                 for n, k, s, d in zip(problem.in_sizes, problem.kernel, problem.stride, problem.dilation))


def grouping(rank: int, dtype: str, groups: int, channels: int, onednn: bool) -> str:
    """How a convolution of ``groups`` over ``channels`` input channels is computed: ``"native"`` (TF's kernel takes
    the groups, or there is one group), ``"depthwise"`` (one group per channel: ``tf.nn.depthwise_conv2d``, in
    conv1d/conv2d, with gradients in every dtype), ``"split"`` (one convolution per group)."""
    if groups == 1 or (rank <= 2 and onednn and dtype in ONEDNN_DTYPES):
        return "native"
    if rank <= 2 and groups == channels:
        return "depthwise"
    return "split"


def strided_by_slicing(stride: tuple[int, ...], dilation: tuple[int, ...], how: str) -> bool:
    """Whether the stride is taken by slicing a stride-1 result: ``tf.nn.convolution`` refuses a stride with a
    dilation, and the depthwise path runs at stride 1 (``depthwise_conv2d`` takes one stride for both axes)."""
    strided = any(s > 1 for s in stride)
    return strided and (how == "depthwise" or any(d > 1 for d in dilation))


#: measured with ``python -m conformance profile`` (conv2d) and against the oracle in every rank (TF 2.21.0, oneDNN on,
#: AMD EPYC with avx512_bf16, 2026-12-07): float16 (Eigen) sums both gradients' products in float16; its forward rounds
#: the result before the bias in dense conv1d/conv2d (fp16-acc32-mid16) but rounds partial sums in conv3d (1.5e-3
#: relative error at K = 1024, three times one rounding) and in grouped conv1d/conv2d (depthwise_conv2d, one convolution
#: a group: 1.0-1.7x the fp16-acc32-mid16 bound on the corpus' depthwise layers): fp16-acc16, the path is the problem's.
#: bfloat16 (oneDNN) rounds the forward result before the bias, folds reflect padding in bfloat16 and sums the bias
#: gradient in bfloat16. The transposed forward is TF's input-gradient kernel: its grad_input profile.
PRECISION = {"float16:forward": "fp16-acc16", "float16:grad_input": "fp16-acc16", "float16:grad_weight": "fp16-acc16",
             "bfloat16:forward": "bf16-acc32-mid16", "bfloat16:grad_input": "bf16-acc16",
             "bfloat16:grad_bias": "bf16-acc16",
             "conv_transpose:float16:forward": "fp16-acc16", "conv_transpose:bfloat16:forward": "bf16-acc16"}


class TensorFlowCPU:
    """``tf.nn.convolution`` and ``tf.GradientTape`` on the CPU, channels-last inside."""

    name = "tensorflow"
    capabilities = Capabilities(dtypes=("float32", "float64", "float16", "bfloat16"),
                                padding_modes=("zeros", "reflect"), asymmetric_padding=True, precision=PRECISION,
                                ranks=(1, 2, 3), transposed=True,
                                notes="tf.nn.convolution + GradientTape (CPU, channels-last inside); transposed as the "
                                      "input gradient; no replicate/circular padding in TF")

    def available(self) -> str | None:
        if importlib.util.find_spec("tensorflow") is None:
            return "tensorflow is not installed (pip install tensorflow-cpu)"
        return None

    def prepare(self) -> None:
        import tensorflow as tf

        tf.zeros(1)

    @property
    def version(self) -> str:
        return installed_version("tensorflow-cpu") or installed_version("tensorflow") or "n/a"

    def environment(self) -> dict[str, str]:
        """Whether TF's oneDNN ops are on (they take float32 and bfloat16)."""
        return {"tensorflow": self.version, "tf_onednn": str(self._onednn()),
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset)")}

    @staticmethod
    def _onednn() -> bool:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())

    # -- the convolution in TF's terms (channels-last tensors) ------------------------------------------------------
    def _conv(self, problem: ConvProblem, x: Any, f: Any) -> Any:
        """torch's convolution of channels-last ``x`` (already padded) by the TF filter ``f``, VALID."""
        import tensorflow as tf

        stride, dilation, groups = problem.stride, problem.dilation, problem.groups
        how = grouping(problem.rank, problem.dtype, groups, int(x.shape[-1]), self._onednn())
        sliced = strided_by_slicing(stride, dilation, how)
        strides = (1,) * problem.rank if sliced else stride
        fmt = DATA_FORMATS[problem.rank]
        if how == "split":
            y = tf.concat([tf.nn.convolution(a, g, strides=strides, padding="VALID", data_format=fmt,
                                             dilations=dilation)
                           for a, g in zip(tf.split(x, groups, axis=-1), tf.split(f, groups, axis=-1))], axis=-1)
        elif how == "depthwise":
            y = self._depthwise(problem.rank, x, f, dilation)
        else:
            y = tf.nn.convolution(x, f, strides=strides, padding="VALID", data_format=fmt, dilations=dilation)
        if sliced:
            y = y[(slice(None), *(slice(None, None, s) for s in stride), slice(None))]
        return y

    @staticmethod
    def _depthwise(rank: int, x: Any, f: Any, dilation: tuple[int, ...]) -> Any:
        """``tf.nn.depthwise_conv2d`` at stride 1 (conv1d on a height of 1): the filter ``(*k, 1, C*m)``, output
        channel ``c*m + j`` as torch orders a depthwise convolution's, reshaped to TF's ``(*k, C, m)``."""
        import tensorflow as tf

        if rank == 1:
            x, f, dilation = x[:, None], f[None], (1, *dilation)
        channels = int(x.shape[-1])
        f = tf.reshape(f, (*f.shape[:2], channels, -1))
        y = tf.nn.depthwise_conv2d(x, f, strides=(1, 1, 1, 1), padding="VALID", dilations=dilation)
        return y[:, 0] if rank == 1 else y

    def _forward(self, problem: ConvProblem, x: Any, w: Any, b: Any) -> Any:
        """The problem's result from NC... tensors ``x``, ``w`` (torch's layouts), channels-last inside."""
        import tensorflow as tf

        rank = problem.rank
        xl = tf.transpose(x, to_channels_last(rank))
        f = tf.transpose(w, filter_layout(rank))
        if problem.transposed:
            y = self._transposed(problem, xl, f)
        else:
            mode = "CONSTANT" if problem.padding_mode == "zeros" else "REFLECT"
            if any(problem.padding) or any(problem.pad_end):
                xl = tf.pad(xl, pad_pairs(problem.padding, problem.pad_end), mode=mode)
            y = self._conv(problem, xl, f)
        if b is not None:
            y = tf.nn.bias_add(y, b)
        return tf.transpose(y, to_channels_first(rank))

    def _transposed(self, problem: ConvProblem, xl: Any, f: Any) -> Any:
        """The input gradient of the convolution of ``full_sizes`` by ``f`` at ``xl``; output padding; the crop."""
        import tensorflow as tf

        z = tf.zeros((problem.batch, *full_sizes(problem), problem.c_out), dtype=xl.dtype)
        with tf.GradientTape() as inner:
            inner.watch(z)
            y = self._conv(problem, z, f)
        full = inner.gradient(y, z, output_gradients=xl)
        if any(problem.output_padding):
            full = tf.pad(full, pad_pairs((0,) * problem.rank, problem.output_padding))
        window = tuple(slice(p, p + n) for p, n in zip(problem.padding, problem.out_sizes))
        return full[(slice(None), *window, slice(None))]

    # -- the protocol -----------------------------------------------------------------------------------------------
    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        y = self._forward(problem, self._tensor(problem, x), self._tensor(problem, w),
                          self._tensor(problem, b) if b is not None else None)
        return self._numpy(y)

    def backward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> Grads:
        import tensorflow as tf

        xt, wt = self._tensor(problem, x), self._tensor(problem, w)
        bt = tf.zeros((problem.c_out,), dtype=xt.dtype) if problem.bias else None
        leaves = [xt, wt] + ([bt] if bt is not None else [])
        with tf.GradientTape() as tape:
            tape.watch(leaves)
            y = self._forward(problem, xt, wt, bt)
        grads = tape.gradient(y, leaves, output_gradients=self._tensor(problem, dy))
        return Grads(dx=self._numpy(grads[0]), dw=self._numpy(grads[1]),
                     db=self._numpy(grads[2]) if problem.bias else None)

    @staticmethod
    def _tensor(problem: ConvProblem, a: np.ndarray) -> Any:
        import tensorflow as tf

        return tf.constant(np.asarray(a, dtype=problem.np_dtype))

    @staticmethod
    def _numpy(t: Any) -> np.ndarray:
        """A C-contiguous numpy copy that owns its memory."""
        return np.array(t.numpy(), order="C", copy=True)
