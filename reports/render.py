"""Render the merged results as one self-contained HTML page: Jinja2 (autoescaped) and matplotlib (Agg) plots.

The page needs nothing from the network: its CSS and its few lines of JS are inline, and each plot is an SVG
embedded as a ``data:`` URI. A Content-Security-Policy meta tag forbids any other source.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import jinja2
import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from conformance.records import RunFile  # noqa: E402

from .summarize import Cell, Report, fmt_ratio, ratio_of, summarize  # noqa: E402

DEFAULT_OUT = "reports/index.html"
PASS, FAIL, GREY = "#2e8b57", "#c62828", "#78909c"
ENV_FIELDS = (("python", "Python"), ("numpy", "numpy"), ("scipy", "scipy"), ("torch", "torch"),
              ("cudnn", "cuDNN"), ("cuda_device", "GPU"), ("processor", "CPU"), ("cpu_count", "CPU cores"),
              ("platform", "platform"), ("hypothesis", "hypothesis"), ("tox_env", "tox env"), ("ci", "CI"))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("reports", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["ratio"] = fmt_ratio
    env.filters["g"] = lambda v: "—" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
    env.filters["json"] = lambda v: json.dumps(v, default=str)
    env.globals["ratio_of"] = ratio_of
    return env


def _svg_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _placed(ratios: list[float]) -> tuple[list[float], float, float]:
    """log10 of every ratio, with 0 drawn at a floor below the smallest non-zero one and ∞ at a ceiling."""
    finite = [r for r in ratios if 0 < r < math.inf]
    lo = math.floor(math.log10(min(finite))) - 1 if finite else -3
    hi = math.ceil(math.log10(max(finite + [1.0]))) + 1
    out = [lo if r == 0 else hi if math.isinf(r) else math.log10(r) for r in ratios]
    return out, lo, hi


def cell_plot(cell: Cell) -> str | None:
    """Histogram of log10(error/bound) and error/bound against the accumulation length K, as a data: URI."""
    data = [(r, k, f) for r, k, f in zip(cell.ratios, cell.ks, cell.failed_flags) if not math.isnan(r)]
    if not data:
        return None
    logs, lo, hi = _placed([r for r, _, _ in data])
    failed = [f for _, _, f in data]
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 8, "axes.spines.top": False,
                                "axes.spines.right": False, "svg.hashsalt": cell.ident}):
        fig = Figure(figsize=(7.6, 2.4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        bins = [lo - 0.5 + 0.25 * i for i in range(int((hi - lo + 1) / 0.25) + 1)]
        ax1.hist([[v for v, f in zip(logs, failed) if not f], [v for v, f in zip(logs, failed) if f]], bins=bins,
                 stacked=True, color=[PASS, FAIL], label=["passed", "failed"])
        ax1.axvline(0, color="#333", ls="--", lw=0.8)
        ax1.set_xlabel("log10(error / bound)   (0 = at the bound)")
        ax1.set_ylabel("examples")
        ax1.set_title(f"error/bound over {len(data)} examples", fontsize=8)
        n0 = sum(1 for r, _, _ in data if r == 0)
        ninf = sum(1 for r, _, _ in data if math.isinf(r))
        notes = ([f"{n0} exact (0) at left edge"] if n0 else []) + ([f"{ninf} × ∞ at right edge"] if ninf else [])
        if notes:
            ax1.text(0.02, 0.97, "\n".join(notes), transform=ax1.transAxes, va="top", fontsize=7, color="#555")
        ks = [max(k, 1) for _, k, _ in data]
        colors = [FAIL if f else PASS for f in failed]
        ax2.scatter(ks, [10 ** v for v in logs], c=colors, s=12, alpha=0.75, linewidths=0)
        ax2.set_yscale("log")
        if max(ks) / min(ks) >= 8:
            ax2.set_xscale("log")
        ax2.axhline(1.0, color="#333", ls="--", lw=0.8)
        ax2.set_xlabel("K: accumulation length at the worst element")
        ax2.set_ylabel("error / bound")
        ax2.set_title("error/bound against K", fontsize=8)
        return _svg_uri(fig)


def meter(ratio: float) -> int:
    """Width in percent of a log-scale bar from 1e-4 to 10× the bound (the bound sits at 80%)."""
    if math.isnan(ratio):
        return 0
    if ratio <= 0:
        return 1
    return int(max(1, min(100, (math.log10(ratio) + 4) / 5 * 100)))


def _matrix(rep: Report) -> list[dict[str, Any]]:
    rows = []
    for impl in rep.impls:
        envs = [e for e in rep.envs if any(rep.cell(e, impl, c) for c in rep.columns)]
        for i, env in enumerate(envs):
            cells = []
            for col in rep.columns:
                states = {c.state for e in envs if (c := rep.cell(e, impl, col))}
                cells.append({"cell": rep.cell(env, impl, col), "column": col, "differs": len(states) > 1})
            rows.append({"impl": impl, "env": env, "first": i == 0, "span": len(envs), "cells": cells,
                         "failing": any(c["cell"] and c["cell"].state == "fail" for c in cells)})
    return rows


def _runs(rep: Report) -> list[dict[str, Any]]:
    out = []
    for run in rep.runs:
        h = run.header
        env = h.get("environment") or {}
        out.append({"run": run, "env": env, "profile": h.get("profile", "?"), "max_examples": h.get("max_examples"),
                    "seed": h.get("hypothesis_seed"), "started": h.get("started", "?"),
                    "workers": sorted({str(f["worker"]) for f in run.files})})
    return out


def build_context(rep: Report, title: str = "conv-conformance report") -> dict[str, Any]:
    cells_by_impl = {impl: [c for c in sorted(rep.cells.values(), key=lambda c: int(c.ident.split("-")[1]))
                            if c.impl == impl] for impl in rep.impls}
    plots = {c.ident: cell_plot(c) for c in rep.cells.values() if c.state in ("fail", "pass", "xfail")}
    states = [c.state for c in rep.cells.values()]
    return {"title": title, "rep": rep, "matrix": _matrix(rep), "cells_by_impl": cells_by_impl, "plots": plots,
            "runs": _runs(rep), "env_fields": ENV_FIELDS, "multi_env": len(rep.envs) > 1, "meter": meter,
            "n_fail": states.count("fail"), "n_pass": states.count("pass"),
            "n_grey": len(states) - states.count("fail") - states.count("pass"),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def render_html(source: Report | Sequence[str | Path] | Sequence[RunFile], title: str = "conv-conformance report"
                ) -> str:
    """The report page as a string."""
    rep = source if isinstance(source, Report) else summarize(source)
    return _environment().get_template("report.html.j2").render(**build_context(rep, title))


def write_report(paths: Sequence[str | Path] | Sequence[RunFile], out: Path | str = DEFAULT_OUT, *,
                 title: str = "conv-conformance report") -> Path:
    """Merge the results files/directories in ``paths`` and write the report to ``out``; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(summarize(list(paths)), title), encoding="utf-8")
    return out
