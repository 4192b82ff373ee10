"""The JAX and ONNX Runtime backends (impls/jax_lax.py, impls/onnxruntime_conv.py, issue #18): their adapter logic
without the libraries (dimension numbers, padding pairs, the transposed convolution as a convolution of the
stride-dilated input, the ONNX model's attributes, run through onnx's own reference evaluator), and each backend
against the oracle where its library is installed (skipped with the reason elsewhere: the project's test
environment has neither jax nor onnxruntime; their tox environments have)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conformance.impls import jax_lax, onnxruntime_conv
from helpers import small_int_operands

from conformance import ConvProblem
from conformance.numerics import reference as R

#: conv problems of every rank, with groups, dilation, stride, asymmetric padding and padding modes
CONV_CASES = ["mb2ic4oc6iw9kw3sw2pw1dw2g2_bias_float64", "mb1ic2oc2ih5iw6kh3kw2ph1pw0eh2ew1_float64",
              "mb1ic3oc3ih5iw5kh3kw3ph2pw1g3_reflect_float64", "mb2ic2oc4ih4iw5kh2kw3ph1pw2_circular_float64",
              "mb1ic2oc2ih4iw4kh3kw3ph1pw2_replicate_bias_float64"]
CONV_3D = ConvProblem(batch=1, c_in=2, c_out=4, d=4, h=3, w=5, kd=2, kh=3, kw=2, stride=(2, 1, 2),
                      padding=(1, 0, 1), padding_end=(0, 2, 1), dilation=(1, 1, 2), groups=2, bias=True)
#: transposed problems: stride > kernel (gaps), output padding below the stride and (below the dilation) above it,
#: asymmetric pads, cropping beyond d*(k-1) (a negative pad of the dilated input), groups
TRANSPOSED_CASES = ["mb2ic4oc6iw4kw2sw3pw1g2_bias_transposed_float64", "mb1ic2oc3ih3iw4kh3kw2sh2sw2ph1pw0oph1opw1_"
                    "transposed_float64", "mb1ic1oc1iw3kw2sw1pw0dw3opw2_transposed_float64",
                    "mb1ic2oc2ih3iw3kh2kw2sh2sw2ph1pw1eh0ew2dh2dw1oph1opw0g2_transposed_float64",
                    "mb1ic1oc1iw5kw2sw1pw3ew2dw1_bias_transposed_float64"]
TRANSPOSED_3D = ConvProblem(batch=1, c_in=2, c_out=2, d=2, h=3, w=2, kd=2, kh=2, kw=3, stride=(2, 1, 3),
                            padding=(1, 0, 1), dilation=(1, 2, 1), output_padding=(1, 1, 2), groups=2, transposed=True)


def _problems(cases: list[str], extra: ConvProblem) -> list[ConvProblem]:
    return [ConvProblem.parse(c) for c in cases] + [extra]


ALL = _problems(CONV_CASES, CONV_3D) + _problems(TRANSPOSED_CASES, TRANSPOSED_3D)


# -- JAX: pure adapter logic ---------------------------------------------------------------------------------------

def test_dimension_numbers_are_torchs_layouts() -> None:
    assert jax_lax.dimension_numbers(1) == ("NCH", "OIH", "NCH")
    assert jax_lax.dimension_numbers(2) == ("NCHW", "OIHW", "NCHW")
    assert jax_lax.dimension_numbers(3) == ("NCDHW", "OIDHW", "NCDHW")


def test_padding_pairs_zero_padding_is_the_convolutions_asymmetric_pairs() -> None:
    p = ConvProblem.parse("mb1ic2oc2ih5iw6kh3kw2ph1pw0eh2ew1_float64")
    assert jax_lax.padding_pairs(p) == [(1, 2), (0, 1)]
    assert jax_lax.pad_widths(p) is None


@pytest.mark.parametrize("mode, np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")])
def test_padding_modes_pad_the_input_then_a_valid_convolution(mode: str, np_mode: str) -> None:
    p = ConvProblem.parse(f"mb1ic1oc1ih4iw5kh3kw3ph2pw1eh1ew2_{mode}_float64")
    assert jax_lax.padding_pairs(p) == [(0, 0), (0, 0)]
    assert jax_lax.pad_widths(p) == [(0, 0), (0, 0), (2, 1), (1, 2)]
    assert jax_lax.PAD_MODES[mode] == np_mode
    # numpy's mode is the padding torch means: a valid convolution of np.pad's input is the oracle
    x, w, _, _ = small_int_operands(p, 0)
    xp = np.pad(x, jax_lax.pad_widths(p), mode=np_mode)
    valid = p.replace(padding_mode="zeros", padding=0, padding_end=None, h=xp.shape[2], w=xp.shape[3])
    np.testing.assert_array_equal(R.forward(valid, xp, w), R.forward(p, x, w))


def _dilate(x: np.ndarray, stride: tuple[int, ...]) -> np.ndarray:
    """``lhs_dilation``: stride - 1 zeros between neighbours along each spatial axis."""
    out = np.zeros(x.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(x.shape[2:], stride)))
    out[(..., *(slice(None, None, s) for s in stride))] = x
    return out


def _pad_or_crop(x: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """XLA's padding: a negative pad crops."""
    x = np.pad(x, [(0, 0), (0, 0), *((max(b, 0), max(e, 0)) for b, e in pairs)])
    return x[(..., *(slice(max(-b, 0), n - max(-e, 0)) for (b, e), n in zip(pairs, x.shape[2:])))]


