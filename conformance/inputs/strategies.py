"""Hypothesis strategies for convolution problems, valid by construction.

No ``filter`` or ``assume``: ``conv_problems`` draws a size class (``SIZE_CLASSES``), then groups, then channels as
multiples of it, then the kernel, dilation, stride and *output* size, and derives the input size from them::

    padded = (out - 1)*stride + dilation*(k - 1) + 1 + slack       slack in [0, stride - 1]
    begin, end in [0, (padded - 1) // 2]   (// 3 for reflect and circular, which need padding below the input size)
    in = padded - begin - end                                      end = begin unless asymmetric padding is declared

Each size is drawn with an upper bound taken from what is left of the work budget (multiply-adds), so every
problem fits the budget and every draw shrinks towards 1 (padding and slack towards 0): the minimal problem is
the 1×1 image with a 1×1 kernel, one channel, stride 1, no padding, groups 1, no bias, the first dtype.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from hypothesis import strategies as st

from conformance.backends.backend import Capabilities
from conformance.inputs.data import DATA_KINDS
from conformance.model.problem import AXIS_NAMES, RANKS, ConvProblem

#: the default work budget per example (multiply-adds of one pass): the strategies' ``max_macs=``
MAX_MACS = 200_000

seeds = st.integers(min_value=0, max_value=2**32 - 1)

#: the caps of each size class, each drawn for about half of the examples. ``small`` finds edge cases in a few
#: elements and is where shrinking ends. ``medium`` is a small real layer: channel counts past the 8- and 16-wide
#: blocks of vectorised kernels, rows wider than a vector register, accumulation lengths K = C_in/g·kh·kw in the
#: hundreds, where accumulation error grows and libraries switch algorithms (oneDNN's JIT kernels, cuDNN's
#: Winograd and FFT paths are not chosen for a 2-channel 5x5 image). The work budget still caps every problem.
SIZE_CLASSES: dict[str, dict[str, int]] = {
    "small": dict(batch=3, groups=3, channels_per_group=4, kernel=4, out=7),
    "medium": dict(batch=4, groups=4, channels_per_group=24, kernel=5, out=20),
}


def _declared(dtypes: Sequence[str], capabilities: Capabilities | None,
              max_macs: int) -> tuple[Capabilities, list[str], int]:
    """What a backend lets a strategy draw: its capabilities, the requested dtypes it declares (at least one), and
    the work budget capped by its ``max_macs``."""
    caps = capabilities or Capabilities(dtypes=tuple(dtypes), ranks=RANKS)  # (a drawn rank: see ``_ranks``)
    allowed = [d for d in dtypes if d in caps.dtypes]
    if not allowed:
        raise ValueError(f"dtypes={tuple(dtypes)}, but the capabilities declare only {caps.dtypes}")
    return caps, allowed, max_macs if caps.max_macs is None else min(max_macs, caps.max_macs)


def _ranks(ranks: Sequence[int] | None, caps: Capabilities) -> tuple[int, ...]:
    """The ranks a strategy draws: those asked for (default: conv2d where declared, else every declared rank) that
    the capabilities declare."""
    if ranks is None:
        return (2,) if 2 in caps.ranks else tuple(caps.ranks)
    bad = [r for r in ranks if r not in RANKS]
    if bad or not ranks:
        raise ValueError(f"ranks={tuple(ranks)}, but each must be one of {RANKS}")
    allowed = tuple(r for r in ranks if r in caps.ranks)
    if not allowed:
        raise ValueError(f"ranks={tuple(ranks)}, but the capabilities declare only ranks={caps.ranks}")
    return allowed


@st.composite
def conv_problems(
    draw: Any,
    *,
    dtypes: Sequence[str] = ("float64", "float32"),
    capabilities: Capabilities | None = None,
    bias: bool | None = None,
    max_macs: int = MAX_MACS,
    size_classes: Sequence[str] = tuple(SIZE_CLASSES),
    max_batch: int | None = None,
    max_groups: int | None = None,
    max_channels_per_group: int | None = None,
    max_kernel: int | None = None,
    max_stride: int = 3,
    max_dilation: int = 3,
    max_padding: int = 3,
    max_out: int | None = None,
    padding_modes: Sequence[str] | None = None,
    ranks: Sequence[int] | None = None,
    transposed: bool = False,
) -> ConvProblem:
    """A valid problem of one of ``ranks`` (1: conv1d, 2: conv2d, 3: conv3d; default 2) within ``max_macs``;
    ``transposed``: a transposed convolution, whose *input* sizes are drawn where a convolution's output sizes are
    (the work is N·C_in·prod(in)·C_out/G·prod(kernel)), then padding that leaves at least one output element and an
    output padding below the stride or the dilation (torch's rule), zero padding only."""
    caps, allowed, max_macs = _declared(dtypes, capabilities, max_macs)
    rank = draw(st.sampled_from(_ranks(ranks, caps)))  # (one rank: no choice is drawn)
    unknown = [c for c in size_classes if c not in SIZE_CLASSES]
    if unknown or not size_classes:
        raise ValueError(f"size_classes={tuple(size_classes)}, but they must be among {tuple(SIZE_CLASSES)}")
    size = SIZE_CLASSES[draw(st.sampled_from(tuple(size_classes)))]  # shrinks to the first: small
    max_batch = size["batch"] if max_batch is None else max_batch
    max_groups = size["groups"] if max_groups is None else max_groups
    max_channels_per_group = size["channels_per_group"] if max_channels_per_group is None else max_channels_per_group
    max_kernel = size["kernel"] if max_kernel is None else max_kernel
    max_out = size["out"] if max_out is None else max_out
    dtype = draw(st.sampled_from(allowed))
    # every size is capped by what the budget leaves once everything drawn so far takes its minimum
    groups = draw(st.integers(1, max(1, min(max_groups if caps.groups else 1, max_macs))))
    cin_g = draw(st.integers(1, max(1, min(max_channels_per_group, max_macs // groups))))
    cout_g = draw(st.integers(1, max(1, min(max_channels_per_group, max_macs // (groups * cin_g)))))
    left = max_macs // (groups * cout_g * cin_g)  # taps x outputs x batch still affordable
    kernel: list[int] = []
    for _ in range(rank):
        kernel.append(draw(st.integers(1, max(1, min(max_kernel, left // math.prod(kernel) if left else 0)))))
    dil_max = max_dilation if caps.dilation else 1
    dilation = [draw(st.integers(1, dil_max if k > 1 else 1)) for k in kernel]
    stride = [draw(st.integers(1, max_stride)) for _ in range(rank)]
    outputs_left = max(1, left // math.prod(kernel))
    out: list[int] = []
    for _ in range(rank):
        out.append(draw(st.integers(1, max(1, min(max_out, outputs_left // math.prod(out))))))
    batch = draw(st.integers(1, max(1, min(max_batch, outputs_left // math.prod(out)))))
    if transposed:
        return _transposed(draw, caps, rank, groups, cin_g, cout_g, kernel, dilation, stride, out, batch, dtype,
                           max_padding, bias)
    modes = [m for m in (padding_modes or caps.padding_modes) if m in caps.padding_modes] or ["zeros"]
    mode = draw(st.sampled_from(sorted(modes, key=lambda m: m != "zeros")))  # shrinks to zeros
    asym = caps.asymmetric_padding and draw(st.booleans())
    sizes, begins, ends = [], [], []
    for o, k, d, s in zip(out, kernel, dilation, stride):
        padded = (o - 1) * s + d * (k - 1) + 1 + draw(st.integers(0, s - 1))
        # zeros: each side up to (padded-1)//2 keeps >= 1 input element; reflect/circular also need every pad below
        # (at most) the input size, which (padded-1)//3 per side guarantees: in >= padded - 2*(padded-1)//3 > pad
        cap = min(max_padding, (padded - 1) // (2 if mode == "zeros" else 3))
        begin = draw(st.integers(0, cap))
        end = draw(st.integers(0, cap)) if asym else begin
        sizes.append(padded - begin - end)
        begins.append(begin)
        ends.append(end)
    has_bias = draw(st.booleans()) if bias is None else bias
    axes = AXIS_NAMES[rank]
    spatial: dict[str, Any] = dict(zip(axes, sizes)) | {"k" + a: k for a, k in zip(axes, kernel)}
    return ConvProblem(batch=batch, c_in=groups * cin_g, c_out=groups * cout_g, **spatial,
                       stride=tuple(stride), padding=tuple(begins), dilation=tuple(dilation),
                       groups=groups, bias=has_bias, dtype=dtype, padding_mode=mode,
                       padding_end=tuple(ends) if asym else None)


def _transposed(draw: Any, caps: Capabilities, rank: int, groups: int, cin_g: int, cout_g: int, kernel: list[int],
                dilation: list[int], stride: list[int], sizes: list[int], batch: int, dtype: str, max_padding: int,
                bias: bool | None) -> ConvProblem:
    """The rest of a transposed problem: the drawn sizes are its input; per axis the padding on each side at most
    half of the uncropped output (so at least one element stays), and an output padding below max(stride,
    dilation); everything shrinks towards 0."""
    asym = caps.asymmetric_padding and draw(st.booleans())
    begins, ends, extra = [], [], []
    for n, k, d, s in zip(sizes, kernel, dilation, stride):
        full = (n - 1) * s + d * (k - 1) + 1
        cap = min(max_padding, (full - 1) // 2)
        begin = draw(st.integers(0, cap))
        begins.append(begin)
        ends.append(draw(st.integers(0, cap)) if asym else begin)
        extra.append(draw(st.integers(0, max(s, d) - 1)))
    has_bias = draw(st.booleans()) if bias is None else bias
    axes = AXIS_NAMES[rank]
    spatial: dict[str, Any] = dict(zip(axes, sizes)) | {"k" + a: k for a, k in zip(axes, kernel)}
    return ConvProblem(batch=batch, c_in=groups * cin_g, c_out=groups * cout_g, **spatial, stride=tuple(stride),
                       padding=tuple(begins), dilation=tuple(dilation), groups=groups, bias=has_bias, dtype=dtype,
                       padding_end=tuple(ends) if asym else None, transposed=True, output_padding=tuple(extra))


def data_kinds(kinds: Sequence[str] = ("normal", "uniform", "wide")) -> st.SearchStrategy[str]:
    unknown = [k for k in kinds if k not in DATA_KINDS]
    if unknown:
        raise ValueError(f"data kinds {unknown}, but they must be among {DATA_KINDS}")
    return st.sampled_from(tuple(kinds))


# -- the boundary tier: sizes next to the block and tile widths of blocked kernels ----------------------------------

#: 8, 16, 24, 32, 64, 128, 256 and their neighbours: where a blocked kernel's tail starts, or a group is narrower
#: than a block (pytorch#19912, #21597, #50042, #54136)
NEAR_POWERS_OF_TWO = tuple(v for b in (8, 16, 24, 32, 64, 128, 256) for v in (b - 1, b, b + 1))
#: what one boundary problem puts next to a block boundary. ``crash``: XLA:CPU's backward-data abort (issue #8, item
#: 6): kernel 2, stride 2, padding 1 on one axis and a kernel longer than the output on another. ``height`` needs two
#: spatial axes, ``depth`` three (the block tails of a conv3d's depth axis)
BOUNDARY_FOCI = ("channels", "groups", "depthwise", "width", "height", "crash", "depth")
#: the spatial axis (from the innermost) each axis focus puts at a boundary
_FOCUS_AXIS = {"width": 1, "height": 2, "depth": 3}


def _near(draw: Any, cap: int) -> int:
    """One of ``NEAR_POWERS_OF_TWO`` up to ``cap`` (shrinking towards 7); below 7, any size up to ``cap``."""
    values = [v for v in NEAR_POWERS_OF_TWO if v <= cap]
    if not values:
        return draw(st.integers(1, max(1, cap)))
    return draw(st.sampled_from(values))


def _small(draw: Any, cap: int, top: int = 4) -> int:
    return draw(st.integers(1, max(1, min(top, cap))))


@st.composite
def boundary_problems(
    draw: Any,
    *,
    dtypes: Sequence[str] = ("float64", "float32"),
    capabilities: Capabilities | None = None,
    bias: bool | None = None,
    max_macs: int = MAX_MACS,
    max_batch: int = 2,
    ranks: Sequence[int] | None = None,
    transposed: bool = False,
) -> ConvProblem:
    """Problems with channel counts, group sizes, channel multipliers, widths, heights or depths next to a block
    boundary.

    Each problem has one *focus* (``BOUNDARY_FOCI``): channels (C_in and/or C_out from ``NEAR_POWERS_OF_TWO``),
    groups (many groups narrower than a block, or a few groups whose width sits at a boundary), depthwise (groups =
    C_in at a boundary, channel multiplier 1 to 4), width, height or depth (the output or the input size of that axis
    at a boundary; height in 2-D and 3-D, depth in 3-D), or crash (kernel 2, stride 2, padding 1 on one axis, a kernel
    of 5 to 9 longer than the output on another; 2-D and 3-D). The other sizes stay small, output sizes sitting at a
    boundary too where the budget leaves room; like ``conv_problems`` every size is capped by what the work budget
    leaves, so every problem is valid and within ``max_macs`` by construction (no filtering).
    """
    caps, allowed, max_macs = _declared(dtypes, capabilities, max_macs)
    rank = draw(st.sampled_from(_ranks(ranks, caps)))
    if transposed:
        return _transposed_boundary(draw, caps, rank, allowed, max_macs, max_batch, bias)
    foci = [f for f in BOUNDARY_FOCI if (caps.groups or f not in ("groups", "depthwise"))
            and _FOCUS_AXIS.get(f, 0) <= rank and (f != "crash" or rank > 1)]
    focus = draw(st.sampled_from(foci))
    dtype = draw(st.sampled_from(allowed))
    budget = max(1, max_macs)
    min_taps = 10 if focus == "crash" else 1  # the crash shape has at least a 2x5 kernel

    # -- channels ------------------------------------------------------------------------------------------------
    room = max(1, budget // min_taps)
    if focus == "depthwise":
        groups, cin_g = _near(draw, room), 1
        cout_g = _small(draw, room // groups)  # the channel multiplier
    elif focus == "groups":
        if draw(st.booleans()):  # many groups, each narrower than a block
            groups = _near(draw, room // 2)
            cin_g = draw(st.integers(2, max(2, min(7, room // groups)))) if room // groups >= 2 else 1
        else:  # a few groups, each at a block boundary
            groups = draw(st.integers(2, max(2, min(4, room))))
            cin_g = _near(draw, room // groups)
        cout_g = _small(draw, room // (groups * cin_g))
    elif focus == "channels":
        groups = 1
        if draw(st.booleans()):
            cin_g = _near(draw, room)
            cout_g = _near(draw, room // cin_g) if draw(st.booleans()) else _small(draw, room // cin_g)
        else:
            cin_g = _small(draw, room)
            cout_g = _near(draw, room // cin_g)
    else:
        groups = 1
        cin_g = _small(draw, room)
        cout_g = _small(draw, room // cin_g)
    per_tap = groups * cin_g * cout_g
    left = max(1, budget // per_tap)  # kernel taps x outputs x batch still affordable

    # -- kernels, strides, dilations (per axis, outermost first) -------------------------------------------------
    crash_axis = draw(st.sampled_from(tuple(range(rank)))) if focus == "crash" else None
    long_axis = None if crash_axis is None else (1 - crash_axis if crash_axis < 2 else 0)  # the kernel > the output
    boundary_axis = rank - _FOCUS_AXIS[focus] if focus in _FOCUS_AXIS else None
    k, s, d = [1] * rank, [1] * rank, [1] * rank
    for a in range(rank):
        drawn = math.prod(k[:a]) * (2 if crash_axis is not None and crash_axis > a else 1)  # taps already spent
        if a == crash_axis:
            k[a], s[a] = 2, 2
        elif a == long_axis:
            k[a], s[a] = draw(st.integers(5, max(5, min(9, left // 2)))), draw(st.integers(1, 2))  # (2: the crash's)
        else:
            k[a] = draw(st.integers(1, max(1, min(3, left // drawn))))
            d[a] = draw(st.integers(1, 2 if (k[a] > 1 and caps.dilation) else 1))
            s[a] = draw(st.integers(1, 3))
    outputs_left = max(1, left // math.prod(k))

    # -- output (or input) sizes and padding, per axis -----------------------------------------------------------
    sizes, pads, outs = [0] * rank, [0] * rank, [1] * rank
    for a in range(rank):
        span = d[a] * (k[a] - 1) + 1
        cap_a = max(1, outputs_left // math.prod(outs[:a]))
        if a == crash_axis:
            out = draw(st.integers(1, max(1, min(4, cap_a))))
            slack = 1 if out == 1 else draw(st.integers(0, 1))  # input = 2*(out - 1) + slack >= 1
            sizes[a], pads[a] = (out - 1) * 2 + 2 + slack - 2, 1
        elif a == long_axis:  # the kernel is longer than the output
            out = draw(st.integers(1, max(1, min(k[a] - 1, cap_a))))
            padded = (out - 1) * s[a] + span + draw(st.integers(0, s[a] - 1))
            pads[a] = draw(st.integers(0, min(2, (padded - 1) // 2)))
            sizes[a] = padded - 2 * pads[a]
        elif a == boundary_axis and draw(st.booleans()):  # the input size at the boundary
            # a padding that leaves an input size of at least 1 within the output cap: 1 + 2p - span < cap_a * s
            pads[a] = draw(st.integers(0, min(2, k[a] - 1, (cap_a * s[a] + span - 2) // 2)))
            hi = (cap_a - 1) * s[a] + span - 2 * pads[a] + s[a] - 1
            lo = max(1, span - 2 * pads[a])
            candidates = [v for v in NEAR_POWERS_OF_TWO if lo <= v <= hi]
            n = draw(st.sampled_from(candidates)) if candidates else draw(st.integers(lo, max(lo, hi)))
            sizes[a] = n
            out = (n + 2 * pads[a] - span) // s[a] + 1
        else:  # the focus axis at a boundary; any other one small, or at a boundary too where the budget allows
            at_boundary = a == boundary_axis or (cap_a >= NEAR_POWERS_OF_TWO[0] and draw(st.booleans()))
            out = _near(draw, cap_a) if at_boundary else _small(draw, cap_a)
            padded = (out - 1) * s[a] + span + draw(st.integers(0, s[a] - 1))
            pads[a] = draw(st.integers(0, min(2, (padded - 1) // 2)))
            sizes[a] = padded - 2 * pads[a]
        outs[a] = out
    batch = draw(st.integers(1, max(1, min(max_batch, outputs_left // math.prod(outs)))))
    has_bias = draw(st.booleans()) if bias is None else bias
    axes = AXIS_NAMES[rank]
    spatial: dict[str, Any] = dict(zip(axes, sizes)) | {"k" + ax: v for ax, v in zip(axes, k)}
    return ConvProblem(batch=batch, c_in=groups * cin_g, c_out=groups * cout_g, **spatial, stride=tuple(s),
                       padding=tuple(pads), dilation=tuple(d), groups=groups, bias=has_bias, dtype=dtype)


#: what one boundary problem of a transposed convolution puts at its edge: ``gaps`` (a stride larger than the dilated
#: kernel: outputs no input reaches, which must come out as zeros or the bias), ``output_padding`` (at its maximum,
#: max(stride, dilation) - 1), ``asymmetric`` (pads that differ on the two sides, where declared), ``channels`` (C_in,
#: C_out next to a block boundary)
TRANSPOSED_FOCI = ("gaps", "output_padding", "asymmetric", "channels")


def _transposed_boundary(draw: Any, caps: Capabilities, rank: int, dtypes: list[str], budget: int, max_batch: int,
                         bias: bool | None) -> ConvProblem:
    """A transposed problem at one of ``TRANSPOSED_FOCI``; sizes capped by the work budget as everywhere."""
    foci = [f for f in TRANSPOSED_FOCI if f != "asymmetric" or caps.asymmetric_padding]
    focus = draw(st.sampled_from(foci))
    dtype = draw(st.sampled_from(dtypes))
    groups = draw(st.integers(1, 2)) if caps.groups else 1
    if focus == "channels":
        cin_g, cout_g = _near(draw, max(1, budget // 8)), _small(draw, max(1, budget // 64))
    else:
        cin_g, cout_g = _small(draw, budget // groups), _small(draw, budget // groups)
    left = max(1, budget // (groups * cin_g * cout_g))
    kernel: list[int] = []
    stride: list[int] = []
    dilation: list[int] = []
    sizes: list[int] = []
    begins: list[int] = []
    ends: list[int] = []
    extra: list[int] = []
    for _ in range(rank):
        k = draw(st.integers(1, max(1, min(4, left // max(1, math.prod(kernel))))))
        d = draw(st.integers(1, 2 if (k > 1 and caps.dilation) else 1))
        span = d * (k - 1) + 1
        s = draw(st.integers(span + 1, span + 3)) if focus == "gaps" else draw(st.integers(1, 3))
        kernel.append(k)
        dilation.append(d)
        stride.append(s)
    outputs_left = max(1, left // math.prod(kernel))
    for a in range(rank):
        n = _small(draw, max(1, outputs_left // max(1, math.prod(sizes))), top=5)
        full = (n - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1
        cap = min(2, (full - 1) // 2)
        begin = draw(st.integers(0, cap))
        end = draw(st.integers(0, cap)) if focus == "asymmetric" else begin
        top = max(stride[a], dilation[a]) - 1
        op = top if focus == "output_padding" else draw(st.integers(0, top))
        sizes.append(n)
        begins.append(begin)
        ends.append(end)
        extra.append(op)
    batch = draw(st.integers(1, max(1, min(max_batch, outputs_left // math.prod(sizes)))))
    has_bias = draw(st.booleans()) if bias is None else bias
    axes = AXIS_NAMES[rank]
    spatial: dict[str, Any] = dict(zip(axes, sizes)) | {"k" + ax: v for ax, v in zip(axes, kernel)}
    return ConvProblem(batch=batch, c_in=groups * cin_g, c_out=groups * cout_g, **spatial, stride=tuple(stride),
                       padding=tuple(begins), dilation=tuple(dilation), groups=groups, bias=has_bias, dtype=dtype,
                       padding_end=tuple(ends) if ends != begins else None, transposed=True,
                       output_padding=tuple(extra))
