"""Hypothesis strategies for convolution problems, valid by construction.

No ``filter`` or ``assume``: ``conv_problems`` draws groups, then channels as multiples of it, then the kernel,
dilation, stride and *output* size, and derives the input size from them::

    padded = (out - 1)*stride + dilation*(k - 1) + 1 + slack       slack in [0, stride - 1]
    begin, end in [0, (padded - 1) // 2]   (// 3 for reflect and circular, which need padding below the input size)
    in = padded - begin - end                                      end = begin unless asymmetric padding is declared

Each size is drawn with an upper bound taken from what is left of the work budget (multiply-adds), so every
problem fits the budget and every draw shrinks towards 1 (padding and slack towards 0): the minimal problem is
the 1×1 image with a 1×1 kernel, one channel, stride 1, no padding, groups 1, no bias, the first dtype.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from hypothesis import strategies as st

from .backend import Capabilities
from .data import DATA_KINDS
from .problem import ConvProblem

#: default work budget per example (multiply-adds of one pass); override with CONV_CONFORMANCE_MAX_MACS
MAX_MACS = int(os.environ.get("CONV_CONFORMANCE_MAX_MACS", 200_000))

seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def conv_problems(
    draw: Any,
    *,
    dtypes: Sequence[str] = ("float64", "float32"),
    capabilities: Capabilities | None = None,
    bias: bool | None = None,
    max_macs: int = MAX_MACS,
    max_batch: int = 3,
    max_groups: int = 3,
    max_channels_per_group: int = 4,
    max_kernel: int = 4,
    max_stride: int = 3,
    max_dilation: int = 3,
    max_padding: int = 3,
    max_out: int = 7,
    padding_modes: Sequence[str] | None = None,
) -> ConvProblem:
    caps = capabilities or Capabilities(dtypes=tuple(dtypes))
    allowed = [d for d in dtypes if d in caps.dtypes]
    if not allowed:
        raise ValueError(f"dtypes={tuple(dtypes)}, but the capabilities declare only {caps.dtypes}")
    if caps.max_macs is not None:
        max_macs = min(max_macs, caps.max_macs)
    dtype = draw(st.sampled_from(allowed))
    # every size is capped by what the budget leaves once everything drawn so far takes its minimum
    groups = draw(st.integers(1, max(1, min(max_groups if caps.groups else 1, max_macs))))
    cin_g = draw(st.integers(1, max(1, min(max_channels_per_group, max_macs // groups))))
    cout_g = draw(st.integers(1, max(1, min(max_channels_per_group, max_macs // (groups * cin_g)))))
    per_tap = groups * cout_g * cin_g
    kh = draw(st.integers(1, max(1, min(max_kernel, max_macs // per_tap))))
    kw = draw(st.integers(1, max(1, min(max_kernel, max_macs // (per_tap * kh)))))
    dil_max = max_dilation if caps.dilation else 1
    dh = draw(st.integers(1, dil_max if kh > 1 else 1))
    dw = draw(st.integers(1, dil_max if kw > 1 else 1))
    sh, sw = draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride))
    outputs_left = max(1, max_macs // (per_tap * kh * kw))
    oh = draw(st.integers(1, max(1, min(max_out, outputs_left))))
    ow = draw(st.integers(1, max(1, min(max_out, outputs_left // oh))))
    batch = draw(st.integers(1, max(1, min(max_batch, outputs_left // (oh * ow)))))
    modes = [m for m in (padding_modes or caps.padding_modes) if m in caps.padding_modes] or ["zeros"]
    mode = draw(st.sampled_from(sorted(modes, key=lambda m: m != "zeros")))  # shrinks to zeros
    asym = caps.asymmetric_padding and draw(st.booleans())
    sizes, begins, ends = [], [], []
    for out, k, d, s in ((oh, kh, dh, sh), (ow, kw, dw, sw)):
        padded = (out - 1) * s + d * (k - 1) + 1 + draw(st.integers(0, s - 1))
        # zeros: each side up to (padded-1)//2 keeps >= 1 input row; reflect/circular also need every pad below
        # (at most) the input size, which (padded-1)//3 per side guarantees: in >= padded - 2*(padded-1)//3 > pad
        cap = min(max_padding, (padded - 1) // (2 if mode == "zeros" else 3))
        begin = draw(st.integers(0, cap))
        end = draw(st.integers(0, cap)) if asym else begin
        sizes.append(padded - begin - end)
        begins.append(begin)
        ends.append(end)
    has_bias = draw(st.booleans()) if bias is None else bias
    return ConvProblem(batch=batch, c_in=groups * cin_g, c_out=groups * cout_g, h=sizes[0], w=sizes[1],
                       kh=kh, kw=kw, stride=(sh, sw), padding=(begins[0], begins[1]), dilation=(dh, dw),
                       groups=groups, bias=has_bias, dtype=dtype, padding_mode=mode,
                       padding_end=(ends[0], ends[1]) if asym else None)


def data_kinds(kinds: Sequence[str] = ("normal", "uniform", "wide")) -> st.SearchStrategy[str]:
    unknown = [k for k in kinds if k not in DATA_KINDS]
    if unknown:
        raise ValueError(f"data kinds {unknown}, but they must be among {DATA_KINDS}")
    return st.sampled_from(tuple(kinds))
