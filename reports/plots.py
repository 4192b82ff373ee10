"""Plot one report cell: the distribution of error/bound, and error/bound against the accumulation length K; and
the Speed section's seconds per backend call against problem size.

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, never through pyplot (no global
state, no GUI backend), and written as SVG ``data:`` URIs the page embeds, so the report stays one file. Their
data (one marker per example or call) is rasterized into a PNG inside the SVG, so that a plot stays ~10-20 kB
however many examples a failing cell has; text, ticks and axes stay vectors.
"""

from __future__ import annotations

import base64
import io
import math
import re
from typing import Any
from urllib.parse import quote

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from PIL import Image

from .summarize import Call, Cell

PASS, FAIL, KNOWN = "#2e8b57", "#c62828", "#e0a100"
COLOURS = {"failed": FAIL, "error": FAIL, "xfailed": KNOWN}  #: by row status; anything else passed
SERIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")  #: matplotlib's tab10, one colour per implementation
MARKERS = {"forward": "o", "backward": "^"}
STYLE: dict[str, Any] = {"svg.fonttype": "none", "font.size": 8, "font.family": "sans-serif",
                         "font.sans-serif": ["DejaVu Sans"], "axes.spines.top": False, "axes.spines.right": False}
#: The data of a plot (a marker per example or per call: hundreds to thousands in a failing cell or the Speed plot,
#: and the histogram's bars) is drawn with ``rasterized=True``: one PNG inside the SVG, a few kB however many points,
#: where each vector marker cost ~200 bytes of the page; text, ticks and axes stay vectors. RASTER_DPI: the PNG's
#: resolution, 1.5 pixels per CSS pixel at the page's size (sharp enough on a high-density screen); PALETTE: its
#: colours (see _palette_png).
RASTER_DPI = 150
PALETTE = 64
MAX_VECTOR_MARKERS = 24  #: the histogram's few failure markers stay vectors; more are rasterized too


def _flatten_groups(svg: str) -> str:
    """``svg`` without its ``<g>`` elements that have no attribute, their children in their place."""
    out: list[str] = []
    kept: list[bool] = []  # per open <g>: whether it stays
    pos = 0
    for m in re.finditer(r"</g>|<g>|<g\s[^>]*>", svg):
        out.append(svg[pos:m.start()])
        pos = m.end()
        if m.group(0) == "</g>":
            if kept.pop():
                out.append("</g>")
        elif not m.group(0).endswith("/>"):
            kept.append(m.group(0) != "<g>")
            if kept[-1]:
                out.append(m.group(0))
        else:
            out.append(m.group(0))
    return "".join(out + [svg[pos:]])


