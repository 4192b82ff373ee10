"""Known deviations as data: expected failures with their reasons, and stale entries reported.

A known-failures file has one entry a line, ``<impl>::<check>  # reason`` (``*`` matches any implementation or
check), with ``#`` comments and blank lines ignored::

    fft::nonfinite      # a NaN or Inf spreads over its whole tile through the transform
    my-conv::grad_*     # backward not finished yet (fnmatch patterns work)
    torch-cpu::nonfinite ; torch==2.13.*   # a bug of one torch release

After ``;``, requirements in pip's syntax (``name`` plus a version specifier, several separated by spaces) say
where an entry is in force: where every named distribution is installed in a version they allow. A requirement
``fact=value[,value...]`` (one ``=``) names a machine fact instead (``conformance.backends.machine``: ``cpu_vendor``,
``arch``, …, and the backend's own ``environment()``: torch CPU's ``torch_bf16`` is ``onednn-amx``,
``onednn-avx512bf16``, ``onednn-emulated`` or ``native``), with fnmatch patterns: kernels differ between CPUs, and
so do their bugs. Elsewhere the entry is inactive: it expects nothing, is never stale, and ``in_force`` says why
(the run's header lists it), so one file serves every environment of a tox matrix and every machine.

``<check>`` is a check of conv2d, as the gate names its findings; a check of another rank is prefixed with it,
``conv1d:nonfinite``, ``conv3d:grad_input`` (``*:nonfinite`` or ``conv?d:nonfinite``: every rank), so that an entry of
one rank neither hides another rank's failure nor goes stale where that rank passes.

``<impl>::<check>[dtype,...]`` limits an entry to the examples of those dtypes: their failing rows are recorded as
known (``xfailed``) and the test goes on, so that a bfloat16-only bug of one library does not hide a float32 failure
of the same check.

The pytest plugin marks each matching test ``xfail`` with the reason, records its rows as ``xfailed``, and
reports an entry whose test passed as ``stale`` (in strict mode that fails the run, as ``xfail(strict=True)``).
Entries that match no collected test are warned about, as array-api-tests does.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Mapping

from packaging.requirements import InvalidRequirement, Requirement

from conformance.backends.backend import installed_version
from conformance.errors import ConformanceError
from conformance.model.problem import DTYPES, operation_name

#: a machine-fact requirement: ``name=value[,value...]`` (one ``=``; pip's specifiers have two or a comparison)
FACT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=([A-Za-z0-9_.*+\-]+(?:,[A-Za-z0-9_.*+\-]+)*)$")


@dataclass(frozen=True)
class KnownFailure:
    impl: str
    check: str
    reason: str
    source: str  #: file:line
    requires: tuple[str, ...] = ()  #: where it is in force: requirements such as "torch==2.13.*"
    facts: tuple[tuple[str, tuple[str, ...]], ...] = ()  #: and machine facts: (name, allowed value patterns)
    dtypes: tuple[str, ...] = ()  #: only the examples of these dtypes (empty: the whole check)

    def matches(self, impl: str, check: str, rank: int = 2, transposed: bool = False) -> bool:
        """Whether the entry covers ``check`` of ``impl`` in ``rank`` (the check of another operation than conv2d is
        spelled ``conv3d:check``, ``conv_transpose2d:check``, as the gate's findings)."""
        return self.names(impl) and fnmatch.fnmatchcase(ranked_check(check, rank, transposed), self.check)

    def names(self, impl: str) -> bool:
        """Whether the entry's implementation pattern covers the backend ``impl``."""
        return fnmatch.fnmatchcase(impl, self.impl)

    @cached_property  # the environment does not change during a run; asked by the header, the rows, the summary
    def inactive(self) -> str | None:
        """Why the entry is not in force in this environment, or None where it is."""
        for text in self.requires:
            req = Requirement(text)
            have = installed_version(req.name)
            if have is None:
                return f"{req.name} is not installed (the entry requires {text})"
            if not req.specifier.contains(have, prereleases=True):
                return f"{req.name} {have} is not {req.specifier} (the entry requires {text})"
        return None

    def unmet_facts(self, facts: Mapping[str, str]) -> str | None:
        """Why the machine facts do not meet the entry's fact requirements, or None where they do."""
        for name, allowed in self.facts:
            have = facts.get(name)
            if have is None:
                return f"no machine fact {name!r} here (the entry requires {name}={','.join(allowed)})"
            if not any(fnmatch.fnmatchcase(have, a) for a in allowed):
                return f"{name} is {have} here (the entry requires {name}={','.join(allowed)})"
        return None

    def __str__(self) -> str:
        conditions = self.requires + tuple(f"{n}={','.join(v)}" for n, v in self.facts)
        where = f"[{','.join(self.dtypes)}]" if self.dtypes else ""
        return f"{self.impl}::{self.check}{where}" + (f" ; {' '.join(conditions)}" if conditions else "")


def parse(text: str, source: str = "<string>") -> list[KnownFailure]:
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        entry, _, reason = raw.partition("#")
        entry, semicolon, condition = (part.strip() for part in entry.partition(";"))
        if not entry:
            if semicolon:
                raise ConformanceError(f"{source}:{lineno}: requirements {condition!r} without <impl>::<check>")
            continue
        impl, sep, check = entry.partition("::")
        dtypes: tuple[str, ...] = ()
        if check.endswith("]") and "[" in check:
            check, _, listed = check[:-1].partition("[")
            dtypes = tuple(d.strip() for d in listed.split(",") if d.strip())
            bad = [d for d in dtypes if d not in DTYPES]
            if bad or not dtypes:
                raise ConformanceError(f"{source}:{lineno}: {entry!r}: the dtypes in [...] must be among "
                                       f"{', '.join(DTYPES)}")
        if not sep or not impl or not check or " " in entry:
            raise ConformanceError(f"{source}:{lineno}: {entry!r} must read <impl>::<check> [; requirements]"
                                   "  # reason (or <impl>::<check>[dtype,...] for some dtypes' examples)")
        words = condition.split()
        facts = tuple((m.group(1), tuple(m.group(2).split(","))) for m in map(FACT.match, words) if m)
        requires = tuple(w for w in words if not FACT.match(w))
        for text in requires:
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                raise ConformanceError(f"{source}:{lineno}: {text!r} is not a requirement such as torch==2.13.* "
                                       f"or scipy>=1.12,<1.14 (no spaces inside one requirement): {exc}") from None
            if req.marker or req.extras or req.url:
                raise ConformanceError(f"{source}:{lineno}: {text!r}: a distribution and a version specifier only "
                                       "(no extras, URL or environment marker)")
        if semicolon and not condition:
            raise ConformanceError(f"{source}:{lineno}: {entry!r} has ';' but no requirements after it")
        if not reason.strip():
            raise ConformanceError(f"{source}:{lineno}: {entry!r} has no reason (add '# why it fails')")
        out.append(KnownFailure(impl, check, reason.strip(), f"{source}:{lineno}", requires, facts, dtypes))
    return out


def load(paths: list[str]) -> list[KnownFailure]:
    out: list[KnownFailure] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise ConformanceError(f"known-failures file {p} does not exist")
        out += parse(path.read_text(encoding="utf-8"), str(path))
    return out


def in_force(entries: list[KnownFailure], facts_of: Callable[[str], Mapping[str, str]] | None = None
             ) -> tuple[list[KnownFailure], list[tuple[KnownFailure, str]]]:
    """(the entries in force here, the inactive ones with the reason). ``facts_of(impl)`` gives the machine facts
    an entry's fact requirements are judged by (asked only for entries that have some)."""
    active, inactive = [], []
    for e in entries:
        why = e.inactive or (e.unmet_facts(facts_of(e.impl) if facts_of else {}) if e.facts else None)
        if why is None:
            active.append(e)
        else:
            inactive.append((e, why))
    return active, inactive


def ranked_check(check: str, rank: int, transposed: bool = False) -> str:
    """A check as entries name it: ``grad_input`` in conv2d, ``conv3d:grad_input`` in another operation."""
    return check if (rank, transposed) == (2, False) else f"{operation_name(rank, transposed)}:{check}"


def lookup(entries: list[KnownFailure], impl: str, check: str, dtype: str | None = None,
           rank: int = 2, transposed: bool = False) -> KnownFailure | None:
    """The entry for the whole check (``dtype`` None: entries without dtypes), or for its examples of ``dtype``."""
    return next((e for e in entries if e.matches(impl, check, rank, transposed) and (
        not e.dtypes if dtype is None else dtype in e.dtypes)), None)
