"""Tests of the shape corpus files (``conformance/data/shapes/*.txt``) and their reader ``conformance.model.shapes``:
each
layer line is ``<name> <descriptor> [count=N]``, the descriptor read by ``ConvProblem.parse``."""

from __future__ import annotations

import re

import pytest

from conformance.errors import ConformanceError
from conformance.model import shapes
from conformance.model.problem import ConvProblem

#: layers (lines) and convolutions (the sum of the counts) per corpus
SIZES = {"resnet50": (24, 53), "mobilenet_v2": (30, 52), "inception_v3": (45, 96), "efficientnet_b0": (46, 81),
         "alexnet": (5, 5), "deeplab_v3": (37, 66), "regressions": (9, 9),
         # conv1d (#16)
         "wav2vec2": (8, 8), "wavenet": (13, 201), "conformer": (3, 48), "whisper": (4, 4),
         # conv3d (#16)
         "c3d": (7, 8), "i3d": (6, 6), "r2plus1d": (7, 13), "slowfast": (6, 6), "unet3d": (9, 9), "vnet": (10, 17),
         # transposed convolution (#17)
         "dcgan": (5, 5), "unet_up": (4, 4), "fcn8s": (3, 3), "hifigan": (4, 4), "unet3d_up": (3, 3)}
#: each rank's corpus networks
RANK_OF = {n: 1 if n in ("wav2vec2", "wavenet", "conformer", "whisper", "hifigan") else
           3 if n in ("c3d", "i3d", "r2plus1d", "slowfast", "unet3d", "vnet", "unet3d_up") else 2 for n in SIZES}
TRANSPOSED = ("dcgan", "unet_up", "fcn8s", "hifigan", "unet3d_up")


def _layer_lines(name: str) -> list[tuple[int, str]]:
    text = (shapes.SHAPES_DIR / f"{name}.txt").read_text(encoding="utf-8")
    return [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1)
            if line.split("#", 1)[0].strip()]


@pytest.mark.parametrize("name", shapes.names())
def test_every_layer_line_is_a_name_and_a_descriptor(name: str) -> None:
    corpus = shapes.load(name)
    lines = _layer_lines(name)
    assert len(lines) == len(corpus.layers)
    assert "ConvProblem.parse" in corpus.path.read_text(encoding="utf-8")  # the header names the grammar
    for (lineno, line), layer in zip(lines, corpus.layers):
        layer_name, descriptor, *count = line.split()
        assert layer_name == layer.name and layer.where.endswith(f":{lineno}")
        assert count in ([], [f"count={layer.count}"]) and (count or layer.count == 1)
        assert not re.search(r'mb[0-9]|float|n"', descriptor), (name, lineno)  # batch, dtype, label: the tier's
        p = ConvProblem.parse(descriptor)
        assert layer.problem(batch=1, dtype="float64") == p
        assert layer.geometry == p and layer.geometry.label == f"{name}:{layer_name}"


def test_the_corpus_is_unchanged_in_count() -> None:
    assert {n: (len(shapes.load(n).layers), sum(lay.count for lay in shapes.load(n).layers))
            for n in shapes.names()} == SIZES
    # the corpus tier's problems, distinct problems and geometry classes, at full size and at the profiles' budgets
    counts = {(budget, distinct): len(shapes.corpus_problems(None, budget, distinct=distinct, ranks=(2,),
                                                            transposed=False))
              for budget in (None, 5_000, 20_000, 1_000_000) for distinct in ("problem", "geometry")}
    assert counts == {(None, "problem"): 182, (None, "geometry"): 40, (5_000, "problem"): 72,
                      (5_000, "geometry"): 40, (20_000, "problem"): 73, (20_000, "geometry"): 40,
                      (1_000_000, "problem"): 131, (1_000_000, "geometry"): 40}
    # conv1d and conv3d: the ci profile runs 19 and 21 geometry classes
    assert len(shapes.corpus_problems(None, 20_000, distinct="geometry", ranks=(1,), transposed=False)) == 19
    assert len(shapes.corpus_problems(None, 20_000, distinct="geometry", ranks=(3,), transposed=False)) == 21
    # transposed convolution: conv_transpose1d/2d/3d at the ci profile
    assert [len(shapes.corpus_problems(None, 20_000, distinct="geometry", ranks=(r,), transposed=True))
            for r in (1, 2, 3)] == [2, 7, 1]


@pytest.mark.parametrize("name", shapes.names())
def test_every_corpus_is_of_one_rank(name: str) -> None:
    assert {lay.geometry.rank for lay in shapes.load(name).layers} == {RANK_OF[name]}
    assert {lay.geometry.transposed for lay in shapes.load(name).layers} == {name in TRANSPOSED}
    ranked = shapes.corpus_problems([name], 20_000, distinct="problem", ranks=(RANK_OF[name],))
    assert ranked and not shapes.corpus_problems([name], 20_000, ranks=tuple({1, 2, 3} - {RANK_OF[name]}))


