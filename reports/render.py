"""Render the merged results as one self-contained HTML page with Jinja2 (autoescaped) and matplotlib plots.

The page needs nothing from the network: its CSS and its few lines of JS are inline, and each plot is an SVG
embedded as a ``data:`` URI (``conformance.reports.plots``). A Content-Security-Policy meta tag forbids any other
source.
Everything that comes from a backend (names, messages, tracebacks) reaches the page through autoescaping.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any, Sequence

import jinja2
from markupsafe import Markup, escape

from conformance.results.records import RunFile

from .plots import cell_plot, meter, speed_plot
from .summarize import NOT_RUN, RUN_STATES, Cell, Report, error_cause, fmt_num, fmt_ratio, ratio_of, summarize

DEFAULT_OUT = "reports/index.html"
GREY_STATES = NOT_RUN
ENV_FIELDS = (("python", "Python"), ("numpy", "numpy"), ("scipy", "scipy"), ("torch", "torch"),
              ("cudnn", "cuDNN"), ("cuda_device", "GPU"), ("cpu_model", "CPU"), ("cpu_vendor", "CPU vendor"),
              ("isa", "ISA features"), ("blas", "numpy's BLAS"), ("processor", "processor"), ("cpu_count", "CPU cores"),
              ("platform", "platform"), ("hypothesis", "hypothesis"), ("tox_env", "tox env"), ("ci", "CI"))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=True,
                             undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["ratio"] = fmt_ratio
    env.filters["num"] = fmt_num
    env.filters["g"] = lambda v: "—" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
    env.globals["ratio_of"] = ratio_of
    env.globals["error_cause"] = error_cause
    env.filters["wbr"] = _wbr
    return env


def _wbr(text: str) -> Markup:
    """``text`` escaped, with a line-break opportunity after each ``-`` and ``_``: a long column name such as
    ``layout-channels_last`` or ``finite_difference`` may wrap in a narrow header instead of widening its column."""
    return Markup(re.sub(r"([-_])", r"\1<wbr>", str(escape(text))))


def _failing_line(c: Cell) -> dict[str, Any]:
    """One line of the Failing list: what failed and how badly, or the error that kept it from an answer."""
    w = c.worst_row
    if c.is_error:
        what, detail = c.full_cause, ""
    elif c.state == "fail" and not math.isnan(c.worst_ratio):
        what = f"worst {fmt_ratio(c.worst_ratio)}"
        detail = f"{w.check} · {w.problem_text or '—'}"
        if c.n_errors:
            what += f" · {c.n_errors} error(s): {c.cause}"
    else:  # a failure with no ratio (the arithmetic check's finding), or explained failures
        reason = next(iter(c.reasons), "") if c.state == "explained" else (w.reason or c.reason)
        what, detail = " ".join(str(reason).split())[:160] or c.state, ""
    return {"cell": c, "ident": c.ident, "impl": c.impl, "env": c.env, "column": c.column, "state": c.state,
            "count": c.counts_text, "what": what, "detail": detail, "error": c.is_error, "span": 0}


def _failing_lines(cells: list[Cell]) -> list[dict[str, Any]]:
    """The lines of the Failing list in the matrix's order; the first line of each (implementation, environment)
    carries ``span``, how many lines its name spans."""
    lines = [_failing_line(c) for c in cells]
    first: dict[str, Any] | None = None
    for line in lines:
        if first is None or (first["impl"], first["env"]) != (line["impl"], line["env"]):
            first = line
        first["span"] += 1
    return lines


def _matrix(rep: Report) -> list[dict[str, Any]]:
    rows = []
    for impl in rep.impls:
        envs = [e for e in rep.envs if any(rep.cell(e, impl, c) for c in rep.columns)]
        for i, env in enumerate(envs):
            cells: list[dict[str, Any]] = []
            for col in rep.columns:
                states = {c.state for e in envs if (c := rep.cell(e, impl, col))}
                cells.append({"cell": rep.cell(env, impl, col), "column": col, "differs": len(states) > 1})
            present: list[Cell] = [c["cell"] for c in cells if c["cell"] is not None]
            same = len(present) == len(cells) > 1 and len({(c.state, c.reason) for c in present}) == 1
            rows.append({"impl": impl, "env": env, "first": i == 0, "cells": cells,
                         "merged": present[0] if same and present[0].state in GREY_STATES else None,
                         "failing": any(c.state == "fail" for c in present)})
    return rows


def _runs(rep: Report) -> list[dict[str, Any]]:
    out = []
    for run in rep.runs:
        h = run.header
        env = h.get("environment") or {}
        out.append({"run": run, "env": env, "profile": h.get("profile", "?"), "max_examples": h.get("max_examples"),
                    "seed": h.get("hypothesis_seed"), "started": h.get("started", "?"),
                    "workers": sorted({str(f["worker"]) for f in run.files}),
                    "known_inactive": h.get("known_inactive") or []})
    return out


def _impl_rows(rep: Report) -> list[dict[str, Any]]:
    """One line per implementation: what it declared (run header), else what its rows show."""
    out = []
    for impl in rep.impls:
        info = rep.impl_info.get(impl, {})
        caps, seen = info.get("capabilities") or {}, info.get("observed") or {}
        precision = caps.get("precision")
        features = [f for f in ("groups", "dilation", "backward") if caps.get(f)]
        if caps and not caps.get("deterministic", True):
            features.append("non-deterministic")
        if caps.get("max_macs"):
            features.append(f"max_macs={caps['max_macs']}")
        out.append({
            "name": impl, "index": rep.impls.index(impl), "declared": bool(caps), "version": info.get("version") or "",
            "source": info.get("source") or "", "unavailable": info.get("unavailable") or "",
            "dtypes": ", ".join(caps.get("dtypes") or []) or "—",
            "precision": [f"{d}: {p}" for d, p in precision.items()] if isinstance(precision, dict)
            else ([precision] if precision else list(seen.get("profiles") or [])),
            "error_model": caps.get("error_model") or seen.get("error_model") or "—",
            "bound_kinds": ", ".join(seen.get("bound_kinds") or []), "features": ", ".join(features) or "—",
            "notes": caps.get("notes") or "", "facts": info.get("environment") or {},
            "arithmetic": _arithmetic_rows(rep, impl)})
    return out


def _arithmetic_rows(rep: Report, impl: str) -> list[dict[str, Any]]:
    """Declared beside measured, per (environment, dtype, pass), with the worst error/bound over every check of
    that dtype and pass in units of bits: log2(1/ratio) to spare (negative: beyond the declared bound)."""
    out = []
    for env, dtype, pass_, row in rep.arithmetic.get(impl, []):
        a = row.arithmetic or {}
        worst = rep.worst_ratio.get((env, impl, dtype, pass_))
        spare = None if worst is None or worst <= 0 or math.isinf(worst) else -math.log2(worst)
        out.append({"env": env, "dtype": dtype, "pass": pass_, "status": row.status,
                    "declared": a.get("declared"), "measured": a.get("measured") or "none fits",
                    "described": a.get("described") or "; ".join(a.get("errors") or []),
                    "facts": ", ".join(f"{k} {'yes' if a.get(k) else 'no'}" for k in ("daz", "ftz", "deterministic")
                                       if a.get(k) is not None),
                    "worst": worst, "spare": spare})
    return out


def _not_run(rep: Report, cells: list[Cell]) -> dict[str, list[dict[str, Any]]]:
    """Per implementation, its cells that did not run, grouped by (environment, status, reason)."""
    grey: dict[str, list[dict[str, Any]]] = {impl: [] for impl in rep.impls}
    for c in cells:
        if c.state in RUN_STATES:
            continue
        groups = grey[c.impl]
        g = next((g for g in groups if (g["env"], g["state"], g["reason"]) == (c.env, c.state, c.reason)), None)
        if g is None:
            groups.append({"env": c.env, "state": c.state, "reason": c.reason, "columns": [], "idents": []})
            g = groups[-1]
        g["columns"].append(c.column)
        g["idents"].append(c.ident)
        g["every"] = len(g["columns"]) == sum(1 for k in rep.cells if k[:2] == (c.env, c.impl))
    return grey


def _speed(rep: Report) -> dict[str, Any]:
    """The Speed table: a row per implementation (and environment) that ran anything (one whose results carry no
    times shows dashes), a column per check column with a timed call; the contract tier and the oracle-free
    identities have none (each of their rows times several calls together); and the scatter plot of every timed
    call."""
    multi = len(rep.envs) > 1
    pairs = [(env, impl) for impl in rep.impls for env in rep.envs
             if any((c := rep.cell(env, impl, col)) and c.state in RUN_STATES for col in rep.columns)]
    columns = [col for col in rep.columns
               if any((c := rep.cell(env, impl, col)) and c.timing.n_calls for env, impl in pairs)]
    rows = [{"impl": impl, "env": env, "total": rep.timing(env, impl),
             "cells": [rep.cell(env, impl, col) for col in columns]} for env, impl in pairs]
    plot = speed_plot([(f"{env}/{impl}" if multi else impl, list(rep.timing(env, impl).calls.values()))
                       for env, impl in pairs])
    return {"columns": columns, "rows": rows, "plot": plot}


#: a check's outcome over an implementation's settings, most telling first: the colour of its overview cell (not
#: declared says more than not runnable in an environment without the library)
OVERVIEW_ORDER = (*RUN_STATES, "unsupported", "not_reached", "skipped", "unavailable", "empty")
#: the overview cell's words per state, short enough for 23 columns on one screen (its title says the rest)
OVERVIEW_WORD = {"fail": "FAIL", "explained": "arith.", "xfail": "known", "stale": "stale", "pass": "ok"}
OVERVIEW_GREY = {"unsupported": "unsupp.", "not_reached": "not reached", "skipped": "skipped", "unavailable": "n/a",
                 "empty": "—"}


def _overview(rep: Report) -> list[dict[str, Any]]:
    """Framework × check on one screen: a row per implementation, a cell per check, coloured by the most telling
    outcome over its environment · operation settings (a failure anywhere, else a known failure, else a pass, else
    why it never ran) and counting the settings that had it among those where the check ran; its title lists each
    setting's outcome. The matrix below has the row per setting."""
    rows = []
    for n, impl in enumerate(rep.impls):
        cells = []
        for col in rep.columns:
            per = [(env, c) for env in rep.envs if (c := rep.cell(env, impl, col)) is not None]
            states = [c.state for _, c in per]
            state = min(states, key=OVERVIEW_ORDER.index) if states else "empty"
            n_ran = sum(st in RUN_STATES for st in states)
            cells.append({"column": col, "state": state, "word": OVERVIEW_WORD.get(state, "—"),
                          "count": f"{states.count(state)}/{n_ran}" if state in RUN_STATES else OVERVIEW_GREY[state],
                          "title": f"{impl} · {col}: " + ("; ".join(f"{env}: {c.label}" for env, c in per)
                                                          or "no rows recorded")})
        rows.append({"impl": impl, "anchor": f"impl-{n}", "cells": cells})
    return rows