@pytest.mark.parametrize("p", _problems(TRANSPOSED_CASES, TRANSPOSED_3D), ids=str)
def test_transposed_is_a_convolution_of_the_dilated_input_with_the_flipped_kernel(p: ConvProblem) -> None:
    """What JaxLax hands XLA, computed by the oracle's convolution: the stride-dilated input, padded (or cropped) by
    ``transposed_padding``, convolved with ``transposed_kernel``, equals the transposed oracle exactly (integers)."""
    x, w, b, _ = small_int_operands(p, 1)
    xd = _pad_or_crop(_dilate(x, p.stride), jax_lax.transposed_padding(p))
    k = jax_lax.transposed_kernel(w, p.groups)
    sizes = dict(zip(p.axes, xd.shape[2:])) | {f"k{a}": n for a, n in zip(p.axes, k.shape[2:])}
    conv = ConvProblem(batch=p.batch, c_in=p.c_in, c_out=p.c_out, dilation=p.dilation, groups=p.groups,
                       bias=p.bias, **sizes)
    assert conv.output_shape == p.output_shape
    np.testing.assert_array_equal(R.forward(conv, xd, k, b), R.forward(p, x, w, b))


def test_checked_refuses_a_silent_float32() -> None:
    p = ConvProblem.parse("mb1ic1oc1iw3kw1_float64")
    with pytest.raises(TypeError, match="float32 for a float64 problem.*jax_enable_x64"):
        jax_lax._checked(p, "the forward result", np.zeros((1, 1, 3), np.float32))
    assert jax_lax._checked(p, "y", np.zeros((1, 1, 3))).dtype == np.float64


def test_jax_missing_is_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    assert jax_lax.JaxLax().available() == "jax is not installed"


# -- ONNX Runtime: pure adapter logic (onnx is in the test extra; onnxruntime is not) -------------------------------

def test_onnx_attributes_pads_are_begins_then_ends() -> None:
    p = ConvProblem.parse("mb1ic4oc2ih5iw6kh3kw2sh2sw1ph1pw0eh2ew1dh1dw2g2_float32")
    assert onnxruntime_conv.attributes(p) == {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [1, 2],
                                              "group": 2, "pads": [1, 0, 2, 1]}
    assert onnxruntime_conv.pad_input(p) is None


def test_onnx_padding_modes_are_a_pad_node() -> None:
    p = ConvProblem.parse("mb1ic1oc1ih4iw5kh3kw3ph2pw1eh1ew2_circular_float32")
    assert onnxruntime_conv.attributes(p)["pads"] == [0, 0, 0, 0]
    assert onnxruntime_conv.pad_input(p) == ("wrap", [0, 0, 2, 1, 0, 0, 1, 2])
    assert onnxruntime_conv.opset(p) == 19
    assert onnxruntime_conv.opset(p.replace(padding_mode="reflect")) == onnxruntime_conv.OPSET


def test_onnx_output_padding_at_least_the_stride_is_folded_into_the_end_padding() -> None:
    keep = ConvProblem.parse("mb1ic1oc1iw3kw3sw2pw1opw1_transposed_float32")
    assert onnxruntime_conv.output_padding_plan(keep) == ([1], [1], [0])
    fold = ConvProblem.parse("mb1ic1oc1iw3kw2sw1pw0ew3dw3opw2_transposed_float32")  # op 2 >= s 1, < d 3
    assert onnxruntime_conv.output_padding_plan(fold) == ([0], [1], [0])
    tail = ConvProblem.parse("mb1ic1oc1iw3kw2sw1pw0dw3opw2_transposed_float32")
    assert onnxruntime_conv.output_padding_plan(tail) == ([0], [0], [2])


def test_optimization_level_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONV_CONFORMANCE_ORT_OPT_LEVEL", raising=False)
    assert onnxruntime_conv.optimization_level() == "ORT_ENABLE_ALL"
    monkeypatch.setenv("CONV_CONFORMANCE_ORT_OPT_LEVEL", "ORT_DISABLE_ALL")
    assert onnxruntime_conv.OnnxRuntimeConv().environment()["ort_graph_optimization_level"] == "ORT_DISABLE_ALL"
    monkeypatch.setenv("CONV_CONFORMANCE_ORT_OPT_LEVEL", "fast")
    with pytest.raises(ValueError, match="'fast', but it must be one of ORT_DISABLE_ALL"):
        onnxruntime_conv.optimization_level()


