"""The reach tiers of issue #8: boundary, corpus, scale, extreme (and the crash shapes in boundary and corpus).

For each place a mutant in ``tests/mutants/reach_bugs.py`` is run through the suite at the ``ci`` profile, in a fresh
interpreter, as ``pytest --pyargs conformance.suite --impl ... -k "test_forward or test_grad or test_<tier>"``: the
plain hypothesis tiers must miss it and the new tier must kill it. The rest are in-process checks of the pieces: the
shape corpus and its reduction, the boundary strategy, the extreme data kinds, the scale tier's problems and skips.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import helpers
import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from mutants import reach_bugs as rb

from conformance.backends.backend import Capabilities
from conformance.checks.example import unsupported_check_reason
from conformance.inputs.data import EXTREME_KINDS, HUGE_MARGIN, dtype_range, make_inputs, sum_lengths
from conformance.inputs.strategies import NEAR_POWERS_OF_TWO, boundary_problems, conv_problems
from conformance.model import shapes
from conformance.model.problem import ConvProblem
from conformance.numerics import reference as R
from conformance.options import choice_list
from conformance.results.records import load
from conformance.suite import test_scale as scale_tier

REACH = Path(rb.__file__).resolve()
PLAIN = "test_forward or test_grad"
PLAIN_COLUMNS = ("forward", "grad_input", "grad_weight", "grad_bias")
RUN_TIMEOUT = 300


def run_suite(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """The conformance suite at the ci profile without shrinking (the same examples, in the same order, derandomized;
    a failure is reported as found instead of minimised, which costs most of a killed mutant's run), in a fresh
    interpreter (cwd ``tmp_path``, so that this repository's conftest is not loaded); its result rows."""
    results = tmp_path / "results"
    proc = helpers.run_suite(tmp_path, results, "-q", "--tb=line", "-W", "ignore::pytest.PytestAssertRewriteWarning",
                             "--conv-profile", "ci", *args, timeout=RUN_TIMEOUT, shrink=False)
    rows = [r for f in load([results]) for r in f.rows] if results.exists() else []
    return proc, rows


def _columns(rows: list[dict], statuses: tuple[str, ...]) -> set[str]:
    return {r.column for r in rows if r.status in statuses}


# -- each place: a mutant the plain tiers miss and the new tier kills ---------------------------------------------
KILLS = [  # (mutant, the tiers that must kill it), one or more per place of issue #8
    (rb.OutputWidthTail, ("boundary",)),
    (rb.DepthwiseMultiplierUninitialised, ("boundary",)),
    (rb.NarrowGroupsAlignedLoads, ("boundary",)),
    (rb.StemRemainderShift, ("corpus",)),
    (rb.ShortcutStride2Phase, ("corpus",)),
    (rb.OutputChannel16Bit, ("scale",)),
    (rb.BatchIndex16Bit, ("scale",)),
    (rb.RmsScaledOverflow, ("extreme",)),
    (rb.FlushSubnormals, ("extreme",)),
    (rb.NegativeZeroSparseWeight, ("extreme",)),
    (rb.BackwardDataAbort, ("boundary", "corpus")),
]


def _run_kills(tmp_path: Path, kills: list, *extra: str) -> tuple[str, list[dict]]:
    """One suite run over several mutants: the plain tiers for each, and each one's own new tier(s) only."""
    args, select = ["--conv-no-entry-points"], [PLAIN]
    for cls, tiers in kills:
        assert set(cls.expected) == set(tiers), cls
        args += ["--impl", f"{REACH}:{cls.__name__}", "--conv-select", cls.name]
        select.append("(" + " or ".join(f"test_{t}" for t in tiers) + f") and {cls.name}")
    proc, rows = run_suite(tmp_path, *args, "-k", " or ".join(select), *extra)
    return proc.stdout[-4000:] + proc.stderr[-2000:], rows


def _verdicts(kills: list, rows: list[dict], out: str) -> list[str]:
    """What is wrong, per mutant: a plain column that catches it, a plain column that never ran, a tier it survives."""
    problems = []
    for cls, tiers in kills:
        mine = [r for r in rows if r.impl == cls.name]
        bad, passed = _columns(mine, ("failed", "error")), _columns(mine, ("passed",))
        caught = [c for c in PLAIN_COLUMNS if c in bad]
        if caught:
            problems.append(f"{cls.name}: the plain tiers already catch it ({caught}): it proves nothing")
        if not set(PLAIN_COLUMNS) <= passed:
            problems.append(f"{cls.name}: plain columns without a passing row: {sorted(set(PLAIN_COLUMNS) - passed)}")
        survived = [t for t in tiers if t not in bad]
        if survived:
            problems.append(f"{cls.name} survives the {survived} tier(s)")
        failing = [r for r in mine if r.status in ("failed", "error")]
        corpus_rows = [r for r in failing if r.column == "corpus"]
        if corpus_rows and not all(r.problem_text.split(": ")[0].count(":") == 1 for r in corpus_rows):
            problems.append(f"{cls.name}: a corpus failure without its network:layer label")
        if cls is rb.RmsScaledOverflow and not any("NaN/Inf where the reference is finite" in r.message
                                                   for r in failing):
            problems.append(f"{cls.name}: no failure names the NaN/Inf where the reference is finite")
        if cls is rb.BackwardDataAbort and not any("SIGABRT" in r.message for r in failing):
            problems.append(f"{cls.name}: no failure names the abort (SIGABRT)")
    return problems + ([f"--- suite output ---\n{out}"] if problems else [])


@pytest.mark.slow
def test_plain_tiers_miss_and_new_tiers_kill(tmp_path):
    """Every mutant but the aborting one, in one run with the backends in-process."""
    kills = [k for k in KILLS if k[0] is not rb.BackwardDataAbort]
    out, rows = _run_kills(tmp_path, kills, "--conv-no-isolate")
    problems = _verdicts(kills, rows, out)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_crash_shapes_kill_an_aborting_backend(tmp_path):
    """The XLA:CPU-style abort: the worker process dies, the run goes on and names the boundary and corpus tiers."""
    kills = [k for k in KILLS if k[0] is rb.BackwardDataAbort]
    out, rows = _run_kills(tmp_path, kills)
    problems = _verdicts(kills, rows, out)
    assert not problems, "\n".join(problems)
    corpus = [r for r in rows if r.column == "corpus" and r.status == "error"]
    assert {(r.problem or {}).get("label") for r in corpus} >= {
        "regressions:xla-cpu.backward-data.h", "regressions:xla-cpu.backward-data.w"}


@pytest.mark.slow
def test_builtins_pass_the_new_tiers(tmp_path):
    """im2col passes every new tier at ci; naive's max_macs shows as unsupported in the scale tier, with the reason;
    the opt-in 2^31 case is a skipped row with its reason."""
    proc, rows = run_suite(tmp_path, "--conv-select", "im2col", "--conv-select", "naive",
                           "-k", "test_boundary or test_corpus or test_scale or test_extreme")
    out = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, out
    for impl in ("im2col", "naive"):
        mine = [r for r in rows if r.impl == impl]
        assert not [r for r in mine if r.status in ("failed", "error")], out
        cols = {r.column for r in mine if r.status == "passed"}
        want = {"boundary", "corpus", "extreme"} | ({"scale"} if impl == "im2col" else set())
        assert want <= cols, (impl, cols)
    naive_scale = [r for r in rows if r.impl == "naive" and r.column == "scale"]
    assert naive_scale and all(r.status == "unsupported" and "max_macs=50000" in r.reason for r in naive_scale)
    big = [r for r in rows if r.impl == "im2col" and r.column == "scale" and r.status == "skipped"]
    assert big and all("opt-in" in r.reason and "2^31" in r.reason for r in big)


# -- the shape corpus ---------------------------------------------------------------------------------------------
def test_corpus_files_name_their_sources_and_parse():
    assert {"resnet50", "mobilenet_v2", "inception_v3", "deeplab_v3", "alexnet"} <= set(shapes.names())
    for name in shapes.names():
        corpus = shapes.load(name)
        assert corpus.sources, name
        text = corpus.path.read_text()
        assert "arXiv:" in text or "github.com" in text, f"{name}: no paper or issue named"
        assert "torchvision" in text or "github.com" in text or "/" in " ".join(corpus.sources), \
            f"{name}: no module path or issue named"
    counts = {n: sum(lay.count for lay in shapes.load(n).layers) for n in ("resnet50", "mobilenet_v2", "alexnet")}
    assert counts == {"resnet50": 53, "mobilenet_v2": 52, "alexnet": 5}  # the networks' convolution counts


def _remainder(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) % s


@pytest.mark.parametrize("budget", [5_000, 20_000, 50_000, 2_000_000])
def test_reduction_keeps_the_layer_character(budget):
    for corpus in shapes.load_all():
        for layer in corpus.layers:
            full, p = layer.problem(), shapes.reduce(layer, budget)
            if full.transposed:  # its input shrinks: kernel, stride, padding, output padding kept; 2 inputs or more
                assert (p.kernel, p.stride, p.padding, p.output_padding) == (full.kernel, full.stride, full.padding,
                                                                           full.output_padding)
                assert all(min(n, 2) <= m <= n for n, m in zip(full.in_sizes, p.in_sizes)), (layer, p)
                assert p.macs <= budget or p.macs == full.macs, (layer, p, p.macs)
                continue
            assert p.label == f"{corpus.name}:{layer.name}"
            assert (p.rank, p.kernel, p.stride, p.padding, p.dilation) == (full.rank, full.kernel, full.stride,
                                                                           full.padding, full.dilation)
            assert p.batch <= 2
            for n, n2, k, s, pad, d in zip(full.in_sizes, p.in_sizes, p.kernel, p.stride, p.padding, p.dilation):
                assert _remainder(n, k, s, pad, d) == _remainder(n2, k, s, pad, d), (layer, p)
            for full_out, out in zip(full.out_sizes, p.out_sizes):
                assert min(full_out, 2) <= out <= full_out, (layer, p)
            if full.groups == full.c_in > 1:  # depthwise stays depthwise, with its channel multiplier
                assert p.groups == p.c_in > 1 and p.c_out // p.groups == full.c_out // full.groups
            assert p.macs <= budget or p.macs == full.macs, (layer, p, p.macs)


def test_reduction_keeps_channel_classes_where_the_budget_allows():
    stem = shapes.reduce(next(x for x in shapes.load("resnet50").layers if x.name == "conv1"), 20_000)
    assert (stem.c_in, stem.c_out % 8, stem.kh, stem.stride) == (3, 0, 7, (2, 2))
    assert (stem.h + 6 - 7) % 2 == 1  # 224 + 6 - 7 = 223: remainder 1, kept
    head = shapes.reduce(next(x for x in shapes.load("deeplab_v3").layers if x.name == "classifier.4"), 20_000)
    assert head.c_out % 8 == 21 % 8
    assert shapes.reduce(shapes.load("alexnet").layers[0], None).macs == shapes.load("alexnet").layers[0].problem().macs


def test_shapes_option_takes_corpus_names():
    parse = choice_list("shapes", shapes.names())
    assert parse("resnet50,alexnet") == ("resnet50", "alexnet")
    with pytest.raises(argparse.ArgumentTypeError, match="resnet5 not among"):
        parse("resnet5")


# -- the boundary strategy -----------------------------------------------------------------------------------------
FIND = settings(database=None, max_examples=2000, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("what", ["depthwise-multiplier", "width-tail", "height-tail", "narrow-groups",
                                  "channels-tail", "crash-shape"])
def test_boundary_strategy_reaches(what):
    conditions = {
        "depthwise-multiplier": lambda p: p.groups == p.c_in >= 16 and p.c_out > p.c_in,
        "width-tail": lambda p: p.out_w > 16 and p.out_w % 16,
        "height-tail": lambda p: p.h > 16 and p.h % 16,
        "narrow-groups": lambda p: p.groups >= 8 and 1 < p.c_in // p.groups < 8,
        "channels-tail": lambda p: p.groups == 1 and p.c_in > 32 and p.c_in % 16 and p.c_out > 16,
        "crash-shape": rb.xla_crash_shape,
    }
    p = find(boundary_problems(dtypes=("float32",)), conditions[what], settings=FIND)
    assert p.macs <= 200_000


@settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
@given(boundary_problems(dtypes=("float32", "float64"), capabilities=Capabilities(max_macs=50_000, groups=False)))
def test_boundary_problems_respect_budget_and_capabilities(p):
    assert p.macs <= 50_000 and p.groups == 1


@settings(max_examples=150, database=None, suppress_health_check=list(HealthCheck))
@given(boundary_problems(dtypes=("float32",)))
def test_boundary_problems_are_near_powers_of_two(p):
    sizes = {p.c_in, p.c_out, p.c_in // p.groups, p.c_out // p.groups, p.groups, p.h, p.w, p.out_h, p.out_w}
    assert sizes & set(NEAR_POWERS_OF_TWO) or rb.xla_crash_shape(p), p  # every focus but the crash shape
    assert p.macs <= 200_000


# -- the extreme data kinds ----------------------------------------------------------------------------------------
def _passes(p: ConvProblem, inp) -> dict[str, np.ndarray]:
    x, w, dy = (np.asarray(a, dtype=np.float64) for a in (inp.x, inp.w, inp.dy))
    b = None if inp.b is None else np.asarray(inp.b, dtype=np.float64)
    ax, aw, ady = np.abs(x), np.abs(w), np.abs(dy)
    return {"forward": R.forward(p, ax, aw, None if b is None else np.abs(b)), "grad_input": R.grad_input(p, ady, aw),
            "grad_weight": R.grad_weight(p, ax, ady), "grad_bias": ady.sum(axis=(0, 2, 3))}


@settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck))
@given(conv_problems(dtypes=("float64", "float32", "float16", "bfloat16")), st.integers(0, 2**32 - 1))
def test_huge_data_keeps_every_exact_result_finite(p, seed):
    top, _ = dtype_range(p.dtype)
    inp = make_inputs(p, seed, "huge")
    m1 = _passes(p, inp)  # sums of |products|: every partial sum and the exact result are below them
    assert all(np.isfinite(m).all() and m.max() <= top / HUGE_MARGIN * 1.01 for m in m1.values())
    biggest = max(float(np.abs(np.asarray(a, dtype=np.float64)).max()) for a in (inp.x, inp.w, inp.dy))
    assert biggest >= top / (HUGE_MARGIN * max(sum_lengths(p).values())) / 2.01  # one operand near the top


@settings(max_examples=60, database=None, suppress_health_check=list(HealthCheck))
@given(conv_problems(dtypes=("float64", "float32", "float16", "bfloat16")), st.integers(0, 2**32 - 1))
def test_tiny_and_signed_zero_data(p, seed):
    _, tiny = dtype_range(p.dtype)
    small = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel()
                            for a in make_inputs(p, seed, "tiny").__dict__.values() if a is not None])
    near = small[small < 64 * tiny]
    assert near.size and near.max() >= tiny / 8 and (near > 0).all()
    z = make_inputs(p, seed, "signed_zeros")
    allz = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in (z.x, z.w, z.dy)])
    zeros = allz[allz == 0]
    if allz.size >= 16:
        assert np.signbit(zeros).any() and (~np.signbit(zeros)).any()


