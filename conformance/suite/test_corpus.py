"""The corpus tier: the convolution layers of well-known networks and reported regressions
(``conformance/data/shapes/*.txt``), each reduced to a budget that keeps its stride/padding/dilation remainders and
run at batch <= 2, every pass; a failure names its layer. ``--conv-shapes resnet50`` runs one network's layers.
At the quick and ci profiles each geometry class runs once (``conformance.model.shapes.geometry_class``), at thorough
each distinct reduced layer."""

import pytest

from conformance.options import DEFAULT_PROFILE

#: multiply-adds per pass each layer is reduced to, by profile (``--conv-shapes-max-macs`` overrides; 0: full size)
CORPUS_MAX_MACS = {"quick": 5_000, "ci": 20_000, "thorough": 1_000_000}
#: which reduced layers run: each distinct geometry class (the cheap set) or each distinct problem
CORPUS_DISTINCT = {"quick": "geometry", "ci": "geometry", "thorough": "problem"}


@pytest.mark.conv_check("corpus")
def test_corpus(conv, request):
    cfg = request.config
    profile = cfg.getoption("conv_profile") or DEFAULT_PROFILE
    budget = cfg.getoption("conv_shapes_max_macs")
    if budget is None:
        budget = CORPUS_MAX_MACS[profile]
    conv.run_corpus(cfg.getoption("conv_shapes"), budget or None, distinct=CORPUS_DISTINCT[profile])