def test_onnx_model_has_no_float64_or_bfloat16() -> None:
    pytest.importorskip("onnx", reason="onnx (the test extra) builds the models")
    with pytest.raises(ValueError, match="dtype float64 has no Conv kernel on the CPU provider"):
        onnxruntime_conv.model_for(ConvProblem.parse("mb1ic1oc1iw3kw1_float64"))


@pytest.mark.parametrize("p", [p.replace(dtype="float32") for p in ALL]
                         + [ConvProblem.parse("mb1ic1oc1iw3kw2sw1pw0dw3opw2_bias_transposed_float32")], ids=str)
def test_onnx_model_is_the_problem_by_onnx_reference_evaluator(p: ConvProblem) -> None:
    """The model JaxLax's sibling hands onnxruntime, run by onnx's own reference implementation: exactly the oracle
    (small integers), so the node's attributes mean the problem's semantics, whatever ORT then does with them."""
    pytest.importorskip("onnx", reason="onnx (the test extra) builds the models")
    from onnx.reference import ReferenceEvaluator

    if p.transposed and p.groups > 1 and not p.c_in == p.c_out == p.groups:
        pytest.skip("onnx's reference ConvTranspose slices a group's weight by C_out/G rows and writes one output "
                    "channel per group (onnx/reference/ops/op_conv_transpose.py, onnx 1.23): right only where "
                    "C_in/G = C_out/G = 1; test_ort_against_the_oracle covers this problem")
    x, w, b, _ = small_int_operands(p, 2)
    feeds = {"X": x.astype(np.float32), "W": w.astype(np.float32)} | ({"B": b.astype(np.float32)} if p.bias else {})
    (y,) = ReferenceEvaluator(onnxruntime_conv.model_for(p)).run(None, feeds)
    np.testing.assert_array_equal(y, R.forward(p.replace(dtype="float64"), x, w, b))


def test_ort_missing_is_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert onnxruntime_conv.OnnxRuntimeConv().available() == "onnxruntime not installed"


# -- with the libraries (their tox environments) ------------------------------------------------------------------

@pytest.mark.parametrize("p", ALL, ids=str)
def test_jax_against_the_oracle(p: ConvProblem) -> None:
    pytest.importorskip("jax", reason="jax is not installed here (tox -e jax installs it)")
    backend = jax_lax.JaxLax()
    backend.prepare()
    x, w, b, dy = small_int_operands(p, 3)
    y = backend.forward(p, x, w, b)
    assert y.dtype == np.float64  # x64 on: never a silent float32
    np.testing.assert_array_equal(y, R.forward(p, x, w, b))
    g = backend.backward(p, x, w, dy)
    np.testing.assert_array_equal(g.dx, R.grad_input(p, dy, w))
    np.testing.assert_array_equal(g.dw, R.grad_weight(p, x, dy))
    if p.bias:
        np.testing.assert_array_equal(g.db, R.grad_bias(p, dy))


@pytest.mark.parametrize("p", [p.replace(dtype="float32") for p in ALL], ids=str)
def test_ort_against_the_oracle(p: ConvProblem) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed here (tox -e onnxruntime installs it)")
    backend = onnxruntime_conv.OnnxRuntimeConv()
    x, w, b, _ = small_int_operands(p, 4)
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    y = backend.forward(p, f32(x), f32(w), f32(b))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, R.forward(p.replace(dtype="float64"), x, w, b))
    assert backend._session(p) is backend._session(p.replace(label="another label"))  # one session per problem


@pytest.mark.parametrize("lib, make", [("jax", lambda: jax_lax.JaxLax()),
                                       ("onnxruntime", lambda: onnxruntime_conv.OnnxRuntimeConv())])
def test_a_bias_problem_called_without_a_bias_is_the_convolution_alone(lib: str, make: object) -> None:
    """The oracle-free checks call forward(p, x, w, None) on a problem with a bias: as torch does, no bias."""
    pytest.importorskip(lib, reason=f"{lib} is not installed here (tox -e {lib} installs it)")
    p = ConvProblem.parse("mb1ic2oc2ih4iw4kh3kw3ph1pw1_bias_float32")
    x, w, _, _ = small_int_operands(p, 5)
    y = make().forward(p, x.astype(np.float32), w.astype(np.float32), None)  # type: ignore[operator]
    np.testing.assert_array_equal(y, R.forward(p.replace(bias=False, dtype="float64"), x, w))


def test_jax_warm_up_compiles_once_per_problem_and_pass() -> None:
    pytest.importorskip("jax", reason="jax is not installed here (tox -e jax installs it)")
    backend = jax_lax.JaxLax()
    p = ConvProblem.parse("mb1ic1oc2iw5kw3_bias_float64")
    x, w, b, dy = small_int_operands(p, 6)
    backend.warm_up("forward", (p, x, w, None))
    backend.warm_up("backward", (p.replace(label="x"), x, w, dy))
    assert backend._warm == {(p.replace(bias=False), "forward"), (p, "backward")}
