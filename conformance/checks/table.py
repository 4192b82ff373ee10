"""The table of checks: each check of the suite declared once (in the manner of benchdnn's driver tables).

A row says what a check is: its name (the ``conv_check`` marker of its suite test, the name known-failure entries
and ``-k`` use), how its examples come (drawn by Hypothesis, or a fixed list run once), which passes each problem
runs, its data, its strategy and size classes, whether it runs every declared dtype, the dtypes it needs, whether it
is long (run first under pytest-xdist), the tier its rows record and the report columns they fall into, and what a
backend must declare for it to apply. Every list, skip reason, dispatch, report column and scheduling order of the
suite is derived from this table: adding a check is one row here and its suite test function (``suite/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from conformance.backends.backend import Capabilities
from conformance.checks.oracle_free import CHECKS as IDENTITIES
from conformance.inputs import onnx_golden
from conformance.inputs.data import EXTREME_KINDS
from conformance.model.layouts import VIEW_LAYOUTS
from conformance.model.passes import BACKWARD, FORWARD
from conformance.model.problem import RANK_IDS, RANKS, operation_name

#: a check's precondition: why a backend with these capabilities cannot be given it (None: it can)
Requirement = Callable[[Capabilities], "str | None"]
#: the smallest problem of the scale tier (C_out = 65537 on a 1x1 image with a 1x1 kernel)
SCALE_MIN_MACS = 2**16 + 1
#: the tier that pass checks' rows record (their column is the pass)
DRAWN_PASS_TIER = "hypothesis"


def backward_declared(caps: Capabilities) -> str | None:
    return None if caps.backward else "backward not declared (backward=False)"


def onnx_cases(caps: Capabilities) -> str | None:
    if onnx_golden.available():
        return onnx_golden.available()
    return None if "float32" in caps.dtypes else "float32 not declared: ONNX's Conv cases are float32"


def float64_declared(caps: Capabilities) -> str | None:
    return None if "float64" in caps.dtypes else \
        "float64 not declared: the oracle-free checks run in float64, where they have power"


def reaches_scale(caps: Capabilities) -> str | None:
    if caps.max_macs is not None and caps.max_macs < SCALE_MIN_MACS:
        return (f"max_macs={caps.max_macs} declared: below every problem of the scale tier (the smallest, C_out=65537 "
                f"on a 1x1 image, has {SCALE_MIN_MACS} multiply-adds)")
    return None


def elementwise(caps: Capabilities) -> str | None:
    if caps.error_model == "normwise":
        return ("normwise error model: an FFT/Winograd result is not exact on integer data, so the exact tier "
                "does not apply (its values are judged by the normwise bound in the other checks)")
    return None


@dataclass(frozen=True)
class Check:
    """One check of the suite. Defaults describe a Hypothesis check of every pass on the run's data kinds."""

    name: str
    #: ``drawn``: Hypothesis draws each example (the suite test takes ``data``); ``fixed``: a fixed list, run once
    examples: Literal["drawn", "fixed"] = "drawn"
    #: the passes each problem runs: ``own`` (the check is a pass), ``all`` (forward and the declared gradients),
    #: ``forward``, or ``calls`` (the check makes its own calls: contract, oracle-free, arithmetic)
    passes: Literal["own", "all", "forward", "calls"] = "all"
    #: the data kind of every example (None: drawn from ``kinds``, or from the run's ``--conv-data-kinds``)
    data_kind: str | None = None
    #: the data kinds it draws from instead of the run's (those of the run among them, if any)
    kinds: tuple[str, ...] = ()
    #: the problem strategy of a drawn check (``conformance.inputs.strategies``)
    strategy: Literal["conv", "boundary"] = "conv"
    #: the size classes its problems are drawn from (None: all)
    size_classes: tuple[str, ...] | None = None
    #: runs each drawn problem in every dtype the backend declares (the drawn one first)
    every_dtype: bool = False
    #: the only dtypes it runs in (empty: the run's dtypes the backend declares)
    dtypes: tuple[str, ...] = ()
    #: position among the checks that take longest, run first under pytest-xdist (None: not long)
    long: int | None = None
    #: the tier its example rows record (default: the name)
    tier: str = ""
    #: the report columns its rows fall into (default: the name); a check of several columns says which axis
    #: picks a row's column: its ``tier`` (layouts) or its ``check`` field (the oracle-free identities)
    columns: tuple[str, ...] = ()
    column_by: Literal["name", "tier", "check"] = "name"
    #: what a backend must declare for the check to apply; each returns why not, or None
    requires: tuple[Requirement, ...] = ()
    #: the spatial ranks it applies in (each suite test runs once per rank: ``conformance.model.problem.RANK_IDS``),
    #: and why not in the others
    ranks: tuple[int, ...] = RANKS
    ranks_why: str = ""
    #: the ranks it applies in to transposed convolution, and why not in the others
    transposed_ranks: tuple[int, ...] = RANKS
    transposed_why: str = ""
    #: parameters of its suite test beyond the implementation (layout: each memory layout)
    params: Mapping[str, tuple[str, ...]] | None = None
    doc: str = ""

    @property
    def record_tier(self) -> str:
        return self.tier or self.name

    @property
    def report_columns(self) -> tuple[str, ...]:
        return self.columns or (self.name,)

    @property
    def fixed_kind(self) -> str | None:
        return self.data_kind

    def unsupported_reason(self, caps: Capabilities, rank: int = 2, transposed: bool = False) -> str | None:
        """Why a backend with ``caps`` cannot be given this check in ``rank`` (``transposed``: of a transposed
        convolution) (None: it can)."""
        if transposed and rank not in self.transposed_ranks:
            return f"{operation_name(rank, True)}: {self.transposed_why}"
        if not transposed and rank not in self.ranks:
            return f"{RANK_IDS[rank]}: {self.ranks_why}"
        for requirement in self.requires:
            why = requirement(caps)
            if why:
                return why
        return None

    def passes_for(self, caps: Capabilities) -> tuple[str, ...]:
        """The passes each problem of this check runs on a backend with ``caps``."""
        if self.passes == "own":
            return (self.name,)
        if self.passes == "forward":
            return (FORWARD,)
        if self.passes == "all":
            return (FORWARD,) + (BACKWARD if caps.backward else ())
        return ()


