"""Known deviations as data: expected failures with their reasons, and stale entries reported.

A known-failures file has one entry a line, ``<impl>::<check>  # reason`` (``*`` matches any implementation or
check), with ``#`` comments and blank lines ignored::

    fft::nonfinite      # a NaN or Inf spreads over its whole tile through the transform
    my-conv::grad_*     # backward not finished yet (fnmatch patterns work)
    torch-cpu::nonfinite ; torch==2.13.*   # a bug of one torch release

After ``;``, requirements in pip's syntax (``name`` plus a version specifier, several separated by spaces) say
where an entry is in force: where every named distribution is installed in a version they allow. Elsewhere the
entry is inactive: it expects nothing, is never stale, and ``inactive`` says why (the run's header lists it), so one
file serves every environment of a tox matrix.

The pytest plugin marks each matching test ``xfail`` with the reason, records its rows as ``xfailed``, and
reports an entry whose test passed as ``stale`` (in strict mode that fails the run, as ``xfail(strict=True)``).
Entries that match no collected test are warned about, as array-api-tests does.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from .backend import installed_version
from .errors import ConformanceError


@dataclass(frozen=True)
class KnownFailure:
    impl: str
    check: str
    reason: str
    source: str  #: file:line
    requires: tuple[str, ...] = ()  #: where it is in force: requirements such as "torch==2.13.*"

    def matches(self, impl: str, check: str) -> bool:
        return fnmatch.fnmatchcase(impl, self.impl) and fnmatch.fnmatchcase(check, self.check)

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

    def __str__(self) -> str:
        return f"{self.impl}::{self.check}" + (f" ; {' '.join(self.requires)}" if self.requires else "")


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
        if not sep or not impl or not check or " " in entry:
            raise ConformanceError(f"{source}:{lineno}: {entry!r} must read <impl>::<check> [; requirements]"
                                   "  # reason")
        requires = tuple(condition.split())
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
        out.append(KnownFailure(impl, check, reason.strip(), f"{source}:{lineno}", requires))
    return out


def load(paths: list[str]) -> list[KnownFailure]:
    out: list[KnownFailure] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise ConformanceError(f"known-failures file {p} does not exist")
        out += parse(path.read_text(encoding="utf-8"), str(path))
    return out


def in_force(entries: list[KnownFailure]) -> tuple[list[KnownFailure], list[KnownFailure]]:
    """(the entries in force here, the inactive ones)."""
    active = [e for e in entries if e.inactive is None]
    return active, [e for e in entries if e.inactive is not None]


def lookup(entries: list[KnownFailure], impl: str, check: str) -> KnownFailure | None:
    return next((e for e in entries if e.matches(impl, check)), None)
