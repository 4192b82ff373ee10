"""Time every implementation's forward and backward against torch CPU, interleaved, in one run on this machine.

    python benchmarks/bench_impls.py [--repeat 7] [--only im2col,fft,oracle] [--problems resnet,fft]
                                     [--threads N] [--clock wall|cpu] [--keep-freed-memory]
                                     [--impl path.py:Class] [--budget 5] [--json out.json]

For each problem every implementation is warmed up once, then timed ``--repeat`` rounds; within a round the
implementations run one after another (forward, then backward), so torch CPU and the others see the same machine
load. Reported per problem and implementation:

- ``fwd ms`` / ``bwd ms``: the median time of one call;
- ``thr/torch``: throughput relative to torch CPU = median over the rounds of ``t_torch / t_impl`` of the same
  round (1.00: as fast as torch; 0.50: half of torch's throughput; 2.00: twice as fast);
- ``GF/s``: 2 flops per multiply-add; the backward counts two passes (grad_input and grad_weight; the bias
  gradient is a sum).

``oracle`` is the float64 reference (``conformance.numerics.reference``), timed like a backend: its backward is
``grad_input`` + ``grad_weight``. A call that exceeds ``--budget`` seconds in the warm-up is not repeated and is
marked ``~``; the naive loops only run problems within their declared ``max_macs``.

``--threads N`` re-runs the script with ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` = N
(torch, numpy's BLAS) and ``conformance.impls.fft.WORKERS`` = N (scipy.fft). On a loaded machine a multi-threaded
library
whose threads wait on each other (OpenMP barriers) loses most when a core is taken away; the one-thread run
compares the code per core; with ``--clock cpu`` it also leaves out the time other processes held the core
(the least noisy comparison on a shared machine). The load average before and after the run is printed:
compare ratios, not times, across runs. The issues' targets (#6; #16, #17 for the other operations) are evaluated at the
end from this run's ratios.

``--keep-freed-memory`` (diagnosis) starts the process with glibc told to keep freed memory. By default glibc may
give a large freed array back to the kernel, and the next temporary of that size is then zero-filled again page
by page (about 2.5 us per 4 KiB page on a virtual machine); the difference between the two runs is that cost
(within 10 % for im2col and fft when measured on 2026-11-25).

Not a test: speed targets live here, never in timed tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


#: glibc returns freed memory of more than M_TRIM_THRESHOLD to the kernel, and a later array of that size is
#: zero-filled page by page again; these keep it (diagnosis only: not what a user's process gets)
KEEP_MEMORY = {"MALLOC_TRIM_THRESHOLD_": str(2**30), "MALLOC_MMAP_THRESHOLD_": str(2**30)}


def _reexec(threads: str | None, keep_memory: bool) -> None:
    """Thread counts (OpenMP, BLAS) and malloc's settings are read when the process starts: set them, start afresh."""
    env = dict(os.environ)
    if threads is not None:
        env.update(CONV_BENCH_THREADS=threads, **{v: threads for v in THREAD_VARS})
    if keep_memory:
        env.update(KEEP_MEMORY)
    if env != os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


if __name__ == "__main__":  # before numpy and torch load their thread pools
    _reexec(sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else None,
            "--keep-freed-memory" in sys.argv)

import numpy as np  # noqa: E402

from conformance import ConvProblem  # noqa: E402
from conformance.backends.registry import build_registry  # noqa: E402

