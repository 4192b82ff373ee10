"""Run options shared by the pytest plugin and the CLI: one definition, one help text, one default.

``add_run_options(addoption, prefix)`` is called by the plugin with ``prefix="conv-"`` (``--conv-profile``) and
by the CLI with ``prefix=""`` (``--profile``); ``--impl`` keeps its name in both. ``exclude=`` leaves options out by
their unprefixed names (the one-backend gate has no use for ``select``, ``no-entry-points`` or ``env-name``; the CLI
has none for ``run-id``, which it chooses itself and gives pytest as ``--conv-run-id``). Values are parsed by
``type=`` functions that raise ``argparse.ArgumentTypeError`` naming the option and the allowed values.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from conformance.errors import InvalidProblem
from conformance.inputs.data import DATA_KINDS
from conformance.model.problem import DTYPES, KINDS, RANK_IDS, parse_rank
from conformance.model.shapes import names as shape_corpora
from conformance.scale.shards import parse_shard

PROFILE_NAMES = ("quick", "ci", "thorough")
DEFAULT_PROFILE = "ci"
DEFAULT_RESULTS = "reports/results"
DEFAULT_DATA_KINDS = ("normal", "uniform", "wide")


def choice_list(option: str, allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{option} {text!r}: {', '.join(bad) or 'nothing given'} not among {', '.join(allowed)}")
        return items

    return parse


def _int_at_least(option: str, low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} {text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{option} {v} must be at least {low}")
        return v

    return parse


def _positive_float(option: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} {text!r} is not a number") from None
        if not v > 0 or v == float("inf"):  # also rejects nan
            raise argparse.ArgumentTypeError(f"{option} {text} must be a finite number of seconds > 0")
        return v

    return parse


def _ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(dict.fromkeys(parse_rank(t) for t in text.split(",") if t.strip()))
    except InvalidProblem as exc:
        raise argparse.ArgumentTypeError(f"ranks {text!r}: {exc}") from None
    if not ranks:
        raise argparse.ArgumentTypeError(f"ranks {text!r}: nothing given")
    return tuple(sorted(ranks))


def _profile(text: str) -> str:
    if text not in PROFILE_NAMES:
        raise argparse.ArgumentTypeError(f"profile {text!r} must be one of {', '.join(PROFILE_NAMES)}")
    return text


#: the unprefixed names of the run options, in the order they are defined (what ``exclude=`` may name)
RUN_OPTION_NAMES = ("impl", "profile", "max-examples", "max-macs", "dtypes", "data-kinds", "shapes",
                    "shapes-max-macs", "scale-2g", "results", "known-failures", "strict", "no-isolate", "timeout",
                    "memory-limit", "max-time", "select", "no-entry-points", "env-name", "run-id", "ranks", "ops",
                    "shard", "shard-durations", "database", "database-readonly")


def _leaving_out(addoption: Callable[..., Any], prefix: str, exclude: tuple[str, ...]) -> Callable[..., None]:
    unknown = sorted(set(exclude) - set(RUN_OPTION_NAMES))
    if unknown:
        raise ValueError(f"add_run_options(exclude=...): no run option named {', '.join(unknown)}; "
                         f"known: {', '.join(RUN_OPTION_NAMES)}")

    def option(flag: str, *args: Any, **kwargs: Any) -> None:
        name = "impl" if flag == "--impl" else flag[2:].removeprefix(prefix)
        if name not in RUN_OPTION_NAMES:  # keep RUN_OPTION_NAMES in step with add_run_options' definitions
            raise RuntimeError(f"run option {flag} is missing from RUN_OPTION_NAMES")
        if name not in exclude:
            addoption(flag, *args, **kwargs)

    return option


def add_run_options(addoption: Callable[..., Any], prefix: str = "conv-", *, exclude: tuple[str, ...] = ()) -> None:
    """Define the run options with ``addoption`` (pytest's ``group.addoption`` or argparse's ``add_argument``),
    each ``--<prefix><name>`` (``--impl`` unprefixed), leaving out those whose unprefixed names are in ``exclude``."""
    addoption = _leaving_out(addoption, prefix, exclude)
    addoption("--impl", action="append", default=[], metavar="SPEC", dest="conv_impl",
              help="add a backend by import path (pkg.module:Name or path/file.py:Name), or name a registered "
                   "one; repeatable")
    addoption(f"--{prefix}profile", type=_profile, default=None, dest="conv_profile", metavar="NAME",
              help=f"hypothesis profile: {', '.join(PROFILE_NAMES)} (default {DEFAULT_PROFILE}: derandomized)")
    addoption(f"--{prefix}max-examples", type=_int_at_least("max-examples", 1), default=None,
              dest="conv_max_examples", metavar="N", help="override the profile's examples per check")
    addoption(f"--{prefix}max-macs", type=_int_at_least("max-macs", 1), default=None, dest="conv_max_macs",
              metavar="N", help="multiply-adds per pass of the drawn problems (default 200000; fuzz: 2000000): larger "
                                "budgets reach larger layers at a higher cost per example")
    addoption(f"--{prefix}dtypes", type=choice_list("dtypes", DTYPES), default=None, dest="conv_dtypes",
              metavar="LIST", help=f"comma-separated dtypes to generate (default: each backend's declared "
                                   f"float32/float64); known: {', '.join(DTYPES)}")
    addoption(f"--{prefix}data-kinds", type=choice_list("data-kinds", DATA_KINDS), default=None,
              dest="conv_data_kinds", metavar="LIST",
              help=f"data kinds of the hypothesis tiers (default {','.join(DEFAULT_DATA_KINDS)})")
    addoption(f"--{prefix}shapes", type=choice_list("shapes", shape_corpora()), default=None, dest="conv_shapes",
              metavar="NAMES", help=f"shape corpora of the corpus tier, comma-separated (default: all of "
                                    f"{', '.join(shape_corpora())})")
    addoption(f"--{prefix}shapes-max-macs", type=_int_at_least("shapes-max-macs", 0), default=None,
              dest="conv_shapes_max_macs", metavar="N",
              help="multiply-adds per pass the corpus tier reduces each layer to, keeping its stride/padding/dilation "
                   "remainders (default by profile: quick 5000, ci 20000, thorough 1000000; 0: full size)")
    addoption(f"--{prefix}scale-2g", action="store_true", default=False, dest="conv_scale_2g",
              help="run the scale tier's operands of more than 2^31 elements (default: only at the thorough "
                   "profile); they are skipped, with the reason, where the memory is lacking")
    addoption(f"--{prefix}results", default=None, dest="conv_results", metavar="DIR",
              help=f"directory for the results files (default {DEFAULT_RESULTS})")
    addoption(f"--{prefix}known-failures", action="append", default=[], dest="conv_known_failures",
              metavar="FILE", help="expected failures with reasons (<impl>::<check>  # reason); repeatable")
    addoption(f"--{prefix}strict", action="store_true", default=False, dest="conv_strict",
              help="a known failure that passes (a stale entry) fails the run")
    addoption(f"--{prefix}no-isolate", action="store_false", default=True, dest="conv_isolate",
              help="call backends in this process (default: each backend runs in its own worker process, "
                   "restarted after a crash)")
    addoption(f"--{prefix}timeout", type=float, default=60.0, dest="conv_timeout", metavar="SECONDS",
              help="per-call timeout of an isolated backend (default 60)")
    addoption(f"--{prefix}memory-limit", type=float, default=16.0, dest="conv_memory_limit", metavar="GIB",
              help="memory limit of a backend's worker process in GiB (default 16; on Linux its private writable "
                   "memory, RLIMIT_DATA, elsewhere its address space; 0: none)")
    addoption(f"--{prefix}max-time", type=_positive_float("max-time"), default=None, dest="conv_max_time",
              metavar="SECONDS", help="stop starting new checks after this many seconds of the run; checks not "
                                      "reached are recorded as such and the reports are still written")
    addoption(f"--{prefix}select", action="append", default=[], dest="conv_select", metavar="NAME",
              help="run only these implementations (exact names; repeatable)")
    addoption(f"--{prefix}no-entry-points", action="store_false", default=True, dest="conv_entry_points",
              help="load no entry-point backends, only those given with --impl")
    addoption(f"--{prefix}env-name", default=None, dest="conv_env_name", metavar="NAME",
              help="environment label recorded with every row (default: $TOX_ENV_NAME or 'local')")
    addoption(f"--{prefix}run-id", default=None, dest="conv_run_id", metavar="ID",
              help="the run's id, recorded with every row and naming its results files; pytest-xdist workers get "
                   "their controller's (set by the CLI; default: a new one)")
    addoption(f"--{prefix}ranks", type=_ranks, default=None, dest="conv_ranks", metavar="LIST",
              help=f"spatial ranks to check, comma-separated: 1, 2, 3 or {', '.join(RANK_IDS.values())} (default: "
                   "all; each backend in those it declares, the others recorded as unsupported)")
    addoption(f"--{prefix}ops", type=choice_list("ops", KINDS), default=None, dest="conv_ops", metavar="LIST",
              help="operations to check, comma-separated: conv (convolution), conv_transpose (transposed "
                   "convolution) (default: both; a backend's transposed convolution where it declares it)")
    addoption(f"--{prefix}shard", type=parse_shard, default=None, dest="conv_shard", metavar="K/N",
              help="run only the K-th of N shards of the selected tests (1/4 ... 4/4: each test on exactly one; "
                   "merge their results with 'report'); balanced by --shard-durations where given")
    addoption(f"--{prefix}shard-durations", action="append", default=[], dest="conv_shard_durations", metavar="PATH",
              help="recorded test durations that balance the shards: the *.durations.json files every run writes "
                   "beside its results, or directories holding them (a previous run's results); repeatable")
    addoption(f"--{prefix}database", action="append", default=[], dest="conv_database", metavar="DIR|URL",
              help="Hypothesis example database: a directory or redis://host:port/db; failures found are saved and "
                   "replayed first by every run that shares it; repeatable (several: saved to and replayed from all)")
    addoption(f"--{prefix}database-readonly", action="append", default=[], dest="conv_database_readonly",
              metavar="DIR|URL", help="an example database to replay from without writing to it (a developer's "
                                      "machine reading CI's); repeatable")