def test_extreme_kinds_are_data_kinds():
    assert set(EXTREME_KINDS) <= set(__import__("conformance.inputs.data", fromlist=["x"]).DATA_KINDS)


# -- the scale tier ------------------------------------------------------------------------------------------------
def test_scale_problems_are_wide_and_cheap():
    for rank in (1, 2, 3):
        assert {p.rank for p in scale_tier.SCALE_PROBLEMS[rank] + scale_tier.BIG_PROBLEMS[rank]} == {rank}
        for p in scale_tier.SCALE_PROBLEMS[rank]:
            assert p.macs <= 2**16 + 1 and max(p.batch, p.c_in, p.c_out, p.groups, *p.in_sizes) > 2**16
        for p in scale_tier.BIG_PROBLEMS[rank]:
            assert p.max_elements > 2**31 and p.macs == p.max_elements
    # every spatial axis past 65536 in its rank: the width in every rank, the depth in conv3d
    assert [p.label for p in scale_tier.SCALE_PROBLEMS[3] if p.d > 2**16] == ["scale:depth=65537"]


def test_scale_2g_skips_with_the_reason():
    p = scale_tier.BIG_PROBLEMS[2][0].replace(dtype="float32")
    assert "opt-in" in scale_tier.big_skip_reason(p, opted_in=False, worker_limit=None, available=2**50)
    assert "GiB available" in scale_tier.big_skip_reason(p, opted_in=True, worker_limit=None, available=2**34)
    assert "--conv-memory-limit 16 GiB" in scale_tier.big_skip_reason(p, opted_in=True, worker_limit=16 * 2**30,
                                                                        available=2**50)
    assert scale_tier.big_skip_reason(p, opted_in=True, worker_limit=None, available=2**50) is None


