"""Known deviations as data: expected failures with their reasons, and stale entries reported.

A known-failures file has one entry a line, ``<impl>::<check>  # reason`` (``*`` matches any implementation or
check), with ``#`` comments and blank lines ignored::

    fft::nonfinite      # a NaN or Inf spreads over its whole tile through the transform
    my-conv::grad_*     # backward not finished yet (fnmatch patterns work)

The pytest plugin marks each matching test ``xfail`` with the reason, records its rows as ``xfailed``, and
reports an entry whose test passed as ``stale`` (in strict mode that fails the run, as ``xfail(strict=True)``).
Entries that match no collected test are warned about, as array-api-tests does.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from .errors import ConformanceError


@dataclass(frozen=True)
class KnownFailure:
    impl: str
    check: str
    reason: str
    source: str  #: file:line

    def matches(self, impl: str, check: str) -> bool:
        return fnmatch.fnmatchcase(impl, self.impl) and fnmatch.fnmatchcase(check, self.check)

    def __str__(self) -> str:
        return f"{self.impl}::{self.check}"


def parse(text: str, source: str = "<string>") -> list[KnownFailure]:
    out = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        entry, _, reason = raw.partition("#")
        entry = entry.strip()
        if not entry:
            continue
        impl, sep, check = entry.partition("::")
        if not sep or not impl or not check or " " in entry:
            raise ConformanceError(f"{source}:{lineno}: {entry!r} must read <impl>::<check>  # reason")
        if not reason.strip():
            raise ConformanceError(f"{source}:{lineno}: {entry!r} has no reason (add '# why it fails')")
        out.append(KnownFailure(impl, check, reason.strip(), f"{source}:{lineno}"))
    return out


def load(paths: list[str]) -> list[KnownFailure]:
    out: list[KnownFailure] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise ConformanceError(f"known-failures file {p} does not exist")
        out += parse(path.read_text(encoding="utf-8"), str(path))
    return out


def lookup(entries: list[KnownFailure], impl: str, check: str) -> KnownFailure | None:
    return next((e for e in entries if e.matches(impl, check)), None)
