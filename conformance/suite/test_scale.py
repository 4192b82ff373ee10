"""The scale tier: problems wide in one index but cheap in work, where 16-bit and 32-bit offsets wrap (pytorch#129207:
output channel 65536 lands on channel 0; pytorch#84488: wrong results past 2^31 elements).

By default: C_out, C_in, groups and each spatial axis past 65536 on a 1-element image or kernel, and a batch of 65537
summed by the weight gradient, every pass, each at most 65537 multiply-adds, in every rank (conv1d: NCL, conv3d: the
depth axis too). Opt-in (``--conv-profile thorough`` or
``--conv-scale-2g``): operands of more than 2^31 elements, run only where the memory suffices and skipped, with the
numbers, where it does not. A backend's ``max_macs`` shows as unsupported, with the reason, never as a pass.
"""

from __future__ import annotations

import os

import pytest

from conformance.checks.example import dtypes_for
from conformance.model.problem import ConvProblem
from conformance.options import DEFAULT_PROFILE

WIDE = 2**16 + 1  #: one past a 16-bit index

#: per rank, each problem's descriptor with ``{W}`` for 65537 (conformance.model.problem.ConvProblem.parse)
_SCALE = {
    1: {"c_out": "ic1oc{W}iw1kw1_bias", "c_in": "ic{W}oc1iw1kw1", "groups": "ic{W}oc{W}iw1kw1g{W}",
        "batch": "mb{W}ic1oc1iw1kw1_bias", "width": "ic1oc1iw{W}kw1"},
    2: {"c_out": "ic1oc{W}ih1kh1_bias", "c_in": "ic{W}oc1ih1kh1", "groups": "ic{W}oc{W}ih1kh1g{W}",
        "batch": "mb{W}ic1oc1ih1kh1_bias", "width": "ic1oc1ih1iw{W}kh1kw1"},
    3: {"c_out": "ic1oc{W}id1kd1_bias", "c_in": "ic{W}oc1id1kd1", "groups": "ic{W}oc{W}id1kd1g{W}",
        "batch": "mb{W}ic1oc1id1kd1_bias", "width": "ic1oc1id1ih1iw{W}kd1kh1kw1",
        "depth": "ic1oc1id{W}ih1iw1kd1kh1kw1"},
}
SCALE_PROBLEMS = {rank: tuple(ConvProblem.parse(d.format(W=WIDE)).replace(label=f"scale:{what}=65537")
                              for what, d in problems.items()) for rank, problems in _SCALE.items()}
#: x, y, dx and dy of more than 2^31 elements each (1-element kernel: the work is one multiply-add per element):
#: 8 GiB per operand in float32 (``big_skip_reason`` states the need where the memory lacks)
BIG_PROBLEMS = {
    1: (ConvProblem.parse(f"ic1oc1iw{2**31 + 1}kw1", ).replace(label="scale:2^31+ elements"),),
    2: (ConvProblem(batch=1, c_in=1, c_out=1, h=2**15, w=WIDE, kh=1, kw=1, label="scale:2^31+ elements"),),
    3: (ConvProblem.parse(f"ic1oc1id{2**11}ih{2**10}iw{2**10 + 1}kd1kh1kw1").replace(label="scale:2^31+ elements"),),
}
#: bytes per element of the largest operand the suite itself holds while it judges one problem of BIG_PROBLEMS (the
#: inputs, the float64 reference, magnitudes, term counts and bound, comparison temporaries): about 90 measured (peak
#: RSS, the same shape at 2^22 elements, float32), with room for the results' transfer from an isolated worker
JUDGE_BYTES_PER_ELEMENT = 160
#: a backend's worker holds at least x, dy and one result at a time
WORKER_OPERANDS = 3


def _dtype(caps, requested, prefer: tuple[str, ...]) -> str:
    dtypes = dtypes_for(caps, requested)
    return next((d for d in prefer if d in dtypes), dtypes[0])


def available_memory() -> int | None:
    """Bytes of physical memory available now (Linux ``SC_AVPHYS_PAGES``), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def big_skip_reason(problem: ConvProblem, *, opted_in: bool, worker_limit: float | None,
                    available: int | None) -> str | None:
    """Why a >2^31-element problem is not run here (None: run it)."""
    if not opted_in:
        return ("opt-in: operands of more than 2^31 elements run only at --conv-profile thorough or with "
                "--conv-scale-2g")
    gib = 2**30
    if available is None:
        return "the available memory cannot be read here (os.sysconf SC_AVPHYS_PAGES)"
    judge = problem.max_elements * JUDGE_BYTES_PER_ELEMENT
    worker = problem.max_elements * problem.np_dtype.itemsize * WORKER_OPERANDS
    if worker_limit is not None and worker > worker_limit:
        return (f"the backend's worker needs at least {worker / gib:.0f} GiB ({WORKER_OPERANDS} operands of "
                f"{problem.max_elements} elements), above --conv-memory-limit {worker_limit / gib:.0f} GiB")
    if judge + worker > available:
        return (f"needs about {(judge + worker) / gib:.0f} GiB ({problem.max_elements} elements: "
                f"{JUDGE_BYTES_PER_ELEMENT} bytes each to judge them, and the backend's operands), "
                f"{available / gib:.0f} GiB available")
    return None


@pytest.mark.conv_check("scale")
def test_scale(conv, request):
    cfg = request.config
    caps = conv.backend.capabilities
    dtype = _dtype(caps, conv.dtypes, ("float64", "float32"))  # float64: one dropped term of 65537 shows
    big_dtype = _dtype(caps, conv.dtypes, ("float32", "float64"))  # the index matters there, not the precision
    opted_in = cfg.getoption("conv_scale_2g") or (cfg.getoption("conv_profile") or DEFAULT_PROFILE) == "thorough"
    limit = cfg.getoption("conv_memory_limit") * 2**30 if cfg.getoption("conv_isolate") else None
    # a transposed convolution's scale problems are the same (a 1-element kernel, no padding: out = in)
    run = [p.replace(dtype=dtype, transposed=conv.transposed) for p in SCALE_PROBLEMS[conv.rank]]
    skipped = []
    for p in (b.replace(dtype=big_dtype, transposed=conv.transposed) for b in BIG_PROBLEMS[conv.rank]):
        skip = None if caps.unsupported_reason(p) else big_skip_reason(  # unsupported: run_cases records why
            p, opted_in=opted_in, worker_limit=limit, available=available_memory())
        if skip:
            skipped.append((p, skip))
        else:
            run.append(p)
    conv.run_cases(run, skipped=skipped)
