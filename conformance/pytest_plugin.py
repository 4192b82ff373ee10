"""The pytest plugin (``pytest11`` entry point): options, the ``impl`` parametrization, skips with reasons,
hypothesis profiles and the results recorder.

Every suite test is parametrized over the registered implementations with ``ids=<impl name>``, so
``pytest --pyargs conformance.suite -k im2col`` runs exactly im2col's checks. A check that an implementation
does not declare, or an implementation that cannot run here, is skipped at collection with the reason, and the
skip is recorded as a row (``unsupported`` / ``unavailable``) so that the report shows it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from conformance.backends import machine
from conformance.backends.backend import prepare
from conformance.backends.isolation import IsolatedBackend
from conformance.backends.machine import backend_facts
from conformance.backends.registry import Registry, build_registry, describe, left_out
from conformance.backends.runner import Caller, DirectCaller
from conformance.checks import table as checktable
from conformance.checks.example import SuiteContext, unsupported_check_reason
from conformance.model.problem import KINDS, RANKS, operation_name, operation_of
from conformance.results import known
from conformance.results.records import Recorder, new_run_id
from conformance.results.row import Row

from .options import DEFAULT_PROFILE, DEFAULT_RESULTS, add_run_options
from .xdist_affinity import runs_the_suite

REGISTRY_KEY = pytest.StashKey[Registry]()
RECORDER_KEY = pytest.StashKey[Recorder]()
SKIP_STATUS_KEY = pytest.StashKey[tuple[str, str, str, str]]()  # (status, impl, check, reason)
KNOWN_KEY = pytest.StashKey[known.KnownFailure]()
KNOWN_ENTRIES_KEY = pytest.StashKey[tuple[Any, ...]]()  #: this run's, in force, (not in force, why), waiting, left out
KNOWN_DTYPES_KEY = pytest.StashKey[list[known.KnownFailure]]()  #: entries for some dtypes' examples of a test
ISOLATED_KEY = pytest.StashKey[dict[str, IsolatedBackend]]()
DEADLINE_KEY = pytest.StashKey[float]()  #: time.monotonic() after which no further check starts (--max-time)
STARTED_KEY = pytest.StashKey[set[str]]()  #: node ids of the tests that started: the others were not reached
SIGTERM_KEY = pytest.StashKey[Any]()  #: the SIGTERM handler before the run's own
PREPARED_KEY = pytest.StashKey[set[str]]()
RUN_ID_KEY = pytest.StashKey[str]()  #: the run's id (--conv-run-id, or new), shared with pytest-xdist workers

_PROFILES: dict[str, dict[str, Any]] = {
    "quick": dict(max_examples=10),
    "ci": dict(max_examples=25, derandomize=True, database=None, print_blob=True),
    "thorough": dict(max_examples=300),
}


def register_profiles(max_examples: int | None = None, database: Any = None) -> None:
    """Register the profiles; ``database`` (a Hypothesis ``ExampleDatabase``, from ``--conv-database``) replaces
    each profile's, and a derandomized profile then runs randomized under its derandomized seeds
    (``conformance.scale.database``: Hypothesis reads no database under ``derandomize=True``)."""
    for name, kw in _PROFILES.items():
        kw = dict(kw)
        if max_examples is not None:
            kw["max_examples"] = max_examples
        if database is not None:
            kw.update(database=database, derandomize=False)
        settings.register_profile(name, deadline=None, suppress_health_check=[
            HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large], **kw)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conv-conformance", "conv-conformance: differential testing of conv2d")
    add_run_options(group.addoption, prefix="conv-")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conv_check(name): the conformance check a suite test performs")
    profile = config.getoption("conv_profile") or DEFAULT_PROFILE
    database = _example_database(config, profile)
    register_profiles(config.getoption("conv_max_examples"), database)
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile(profile)
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["conv_run_id"] if workerinput else (config.getoption("conv_run_id") or new_run_id())
    config.stash[RUN_ID_KEY] = run_id
    results = Path(config.getoption("conv_results") or DEFAULT_RESULTS)
    # $TOX_ENV_NAME: tox's documented variable, an input from outside (as --conv-env-name), not our run's state
    env_name = config.getoption("conv_env_name") or os.environ.get("TOX_ENV_NAME") or "local"
    meta = {"env": env_name, "profile": profile, "max_examples": settings().max_examples,
            "hypothesis_seed": config.getoption("hypothesis_seed", None)}
    config.stash[RECORDER_KEY] = Recorder(results, run_id, worker=workerinput["workerid"] if workerinput else "main",
                                          meta=meta)
    max_time = config.getoption("conv_max_time", None)
    if max_time:
        config.stash[DEADLINE_KEY] = time.monotonic() + float(max_time)
    config.stash[STARTED_KEY] = set()
    _register_scale_plugins(config)
    if workerinput is None and threading.current_thread() is threading.main_thread():
        # a CI job's SIGTERM (its time limit, a cancelled job) ends the run as Ctrl-C does: pytest still finishes
        # the session, which writes the JUnit file and the "not reached" rows, and the CLI then writes its reports
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

        config.stash[SIGTERM_KEY] = signal.signal(signal.SIGTERM, interrupt)


def _example_database(config: pytest.Config, profile: str) -> Any:
    """The example database of ``--conv-database``/``--conv-database-readonly`` (None without), and its plugin (the
    suite tests' stable keys; the derandomized seeds of a derandomized profile) registered."""
    specs, readonly = config.getoption("conv_database", []), config.getoption("conv_database_readonly", [])
    if not specs and not readonly:
        return None
    from conformance.errors import ConformanceError
    from conformance.scale.database import DatabasePlugin, build_database

    if config.getoption("hypothesis_seed", None) is not None:
        raise pytest.UsageError("--hypothesis-seed (--seed) with --conv-database: under a forced seed Hypothesis "
                                "reads and writes no example database; leave one of them out")
    try:
        database = build_database(specs, readonly)
    except ConformanceError as exc:
        raise pytest.UsageError(str(exc)) from None
    derandomized = bool(_PROFILES.get(profile, {}).get("derandomize"))
    config.pluginmanager.register(DatabasePlugin(derandomized=derandomized,
                                                 is_suite_test=lambda item: _check_of(item) is not None),
                                  "conv-conformance-database")
    return database


def _register_scale_plugins(config: pytest.Config) -> None:
    """``--conv-shard K/N``: keep this shard's tests; and in a run of the suite, record each test's duration beside
    the results (the next run's ``--conv-shard-durations``)."""
    from conformance.scale.shard_plugin import DurationsRecorder, ShardPlugin
    from conformance.scale.shards import DURATIONS_SUFFIX, load_durations

    shard = config.getoption("conv_shard", None)
    if shard is not None:
        try:
            durations = load_durations(config.getoption("conv_shard_durations", []))
        except FileNotFoundError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.pluginmanager.register(ShardPlugin(shard, durations), "conv-conformance-shard")
    if runs_the_suite(config):
        recorder = config.stash[RECORDER_KEY]
        path = recorder.directory / f"{recorder.run_id}-{recorder.worker}-{os.getpid()}{DURATIONS_SUFFIX}"
        config.pluginmanager.register(DurationsRecorder(path), "conv-conformance-durations")


def pytest_unconfigure(config: pytest.Config) -> None:
    if SIGTERM_KEY in config.stash:  # the CLI goes on in this process to write its reports
        signal.signal(signal.SIGTERM, config.stash[SIGTERM_KEY])


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:  # pytest-xdist: all workers share the controller's run id
    node.workerinput["conv_run_id"] = node.config.stash[RUN_ID_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n`` with ``--dist load`` (xdist's default) over this suite: keep each backend's tests on the worker that
    runs it. Only where the run's arguments name the suite (``xdist_affinity.runs_the_suite``: read from the
    configuration, as the controller collects nothing); any other run, such as another project's with this plugin
    installed, gets None here, so xdist's own scheduler, and builds no registry here."""
    if config.getoption("dist", None) != "load":
        return None
    from .xdist_affinity import BackendAffinityScheduling

    if not runs_the_suite(config):
        return None

    try:
        names = [e.name for e in registry(config)]
    except Exception:  # a bad --impl is reported by the workers' collection; schedule without affinity
        names = []
    return BackendAffinityScheduling(config, log, names=names)


def registry(config: pytest.Config) -> Registry:
    if REGISTRY_KEY not in config.stash:
        config.stash[REGISTRY_KEY] = build_registry(config.getoption("conv_impl"),
                                                    entry_points=config.getoption("conv_entry_points"))
    return config.stash[REGISTRY_KEY]


def _known_failures(config: pytest.Config) -> tuple[Any, ...]:
    """(the entries of the known-failures files that concern this run, those in force here, (the others, why), the
    entries whose machine-fact requirements wait for the selected backends, how many entries were left out), read
    once per process. With ``--select`` (one tox environment a framework) the entries of the backends it does not
    name are left out: not listed, not warned about as matching nothing; runs without it (the main job, the tests)
    keep them all, so a misspelt name is caught there. Facts are judged only for backends a run selects
    (``_known_in_force``): a backend's facts may import its library (torch: seconds)."""
    if KNOWN_ENTRIES_KEY not in config.stash:
        every = known.load(config.getoption("conv_known_failures"))
        select = config.getoption("conv_select")
        entries = [e for e in every if not select or any(e.names(name) for name in select)]
        active, inactive = known.in_force([e for e in entries if not e.facts])
        factual = [e for e in entries if e.facts]
        inactive += [(e, e.inactive) for e in factual if e.inactive]  # its version requirements already fail
        config.stash[KNOWN_ENTRIES_KEY] = (entries, active, inactive, [e for e in factual if not e.inactive],
                                           len(every) - len(entries))
    return config.stash[KNOWN_ENTRIES_KEY]


def _known_in_force(config: pytest.Config, selected: set[str]) -> tuple[list[Any], list[Any]]:
    """(the entries in force, (the others, why)) for a run of the ``selected`` backends: the machine-fact
    requirements of the entries that name one are judged by this machine's facts and that backend's own."""
    _, active, inactive, waiting, _ = _known_failures(config)
    reg = registry(config)
    for e in waiting:
        names = [n for n in sorted(selected) if e.names(n)]
        if not names:
            continue  # it names no backend of this run: judged nowhere, expects nothing
        why = e.unmet_facts(machine.facts() | backend_facts(reg.get(names[0]).backend))
        if why is None:
            active = active + [e]
        else:
            inactive = inactive + [(e, why)]
    return active, inactive


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not runs_the_suite(config):  # another project's run where this plugin is installed: nothing to say
        return []
    try:
        reg = registry(config)
    except Exception as exc:  # a bad --impl must be reported, not crash the header
        return [f"conv-conformance: registry error: {exc}"]
    lines = [f"conv-conformance: profile {config.getoption('conv_profile') or DEFAULT_PROFILE}, "
             f"results in {config.stash[RECORDER_KEY].directory}"]
    # names only: asking a backend whether it can run here (and its version) may import its library,
    # which waits until a test of it is selected; the run's results header records both for the selected ones
    lines.append("  implementations: " + ", ".join(e.name for e in reg))
    try:  # here, not after collection: with pytest-xdist the process that prints collects nothing
        _, _, inactive, _, left_out_entries = _known_failures(config)
    except Exception:  # a bad file is reported where the tests are collected
        inactive, left_out_entries = [], 0
    if left_out_entries:
        lines.append(f"  {left_out_entries} known-failure entries of backends not selected (--select) are not shown")
    lines += [f"  known failure {e} not in force here ({e.source}): {why}" for e, why in inactive]
    env = [f"{k}={v}" for k, v in os.environ.items() if k.startswith("CONV_CONFORMANCE_")]
    if env:
        lines.append("  " + " ".join(env))
    return lines


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        entries = list(registry(metafunc.config))
        select = metafunc.config.getoption("conv_select")
        if select:
            unknown = set(select) - {e.name for e in entries}
            if unknown:
                raise pytest.UsageError(f"--conv-select {', '.join(sorted(unknown))}: no such implementation; "
                                        f"registered: {', '.join(e.name for e in entries)}")
            entries = [e for e in entries if e.name in select]
        metafunc.parametrize("impl", entries, ids=[e.name for e in entries])
    if "conv_op" in metafunc.fixturenames:  # every operation asked for: a backend's undeclared ones skip, saying why
        ranks = metafunc.config.getoption("conv_ranks") or RANKS
        kinds = metafunc.config.getoption("conv_ops") or KINDS
        ops = [operation_name(r, kind == "conv_transpose") for kind in KINDS if kind in kinds for r in ranks]
        metafunc.parametrize("conv_op", ops, ids=ops)


def _isolated(config: pytest.Config, entry: Any) -> Caller:
    """What the checks call the backend through: its worker-process proxy (one per backend and pytest process) by
    default, a ``DirectCaller`` in this process with ``--conv-no-isolate``."""
    if not config.getoption("conv_isolate"):
        prepared = config.stash.setdefault(PREPARED_KEY, set())
        if entry.name not in prepared:  # what a worker does once before its first call
            prepared.add(entry.name)
            prepare(entry.backend)
        return DirectCaller(entry.backend)
    pool = config.stash.setdefault(ISOLATED_KEY, {})
    if entry.name not in pool:
        pool[entry.name] = IsolatedBackend(entry.backend, entry.spec, timeout=config.getoption("conv_timeout"),
                                           memory_limit=int(config.getoption("conv_memory_limit") * 2**30))
    return pool[entry.name]


def _check_of(item: pytest.Item) -> str | None:
    m = item.get_closest_marker("conv_check")
    return m.args[0] if m else None


def _impl_items(items: list[pytest.Item]) -> list[tuple[pytest.Item, Any, str]]:
    """(item, registry entry, check) of each suite test among ``items``."""
    out = []
    for item in items:
        callspec, check = getattr(item, "callspec", None), _check_of(item)
        if callspec is not None and "impl" in callspec.params and check in checktable.BY_NAME:
            out.append((item, callspec.params["impl"], check))
    return out


def _op_of(item: pytest.Item) -> tuple[int, bool]:
    """(rank, transposed) of the operation a suite test checks (its ``conv_op`` parameter; conv2d for a test without
    one)."""
    callspec = getattr(item, "callspec", None)
    return operation_of(callspec.params.get("conv_op", "conv2d") if callspec is not None else "conv2d")


#: the checks that take longest (many backend calls per example, or shrinking a known failure) run first: with
#: pytest-xdist, a long test that starts last keeps one worker busy while the others have nothing left to do
#: (``pytest --durations``: the scale tier of the per-plane scipy backend alone takes ~6 s of a ~27 s suite)
LONG_CHECKS = checktable.LONG


def _longest_first(item: pytest.Item) -> int:
    check = _check_of(item)
    return LONG_CHECKS.index(check) if check in LONG_CHECKS else len(LONG_CHECKS)


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselection: an entry for a deselected test is not stale
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unknown = sorted({f"{c} ({item.nodeid})" for item in items if (c := _check_of(item)) is not None
                      and c not in checktable.BY_NAME})
    if unknown:
        raise pytest.UsageError(f"conv_check markers naming no check of the table: {', '.join(unknown)}; the checks "
                                f"are {', '.join(checktable.BY_NAME)} (conformance/checks/table.py)")
    collected = [(entry.name, check, *_op_of(item)) for item, entry, check in _impl_items(items)]
    if not collected:  # no suite test here (another project's run): the plugin stays out of it
        return
    items.sort(key=_longest_first)  # stable: the collection order within each group, the same in every worker
    entries = _known_failures(config)[0]
    # every entry of the selected backends, in force or not, must name something collected: a misspelt name is found
    unmatched = [str(e) for e in entries if not any(e.matches(i, c, r, t) for i, c, r, t in collected)]
    if unmatched:
        config.issue_config_time_warning(pytest.PytestWarning(
            f"known-failure entries that match no collected test: {', '.join(unmatched)}"), stacklevel=2)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Skip what cannot run, with the reason, and expect the known failures, on the selected tests only: asking
    a backend whether it can run here may import its library (torch: seconds), which a run that selects only
    numpy backends never needs."""
    config = session.config
    dtypes = config.getoption("conv_dtypes")
    selected = _impl_items(session.items)
    if not selected:  # no suite test here (another project's run): no registry, no known failures
        return
    known_entries, inactive = _known_in_force(config, {e.name for _, e, _ in selected})
    if RECORDER_KEY in config.stash:  # the report shows what each selected backend declared, and its version
        config.stash[RECORDER_KEY].meta["impls"] = [describe(e) for e in {e.name: e for _, e, _ in selected}.values()]
        config.stash[RECORDER_KEY].meta["known_inactive"] = [f"{e} ({e.source}): {why}" for e, why in inactive]
    for item, entry, check in selected:
        left = left_out(entry, config.getoption("conv_select"))
        if entry.unavailable or left:
            status, reason = "unavailable", entry.unavailable or left
        else:
            rank, transposed = _op_of(item)
            status, reason = "unsupported", unsupported_check_reason(entry.backend.capabilities, check, dtypes,
                                                                     rank=rank, transposed=transposed) or ""
        if reason:
            item.stash[SKIP_STATUS_KEY] = (status, entry.name, check, reason)
            item.add_marker(pytest.mark.skip(reason=f"{entry.name}: {reason}"))
            continue
        rank, transposed = _op_of(item)
        item.stash[KNOWN_DTYPES_KEY] = [e for e in known_entries
                                        if e.dtypes and e.matches(entry.name, check, rank, transposed)]
        kf = known.lookup(known_entries, entry.name, check, rank=rank, transposed=transposed)
        if kf is not None:
            item.stash[KNOWN_KEY] = kf
            item.add_marker(pytest.mark.xfail(reason=f"known: {kf.reason} ({kf.source})",
                                              strict=config.getoption("conv_strict")))


@pytest.fixture
def conv_op(request: pytest.FixtureRequest) -> str:
    """The operation of a suite test's problems, parametrized by ``pytest_generate_tests``: torch's names, conv1d,
    conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d (``pytest -k conv3d`` selects one,
    ``-k conv_transpose`` the transposed ones)."""
    return str(getattr(request, "param", "conv2d"))


@pytest.fixture
def conv(request: pytest.FixtureRequest, impl: Any, conv_op: str) -> Any:
    """The per-test context: the backend, the run options, and a buffer of rows flushed at teardown."""
    cfg = request.config
    ctx = SuiteContext(entry=impl, recorder=cfg.stash[RECORDER_KEY], nodeid=request.node.nodeid,
                       check=_check_of(request.node) or "", dtypes=cfg.getoption("conv_dtypes"),
                       data_kinds=cfg.getoption("conv_data_kinds"), max_macs=cfg.getoption("conv_max_macs"),
                       backend=_isolated(cfg, impl),
                       known=request.node.stash.get(KNOWN_KEY, None),
                       known_dtypes=request.node.stash.get(KNOWN_DTYPES_KEY, []), operation=conv_op)
    yield ctx
    ctx.flush()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Past ``--max-time`` no further check starts: it is recorded as not reached, and skipped with the reason."""
    config = item.config
    config.stash[STARTED_KEY].add(item.nodeid)
    deadline = config.stash.get(DEADLINE_KEY, None)
    if deadline is not None and time.monotonic() > deadline and _check_of(item) is not None:
        why = f"not reached: --max-time {config.getoption('conv_max_time'):g} s had passed"
        _record_not_reached(config, item, why)
        pytest.skip(why)


def _record_not_reached(config: pytest.Config, item: pytest.Item, why: str) -> None:
    recorder = config.stash.get(RECORDER_KEY, None)
    callspec = getattr(item, "callspec", None)
    if recorder is None or callspec is None or "impl" not in callspec.params:
        return
    recorder.record(_test_row(item, "not_reached", why))


def _test_row(item: pytest.Item, status: str, reason: str) -> Row:
    """The row of a whole suite test (a skip, not reached, stale, an error outside its examples)."""
    check = _check_of(item) or ""
    callspec = getattr(item, "callspec", None)
    impl = callspec.params["impl"].name if callspec is not None and "impl" in callspec.params else "?"
    rank, transposed = _op_of(item)
    return Row(status=status, impl=impl, check=check, tier=_tier(check), reason=reason, nodeid=item.nodeid,
               rank=rank, transposed=transposed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    ctx = getattr(item, "funcargs", {}).get("conv")
    if call.when == "call" and call.excinfo is not None and ctx is not None and ctx.error_causes:
        # an error is no numeric deviation: JUnit readers see it as such (pytest copies these into the report)
        item.user_properties += [("conv_status", "error"), ("conv_cause", "; ".join(ctx.error_causes)[:500])]
    outcome = yield
    rep = outcome.get_result()
    recorder = item.config.stash.get(RECORDER_KEY, None)
    if recorder is None:
        return
    skip = item.stash.get(SKIP_STATUS_KEY, None)
    if skip is not None and rep.when == "setup" and rep.skipped:
        status, _, _, reason = skip
        recorder.record(_test_row(item, status, reason))
    elif rep.when == "call" and KNOWN_KEY in item.stash and (
            (rep.passed and hasattr(rep, "wasxfail")) or (rep.failed and "XPASS(strict)" in str(rep.longrepr))):
        kf = item.stash[KNOWN_KEY]
        recorder.record(_test_row(item, "stale", f"known failure {kf} ({kf.source}) no longer fails: remove the entry"))
    elif rep.failed and _check_of(item) is not None:
        ctx = getattr(item, "funcargs", {}).get("conv")
        if ctx is None or not ctx.has_failure_rows:
            # the test failed without a failing verdict (setup, a check that raised after passing examples, a
            # suite bug): still a row of its own, never a silent gap
            recorder.record(_test_row(item, "error", f"{rep.when} failed: {str(rep.longrepr)[-2000:]}"))


def _tier(check: str) -> str:
    """The tier a test-level row of ``check`` records (a skip, not reached, an error outside its examples)."""
    c = checktable.BY_NAME.get(check)
    return c.record_tier if c is not None else "hypothesis"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for backend in session.config.stash.get(ISOLATED_KEY, {}).values():
        backend.close()
    started = session.config.stash.get(STARTED_KEY, set())
    if session.shouldstop or session.shouldfail or exitstatus == pytest.ExitCode.INTERRUPTED:
        why = f"not reached: the run stopped first ({session.shouldstop or session.shouldfail or 'interrupted'})"
        for item in session.items:  # with pytest-xdist the controller has none: each worker records its own
            if item.nodeid not in started and item.stash.get(SKIP_STATUS_KEY, None) is None:
                _record_not_reached(session.config, item, why)
    recorder = session.config.stash.get(RECORDER_KEY, None)
    if recorder is not None:
        recorder.close(exitstatus=int(exitstatus))
