"""The command line (conformance.cli): --version, a closed pipe, one meaning per option name, the gate's options,
the stop options, usage errors in two lines, the hints of a bad --impl, and a subset run's report path."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import conformance
from conformance import cli
from conformance.backends.registry import Registry, add_spec, load_import_path, validate_backend
from conformance.errors import RegistryError
from conformance.options import RUN_OPTION_NAMES, add_run_options

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "examples" / "backend_template.py"


def conv(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def parse(*args: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(args))


def options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        parse(*args)
    assert exc.value.code == 2
    return capsys.readouterr().err


# -- 1. --version ---------------------------------------------------------------------------------------------------

def test_version() -> None:
    proc = conv("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"conv-conformance {md.version('conv-conformance')}\n"


def test_version_without_the_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", missing)
    assert cli.version() == conformance.__version__


# -- 2. a closed pipe -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["list", "--format", "json"], ["list"], ["--help"]], ids=" ".join)
def test_closed_pipe_ends_quietly(args: list[str]) -> None:
    """The reader is gone before the first write (as `| head -1` is gone after its line): no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "conformance", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert err == ""
    # 141: the status of a process stopped by SIGPIPE; argparse's --help swallows a write error it meets itself and
    # exits 0, but where its text is still buffered the flush at the end meets the closed pipe: 141 then
    assert cli.EXIT_BROKEN_PIPE == 141
    assert code in ((0, 141) if args == ["--help"] else (141,))


def test_closed_pipe_through_head(tmp_path: Path) -> None:
    proc = subprocess.run(f"{sys.executable} -m conformance list --format json | head -1", shell=True,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.stdout == "[\n"
    assert proc.stderr == ""


class _ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_main_returns_141_on_a_closed_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())  # no file descriptor: the devnull redirect is skipped
    assert cli.main(["list"]) == 141


# -- 3. one meaning per option name; every option has a help text ---------------------------------------------------

def test_list_format() -> None:
    assert parse("list").format == "text"
    assert parse("list", "--format", "json").format == "json"


def test_list_json_is_a_deprecated_hidden_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("list", "--json").format == "json"
    assert "conv-conformance list: --json is deprecated; use --format json" in capsys.readouterr().err
    assert "--json" not in cli.parser().commands["list"].format_help()


def test_list_format_json_output() -> None:
    proc = conv("list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "naive" in {d["name"] for d in json.loads(proc.stdout)}


def test_list_says_an_opt_in_backend_runs_where_named() -> None:
    proc = conv("list")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("torch-compile "))
    assert "NOT RUNNABLE" in line or "where a run names it, --select torch-compile: Inductor" in line  # (no torch)


def test_gate_json_is_a_path() -> None:
    args = parse("gate", "--impl", "naive", "--json", "out/gate.json")
    assert args.json == "out/gate.json"


def test_every_option_has_a_help_text() -> None:
    ap = cli.parser()
    hidden = {("list", "--json")}  # the deprecated alias
    missing = [(name, a.option_strings[0] if a.option_strings else a.dest)
               for name, p in ap.commands.items() for a in p._actions
               if (not a.help or a.help == argparse.SUPPRESS)
               and (name, a.option_strings[0] if a.option_strings else a.dest) not in hidden]
    assert missing == []
    assert set(ap.commands) == {"list", "run", "gate", "profile", "repro", "report", "fuzz"}
    assert options_of(ap.commands["report"])["--out"].help == "report path (default reports/index.html)"
    assert "also list a backend" in str(options_of(ap.commands["list"])["--impl"].help)


# -- 4. the gate's options ------------------------------------------------------------------------------------------

def test_gate_help_shows_only_what_applies_to_one_backend() -> None:
    gate = cli.parser().commands["gate"]
    shown = {s for a in gate._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
    assert not shown & {"--select", "--no-entry-points", "--env-name"}
    assert "-k" in shown
    text = gate.format_help()
    assert "pytest -k expression over the gate's checks, e.g. 'not scale'" in " ".join(text.split())
    assert "--select" not in text and "--env-name" not in text and "--no-entry-points" not in text
    assert {"--impl", "--max-time", "-x", "--maxfail", "-v", "-q", "--json", "--junit", "--out"} <= shown


@pytest.mark.parametrize("option", ["--select", "--no-entry-points", "--env-name"])
def test_gate_rejects_the_run_only_options(capsys: pytest.CaptureFixture[str], option: str) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["gate", "--impl", "naive", option, *(["x"] if option != "--no-entry-points" else [])])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith(f"conv-conformance gate: error: unrecognized arguments: {option}")


