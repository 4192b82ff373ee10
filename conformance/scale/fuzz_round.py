"""The pytest plugin of one fuzzing round (``python -m conformance fuzz`` loads it with ``-p``): the profile the run
loaded (``thorough``: randomized), without Hypothesis' ``explain`` phase.

The explain phase replays a minimal failure many times under a line tracer to say which lines always or never ran
with it (seconds per failing check: 156 replays of one forward failure took 5 s here); a fuzzing round spends that
time searching instead, and every failure it finds still comes with its reproduction.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

PROFILE = "conv-fuzz"


@pytest.hookimpl(trylast=True)  # after conformance's plugin has loaded its profile
def pytest_configure(config: pytest.Config) -> None:
    current = settings.default
    assert current is not None  # conformance's plugin has loaded a profile
    if current.derandomize:
        raise pytest.UsageError("a fuzzing round needs a randomized profile (thorough), not a derandomized one")
    settings.register_profile(PROFILE, parent=current, phases=[p for p in current.phases if p != Phase.explain])
    settings.load_profile(PROFILE)