def build_context(rep: Report, title: str = "conv-conformance report") -> dict[str, Any]:
    """Everything the template reads."""
    cells = sorted(rep.cells.values(), key=lambda c: int(c.ident.split("-")[1]))
    cells_by_impl = {impl: [c for c in cells if c.impl == impl] for impl in rep.impls}
    grey = _not_run(rep, cells)
    plots = {c.ident: cell_plot(c) for c in cells if c.state in RUN_STATES}
    states = [c.state for c in rep.cells.values()]
    matrix = _matrix(rep)
    n_cells = len(matrix) * len(rep.columns)  # what the matrix shows: a row per (implementation, environment)
    return {"title": title, "rep": rep, "matrix": matrix, "overview": _overview(rep), "cells_by_impl": cells_by_impl,
            "grey": grey,
            "plots": plots, "speed": _speed(rep), "runs": _runs(rep), "impl_rows": _impl_rows(rep),
            "env_fields": ENV_FIELDS, "multi_env": len(rep.envs) > 1,
            "setting_label": "environment · operation" if any(" · conv" in e for e in rep.envs) else "environment",
            "run_states": RUN_STATES, "meter": meter,
            "failing": _failing_lines(rep.failing), "explained": _failing_lines(rep.explained),
            "failing_columns": {c.column for c in rep.failing},
            "n_fail": states.count("fail"), "n_pass": states.count("pass"), "n_explained": states.count("explained"),
            "n_known": states.count("xfail") + states.count("stale"),
            "n_grey": sum(1 for st in states if st not in RUN_STATES), "n_cells": n_cells,
            "n_absent": n_cells - len(states),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def render_html(source: Report | Sequence[str | Path | RunFile], title: str = "conv-conformance report",
                missing: Sequence[str | Path] = ()) -> str:
    """The report page as a string; ``missing``: results paths that were asked for and do not exist (an environment
    that did not run, or whose framework did not install), named in a banner."""
    rep = source if isinstance(source, Report) else summarize(source)
    context = build_context(rep, title) | {"missing": [str(p) for p in missing]}
    return _environment().get_template("report.html.j2").render(**context)


def write_report(paths: Sequence[str | Path | RunFile], out: Path | str = DEFAULT_OUT, *,
                 title: str = "conv-conformance report", missing: Sequence[str | Path] = ()) -> Path:
    """Merge the results files/directories in ``paths`` and write the report to ``out``; returns its path.
    ``missing``: results paths asked for that do not exist (see ``render_html``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(summarize(list(paths)), title, missing), encoding="utf-8")
    return out