@pytest.mark.parametrize("network, layer, problem", [
    ("resnet50", "conv1", ConvProblem(batch=1, c_in=3, c_out=64, h=224, w=224, kh=7, kw=7, stride=2, padding=3)),
    ("inception_v3", "Mixed_6b.branch7x7_2.conv",
     ConvProblem(batch=1, c_in=128, c_out=128, h=17, w=17, kh=1, kw=7, padding=(0, 3))),
    ("mobilenet_v2", "features.2.conv.1.0",
     ConvProblem(batch=1, c_in=96, c_out=96, h=112, w=112, kh=3, kw=3, stride=2, padding=1, groups=96)),
    ("deeplab_v3", "backbone.layer3.1.conv2",
     ConvProblem(batch=1, c_in=256, c_out=256, h=65, w=65, kh=3, kw=3, padding=2, dilation=2)),
    ("regressions", "xla-cpu.backward-data.h",
     ConvProblem(batch=1, c_in=2, c_out=3, h=6, w=3, kh=2, kw=5, stride=(2, 1), padding=1)),
    ("regressions", "pytorch-23042.depthwise1d",
     ConvProblem(batch=1, c_in=2, c_out=2, h=1, w=8024, kh=1, kw=25, stride=(1, 2), groups=2)),
])
def test_layers_read_as_written(network: str, layer: str, problem: ConvProblem) -> None:
    found = next(x for x in shapes.load(network).layers if x.name == layer)
    assert found.problem(dtype="float64") == problem
    p = found.problem(batch=2, dtype="float16")
    assert (p.batch, p.dtype, p.label) == (2, "float16", f"{network}:{layer}") and found.label == p.label


CORPUS_ERRORS = [
    ("conv1 ic3oc8ih8kh3", "<string>: a shape corpus must name its sources ('# source: ...' lines)"),
    ("# source: me\n", "<string>: no layers"),
    ("# source: me\nconv1 ic3oc8ih8kh3\nconv1 ic3oc8ih9kh3", "<string>: duplicate layer names ['conv1']"),
    ("# source: me\nconv1", "<string>:2: layer 'conv1' has no problem descriptor"),
    ("# source: me\nconv1 ic3oc8ih8kh3 q=1",
     "<string>:2: 'q=1' after the descriptor of layer 'conv1': a layer line is '<name> <descriptor> [count=N] "
     "[# comment]'"),
    ("# source: me\nconv1 ic3oc8ih8kh3 count=2 q=1",
     "<string>:2: 'q=1' after the descriptor of layer 'conv1': a layer line is '<name> <descriptor> [count=N] "
     "[# comment]'"),
    ("# source: me\nconv1 ic3oc8ih8kh3 count=two",
     "<string>:2: 'count=two' after the descriptor of layer 'conv1': a layer line is '<name> <descriptor> [count=N] "
     "[# comment]'"),
    ("# source: me\nconv1 ic3oc8ih2kh3",
     "<string>:2: layer 'conv1' is not a valid convolution: dilation*(kh-1)+1=3 exceeds padded height h+2*padding=2 "
     "(h=2, kh=3, padding=0, dilation=1)"),
    ("# source: me\nconv1 ic3oc8ih8oh5kh3",
     "<string>:2: layer 'conv1' is not a valid convolution: problem descriptor: unknown token 'oh5' at position 9\n"
     "  ic3oc8ih8oh5kh3\n           ^\nexpected "),
    ("# source: me\nconv1 ic=3 oc=8 in=8 k=3",
     "<string>:2: layer 'conv1' is not a valid convolution: problem descriptor: key 'ic' at position 0 needs an "
     "integer: ic<n>"),
    ("# source: me\nconv1 mb2ic3oc8ih8kh3",
     "<string>:2: layer 'conv1' gives a batch (mb) in 'mb2ic3oc8ih8kh3'; the corpus tier chooses the batch and the "
     "dtype and labels its problems network:layer"),
    ("# source: me\nconv1 ic3oc8ih8kh3_float32", "<string>:2: layer 'conv1' gives a dtype in 'ic3oc8ih8kh3_float32'"),
    ('# source: me\nconv1 ic3oc8ih8kh3n"x"',
     "<string>:2: layer 'conv1' gives a label (the layer's name is the first column) in 'ic3oc8ih8kh3n\"x\"'"),
    ("# source: me\nconv1 ic3oc8ih8kh3ph1eh0",
     "<string>:2: layer 'conv1' has asymmetric padding (eh/ew); the corpus reduction keeps symmetric zero padding "
     "only"),
    ("# source: me\nconv1 ic3oc8ih8kh3ph1_reflect",
     "<string>:2: layer 'conv1' has reflect padding; the corpus reduction keeps symmetric zero padding only"),
]


@pytest.mark.parametrize("text, message", CORPUS_ERRORS, ids=[
    "no sources", "no layers", "duplicate names", "no descriptor", "an unknown field", "a field after the count",
    "a bad count", "invalid geometry", "an unknown key", "the old key=value format", "a batch", "a dtype", "a label",
    "asymmetric padding", "a padding mode"])
def test_corpus_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ConformanceError, match=f"^{re.escape(message)}"):
        shapes.parse(text, "x")


def test_a_corpus_line_takes_comments_and_spacing() -> None:
    corpus = shapes.parse("# network: n\n# source: me\n\n  conv1\tic3oc8ih8kh3_bias   count=4  # a comment\n", "x")
    (layer,) = corpus.layers
    assert (corpus.title, layer.name, layer.count, layer.where, layer.label) == ("n", "conv1", 4, "<string>:4",
                                                                                 "x:conv1")
    assert layer.problem() == ConvProblem(batch=1, c_in=3, c_out=8, h=8, w=8, kh=3, kw=3, bias=True,
                                          dtype="float32")