F32, F64 = "float32", "float64"
#: (key, problem); keys select with --problems (a key matches if it starts with one of the given prefixes)
PROBLEMS: list[tuple[str, ConvProblem]] = [
    ("resnet", ConvProblem(batch=1, c_in=64, c_out=64, h=56, w=56, kh=3, kw=3, padding=1, dtype=F32,
                           label="resnet 3x3 64ch 56x56")),
    ("stem", ConvProblem(batch=1, c_in=3, c_out=64, h=224, w=224, kh=7, kw=7, stride=2, padding=3, dtype=F32,
                         label="7x7 s2 stem 224")),
    ("fft-11-64", ConvProblem(batch=1, c_in=8, c_out=8, h=64, w=64, kh=11, kw=11, padding=5, dtype=F32,
                              label="11x11 on 64x64")),
    ("fft-11-128", ConvProblem(batch=1, c_in=8, c_out=8, h=128, w=128, kh=11, kw=11, padding=5, dtype=F32,
                               label="11x11 on 128x128")),
    ("fft-15-64", ConvProblem(batch=1, c_in=8, c_out=8, h=64, w=64, kh=15, kw=15, padding=7, dtype=F32,
                              label="15x15 on 64x64")),
    ("fft-15-128", ConvProblem(batch=1, c_in=8, c_out=8, h=128, w=128, kh=15, kw=15, padding=7, dtype=F32,
                               label="15x15 on 128x128")),
    ("depthwise", ConvProblem(batch=1, c_in=64, c_out=64, h=56, w=56, kh=3, kw=3, padding=1, groups=64, dtype=F32,
                              label="depthwise 3x3 64ch")),
    ("grouped", ConvProblem(batch=1, c_in=128, c_out=128, h=28, w=28, kh=3, kw=3, padding=1, groups=32, dtype=F32,
                            label="grouped 3x3 128ch g32")),
    ("tiny", ConvProblem(batch=32, c_in=3, c_out=8, h=8, w=8, kh=3, kw=3, padding=1, dtype=F32,
                         label="tiny images, batch 32")),
    ("resnet-f64", ConvProblem(batch=1, c_in=64, c_out=64, h=56, w=56, kh=3, kw=3, padding=1, dtype=F64,
                               label="resnet 3x3 float64")),
    # conv3d and conv1d (#16): a C3D block, the wav2vec 2.0 feature encoder's first two layers, FFT-sized 3-D kernels
    ("c3d", ConvProblem.parse("ic64oc64id16ih56kd3pd1_float32").replace(label="C3D 3x3x3 64ch 16x56x56")),
    ("w2v-k10", ConvProblem.parse("ic1oc512iw16000kw10sw5_float32").replace(label="wav2vec k10 s5 16000")),
    ("w2v-k3", ConvProblem.parse("ic512oc512iw3199kw3sw2_float32").replace(label="wav2vec k3 s2 512ch")),
    ("fft3d-7-32", ConvProblem.parse("ic8oc8id32ih32kd7pd3_float32").replace(label="7x7x7 on 32^3")),
    ("fft3d-7-48", ConvProblem.parse("ic8oc8id48ih48kd7pd3_float32").replace(label="7x7x7 on 48^3")),
    # transposed convolution (#17): a DCGAN generator layer, a U-Net up-convolution
    ("dcgan", ConvProblem.parse("mb64ic512oc256ih8kh4sh2ph1_transposed_float32").replace(
        label="DCGAN 512->256 4x4 s2 8->16")),
    ("unet-up", ConvProblem.parse("ic128oc64ih64kh2sh2_transposed_float32").replace(label="U-Net up k2 s2 64->128")),
]
BASE = "torch-cpu"


