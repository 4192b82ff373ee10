"""The shape corpus: the convolution layers of well-known networks, as data, for the corpus tier.

One file per network in ``conformance/data/shapes/<name>.txt`` (benchdnn's ``shapes_*`` batch files are the model).
A file opens with ``#`` comment lines, among them ``# network: <title>`` and one or more ``# source: <paper, module
path>`` lines naming where the layers come from; then one layer a line, its name (the torchvision module path) and
``key=value`` fields, with an optional trailing ``# comment``::

    conv1                  ic=3    oc=64    in=224  k=7  s=2  p=3
    Mixed_6b.branch7x7_2   ic=128  oc=128   in=17   k=1x7  p=0x3       count=2

``ic``/``oc`` are the input/output channels, ``in`` the input size, ``k`` the kernel, ``s`` the stride, ``p`` the
padding, ``d`` the dilation, ``g`` the groups (a pair is ``HxW``, one number means both axes; defaults ``s=1 p=0
d=1 g=1``), ``b=1`` a layer with a bias, ``count`` how many layers of the network share the shape (information only).

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

from .errors import ConformanceError
from .problem import ConvProblem

SHAPES_DIR = Path(__file__).parent / "data" / "shapes"
Pair = tuple[int, int]
_KEYS = {"ic", "oc", "in", "k", "s", "p", "d", "g", "b", "count"}
#: the batch a reduced layer starts from (it drops to 1 before anything else reaches its floor)
CORPUS_BATCH = 2


@dataclass(frozen=True)
class Layer:
    """One convolution layer of a network, full size."""

    network: str
    name: str
    c_in: int
    c_out: int
    h: int
    w: int
    kh: int
    kw: int
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    bias: bool = False
    count: int = 1
    where: str = ""  #: file:line

    @property
    def label(self) -> str:
        """``network:layer``, the label the corpus tier gives its problems (the report names failures by it)."""
        return f"{self.network}:{self.name}"

    def problem(self, *, batch: int = 1, dtype: str = "float32") -> ConvProblem:
        """The layer at full size."""
        return ConvProblem(batch=batch, c_in=self.c_in, c_out=self.c_out, h=self.h, w=self.w, kh=self.kh, kw=self.kw,
                           stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                           bias=self.bias, dtype=dtype, label=self.label)


@dataclass(frozen=True)
class Corpus:
    name: str                      #: the file's stem: what ``--conv-shapes`` selects
    title: str                     #: the ``# network:`` line
    sources: tuple[str, ...]       #: the ``# source:`` lines
    layers: tuple[Layer, ...]
    path: Path = field(default=SHAPES_DIR, compare=False)


#: the order the corpora run in (the first layer with a geometry names it): networks before the ones built on them
ORDER = ("resnet50", "mobilenet_v2", "inception_v3", "efficientnet_b0", "alexnet", "deeplab_v3", "regressions")


def names() -> tuple[str, ...]:
    """Every corpus shipped with the suite, in ``ORDER`` (others after, by name)."""
    found = sorted(p.stem for p in SHAPES_DIR.glob("*.txt"))
    return tuple(n for n in ORDER if n in found) + tuple(n for n in found if n not in ORDER)


def _pair(key: str, text: str, where: str) -> Pair:
    parts = text.lower().split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise ConformanceError(f"{where}: {key}={text!r} must be an integer or HxW") from None
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise ConformanceError(f"{where}: {key}={text!r} must be an integer or HxW")


def _int(key: str, text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConformanceError(f"{where}: {key}={text!r} must be an integer") from None


def parse(text: str, name: str, where: str = "<string>") -> Corpus:
    """A corpus from its file's text; raises ``ConformanceError`` naming the line of anything malformed."""
    title, sources, layers = "", [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        loc = f"{where}:{lineno}"
        line = raw.strip()
        if line.startswith("#"):
            m = re.match(r"#\s*(network|source):\s*(.+)", line)
            if m and m.group(1) == "network":
                title = m.group(2).strip()
            elif m:
                sources.append(m.group(2).strip())
            continue
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        layer_name, *fields = line.split()
        kv: dict[str, str] = {}
        for f in fields:
            key, sep, value = f.partition("=")
            if not sep or key not in _KEYS:
                raise ConformanceError(f"{loc}: {f!r} is not key=value with a key among {', '.join(sorted(_KEYS))}")
            kv[key] = value
        missing = [k for k in ("ic", "oc", "in", "k") if k not in kv]
        if missing:
            raise ConformanceError(f"{loc}: layer {layer_name!r} lacks {', '.join(missing)}")
        h, w = _pair("in", kv["in"], loc)
        kh, kw = _pair("k", kv["k"], loc)
        layer = Layer(network=name, name=layer_name, c_in=_int("ic", kv["ic"], loc), c_out=_int("oc", kv["oc"], loc),
                      h=h, w=w, kh=kh, kw=kw, stride=_pair("s", kv.get("s", "1"), loc),
                      padding=_pair("p", kv.get("p", "0"), loc), dilation=_pair("d", kv.get("d", "1"), loc),
                      groups=_int("g", kv.get("g", "1"), loc), bias=kv.get("b", "0") == "1",
                      count=_int("count", kv.get("count", "1"), loc), where=loc)
        try:
            layer.problem()
        except Exception as exc:
            raise ConformanceError(f"{loc}: layer {layer_name!r} is not a valid convolution: {exc}") from None
        layers.append(layer)
    if not sources:
        raise ConformanceError(f"{where}: a shape corpus must name its sources ('# source: ...' lines)")
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
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    out_h, r_h = _axis(layer.h, layer.kh, sh, ph, dh)
    out_w, r_w = _axis(layer.w, layer.kw, sw, pw, dw)
    g = layer.groups
    cg, og = layer.c_in // g, layer.c_out // g
    depthwise = g > 1 and cg == 1
    # dims: name -> [value, floor, original]
    dims: dict[str, list[int]] = {
        "batch": [batch, 1, batch],
        "out_h": [out_h, _out_floor(layer.h, layer.kh, sh, ph, dh, level), out_h],
        "out_w": [out_w, _out_floor(layer.w, layer.kw, sw, pw, dw, level), out_w],
    }
    if g > 1:  # grouped: keep it grouped (depthwise stays depthwise, with its multiplier)
        dims["groups"] = [g, max(2, _channel_floor(g, channel_level)), g]
    if not depthwise:
        dims["cg"] = [cg, _channel_floor(cg, channel_level), cg]
        dims["og"] = [og, _channel_floor(og, channel_level), og]

    def macs() -> int:
        v = {k: d[0] for k, d in dims.items()}
        return (v["batch"] * v.get("groups", g) * v.get("og", og) * v["out_h"] * v["out_w"] * v.get("cg", cg)
                * layer.kh * layer.kw)

    while macs() > max_macs:
        name, d = max(((k, d) for k, d in dims.items() if d[0] > d[1]), key=lambda kd: kd[1][0] / kd[1][1],
                      default=(None, None))
        if name is None or d is None:
            break
        if name in ("out_h", "out_w", "batch"):
            d[0] = max(d[1], math.ceil(d[0] / 2))
        else:
            d[0] = _channel_down(d[2], d[0], d[1], channel_level)
    v = {k: d[0] for k, d in dims.items()}
    g2 = v.get("groups", g)
    return ConvProblem(batch=v["batch"], c_in=g2 * v.get("cg", cg), c_out=g2 * v.get("og", og),
                       h=_input_for(v["out_h"], layer.kh, sh, ph, dh, r_h),
                       w=_input_for(v["out_w"], layer.kw, sw, pw, dw, r_w),
                       kh=layer.kh, kw=layer.kw, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                       groups=g2, bias=layer.bias, dtype=dtype, label=layer.label)


def geometry_class(p: ConvProblem) -> tuple:
    """What a reduced layer shares with others of its kind: per axis the kernel, stride, padding, dilation, remainder,
    whether the kernel fits inside the unpadded input and whether there is a single output; dense, grouped or
    depthwise; whether the channels per group are multiples of 8; the bias. Not the channel counts themselves."""
    def axis(n: int, k: int, s: int, pad: int, d: int, out: int) -> tuple:
        span = d * (k - 1) + 1
        return (k, s, pad, d, (n + 2 * pad - span) % s, span <= n, out == 1)

    kind = "depthwise" if p.groups == p.c_in > 1 else "grouped" if p.groups > 1 else "dense"
    return (axis(p.h, p.kh, p.stride[0], p.padding[0], p.dilation[0], p.out_h),
            axis(p.w, p.kw, p.stride[1], p.padding[1], p.dilation[1], p.out_w), p.pad_end, kind,
            p.c_in // p.groups % 8 == 0, p.c_out // p.groups % 8 == 0, p.bias)


def corpus_problems(selected: Sequence[str] | None, max_macs: int | None, *, dtype: str = "float32",
                    distinct: str = "problem") -> list[ConvProblem]:
    """The reduced problems of the selected corpora, in order, the first layer with a given problem (``distinct=
    "problem"``) or geometry class (``"geometry"``, see ``geometry_class``: the cheaper set) naming it."""
    key = {"problem": lambda p: p, "geometry": geometry_class}[distinct]
    seen: set = set()
    out = []
    for corpus in load_all(selected):
        for layer in corpus.layers:
            p = reduce(layer, max_macs, dtype=dtype)
            if key(p) in seen:
                continue
            seen.add(key(p))
            out.append(p)
    return out
