"""A pytest plugin for corpus runs: the Hypothesis profile the run loaded (``ci``), without the shrink phase.

Loaded by ``tests/helpers.py``'s ``no_shrink`` (this folder on ``PYTHONPATH``, ``-p _no_shrink``): in the corpus'
gate runs where ``CONV_MUTANTS_NO_SHRINK=1`` (``tests/test_mutants.py`` and the other tests that run a member through
the gate; ``--no-shrink`` for ``benchmarks/mutant_power.py``), where it reaches the gate as ``python -m conformance
gate ... -- -p _no_shrink``, and in ``tests/test_tiers.py``'s suite runs, always. Every check still runs its 25
derandomized examples, the same ones; what is skipped is the search for a minimal failing example, which a mutant's
verdict does not need and which is most of the cost of rejecting one (measured: 39 s of CPU with shrinking, 6 s
without, for one mutant failing 14 columns). The failing rows then show the first failing example instead of the
minimal one. Every expected check of the corpus is named in both modes; the full list of failing
columns can be shorter without shrinking where the suite records a failure only through an example that shrinking
found (a check that raised inside the suite after passing examples leaves no failed row of its own).
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

PROFILE = "conv-corpus-no-shrink"


@pytest.hookimpl(trylast=True)  # after conformance's plugin has loaded its profile
def pytest_configure(config: pytest.Config) -> None:
    current = settings.default
    assert current is not None  # conformance's plugin has loaded a profile
    phases = tuple(p for p in current.phases if p not in (Phase.shrink, Phase.explain))
    settings.register_profile(PROFILE, parent=current, phases=phases)
    settings.load_profile(PROFILE)