class Oracle:
    """The float64 oracle, timed like a backend (forward; backward = grad_input + grad_weight)."""

    name = "oracle"

    def __init__(self) -> None:
        from conformance.numerics import reference

        self.r = reference

    def forward(self, p: ConvProblem, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return self.r.forward(p, x, w, b)

    def backward(self, p: ConvProblem, x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple:
        return self.r.grad_input(p, dy, w), self.r.grad_weight(p, x, dy), None


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _once(fn: Callable[[], Any]) -> float:
    t0 = _clock()
    fn()
    return _clock() - t0


def _claims(name: str, b: Any, p: ConvProblem) -> bool:
    if name == "oracle":
        return True
    caps = b.capabilities
    return p.dtype in caps.dtypes and caps.unsupported_reason(p, backward=True) is None


def bench_problem(p: ConvProblem, backends: dict[str, Any], repeat: int, budget: float,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Interleaved timings of every backend that claims ``p``; one row per backend."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p.input_shape).astype(p.dtype)
    w = rng.standard_normal(p.weight_shape).astype(p.dtype)
    dy = rng.standard_normal(p.output_shape).astype(p.dtype)
    names = [n for n, b in backends.items() if _claims(n, b, p)]
    calls = {n: {"fwd": (lambda b=backends[n]: b.forward(p, x, w, None)),
                 "bwd": (lambda b=backends[n]: b.backward(p, x, w, dy))} for n in names}
    times: dict[str, dict[str, list[float]]] = {n: {"fwd": [], "bwd": []} for n in names}
    slow: dict[str, dict[str, bool]] = {n: {"fwd": False, "bwd": False} for n in names}
    for n in names:  # warm-up (plans, caches, lazy imports); a call over budget is timed this once only
        for d in ("fwd", "bwd"):
            t = _once(calls[n][d])
            if t > budget:
                slow[n][d] = True
                times[n][d].append(t)
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate, so no one always runs first
        for n in order:
            for d in ("fwd", "bwd"):
                if not slow[n][d]:
                    times[n][d].append(_once(calls[n][d]))
    rows = []
    flops = {"fwd": 2.0 * p.macs, "bwd": 4.0 * p.macs}
    for n in names:
        row: dict[str, Any] = {"problem": p.label, "impl": n, "macs": p.macs, "dtype": p.dtype}
        for d in ("fwd", "bwd"):
            ts = times[n][d]
            med = statistics.median(ts)
            row[f"{d}_s"], row[f"{d}_all_s"], row[f"{d}_slow"] = med, ts, slow[n][d]
            row[f"{d}_gflops"] = flops[d] / med / 1e9
            if BASE in times and times[BASE][d] and ts:
                base = times[BASE][d]
                if slow[n][d] or slow[BASE][d] or len(base) != len(ts):
                    row[f"{d}_vs_torch"] = statistics.median(base) / med
                else:  # same-round ratios: both saw the same load
                    row[f"{d}_vs_torch"] = statistics.median(tb / ti for tb, ti in zip(base, ts))
            else:
                row[f"{d}_vs_torch"] = None
        rows.append(row)
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    def ratio(v: float | None) -> str:
        return f"{v:>9.2f}" if v is not None else f"{'n/a':>9}"

    for r in rows:
        print(f"{r['problem'][:24]:<24} {r['impl']:<14} "
              f"{r['fwd_s'] * 1e3:>9.2f}{'~' if r['fwd_slow'] else ' '}{ratio(r['fwd_vs_torch'])} "
              f"{r['fwd_gflops']:>7.2f} "
              f"{r['bwd_s'] * 1e3:>9.2f}{'~' if r['bwd_slow'] else ' '}{ratio(r['bwd_vs_torch'])} "
              f"{r['bwd_gflops']:>7.2f}", flush=True)


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's speed targets, judged on this run's same-round ratios (thr/torch)."""
    by = {(r["problem"], r["impl"]): r for r in rows}
    out = []

    def add(what: str, key: tuple[str, str], d: str, ok: Callable[[float], bool], need: str) -> None:
        r = by.get(key)
        v = r[f"{d}_vs_torch"] if r else None
        out.append({"target": what, "measured": v, "need": need, "met": (v is not None and ok(v))})

    for d in ("fwd", "bwd"):
        add(f"im2col {d} on resnet 3x3 64ch 56x56: >= 0.5x torch throughput", ("resnet 3x3 64ch 56x56", "im2col"),
            d, lambda v: v >= 0.5, ">= 0.50")
    for label in ("11x11 on 64x64", "11x11 on 128x128", "15x15 on 64x64", "15x15 on 128x128"):
        for d in ("fwd", "bwd"):
            add(f"fft {d} on {label}: faster than torch", (label, "fft"), d, lambda v: v > 1.0, "> 1.00")
    for d in ("fwd", "bwd"):
        add(f"oracle {d} on resnet float64: <= 2x torch float64 time", ("resnet 3x3 float64", "oracle"), d,
            lambda v: v >= 0.5, ">= 0.50")
    for label in ("C3D 3x3x3 64ch 16x56x56", "wav2vec k10 s5 16000", "wav2vec k3 s2 512ch"):  # issue #16
        for d in ("fwd", "bwd"):
            add(f"im2col {d} on {label}: >= 0.5x torch throughput", (label, "im2col"), d, lambda v: v >= 0.5,
                ">= 0.50")
    for label in ("7x7x7 on 32^3", "7x7x7 on 48^3"):
        for d in ("fwd", "bwd"):
            add(f"fft {d} on {label}: >= 1.0x torch throughput", (label, "fft"), d, lambda v: v >= 1.0, ">= 1.00")
    for label in ("DCGAN 512->256 4x4 s2 8->16", "U-Net up k2 s2 64->128"):  # issue #17
        for impl in ("im2col", "fft"):
            for d in ("fwd", "bwd"):
                add(f"{impl} {d} on {label}: >= 0.5x torch throughput", (label, impl), d, lambda v: v >= 0.5,
                    ">= 0.50")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed rounds per problem (default 7)")
    ap.add_argument("--only", default="", help="comma-separated implementation names, 'oracle' included "
                                               "(torch-cpu, the baseline, always runs)")
    ap.add_argument("--problems", default="", help="comma-separated problem key prefixes: "
                                                   + ", ".join(k for k, _ in PROBLEMS))
    ap.add_argument("--impl", action="append", default=[], metavar="SPEC",
                    help="add a backend by import path (path/file.py:Class), e.g. an older version to compare")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch, BLAS and scipy.fft")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="diagnosis: run with glibc keeping freed memory (no page faults on fresh temporaries)")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                    help="wall (default) or cpu: this process' CPU time, which leaves out the time other processes "
                         "held the core; meaningful with --threads 1 only")
    ap.add_argument("--budget", type=float, default=5.0, help="seconds; slower single calls are not repeated")
    ap.add_argument("--json", default=None, help="write the rows, targets and machine facts here")
    args = ap.parse_args()
    global _clock
    _clock = CLOCKS[args.clock]
    if args.clock == "cpu" and args.threads != 1:
        print("warning: --clock cpu adds up the CPU time of every thread; use it with --threads 1", file=sys.stderr)
    if args.threads:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
        import conformance.impls.fft

        conformance.impls.fft.WORKERS = args.threads
    reg = build_registry(args.impl)
    backends: dict[str, Any] = {e.name: e.backend for e in reg if e.runnable}
    backends["oracle"] = Oracle()
    if args.only:
        wanted = set(args.only.split(",")) | {BASE}
        backends = {n: b for n, b in backends.items() if n in wanted}
    if BASE in backends:  # the baseline first in every listing
        backends = {BASE: backends[BASE], **{n: b for n, b in backends.items() if n != BASE}}
    keys = [k for k in args.problems.split(",") if k]
    problems = [p for k, p in PROBLEMS if not keys or any(k.startswith(s) for s in keys)]

    load0 = os.getloadavg()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads "
          f"{os.environ.get('CONV_BENCH_THREADS', 'default')}, {args.clock} clock, load average {load0[0]:.1f} at "
          f"start, {args.repeat} rounds, {time.strftime('%Y-%m-%d %H:%M')}"
          + (", malloc keeps freed memory" if args.keep_freed_memory else ""))
    print("thr/torch = t_torch / t_impl in the same round (median): 1.00 torch's speed, 0.50 half of it\n")
    print(f"{'problem':<24} {'impl':<14} {'fwd ms':>10} {'thr/torch':>9} {'GF/s':>7} "
          f"{'bwd ms':>10} {'thr/torch':>9} {'GF/s':>7}")
    rows: list[dict[str, Any]] = []
    for p in problems:
        got = bench_problem(p, backends, args.repeat, args.budget)
        print_rows(got)
        print()
        rows += got
    load1 = os.getloadavg()
    print(f"load average {load1[0]:.1f} at the end\n")
    verdicts = targets(rows)
    print("targets (issues #6, #16, #17), from this run:")
    for t in verdicts:
        if t["measured"] is None:
            continue
        print(f"  {'MET    ' if t['met'] else 'NOT MET'} {t['target']:<68} {t['measured']:6.2f} (need {t['need']})")
    if args.json:
        facts = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count(),
                 "processor": platform.processor() or platform.machine(), "platform": platform.platform(),
                 "threads": os.environ.get("CONV_BENCH_THREADS", "default"), "clock": args.clock,
                 "keep_freed_memory": args.keep_freed_memory,
                 "loadavg_start": load0, "loadavg_end": load1, "repeat": args.repeat, "numpy": np.__version__}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": facts, "rows": rows, "targets": verdicts}, fh, indent=1)


if __name__ == "__main__":
    main()