def test_gate_k_is_passed_on() -> None:
    args = parse("gate", "--impl", "naive", "-k", "not scale")
    extra = cli.gate_pytest_args(args, Path("res"))
    assert extra[extra.index("-k") + 1] == "not scale"


def test_add_run_options_exclude() -> None:
    p = argparse.ArgumentParser()
    add_run_options(p.add_argument, prefix="conv-", exclude=("select", "env-name"))
    names = set(options_of(p))
    assert "--conv-select" not in names and "--conv-env-name" not in names
    assert {"--impl", "--conv-max-time", "--conv-no-entry-points"} <= names
    full = argparse.ArgumentParser()
    add_run_options(full.add_argument, prefix="")
    assert {o.lstrip("-") for o in options_of(full) if o != "-h" and o != "--help"} == set(RUN_OPTION_NAMES)
    with pytest.raises(ValueError, match="no run option named nosuch"):
        add_run_options(argparse.ArgumentParser().add_argument, prefix="", exclude=("nosuch",))


# -- 5. --max-time, -x, --maxfail, the gate's -v/-q ------------------------------------------------------------------

def test_max_time_in_the_plugin_and_the_cli() -> None:
    p = argparse.ArgumentParser()
    add_run_options(p.add_argument, prefix="conv-")
    assert p.parse_args(["--conv-max-time", "90"]).conv_max_time == 90.0
    assert p.parse_args([]).conv_max_time is None
    args = parse("run", "--max-time", "1.5")
    assert args.conv_max_time == 1.5
    pa = cli.pytest_args_for_run(args, Path("res"))
    assert pa[pa.index("--conv-max-time") + 1] == "1.5"
    assert "--conv-max-time" not in cli.pytest_args_for_run(parse("run"), Path("res"))
    gate = cli.gate_pytest_args(parse("gate", "--impl", "naive", "--max-time", "30"), Path("res"))
    assert gate[gate.index("--conv-max-time") + 1] == "30.0"


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf"])
def test_max_time_must_be_positive(capsys: pytest.CaptureFixture[str], value: str) -> None:
    err = usage_error(capsys, "run", f"--max-time={value}")
    assert err.startswith("conv-conformance run: error: argument --max-time: max-time")


@pytest.mark.parametrize("command", ["run", "gate"])
def test_exitfirst_and_maxfail(command: str) -> None:
    build = cli.pytest_args_for_run if command == "run" else cli.gate_pytest_args
    base = [command] + (["--impl", "naive"] if command == "gate" else [])
    plain = build(parse(*base), Path("res"))
    assert "-x" not in plain and not any(a.startswith("--maxfail") for a in plain)
    assert "-x" in build(parse(*base, "-x"), Path("res"))
    assert "-x" in build(parse(*base, "--exitfirst"), Path("res"))
    assert "--maxfail=3" in build(parse(*base, "--maxfail", "3"), Path("res"))


def test_maxfail_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert "maxfail 0 must be at least 1" in usage_error(capsys, "run", "--maxfail", "0")


@pytest.mark.parametrize("flags, verbosity", [([], None), (["-v"], 1), (["-vv"], 2), (["-q"], -2), (["-v", "-q"], -1)])
def test_gate_verbosity(flags: list[str], verbosity: int | None) -> None:
    extra = cli.gate_pytest_args(parse("gate", "--impl", "naive", *flags), Path("res"))
    given = [a for a in extra if a.startswith("--verbosity=")]
    assert given == ([] if verbosity is None else [f"--verbosity={verbosity}"])


def test_gate_verbose_lists_each_check(tmp_path: Path) -> None:
    proc = conv("gate", "--impl", f"{TEMPLATE}:MyConv", "-k", "golden", "--max-examples", "2", "-v",
                "--results", str(tmp_path / "res"), "--out", str(tmp_path / "gate.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"test_golden\.py::test_golden\[my-conv-conv2d\] PASSED", proc.stdout), proc.stdout


# -- 6. usage errors in two lines -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, first", [
    pytest.param(["run", "--max-examples", "0"], "conv-conformance run: error: argument --max-examples: "
                                                 "max-examples 0 must be at least 1", id="bad value"),
    pytest.param(["list", "--bogus"], "conv-conformance list: error: unrecognized arguments: --bogus",
                 id="unknown option"),
    pytest.param(["gate"], "conv-conformance gate: error: the following arguments are required: --impl",
                 id="gate without --impl"),
    pytest.param(["nosuch"], "conv-conformance: error: argument COMMAND: invalid choice: 'nosuch'", id="command"),
])
def test_usage_errors_take_two_lines(args: list[str], first: str) -> None:
    proc = conv(*args)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(first), lines[0]
    prog = first.split(": error")[0]
    assert lines[1] == f"see '{prog} --help'"
    assert "usage:" not in proc.stderr and proc.stdout == ""


