"""The shape corpus: the convolution layers of well-known networks, as data, for the corpus tier.

One file per network in ``conformance/data/shapes/<name>.txt`` (benchdnn's ``shapes_*`` batch files are the model).
A file opens with ``#`` comment lines, among them ``# network: <title>`` and one or more ``# source: <paper, module
path>`` lines naming where the layers come from; then one layer a line: its name (the torchvision module path), its
problem descriptor without batch, dtype or label (``ConvProblem.parse``'s grammar, benchdnn's keys), an optional
``count=N`` and an optional trailing ``# comment``::

    conv1                       ic3oc64ih224kh7sh2ph3
    Mixed_6b.branch7x7_2.conv   ic128oc128ih17kh1kw7ph0pw3   count=2

``ic``/``oc`` are the input/output channels, ``ih``/``iw`` the input size, ``kh``/``kw`` the kernel, ``sh``/``sw``
the stride, ``ph``/``pw`` the padding, ``dh``/``dw`` the dilation, ``g`` the groups, ``_bias`` a layer with a bias; a
missing ``w`` key is its ``h`` key (``ih224`` is 224x224), and the defaults are ``sh1 ph0 dh1 g1``. ``count`` is how
many layers of the network share the shape (information only). The corpus tier chooses the batch and the dtype, and
labels each problem ``network:layer``; a layer has symmetric zero padding (what ``reduce`` keeps).

``reduce`` makes a layer affordable under a budget of multiply-adds without changing its character: the kernel,
stride, padding and dilation stay as they are, and along each axis the reduced input keeps the layer's *remainder*
``(in + 2p - d(k-1) - 1) mod s`` (so the last window ends the same distance from the far padding), whether the
kernel fits inside the unpadded input, and (while the budget allows) an output whose window is clear of the padding.
Channel counts shrink through values congruent to the original modulo 8 (64 -> 32 -> 16 -> 8, 21 -> 13 -> 5), so a
count that is not a multiple of a block stays so; depthwise layers stay depthwise with their channel multiplier.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from conformance.errors import ConformanceError, InvalidProblem
from conformance.model.problem import ConvProblem

SHAPES_DIR = Path(__file__).parent.parent / "data" / "shapes"
#: the batch a reduced layer starts from (it drops to 1 before anything else reaches its floor)
CORPUS_BATCH = 2


@dataclass(frozen=True)
class Layer:
    """One convolution layer of a network, full size: its geometry is a ``ConvProblem`` (batch 1, labelled
    ``network:layer``; its dtype is not the layer's, ``problem`` sets one)."""

    network: str
    name: str
    geometry: ConvProblem
    count: int = 1
    where: str = ""  #: file:line

    @property
    def label(self) -> str:
        """``network:layer``, the label the corpus tier gives its problems (the report names failures by it)."""
        return f"{self.network}:{self.name}"

    def problem(self, *, batch: int = 1, dtype: str = "float32") -> ConvProblem:
        """The layer at full size."""
        return self.geometry.replace(batch=batch, dtype=dtype, label=self.label)


@dataclass(frozen=True)
class Corpus:
    name: str                      #: the file's stem: what ``--conv-shapes`` selects
    title: str                     #: the ``# network:`` line
    sources: tuple[str, ...]       #: the ``# source:`` lines
    layers: tuple[Layer, ...]
    path: Path = field(default=SHAPES_DIR, compare=False)


#: the order the corpora run in (the first layer with a geometry names it): networks before the ones built on them
ORDER = ("resnet50", "mobilenet_v2", "inception_v3", "efficientnet_b0", "alexnet", "deeplab_v3", "regressions",
         "wav2vec2", "wavenet", "conformer", "whisper", "c3d", "i3d", "r2plus1d", "slowfast", "unet3d", "vnet",
         "dcgan", "unet_up", "fcn8s", "hifigan", "unet3d_up")


def names() -> tuple[str, ...]:
    """Every corpus shipped with the suite, in ``ORDER`` (others after, by name)."""
    found = sorted(p.stem for p in SHAPES_DIR.glob("*.txt"))
    return tuple(n for n in ORDER if n in found) + tuple(n for n in found if n not in ORDER)


#: what a corpus line's descriptor leaves to the corpus tier, and how to spot it among the descriptor's tokens
_NOT_IN_A_LAYER = (("a batch (mb)", re.compile(r"mb[0-9]")), ("a dtype", re.compile(r"float[0-9]")),
                   ("a label (the layer's name is the first column)", re.compile(r'n"')))


def _layer(network: str, name: str, line: str, loc: str) -> Layer:
    """One layer from its line's fields after the name: a descriptor and an optional ``count=N``."""
    fields = line.split()
    if not fields:
        raise ConformanceError(f"{loc}: layer {name!r} has no problem descriptor")
    descriptor, rest = fields[0], fields[1:]
    for what, pattern in _NOT_IN_A_LAYER:
        if pattern.search(descriptor):
            raise ConformanceError(f"{loc}: layer {name!r} gives {what} in {descriptor!r}; the corpus tier chooses "
                                   "the batch and the dtype and labels its problems network:layer")
    try:
        geometry = ConvProblem.parse(descriptor).replace(label=f"{network}:{name}")
    except InvalidProblem as exc:
        raise ConformanceError(f"{loc}: layer {name!r} is not a valid convolution: {exc}") from None
    if geometry.asymmetric or geometry.padding_mode != "zeros":
        what = "asymmetric padding (eh/ew)" if geometry.asymmetric else f"{geometry.padding_mode} padding"
        raise ConformanceError(f"{loc}: layer {name!r} has {what}; the corpus reduction keeps symmetric zero padding "
                               "only")
    count = 1
    if rest:
        m = re.fullmatch(r"count=([0-9]+)", rest[0])
        if len(rest) > 1 or m is None:
            raise ConformanceError(f"{loc}: {(rest[0] if m is None else rest[1])!r} after the descriptor of layer "
                                   f"{name!r}: a layer line is '<name> <descriptor> [count=N] [# comment]'")
        count = int(m.group(1))
    return Layer(network=network, name=name, geometry=geometry, count=count, where=loc)


def parse(text: str, name: str, where: str = "<string>") -> Corpus:
    """A corpus from its file's text; raises ``ConformanceError`` naming the line of anything malformed."""
    title, sources, lines = "", [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            m = re.match(r"#\s*(network|source):\s*(.+)", line)
            if m and m.group(1) == "network":
                title = m.group(2).strip()
            elif m:
                sources.append(m.group(2).strip())
            continue
        line = line.split("#", 1)[0].strip()
        if line:
            lines.append((f"{where}:{lineno}", line))
    if not sources:
        raise ConformanceError(f"{where}: a shape corpus must name its sources ('# source: ...' lines)")
    layers = []
    for loc, line in lines:
        layer_name, *rest = line.split(None, 1)
        layers.append(_layer(name, layer_name, " ".join(rest), loc))
    if not layers:
        raise ConformanceError(f"{where}: no layers")
    dup = sorted({lay.name for lay in layers if sum(x.name == lay.name for x in layers) > 1})
    if dup:
        raise ConformanceError(f"{where}: duplicate layer names {dup}")
    return Corpus(name, title or name, tuple(sources), tuple(layers))


def load(name: str) -> Corpus:
    path = SHAPES_DIR / f"{name}.txt"
    if not path.is_file():
        raise ConformanceError(f"no shape corpus {name!r}; the corpora are {', '.join(names())}")
    corpus = parse(path.read_text(encoding="utf-8"), name, str(path))
    return Corpus(corpus.name, corpus.title, corpus.sources, corpus.layers, path)


def load_all(selected: Iterable[str] | None = None) -> list[Corpus]:
    """The selected corpora (``None`` or empty: every one), in the order given."""
    chosen = list(selected or ()) or list(names())
    return [load(n) for n in chosen]


# -- reduction under a budget ------------------------------------------------------------------------------------

def _axis(n: int, k: int, s: int, p: int, d: int) -> tuple[int, int]:
    """(output count, remainder) along one axis."""
    span = d * (k - 1) + 1
    return (n + 2 * p - span) // s + 1, (n + 2 * p - span) % s


def _input_for(out: int, k: int, s: int, p: int, d: int, r: int) -> int:
    """The input size with ``out`` outputs and remainder ``r``."""
    return (out - 1) * s + d * (k - 1) + 1 + r - 2 * p


def _out_floor(n: int, k: int, s: int, p: int, d: int, level: int) -> int:
    """The fewest outputs a reduction may keep along an axis (never fewer than 2 where the layer has 2, and an input
    of at least one row). Level 0 also keeps an output whose window lies inside the unpadded input (where the layer has
    one); levels 0 and 1 keep the kernel inside the unpadded input where the layer's kernel fits inside its input."""
    out, r = _axis(n, k, s, p, d)
    span = d * (k - 1) + 1
    lo = min(out, 2)
    while _input_for(lo, k, s, p, d, r) < 1:
        lo += 1
    if span <= n and level <= 1:  # the kernel fits inside the unpadded input: keep it so
        lo = max(lo, math.ceil((2 * p - r) / s) + 1)
    if level == 0:
        i0 = math.ceil(p / s)  # the first output whose window starts inside the input
        interior = math.ceil((i0 * s + p - r) / s) + 1
        if interior <= out:
            lo = max(lo, interior)
    return min(out, lo)


def _channel_floor(c: int, level: int) -> int:
    if level >= 1 or c <= 8:
        return 1 if level >= 1 else c
    return c % 8 + 8 if c % 8 else 8


def _channel_down(c: int, value: int, floor: int, level: int) -> int:
    """The largest allowed count <= ceil(value / 2) (congruent to c modulo 8 at level 0), at least ``floor``."""
    half = math.ceil(value / 2)
    if level == 0 and c > 8:
        v = half - ((half - c) % 8)
        return max(floor, v)
    return max(floor, half)


def reduce(layer: Layer, max_macs: int | None, *, dtype: str = "float32", batch: int = CORPUS_BATCH) -> ConvProblem:
    """The layer shrunk until one pass costs at most ``max_macs`` multiply-adds (``None``: full size, batch 1).

    Tries the strictest floors first (see ``_out_floor``, ``_channel_floor``) and relaxes them only when the budget
    cannot be met otherwise; if even the most relaxed reduction is above the budget, it is returned anyway (a
    backend's ``max_macs`` then reports it as unsupported, with the numbers).
    """
    full = layer.problem(batch=1, dtype=dtype)
    if max_macs is None or full.macs <= max_macs:
        return full
    best = None
    # relax the spatial floors, then the channel floors (congruence modulo 8), and only then let the kernel outgrow
    # the unpadded input
    for level, channel_level in ((0, 0), (1, 0), (1, 1), (2, 0), (2, 1)):
        p = _reduce_at(layer, max_macs, level, channel_level, dtype, batch)
        if p.macs <= max_macs:
            return p
        best = p if best is None or p.macs < best.macs else best
    assert best is not None
    return best


def _reduce_at(layer: Layer, max_macs: int, level: int, channel_level: int, dtype: str, batch: int) -> ConvProblem:
    geo = layer.geometry
    if geo.transposed:
        return _reduce_transposed(geo, max_macs, channel_level, dtype, batch)
    per_axis = list(zip(geo.in_sizes, geo.kernel, geo.stride, geo.padding, geo.dilation))
    outs = [_axis(n, k, s, pad, d) for n, k, s, pad, d in per_axis]  # (output count, remainder) per axis
    # one output count per spatial axis, [value, floor, original]
    spatial = [[out, _out_floor(n, k, s, pad, d, level), out] for (out, _), (n, k, s, pad, d) in zip(outs, per_axis)]
    b, sizes, g2, cg2, og2 = _shrink(geo, spatial, batch, max_macs, channel_level)
    inputs = {a: _input_for(o, k, s, pad, d, r) for a, o, (_, r), (_, k, s, pad, d) in
              zip(geo.axes, sizes, outs, per_axis)}
    return geo.replace(batch=b, c_in=g2 * cg2, c_out=g2 * og2, groups=g2, dtype=dtype, **inputs)


def _shrink(geo: ConvProblem, spatial: list[list[int]], batch: int, max_macs: int,
            channel_level: int) -> tuple[int, list[int], int, int, int]:
    """Halve the largest of batch, the spatial counts (a convolution's outputs, a transposed one's inputs: each
    ``[value, floor, original]``) and the channels relative to its floor until one pass costs at most ``max_macs``
    (batch · channels · prod(spatial) · prod(kernel)); (batch, spatial values, groups, Cg, Og)."""
    g = geo.groups
    cg, og = geo.c_in // g, geo.c_out // g
    dims: dict[str, list[int]] = {"batch": [batch, 1, batch]} | {f"axis_{i}": v for i, v in enumerate(spatial)}
    if g > 1:  # grouped: keep it grouped (depthwise stays depthwise, with its multiplier)
        dims["groups"] = [g, max(2, _channel_floor(g, channel_level)), g]
    if not (g > 1 and cg == 1):
        dims["cg"] = [cg, _channel_floor(cg, channel_level), cg]
        dims["og"] = [og, _channel_floor(og, channel_level), og]

    def macs() -> int:
        v = {k: d[0] for k, d in dims.items()}
        return (v["batch"] * v.get("groups", g) * v.get("og", og) * math.prod(d[0] for d in spatial)
                * v.get("cg", cg) * math.prod(geo.kernel))

    while macs() > max_macs:
        name, d = max(((k, d) for k, d in dims.items() if d[0] > d[1]), key=lambda kd: kd[1][0] / kd[1][1],
                      default=(None, None))
        if name is None or d is None:
            break
        if name.startswith("axis_") or name == "batch":
            d[0] = max(d[1], math.ceil(d[0] / 2))
        else:
            d[0] = _channel_down(d[2], d[0], d[1], channel_level)
    return (dims["batch"][0], [d[0] for d in spatial], dims.get("groups", [g])[0], dims.get("cg", [cg])[0],
            dims.get("og", [og])[0])


def _transposed_in_floor(n: int, k: int, s: int, pad: int, d: int, op: int) -> int:
    """The fewest inputs a transposed layer keeps along an axis: 2 where it has 2 (neighbouring inputs' taps
    overlap or leave gaps as in the layer), and enough for one output element."""
    lo = min(n, 2)
    while (lo - 1) * s - 2 * pad + d * (k - 1) + op + 1 < 1:
        lo += 1
    return lo


def _reduce_transposed(geo: ConvProblem, max_macs: int, channel_level: int, dtype: str, batch: int) -> ConvProblem:
    """A transposed layer shrunk: its input sizes halve (keeping the kernel, stride, padding, dilation and output
    padding, so the taps overlap or leave gaps as in the layer), then its channels, as a convolution's."""
    spatial = [[n, _transposed_in_floor(n, k, s, pad, d, op), n] for n, k, s, pad, d, op in
               zip(geo.in_sizes, geo.kernel, geo.stride, geo.padding, geo.dilation, geo.output_padding)]
    b, sizes, g2, cg2, og2 = _shrink(geo, spatial, batch, max_macs, channel_level)
    return geo.replace(batch=b, c_in=g2 * cg2, c_out=g2 * og2, groups=g2, dtype=dtype, **dict(zip(geo.axes, sizes)))


def geometry_class(p: ConvProblem) -> tuple:
    """What a reduced layer shares with others of its kind: its rank; per axis the kernel, stride, padding, dilation,
    remainder, whether the kernel fits inside the unpadded input and whether there is a single output; dense, grouped
    or depthwise; whether the channels per group are multiples of 8; the bias. Not the channel counts themselves."""
    def axis(n: int, k: int, s: int, pad: int, d: int, out: int) -> tuple:
        span = d * (k - 1) + 1
        return (k, s, pad, d, (n + 2 * pad - span) % s, span <= n, out == 1)

    kind = "depthwise" if p.groups == p.c_in > 1 else "grouped" if p.groups > 1 else "dense"
    per_axis = zip(p.in_sizes, p.kernel, p.stride, p.padding, p.dilation, p.out_sizes)
    return (p.operation, p.output_padding, *(axis(*a) for a in per_axis), p.pad_end, kind,
            p.c_in // p.groups % 8 == 0, p.c_out // p.groups % 8 == 0, p.bias)


def corpus_problems(selected: Sequence[str] | None, max_macs: int | None, *, dtype: str = "float32",
                    distinct: str = "problem", ranks: Sequence[int] | None = None,
                    transposed: bool | None = None) -> list[ConvProblem]:
    """The reduced problems of the selected corpora (of ``ranks``: None, every rank), in order, the first layer with
    a given problem (``distinct="problem"``) or geometry class (``"geometry"``, see ``geometry_class``: the cheaper
    set) naming it."""
    key = {"problem": lambda p: p, "geometry": geometry_class}[distinct]
    seen: set = set()
    out = []
    for corpus in load_all(selected):
        for layer in corpus.layers:
            if ranks is not None and layer.geometry.rank not in ranks:
                continue
            if transposed is not None and layer.geometry.transposed != transposed:
                continue
            p = reduce(layer, max_macs, dtype=dtype)
            if key(p) in seen:
                continue
            seen.add(key(p))
            out.append(p)
    return out