def _pass(name: str, doc: str, **kw: Any) -> Check:
    requires = (backward_declared,) if name in BACKWARD else ()
    return Check(name, passes="own", tier=DRAWN_PASS_TIER, requires=requires, doc=doc, **kw)


#: the table, in the report's column order
CHECKS: tuple[Check, ...] = (
    _pass("forward", "the forward pass against the float64 oracle over drawn problems"),
    _pass("grad_input", "dx against the oracle's"),
    _pass("grad_weight", "dw against the oracle's"),
    _pass("grad_bias", "db against the oracle's (problems with a bias)"),
    Check("golden", examples="fixed", data_kind="int",
          doc="the seed notebook's exact values (Sobel 6x5, loss = out.sum()) in every declared dtype"),
    Check("onnx", examples="fixed", passes="forward", data_kind="int", requires=(onnx_cases,), ranks=(2,),
          ranks_why="ONNX's Conv node tests are all 2-D (tests/test_ranks.py fails when onnx ships another rank)",
          doc="ONNX's backend node tests for Conv and ConvTranspose (1-D, 2-D and 3-D)"),
    Check("exact", data_kind="int", requires=(elementwise,),
          doc="small-integer data: every partial sum exact, every direct method bitwise equal to the oracle"),
    Check("nonfinite", data_kind="nonfinite", size_classes=("small",), every_dtype=True, long=1,
          doc="NaN and Inf planted in the operands: which elements come out special"),
    Check("boundary", strategy="boundary", long=6,
          doc="block-size boundaries, padding larger than the kernel, one-pixel images and the like"),
    Check("corpus", examples="fixed", data_kind="normal", long=3,
          doc="the layers of well-known networks, reduced to a budget"),
    Check("scale", examples="fixed", data_kind="normal", long=0, requires=(reaches_scale,),
          doc="sizes past 2^16 per axis (and opt-in, 2^31 elements): index arithmetic"),
    Check("extreme", kinds=EXTREME_KINDS, size_classes=("small",), every_dtype=True, long=2,
          doc="huge, tiny and signed-zero data: overflow, underflow, subnormals"),
    Check("layout", long=5, columns=tuple(f"layout-{name}" for name in VIEW_LAYOUTS), column_by="tier",
          params={"layout": VIEW_LAYOUTS},
          doc="operands as channels-last, strided, negative-stride views and a broadcast dy"),
    Check("oracle_free", passes="calls", data_kind="normal", dtypes=("float64",), long=4, columns=IDENTITIES,
          column_by="check", requires=(float64_declared,),
          doc="identities that need no oracle: adjoint, finite differences, linearity, batch independence; of a "
              "transposed convolution, the adjoint across the two operations (transpose_adjoint)"),
    Check("contract", passes="calls", data_kind="normal",
          doc="the call contract: result type, dtype, shape and layout, inputs unmodified, the same answer twice"),
    Check("arithmetic", examples="fixed", passes="calls", ranks=(2,), transposed_ranks=(),
          ranks_why="the arithmetic is measured once, on conv2d probes; every other check judges this rank's results "
                    "against the same declared profile",
          transposed_why="the arithmetic is measured once, on conv2d probes; every other check judges transposed "
                         "results against the same declared profile",
          doc="the declared precision profile against the measured arithmetic"),
)
BY_NAME: dict[str, Check] = {c.name: c for c in CHECKS}
#: every report column, in order
COLUMNS: tuple[str, ...] = tuple(col for c in CHECKS for col in c.report_columns)
#: the checks that take longest, longest first
LONG: tuple[str, ...] = tuple(c.name for c in sorted((c for c in CHECKS if c.long is not None),
                                                     key=lambda c: c.long or 0))
#: older spellings of a tier in recorded results (read by ``check_of_tier``)
TIER_ALIASES = {"oracle-free": "oracle_free"}


def get(name: str) -> Check:
    """The check named ``name``; a clear error naming the known ones otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no check named {name!r}; the checks are {', '.join(BY_NAME)}") from None


def check_of_row(tier: str | None, check: str | None) -> Check | None:
    """The table's check that a result row with this ``tier`` and ``check`` field belongs to (None: unknown)."""
    tier = TIER_ALIASES.get(tier or DRAWN_PASS_TIER, tier or DRAWN_PASS_TIER)
    if tier == DRAWN_PASS_TIER:
        return BY_NAME.get(check or "")
    if tier.startswith("layout-"):
        return BY_NAME["layout"]
    return BY_NAME.get(tier)


def column(tier: str | None, check: str | None) -> str:
    """The report and gate column of a result row with this ``tier`` and ``check`` field. A row of a test that does
    not run (a skip, a test-level error) of a check with several columns falls in the check's name: the report
    folds it into the columns its test covers (``conformance.reports.summarize.columns_of``)."""
    c = check_of_row(tier, check)
    if c is None:
        return str(check or tier or "?")
    if c.column_by == "tier" and tier in c.report_columns:
        return str(tier)
    if c.column_by == "check" and check in c.report_columns:
        return str(check)
    return c.name