def test_run_unknown_option_says_where_pytest_options_go(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--no-such-option"])
    assert exc.value.code == 2
    assert "(pytest's own options go after --)" in capsys.readouterr().err


# -- 7. hints -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["path/to/file.py", "file.py"])
def test_impl_file_without_a_class(spec: str) -> None:
    message = f"--impl {spec!r} names a file but no class: use {spec}:ClassName"
    with pytest.raises(RegistryError, match=re.escape(message)):
        load_import_path(spec)
    with pytest.raises(RegistryError, match=re.escape(message)):
        add_spec(Registry(), spec)


def test_impl_file_without_a_class_from_the_cli() -> None:
    proc = conv("list", "--impl", "path/to/file.py")
    assert proc.returncode == 2
    assert proc.stderr == ("conv-conformance list: error: --impl 'path/to/file.py' names a file but no class: "
                           "use path/to/file.py:ClassName\n")


def test_other_bad_import_paths_keep_their_message() -> None:
    with pytest.raises(RegistryError, match=re.escape("--impl 'nocolon' must be in the form pkg.module:Name")):
        load_import_path("nocolon")


def test_backend_without_capabilities() -> None:
    class NoCaps:
        name = "no-caps"

        def forward(self, *args: Any) -> None: ...

        def backward(self, *args: Any) -> None: ...

    with pytest.raises(RegistryError, match=re.escape(
            "here: backend 'no-caps' has no `capabilities` attribute (a conformance.Capabilities)")):
        validate_backend(NoCaps(), "here")
    NoCaps.capabilities = None  # type: ignore[attr-defined]
    with pytest.raises(RegistryError, match=re.escape("has capabilities=None, but it must be a conformance.")):
        validate_backend(NoCaps(), "here")


# -- 8. a subset run's report; the top-level description ------------------------------------------------------------

@pytest.mark.parametrize("parts, path", [
    (["im2col"], "reports/run-im2col.html"),
    (["im2col and golden"], "reports/run-im2col-and-golden.html"),
    (["not (torch-cuda or fft)"], "reports/run-not-torch-cuda-or-fft.html"),
    (["../../etc/passwd"], "reports/run-etc-passwd.html"),
    (["golden", "my-conv"], "reports/run-golden-my-conv.html"),
    (["()"], "reports/run-subset.html"),
])
def test_subset_report_path(parts: list[str], path: str) -> None:
    assert cli.subset_report_path(parts) == Path(path)


def test_long_subset_names_are_cut() -> None:
    assert len(cli.subset_report_path(["x" * 500]).name) <= len("run-.html") + 80


def test_run_report_path() -> None:
    assert cli.run_report_path(parse("run")) == Path("reports/index.html")
    assert cli.run_report_path(parse("run", "-k", "im2col")) == Path("reports/run-im2col.html")
    assert cli.run_report_path(parse("run", "--impl", "x.py:Conv"), ["my-conv"]) == Path("reports/run-my-conv.html")
    assert cli.run_report_path(parse("run", "--select", "fft")) == Path("reports/run-fft.html")
    # an explicit --out is kept, subset or not
    assert cli.run_report_path(parse("run", "-k", "im2col", "--out", "here.html")) == Path("here.html")
    assert cli.run_report_path(parse("run", "--out", "reports/index.html", "-k", "x")) == Path("reports/index.html")


def test_subset_run_keeps_the_full_report(tmp_path: Path) -> None:
    full = tmp_path / "reports" / "index.html"
    full.parent.mkdir()
    full.write_text("the full run's report")
    proc = conv("run", "-k", "im2col and golden", "--max-examples", "2", "--results", str(tmp_path / "res"),
                cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert full.read_text() == "the full run's report"
    written = tmp_path / "reports" / "run-im2col-and-golden.html"
    assert written.is_file() and "im2col" in written.read_text()
    assert "report: reports/run-im2col-and-golden.html" in proc.stdout
    assert sorted(p.name for p in full.parent.iterdir()) == ["index.html", "run-im2col-and-golden.html"]


def test_top_level_help_is_plain_text() -> None:
    proc = conv("--help")
    assert proc.returncode == 0
    assert "``" not in proc.stdout
    assert "conv-conformance (python -m conformance): list the implementations" in " ".join(proc.stdout.split())
    for command in ("list", "run", "gate", "profile", "report"):
        assert re.search(rf"^\s+{command}\s+\S", proc.stdout, re.M), command