def _palette_png(m: re.Match[str]) -> str:
    """A rasterized artist's PNG (matplotlib writes RGBA) with a palette of PALETTE colours and their transparency:
    a plot's few colours and their antialiased edges need no more, and the PNG is ~4 times smaller."""
    image = Image.open(io.BytesIO(base64.b64decode(m.group(1))))
    buf = io.BytesIO()
    image.quantize(PALETTE, method=Image.Quantize.FASTOCTREE).save(buf, format="png", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def svg_uri(fig: Figure) -> str:
    """The figure as an SVG ``data:`` URI: matplotlib's SVG without its metadata, indentation and excess digits.
    Artists drawn with ``rasterized=True`` come as one PNG inside it, at ``RASTER_DPI``; text and axes stay vector."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", dpi=RASTER_DPI,
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = re.sub(r"<metadata>.*?</metadata>", "", buf.getvalue(), flags=re.S)
    svg = re.sub(r"data:image/png;base64,([A-Za-z0-9+/=\s]+)", _palette_png, svg)
    svg = re.sub(r"\n\s*", " ", svg[svg.index("<svg"):])
    # no group's id is referenced (only clip paths, markers and images are): a group left with no attribute does
    # nothing; and rotate(-0 …) is no rotation
    svg = _flatten_groups(re.sub(r'<g id="[^"]*"', "<g", svg).replace("<g/>", ""))
    svg = re.sub(r">\s+<", "><", re.sub(r' transform="rotate\(-0 [^")]*\)"', "", svg))
    # coordinates to 1/100 pt: inside attribute values only, so that a tick label such as 0.001 keeps its digits
    svg = re.sub(r'"[^"]*"', lambda m: re.sub(r"(\d\.\d\d)\d+", r"\1", m.group(0)), svg)
    return "data:image/svg+xml;charset=utf-8," + quote(svg, safe=" =:/;,.'()-_")


def placed(ratios: list[float]) -> tuple[list[float], int, int]:
    """log10 of every ratio, with 0 (exact) drawn at a floor left of everything else and ∞ at a ceiling."""
    finite = [r for r in ratios if 0 < r < math.inf]
    lo = min(math.floor(math.log10(min(finite))) - 1 if finite else 0, -4)
    hi = math.ceil(math.log10(max(finite + [1.0]))) + 1
    return [lo if r == 0 else hi if math.isinf(r) else math.log10(r) for r in ratios], lo, hi


def _histogram(ax: Any, logs: list[float], colours: list[str], lo: int, hi: int, notes: list[str]) -> None:
    step = 0.25 if hi - lo <= 12 else 1.0
    bins = [lo - step / 2 + step * i for i in range(int((hi - lo) / step) + 2)]
    groups = [([v for v, c in zip(logs, colours) if c == colour], colour, label)
              for colour, label in ((PASS, "passed"), (KNOWN, "known failure"), (FAIL, "failed"))]
    groups = [g for g in groups if g[0]]
    ax.hist([g[0] for g in groups], bins=bins, stacked=True, histtype="stepfilled", color=[g[1] for g in groups],
            label=[g[2] for g in groups], rasterized=True)
    for values, colour, _ in groups[1:] if groups and groups[0][1] == PASS else groups:
        # a few among many passes; opaque, so one marker per place (1/100 of a decade, well under a marker's width)
        places = sorted({round(v, 2) for v in values})
        ax.plot(places, [0] * len(places), "^", color=colour, ms=6, clip_on=False,
                rasterized=len(places) > MAX_VECTOR_MARKERS)
    ax.axvline(0, color="#333", ls="--", lw=0.8)
    ax.set_xlabel("log10(error / bound)   (0 = at the bound)")
    ax.set_ylabel("examples")
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.minorticks_off()
    ax.yaxis.set_major_locator(MaxNLocator(5, integer=True))
    ax.set_title(f"error/bound over {len(logs)} examples" + (f"\n({'; '.join(notes)})" if notes else ""), fontsize=8)


def _against_k(ax: Any, ks: list[int], logs: list[float], colours: list[str]) -> None:
    ax.scatter(ks, logs, c=colours, s=10, alpha=0.7, linewidths=0, rasterized=True)
    if max(ks) / min(ks) >= 8:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # no mathtext: faster, smaller
    else:
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
    ax.minorticks_off()
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.axhline(0.0, color="#333", ls="--", lw=0.8)
    ax.set_xlabel("K: accumulation length at the worst element")
    ax.set_ylabel("log10(error / bound)")
    ax.set_title("error/bound against K", fontsize=8)


def cell_plot(cell: Cell) -> str | None:
    """The cell's histogram of log10(error/bound), and (where rows carry K) its scatter against K; None: no data."""
    data = [(r, k, COLOURS.get(s, PASS)) for r, k, s in zip(cell.ratios, cell.ks, cell.statuses) if not math.isnan(r)]
    if not data:
        return None
    logs, lo, hi = placed([r for r, _, _ in data])
    colours = [c for _, _, c in data]
    n0, ninf = sum(1 for r, _, _ in data if r == 0), sum(1 for r, _, _ in data if math.isinf(r))
    notes = ([f"{n0} exact (0) drawn at {lo}"] if n0 else []) + ([f"{ninf} infinite drawn at {hi}"] if ninf else [])
    if cell.n_errors:  # a raise, a timeout, a crash: no error/bound to draw
        notes.append(f"{cell.n_errors} error(s) not drawn")
    with_k = any(k > 0 for _, k, _ in data)  # checks without an accumulation (oracle-free identities) have none
    style: Any = {**STYLE, "svg.hashsalt": cell.ident}  # ids in the SVG stay unique per cell, and reproducible
    with rc_context(style):
        fig = Figure(figsize=(7.6 if with_k else 3.9, 2.3))
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.07 if with_k else 0.14, right=0.99 if with_k else 0.97, bottom=0.2, top=0.84,
                            wspace=0.22)
        axes = fig.subplots(1, 2) if with_k else [fig.subplots(1, 1)]
        _histogram(axes[0], logs, colours, lo, hi, notes)
        if with_k:
            _against_k(axes[1], [max(k, 1) for _, k, _ in data], logs, colours)
        return svg_uri(fig)


