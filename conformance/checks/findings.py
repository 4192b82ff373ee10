"""One cause, one finding: failures that follow from a precision declaration the arithmetic check refuted.

A backend that declares ``bf16-acc32`` for its bfloat16 weight gradient but sums the batch in bfloat16 fails that
declaration's bounds in every tier that computes a weight gradient (grad_weight, corpus, boundary, layouts, ...).
The arithmetic check (``conformance.numerics.arithmetic``) measures the accumulator and fails once, naming the
declaration
to write. ``explain`` marks every other failing row of the same environment, implementation, dtype and pass whose
result the measured profile accepts (its verdict's ``passes_under``) as ``explained_by`` that finding: the gate and
the report count them under it instead of as separate failures. The rows stay failures of the declared profile —
the bounds are never loosened — they are attributed, not forgiven; a failure the measured profile does not accept
is a finding of its own.
"""

from __future__ import annotations

from typing import Iterable

from conformance.results.row import FAILING, Row


def _key(row: Row) -> tuple[str, str, str, str]:
    return (row.env, row.impl, row.dtype, row.check)


def explain(rows: Iterable[Row]) -> list[Row]:
    """Set ``explained_by`` on each failing row that an arithmetic finding explains; return the rows."""
    rows = list(rows)
    refuted: dict[tuple[str, str, str, str], tuple[str, str]] = {}
    for r in rows:
        arith = r.arithmetic
        if r.tier == "arithmetic" and r.status in FAILING and isinstance(arith, dict):
            if arith.get("measured"):
                text = (f"arithmetic: {r.dtype} {r.check} declared {arith.get('declared')}, "
                        f"measured {arith.get('measured')}")
                refuted[_key(r)] = (str(arith["measured"]), text)
    if not refuted:
        return rows
    for r in rows:
        if r.tier == "arithmetic" or r.status not in FAILING or _key(r) not in refuted:
            continue
        measured, text = refuted[_key(r)]
        verdict = r.verdict
        if isinstance(verdict, dict) and measured in (verdict.get("passes_under") or []):
            r.explained_by = text
    return rows


def is_failing(row: Row) -> bool:
    """A failure of its own: failed or error, and not explained by an arithmetic finding (``Row.failing``)."""
    return row.failing