def test_scale_is_unsupported_below_its_smallest_problem():
    assert "max_macs=50000" in unsupported_check_reason(Capabilities(max_macs=50_000), "scale", None)
    assert unsupported_check_reason(Capabilities(max_macs=100_000), "scale", None) is None


def test_contract_rows_record_one_forward_and_one_backward_inside_the_backend() -> None:
    """As every other tier's rows: the backend's own time for one forward and one backward call, not the wall time
    of the tier's four calls (each is made twice) with their copies and checks."""
    import time

    from conformance.impls.im2col import Im2col

    from conformance.checks.contract import check_calls

    class Slow(Im2col):
        name = "slow"

        def forward(self, *args: object) -> object:
            time.sleep(0.05)
            return super().forward(*args)

        def backward(self, *args: object) -> object:
            time.sleep(0.05)
            return super().backward(*args)

    p = ConvProblem(batch=1, c_in=2, c_out=2, h=5, w=5, kh=3, kw=3, bias=True)
    bad, seconds = check_calls(Slow(), p, make_inputs(p, 0, "normal"))
    assert bad == []
    assert 0.1 <= seconds < 0.19, seconds  # the four calls take at least 0.2 s


FLOAT32_FOLD_FTZ = '''
import numpy as np
from conformance.backends.backend import Grads
from conformance.impls.naive import NaiveLoops


class Float32FoldFlushes(NaiveLoops):
    """naive loops (four dtypes declared), except that float32's reflect/replicate padding fold flushes subnormal
    results to zero: the bug both torch CUDA entries showed on an H200, in one dtype of four."""

    name = "float32-fold-flushes"

    def backward(self, p, x, w, dy):
        g = super().backward(p, x, w, dy)
        if p.dtype == "float32" and p.padding_mode in ("reflect", "replicate"):
            return Grads(dx=np.where(np.abs(g.dx) < np.finfo(np.float32).tiny, np.float32(0), g.dx), dw=g.dw, db=g.db)
        return g
'''


@pytest.mark.slow
def test_special_value_tiers_try_every_declared_dtype(tmp_path):
    """A bug in one dtype of a backend that declares four: the extreme tier runs each drawn problem in every
    declared dtype, so 25 examples find it (drawing one dtype per example, they did not)."""
    (tmp_path / "ftz.py").write_text(FLOAT32_FOLD_FTZ)
    proc, rows = run_suite(tmp_path, "--conv-no-entry-points", "--conv-no-isolate", "--impl",
                           f"{tmp_path / 'ftz.py'}:Float32FoldFlushes", "-k", "extreme")
    failing = [r for r in rows if r.status == "failed"]
    assert proc.returncode == 1 and failing, proc.stdout[-3000:]
    assert {r.problem["dtype"] for r in failing} == {"float32"}
    assert {r.problem["padding_mode"] for r in failing} <= {"reflect", "replicate"}
    assert {r.check for r in failing} == {"grad_input"}
    # every example ran in all four dtypes
    assert {r.problem["dtype"] for r in rows} == {"float16", "bfloat16", "float32", "float64"}