def fmt_seconds(v: float) -> str:
    """A tick on a log time axis: ``10 µs``, ``1 ms``, ``2 s``."""
    if v >= 1:
        return f"{v:g} s"
    return f"{v * 1e3:g} ms" if v >= 1e-3 else f"{v * 1e6:g} µs"


def fmt_count(v: float) -> str:
    """A tick on a log count axis: ``100``, ``10k``, ``1M``, ``1G``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= scale:
            return f"{v / scale:g}{suffix}"
    return f"{v:g}"


def _log_axes(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_count(v)))  # no mathtext: faster, smaller
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_seconds(v)))
    ax.grid(True, color="#e6e9ec", lw=0.6)
    ax.set_axisbelow(True)


def _speed_legend(ax: Any, labels: list[str]) -> None:
    """One entry per implementation (its colour) and one per pass (its marker), not one per pair."""
    # a "$" in a backend's name would start mathtext (and a lone one fail to draw): escaped, it stays text
    handles = [Line2D([], [], ls="", marker="s", ms=6, color=SERIES[i % len(SERIES)], label=label.replace("$", r"\$"))
               for i, label in enumerate(labels)]
    handles += [Line2D([], [], ls="", marker=marker, ms=5, color="#666", label=f"{kind} call")
                for kind, marker in MARKERS.items()]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def speed_plot(series: list[tuple[str, list[Call]]]) -> str | None:
    """Seconds per call against multiply-adds of one pass, log-log: one colour per implementation (``series``:
    label and its calls), a circle per forward call, a triangle per backward call; None: nothing to draw."""
    drawn = [(label, [c for c in calls if c.macs > 0 and c.seconds > 0]) for label, calls in series]
    drawn = [(label, calls) for label, calls in drawn if calls]  # a log axis has no place for 0
    if not drawn:
        return None
    style: Any = {**STYLE, "svg.hashsalt": "speed"}
    with rc_context(style):
        fig = Figure(figsize=(7.6, 3.4))
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.09, right=0.74, bottom=0.15, top=0.9)
        ax = fig.subplots(1, 1)
        for i, (_, calls) in enumerate(drawn):
            colour = SERIES[i % len(SERIES)]
            for kind, marker in MARKERS.items():
                mine = [c for c in calls if c.kind == kind]
                if mine:
                    ax.scatter([c.macs for c in mine], [c.seconds for c in mine], s=9, marker=marker, c=colour,
                               alpha=0.55, linewidths=0, rasterized=True)
        _log_axes(ax)
        ax.set_xlabel("multiply-adds of one pass")
        ax.set_ylabel("seconds per call (inside the backend)")
        ax.set_title("time per call against problem size (a backward call does two passes)", fontsize=8)
        _speed_legend(ax, [label for label, _ in drawn])
        return svg_uri(fig)


def meter(ratio: float) -> int:
    """Width in percent of a log-scale bar from 1e-4 to 10× the bound (the bound sits at 80%)."""
    if math.isnan(ratio):
        return 0
    if ratio <= 0:
        return 1
    return int(max(1, min(100, (math.log10(ratio) + 4) / 5 * 100)))
