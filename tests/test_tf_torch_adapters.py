"""The adapters of the TensorFlow, torch-native and torch.compile backends (issue #18): what each does to the problem
before the library sees it (layouts, paddings, groups, the flags it holds, what a compiled graph is keyed on), tested
without the library where that is possible, and with it where it is installed (skipped with the reason elsewhere:
tensorflow is not in the test environment; torch is); the runner's untimed ``warm_up`` hook."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
import pytest
from conformance.impls import tensorflow_conv as tfc
from conformance.impls.torch_compile import CACHE, TorchCompile, compile_key
from conformance.impls.torch_cpu import TorchCPU

from conformance.backends.backend import Grads
from conformance.backends.registry import Entry, left_out
from conformance.backends.runner import invoke
from conformance.model.problem import ConvProblem

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_tf = pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed (tox -e tensorflow installs it)")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")


def operands(p: ConvProblem, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, w, dy = (rng.standard_normal(s).astype(p.np_dtype) for s in (p.input_shape, p.weight_shape, p.output_shape))
    b = rng.standard_normal(p.bias_shape).astype(p.np_dtype) if p.bias else None
    return x, w, b, dy


# -- TensorFlow: layouts, paddings, groups, without tensorflow ---------------------------------------------------------
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_channels_last_permutations_invert(rank: int) -> None:
    shape = (2, 3, 4, 5, 6)[:rank + 2]
    a = np.arange(np.prod(shape)).reshape(shape)
    last = a.transpose(tfc.to_channels_last(rank))
    assert last.shape == (a.shape[0], *a.shape[2:], a.shape[1])
    assert last[1, ..., 2].tolist() == a[1, 2].tolist()  # channel 2 of sample 1 is the last axis' index 2
    assert np.array_equal(last.transpose(tfc.to_channels_first(rank)), a)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_filter_layout_is_tf_spatial_in_out(rank: int) -> None:
    shape = (4, 3, 2, 5, 7)[:rank + 2]  # torch (O, I/G, *k)
    w = np.arange(np.prod(shape)).reshape(shape)
    f = w.transpose(tfc.filter_layout(rank))
    assert f.shape == (*w.shape[2:], 3, 4)
    assert f[(0,) * rank + (1, 2)] == w[(2, 1) + (0,) * rank]


def test_pad_pairs_asymmetric() -> None:
    assert tfc.pad_pairs((1, 2), (3, 0)) == [[0, 0], [1, 3], [2, 0], [0, 0]]
    assert tfc.pad_pairs((4,), (4,)) == [[0, 0], [4, 4], [0, 0]]


@pytest.mark.parametrize("desc", ["mb1ic2oc3ih5iw4kh3kw2sh2sw3ph1pw0dh2dw1_transposed_float32",
                                  "mb1ic1oc1iw7kw3sw3pw2dw2_transposed_float64",
                                  "mb1ic1oc1id2ih3iw2kd2kh3kw1sd2sh1sw2pd0ph1pw0_transposed_float32"])
def test_transposed_full_output_then_crop(desc: str) -> None:
    p = ConvProblem.parse(desc)
    for n, full, b, e, op, out in zip(p.in_sizes, tfc.full_sizes(p), p.padding, p.pad_end, p.output_padding,
                                      p.out_sizes):
        assert out == full + op - b - e
        # the convolution of the full size returns the input's size: the transposed output is its input gradient
        s, d, k = p.stride[0], p.dilation[0], p.kernel[0]
        if p.rank == 1:
            assert (full - d * (k - 1) - 1) // s + 1 == n


def test_transposed_output_padding_and_asymmetric_crop() -> None:
    p = ConvProblem(batch=1, c_in=1, c_out=1, h=3, w=3, kh=2, kw=2, stride=2, padding=(1, 0), padding_end=(0, 1),
                    output_padding=(1, 1), transposed=True)
    assert tfc.full_sizes(p) == (6, 6)
    assert p.out_sizes == (6, 6)  # 6 + 1 - 1 - 0, 6 + 1 - 0 - 1


@pytest.mark.parametrize("rank,dtype,groups,channels,onednn,want", [
    (2, "float64", 1, 4, True, "native"),
    (2, "float32", 2, 4, True, "native"),        # TF's oneDNN conv1d/conv2d take groups, gradients included
    (1, "bfloat16", 4, 4, True, "native"),
    (2, "float32", 2, 4, False, "split"),        # oneDNN off: Eigen has no grouped gradients
    (2, "float64", 4, 4, True, "depthwise"),     # one group per channel: tf.nn.depthwise_conv2d
    (1, "float16", 4, 4, True, "depthwise"),
    (2, "float64", 2, 4, True, "split"),
    (3, "float32", 4, 4, True, "split"),         # no grouped conv3d on TF's CPU in any dtype
    (3, "float64", 65537, 65537, True, "split"),
])
def test_grouping(rank: int, dtype: str, groups: int, channels: int, onednn: bool, want: str) -> None:
    assert tfc.grouping(rank, dtype, groups, channels, onednn) == want


def test_stride_by_slicing() -> None:
    assert tfc.strided_by_slicing((2, 1), (2, 1), "native")       # tf.nn.convolution refuses stride with dilation
    assert not tfc.strided_by_slicing((2, 2), (1, 1), "native")
    assert not tfc.strided_by_slicing((1, 1), (3, 3), "native")
    assert tfc.strided_by_slicing((1, 2), (1, 1), "depthwise")    # depthwise runs at stride 1
    assert not tfc.strided_by_slicing((1, 1), (2, 2), "depthwise")
    # slicing a stride-1 result takes the same elements a strided convolution computes
    full = np.arange(10)
    assert full[::3].tolist() == [full[3 * i] for i in range((10 - 1) // 3 + 1)]


def test_tensorflow_declares_what_tf_has() -> None:
    caps = tfc.TensorFlowCPU.capabilities
    assert caps.padding_modes == ("zeros", "reflect")  # tf.pad has no replicate/circular mode
    assert caps.ranks == (1, 2, 3) and caps.transposed and caps.asymmetric_padding
    assert caps.profile_for("float16", "grad_weight") == "fp16-acc16"
    assert caps.profile_for("float32", "forward") == "fp32"
    # Eigen's float16 conv3d and TF's grouped conv1d/conv2d forwards round partial sums (measured: the dense
    # conv2d's one rounding before the bias would be 1.0-1.7x too tight on depthwise layers)
    assert {caps.profile_for("float16", "forward", t, r) for r in (1, 2, 3) for t in (False, True)} == {"fp16-acc16"}
    assert set(tfc.DATA_FORMATS.values()) == {"NWC", "NHWC", "NDHWC"}


@pytest.mark.skipif(HAS_TF, reason="tensorflow is installed here: the unavailable reason is not shown")
def test_tensorflow_unavailable_with_the_reason() -> None:
    assert "tensorflow is not installed" in (tfc.TensorFlowCPU().available() or "")


# -- TensorFlow, with tensorflow -----------------------------------------------------------------------------------
@needs_tf
@pytest.mark.parametrize("desc", ["mb2ic4oc6ih7iw6kh3kw2sh2sw1ph1pw0g2_bias_float64",
                                  "mb2ic3oc3iw9kw3sw2dw2g3_bias_float64",
                                  "mb1ic4oc2id4ih4iw3kd2kh2kw2ph1pw1pd0g2_float32",
                                  "mb2ic3oc4ih5iw5kh3kw3sh2sw2ph1pw1_reflect_bias_float32",
                                  "mb2ic4oc2ih4iw4kh3kw2sh2sw2ph1pw0oph1opw1g2_transposed_float64"])
def test_tensorflow_matches_the_oracle(desc: str) -> None:
    from conformance.numerics import reference

    p = ConvProblem.parse(desc)
    x, w, b, dy = operands(p)
    backend = tfc.TensorFlowCPU()
    y = backend.forward(p, x, w, b)
    g = backend.backward(p, x, w, dy)
    np.testing.assert_allclose(y, reference.forward(p, x, w, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.dx, reference.grad_input(p, dy, w), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g.dw, reference.grad_weight(p, x, dy), rtol=1e-5, atol=1e-5)
    assert y.flags.c_contiguous and y.dtype == p.np_dtype


# -- torch-native -----------------------------------------------------------------------------------------------------
@needs_torch
def test_torch_native_holds_mkldnn_and_nnpack_off_and_restores_them() -> None:
    import torch
    from conformance.impls.torch_native import TorchNative

    before = torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled()
    with TorchNative()._settings():
        assert torch.backends.mkldnn.enabled is False
        assert torch._C._get_nnpack_enabled() is False
    assert (torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled()) == before


@needs_torch
def test_torch_native_profiles_are_the_native_paths_on_any_cpu() -> None:
    from conformance.impls.torch_native import TorchNative

    caps = TorchNative.capabilities
    for dtype, acc16 in (("bfloat16", "bf16-acc16"), ("float16", "fp16-acc16")):
        for check in ("grad_input", "grad_weight", "grad_bias"):
            assert caps.profile_for(dtype, check) == acc16
    facts = TorchNative().environment()
    assert facts["torch_bf16"] == facts["torch_fp16"] == "native"


@needs_torch
def test_torch_native_runs_no_onednn_kernel() -> None:
    import torch
    from conformance.impls.torch_native import TorchNative

    p = ConvProblem.parse("mb16ic4oc8ih9iw9kh3kw3_bias_float32")  # a batch of 16: NNPACK's, were it on
    x, w, b, dy = operands(p)
    ops = {}
    for backend in (TorchCPU(), TorchNative()):
        with torch.autograd.profiler.profile() as prof:
            backend.forward(p, x, w, b)
            backend.backward(p, x, w, dy)
        ops[backend.name] = {e.name for e in prof.function_events}
    assert not any("mkldnn" in name or "nnpack" in name for name in ops["torch-native"]), sorted(ops["torch-native"])
    assert "aten::_slow_conv2d_forward" in ops["torch-native"]
    if torch.backends.mkldnn.is_available():  # the default path is another: oneDNN's
        assert "aten::mkldnn_convolution" in ops["torch-cpu"]


# -- torch.compile ----------------------------------------------------------------------------------------------------
def test_compile_key_tells_pass_problem_and_layout_apart() -> None:
    p = ConvProblem.parse("mb1ic2oc2ih4iw4kh3kw3_float32")
    x = np.zeros(p.input_shape, np.float32)
    xt = np.asfortranarray(x)
    w = np.zeros(p.weight_shape, np.float32)
    assert compile_key("forward", p, (x, w, None)) == compile_key("forward", p, (x.copy(), w, None))
    assert compile_key("forward", p, (x, w, None)) != compile_key("backward", p, (x, w, None))
    assert compile_key("forward", p, (x, w, None)) != compile_key("forward", p, (xt, w, None))
    q = p.replace(stride=(2, 1))
    assert compile_key("forward", p, (x, w, None)) != compile_key("forward", q, (x, w, None))


def test_warm_up_calls_once_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = TorchCompile()
    calls: list[str] = []
    monkeypatch.setattr(backend, "forward", lambda *a: calls.append("forward"))
    p = ConvProblem.parse("mb1ic1oc1ih3iw3kh3kw3_float64")
    x, w = np.zeros(p.input_shape), np.zeros(p.weight_shape)
    for _ in range(3):
        backend.warm_up("forward", (p, x, w, None))
    assert calls == ["forward"]
    backend.warm_up("forward", (p, np.asfortranarray(x), w, None))  # another layout: Dynamo guards on strides
    assert calls == ["forward", "forward"]
    assert CACHE >= 8


def test_torch_compile_is_opt_in() -> None:
    """Left out of a run that does not name it (the main job), with the reason; runs where ``--select`` names it."""
    entry = Entry(name="torch-compile", backend=TorchCompile(), source="test", spec="test")
    why = left_out(entry, selected=[])
    assert why is not None and "--select torch-compile" in why and "Inductor" in why
    assert left_out(entry, selected=["im2col"]) == why
    assert left_out(entry, selected=["torch-compile"]) is None
    assert left_out(Entry(name="torch-cpu", backend=TorchCPU(), source="test", spec="test"), selected=[]) is None


@needs_torch
@pytest.mark.slow
def test_torch_compile_runs_compiled_graphs_equal_to_eager() -> None:
    """Compiled forward and backward (seconds: Inductor compiles), one graph per pass, equal to eager torch to float64's
    rounding (Inductor calls ATen's convolution kernels; it may add the bias apart)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    p = ConvProblem.parse("mb2ic4oc4ih6iw6kh3kw3sh2sw2ph1pw1_bias_float64")
    x, w, b, dy = operands(p)
    backend, eager = TorchCompile(), TorchCPU()
    before = counters["stats"]["unique_graphs"]
    out_f = invoke(backend, "forward", (p, x, w, b))
    out_b = invoke(backend, "backward", (p, x, w, dy))
    assert out_f.ok and out_b.ok, (out_f.error, out_b.error)
    assert counters["stats"]["unique_graphs"] - before == 2
    np.testing.assert_allclose(out_f.value, eager.forward(p, x, w, b), rtol=1e-12, atol=1e-12)
    g, ge = out_b.value, eager.backward(p, x, w, dy)
    assert isinstance(g, Grads)
    for got, want in zip(g, ge):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    torch._dynamo.reset()


# -- the runner's warm_up hook ----------------------------------------------------------------------------------------
class _Compiling:
    """A backend whose warm-up takes time and whose call does not."""

    name = "compiling"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[Any] = []

    def warm_up(self, method: str, args: tuple[Any, ...]) -> None:
        self.seen.append((method, args))
        time.sleep(0.3)
        if self.fail:
            raise RuntimeError("compiler crashed")

    def forward(self, problem: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return np.zeros(problem.output_shape)


def test_warm_up_is_called_with_the_call_args_and_not_timed() -> None:
    p = ConvProblem.parse("mb1ic1oc1ih3iw3kh3kw3_float64")
    backend = _Compiling()
    out = invoke(backend, "forward", (p, np.zeros(p.input_shape), np.zeros(p.weight_shape), None))
    assert out.ok and out.seconds < 0.3
    method, args = backend.seen[0]
    assert method == "forward" and args[0] == p and len(args) == 4


def test_warm_up_exception_is_the_calls_error() -> None:
    p = ConvProblem.parse("mb1ic1oc1ih3iw3kh3kw3_float64")
    out = invoke(_Compiling(fail=True), "forward", (p, np.zeros(p.input_shape), np.zeros(p.weight_shape), None))
    assert not out.ok and "compiler crashed" in (out.error or "")
